"""ATIS through the annotation-tool formats and back: does anything get lost, and does a model trained on the
converted files score like one trained on the original folder?

    python benchmarks/atis_span_roundtrip.py            # the round trip only (about a minute)
    python benchmarks/atis_span_roundtrip.py --train    # + configuration/atis.yaml on each folder (about 10 min each)

Round trip: ATIS's JointBERT folder (train / dev / test) is written as a Label Studio JSON export, a Doccano JSONL
file and Rasa NLU YAML (`formats.export.rows_to_records` + `write_records`; Rasa with `keep_order` so the examples keep
their order), each split a file named by split, and each folder is read back with `load_source`, its format
detected. Every gold entity (text, character offsets, type) and every sentence label must come back, and the words
and tags must equal the original's; the script counts what differs, per format and split, and exits 1 if anything
does. With `--train`, `train_mtl.py` trains the run file (same seed, the converted folders' split files in place of
the original's, so no split is carved) on the original folder, the Label Studio folder and the Rasa folder one after
the other, and the test figures are compared. Results: benchmarks/results/atis_span_roundtrip.json.
"""

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl.data import DataSource, load_source  # noqa: E402
from modeling_mtl.decoding_mtl import bio_to_entities, prepare_text  # noqa: E402
from modeling_mtl.formats.export import rows_to_records, write_records  # noqa: E402
from modeling_mtl.spans import ConversionReport  # noqa: E402

FILES = {"label-studio": ".json", "doccano": ".jsonl", "rasa": ".yml"}
SPLIT_FILES = {"train": "train", "validation": "dev", "test": "test"}
TRAINED = ("label-studio", "rasa")
FAILURES = ("entities_lost_or_changed", "sentence_labels_changed")
METRICS = {"intent accuracy": "test_sentence_accuracy", "slot F1": "test_token_f1", "exact match": "test_exact_match"}


def character_entities(text, words, tags):
    """The (start, end, text, type) of each entity of a word-tagged row, in `text`: the written text, which the
    reader split into `words` with the package's word splitter (`prepare_text`)."""
    split_text, split_words, offsets = prepare_text(text)
    if split_words != list(words):
        raise SystemExit(f"read-back words {words} are not the word splitter's words of {text!r}")
    return [(entity["start"], entity["end"], entity["word"], entity["entity_group"])
            for entity in bio_to_entities(split_text, list(tags), [1.0] * len(tags), offsets)]


def compare(original, converted, split):
    """What differs between ATIS's split and the split read back from a written file, with the first few examples.

    The written text is ATIS's words joined with single spaces. The reader splits it with the package's word
    splitter, which `predict` uses on raw text too; it splits a few ATIS words further (`st.` is `st` `.`), so the
    words and word tags of those examples differ by design ("resplit"), and what must hold is that every gold entity
    comes back with the same character offsets, text and type, and every sentence label the same."""
    if len(original) != len(converted):
        raise SystemExit(f"{split}: {len(converted)} examples read back for {len(original)} written")
    counts = {"examples": len(original), "entities": 0, "resplit_examples": 0, "entities_lost_or_changed": 0,
              "sentence_labels_changed": 0}
    examples = []
    for index, (gold, row, other) in enumerate(zip(rows_to_records(original, split), original, converted)):
        spans = [(span.start, span.end, span.text, span.label) for span in gold.spans]
        counts["entities"] += len(spans)
        counts["resplit_examples"] += list(row["words"]) != list(other["words"])
        changed = len(set(spans) ^ set(character_entities(gold.text, other["words"], other["tags"])))
        counts["entities_lost_or_changed"] += changed
        label_changed = row["sentence_label"] != other["sentence_label"]
        counts["sentence_labels_changed"] += label_changed
        if (changed or label_changed) and len(examples) < 5:
            examples.append(f"{split} example {index}: {changed} entities differ, sentence label "
                            f"{'differs' if label_changed else 'same'}")
    return counts, examples


def round_trip(atis, root):
    """Write ATIS in every format, read each back; returns (per-format results, folders)."""
    results, folders = {}, {}
    for output_format, suffix in FILES.items():
        folder = root / output_format
        start = time.perf_counter()
        for split, stem in SPLIT_FILES.items():
            options = {"keep_order": True} if output_format == "rasa" else {}
            write_records(rows_to_records(atis[split], stem), folder / f"{stem}{suffix}", output_format, **options)
        report = ConversionReport()
        back = load_source(DataSource(data_dir=str(folder)), report=report)
        seconds = time.perf_counter() - start
        per_split, examples = {}, []
        for split in SPLIT_FILES:
            per_split[split], first = compare(atis[split], back[split], split)
            examples += first
        results[output_format] = {"detected_splits": sorted(back), "conversion": dict(report.counts),
                                  "seconds_write_and_read": round(seconds, 1), "splits": per_split,
                                  "first_differences": examples}
        folders[output_format] = folder
        differing = sum(counts[key] for counts in per_split.values() for key in FAILURES)
        total = {key: sum(counts[key] for counts in per_split.values()) for key in next(iter(per_split.values()))}
        print(f"{output_format}: {total['examples']} examples, {total['entities']} entities, {differing} lost or "
              f"changed; {total['resplit_examples']} examples split into other words; "
              f"conversion {dict(report.counts) or 'clean'}; {seconds:.1f} s")
    return results, folders


def train_each(config, folders, root, seed, overrides):
    from train_mtl import main as train

    runs = {}
    for name, folder in folders.items():
        output_dir = root / f"run_{name}"
        start = time.perf_counter()
        train([config, "--data_dir", str(folder), "--seed", str(seed), "--output_dir", str(output_dir), *overrides])
        results = json.loads((output_dir / "all_results.json").read_text())
        runs[name] = {"minutes": round((time.perf_counter() - start) / 60, 1),
                      **{metric: round(100 * results[key], 2) for metric, key in METRICS.items()}}
        print(name, json.dumps(runs[name]))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--output_root", default=str(REPO / "outputs" / "atis_span_roundtrip"))
    parser.add_argument("--train", action="store_true", help="also train the run file on each folder")
    parser.add_argument("--config", default=str(REPO / "configuration" / "atis.yaml"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "atis_span_roundtrip.json"))
    args, overrides = parser.parse_known_args()
    if not os.path.isdir(args.data_dir):
        raise SystemExit(f"{args.data_dir}: no ATIS folder (JointBERT layout) there; give --data_dir")

    root = Path(args.output_root)
    atis = load_source(DataSource(data_dir=args.data_dir))
    results, folders = round_trip(atis, root)
    record = {"command": "python benchmarks/atis_span_roundtrip.py " + shlex.join(sys.argv[1:]),
              "data_dir": args.data_dir, "round_trip": results}
    failed = any(counts[key] for result in results.values() for counts in result["splits"].values()
                 for key in FAILURES)
    if args.train and not failed:
        runs = train_each(args.config, {"jointbert (original)": Path(args.data_dir),
                                        **{name: folders[name] for name in TRAINED}}, root, args.seed, overrides)
        record["training"] = {"config": args.config, "seed": args.seed, "overrides": overrides, "runs": runs}
        print("\n| data the run trained on | intent accuracy | slot F1 | exact match | minutes |\n|---|---|---|---|---|")
        for name, run in runs.items():
            print(f"| {name} | " + " | ".join(f"{run[m]:.2f}" for m in METRICS) + f" | {run['minutes']} |")
    Path(args.result).write_text(json.dumps(record, indent=2) + "\n")
    if failed:
        for result in results.values():
            print("\n".join(result["first_differences"]))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
