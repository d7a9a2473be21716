"""Argmax vs BIO-constrained (Viterbi) decoding of the token head, on trained ATIS models, without retraining.

    python benchmarks/constrained_decoding.py --models outputs/quality/seed42 outputs/quality/seed43
    python benchmarks/constrained_decoding.py --models outputs/wnut17 --data_dir ../shared/data/wnut17 \
        --output benchmarks/results/constrained_decoding_wnut17.json     # NER: slot F1 only

A word's tag distribution is the token head's prediction at its first sub-token. `token_decoding: argmax` takes
each word's most likely tag, which can give invalid sequences (`I-x` after `O` or after another type);
`token_decoding: bio_viterbi` takes the most likely sequence in which `I-x` only follows `B-x` or `I-x`. Each model
is scored both ways on dev and test with `python -m modeling_mtl evaluate --token_decoding ...` (the code training's
evaluation runs): intent accuracy, slot F1 and exact match. The cost of the decoding is measured too: `predict`
throughput over the ATIS test texts at batch 32, both decodings interleaved, as a ratio.
Results: benchmarks/results/constrained_decoding.json.
"""

import argparse
import io
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.schema_mtl import TOKEN_DECODINGS  # noqa: E402
from modeling_mtl.cli import main as cli  # noqa: E402
from modeling_mtl.data import DataSource, load_sources  # noqa: E402

METRICS = {"intent_accuracy": "sentence_accuracy", "slot_f1": "token_f1", "exact_match": "exact_match"}


def scores(folder, data_dir, split, token_decoding):
    out = io.StringIO()
    cli(["evaluate", "--model", folder, "--data_dir", data_dir, "--split", split, "--token_decoding", token_decoding,
         "--no-per_entity", "--json", "--batch_size", "64"], stdout=out)
    metrics = json.loads(out.getvalue())["metrics"]
    return {name: round(100 * metrics[key], 2) for name, key in METRICS.items() if key in metrics}  # token-only data: F1


def predict_throughput(folder, texts, repeats):
    """Texts per second of `predict` (batch 32) with each decoding, runs interleaved; and the speed ratio."""
    model = MultiTaskModel.from_pretrained(folder).eval()
    seconds = {decoding: [] for decoding in TOKEN_DECODINGS}
    model.predict(texts[:64])  # warm-up
    for _ in range(repeats):
        for decoding in TOKEN_DECODINGS:
            model.config.token_decoding = decoding
            start = time.perf_counter()
            model.predict(texts, batch_size=32)
            seconds[decoding].append(time.perf_counter() - start)
    median = {decoding: statistics.median(values) for decoding, values in seconds.items()}
    return {
        "texts": len(texts),
        "texts_per_second": {decoding: round(len(texts) / value, 1) for decoding, value in median.items()},
        "bio_viterbi_speed_vs_argmax": round(median["argmax"] / median["bio_viterbi"], 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[str(REPO / "outputs" / "atis")])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--repeats", type=int, default=5, help="timed predict runs per decoding (default 5)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "constrained_decoding.json"))
    args = parser.parse_args(argv)
    texts = list(load_sources([DataSource(data_dir=args.data_dir)])["test"]["text"])
    results = {}
    for folder in args.models:
        results[folder] = {
            split: {decoding: scores(folder, args.data_dir, split, decoding) for decoding in TOKEN_DECODINGS}
            for split in ("validation", "test")
        }
        results[folder]["predict"] = predict_throughput(folder, texts, args.repeats)
        print(folder, json.dumps(results[folder]), flush=True)
    record = {"command": "python benchmarks/constrained_decoding.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "results": results}
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
