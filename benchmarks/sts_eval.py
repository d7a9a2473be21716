"""STS-benchmark Spearman correlation of a model's sentence embeddings (cosine similarity vs gold scores).

    python benchmarks/sts_eval.py                          # the untrained model around all-MiniLM-L6-v2
    python benchmarks/sts_eval.py --model outputs/atis     # a trained multi-task model folder
    python benchmarks/sts_eval.py --split dev --output benchmarks/results/sts_minilm.json

Reads ../shared/data/stsbenchmark/sts-<split>.csv (tab-separated, quoting disabled, first 7 fields kept).
Reference: all-MiniLM-L6-v2 scores 82.03 on test and 86.72 on dev.
"""

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_mtl import DEFAULT_ENCODER, MultiTaskModel  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark"


def read_sts(split, folder=DATA):
    pairs = []
    with open(folder / f"sts-{split}.csv", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) < 7:
                raise ValueError(f"{folder / f'sts-{split}.csv'}:{line_number}: expected 7 fields, got {len(row)}")
            pairs.append((row[5], row[6], float(row[4])))
    return pairs


def sts_spearman(model, pairs, batch_size=64):
    first = model.encode([a for a, _, _ in pairs], batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    second = model.encode([b for _, b, _ in pairs], batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    cosine = torch.nn.functional.cosine_similarity(first, second).cpu().numpy()
    return 100.0 * spearmanr(cosine, [score for _, _, score in pairs]).statistic


def load_model(name):
    if name is None or not (Path(name) / "config.json").exists() or "multitask" not in (Path(name) / "config.json").read_text():
        return MultiTaskModel.from_encoder(name or DEFAULT_ENCODER)
    return MultiTaskModel.from_pretrained(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="multi-task model folder, or an encoder (default: MiniLM)")
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    start = time.perf_counter()
    model = load_model(args.model)
    pairs = read_sts(args.split)
    score = sts_spearman(model, pairs)
    result = {"model": args.model or DEFAULT_ENCODER, "split": args.split, "pairs": len(pairs),
              "spearman": round(score, 2), "seconds": round(time.perf_counter() - start, 1),
              "command": "python benchmarks/sts_eval.py " + shlex.join(sys.argv[1:])}
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
