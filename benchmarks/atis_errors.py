"""Where trained ATIS models' test errors are, and how many of them the training split holds no example of.

    python benchmarks/atis_errors.py --models outputs/quality/seed42 outputs/quality/seed43 outputs/quality/seed44

Reads each model folder's `test_predictions.jsonl` (written by train_mtl.py: gold and predicted side by side) and
the training split of --data_dir (JointBERT layout), and sorts every error:

- an intent error: the gold intent never occurs in train (`unseen_intent`); it is a combined intent such as
  `atis_flight#atis_airfare` (`combined_intent`); or neither (`other`);
- a wrong word tag: the gold slot type never occurs in train under the utterance's gold intent
  (`slot_unseen_under_intent`, e.g. a role-less `airport_name` in an `atis_distance` question where train only
  has `fromloc.airport_name`); else the same slot with another role (`role`: `city_name` vs `toloc.city_name`,
  `depart_date.day_name` vs `arrive_date.day_name`); the right slot with the wrong B-/I- (`boundary`); a gold slot
  tagged O (`missed`); an O word given a slot (`spurious`); or another slot (`other`).

An utterance that exact match counts wrong is `not_in_train` when its gold intent is unseen in train or one of its
wrong words is `slot_unseen_under_intent`: train has no example of the label it is scored against.
Results: benchmarks/results/atis_errors.json (per model) and a markdown table (with the mean over models).
"""

import argparse
import json
import shlex
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl.data import load_jointbert  # noqa: E402

INTENT_KINDS = ("unseen_intent", "combined_intent", "other")
WORD_KINDS = ("slot_unseen_under_intent", "role", "boundary", "missed", "spurious", "other")


def slot_types_by_intent(train):
    """For each intent of the training split, the slot types (tags without B-/I-) its utterances use."""
    types = defaultdict(set)
    for intent, tags in zip(train["sentence_label"], train["tags"]):
        types[intent].update(tag[2:] for tag in tags if tag != "O")
    return types


def word_error_kind(gold, predicted, intent_slot_types):
    if gold == "O":
        return "spurious"
    gold_type, predicted_type = gold[2:], predicted[2:]
    if gold_type not in intent_slot_types:
        return "slot_unseen_under_intent"
    if predicted == "O":
        return "missed"
    if gold_type == predicted_type:
        return "boundary"
    if gold_type.split(".")[-1] == predicted_type.split(".")[-1]:
        return "role"
    return "other"


def classify(records, train, separator="#"):
    """Counts of each kind of error in `records` (dicts of test_predictions.jsonl) against the training split."""
    train_intents = set(train["sentence_label"])
    slot_types = slot_types_by_intent(train)
    intents, words = Counter(), Counter()
    wrong = not_in_train = 0
    for record in records:
        gold_intent = record["gold_label"]
        intent_wrong = record["predicted_label"] != gold_intent
        if intent_wrong:
            if gold_intent not in train_intents:
                intents["unseen_intent"] += 1
            elif separator in gold_intent:
                intents["combined_intent"] += 1
            else:
                intents["other"] += 1
        kinds = [
            word_error_kind(gold, predicted, slot_types[gold_intent])
            for gold, predicted in zip(record["gold_tags"], record["predicted_tags"])
            if gold != predicted
        ]
        words.update(kinds)
        if intent_wrong or kinds:
            wrong += 1
            not_in_train += gold_intent not in train_intents or "slot_unseen_under_intent" in kinds
    return {
        "utterances": len(records),
        "exact_match_errors": wrong,
        "not_in_train": not_in_train,
        "intent_errors": {kind: intents[kind] for kind in INTENT_KINDS},
        "word_errors": {kind: words[kind] for kind in WORD_KINDS},
    }


def read_predictions(folder):
    path = Path(folder) / "test_predictions.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: train the model with train_mtl.py (it writes the test predictions)")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            record = json.loads(line)
            if record.get("gold_label") is None or record.get("gold_tags") is None:
                raise SystemExit(f"{path}:{number}: no gold intent or tags: this script needs a labelled test split")
            records.append(record)
    return records


def flatten(result):
    return {
        "exact_match_errors": result["exact_match_errors"],
        "not_in_train": result["not_in_train"],
        **{f"intent_{kind}": n for kind, n in result["intent_errors"].items()},
        **{f"word_{kind}": n for kind, n in result["word_errors"].items()},
    }


def markdown(results):
    columns = list(flatten(next(iter(results.values()))))
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    rows = {name: flatten(result) for name, result in results.items()}
    if len(rows) > 1:
        rows["mean"] = {column: round(statistics.mean(row[column] for row in rows.values()), 1) for column in columns}
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(str(row[column]) for column in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="model folders holding test_predictions.jsonl")
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--separator", default="#", help="what joins the parts of a combined intent")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "atis_errors.json"))
    args = parser.parse_args(argv)

    train = load_jointbert(args.data_dir)["train"]
    results = {folder: classify(read_predictions(folder), train, args.separator) for folder in args.models}
    table = markdown(results)
    argv_used = sys.argv[1:] if argv is None else argv
    record = {"command": "python benchmarks/atis_errors.py " + shlex.join(argv_used), "results": results,
              "markdown": table}
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(table)
    return record


if __name__ == "__main__":
    main()
