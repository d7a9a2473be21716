"""ATIS quality over several seeds: mean and standard deviation of the test scores, next to JointBERT's rows.

    python benchmarks/quality.py                              # configuration/atis.yaml, seeds 42 43 44
    python benchmarks/quality.py --seeds 1 2 3 --config configuration/atis.yaml --num_train_epochs 12

Each seed is a full `train_mtl.py` run; the checkpoint is chosen on dev (`metric_for_best_model` of the run file),
never on test; each run records that best dev figure and its step. Results go to benchmarks/results/quality.json
(per seed and aggregated) and a markdown table.
JointBERT's published rows pick the best epoch on test, so they are optimistic.
"""

import argparse
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

from train_mtl import main as train  # noqa: E402

METRICS = {"intent accuracy": "test_sentence_accuracy", "slot F1": "test_token_f1", "exact match": "test_exact_match"}
JOINTBERT = {  # monologg/JointBERT README, ATIS
    "JointBERT BERT-base (best epoch on test)": (97.87, 95.59, 88.24),
    "JointBERT DistilBERT (best epoch on test)": (97.76, 95.50, 87.68),
}


def write_record(args, overrides, runs):
    summary = {
        name: {"mean": round(statistics.mean(r[name] for r in runs), 2),
               "std": round(statistics.stdev(r[name] for r in runs), 2) if len(runs) > 1 else 0.0}
        for name in METRICS
    }
    record = {"command": "python benchmarks/quality.py " + shlex.join(sys.argv[1:]), "config": args.config,
              "overrides": overrides, "seeds_planned": args.seeds, "runs": runs, "summary": summary}
    Path(args.result).write_text(json.dumps(record, indent=2) + "\n")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configuration" / "atis.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--output_root", default=str(REPO / "outputs" / "quality"))
    parser.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "quality.json"))
    args, overrides = parser.parse_known_args()

    runs = []
    for seed in args.seeds:
        output_dir = Path(args.output_root) / f"seed{seed}"
        start = time.perf_counter()
        train([args.config, "--seed", str(seed), "--output_dir", str(output_dir), *overrides])
        minutes = (time.perf_counter() - start) / 60
        results = json.loads((output_dir / "all_results.json").read_text())
        state = json.loads((output_dir / "trainer_state.json").read_text())
        runs.append({"seed": seed, "minutes": round(minutes, 1), **{k: 100 * results[v] for k, v in METRICS.items()},
                     # what chose the checkpoint: the run file's metric_for_best_model on dev, and where it peaked
                     "best dev metric": round(100 * state["best_metric"], 4), "best step": state.get("best_global_step")})
        print(json.dumps(runs[-1]))
        summary = write_record(args, overrides, runs)  # after every seed: an interrupted run keeps what it measured
    print("\n| model | intent accuracy | slot F1 | exact match |\n|---|---|---|---|")
    cells = [f"{summary[name]['mean']:.2f} ± {summary[name]['std']:.2f}" for name in METRICS]
    print(f"| modeling_mtl, all-MiniLM-L6-v2, {len(runs)} seeds, checkpoint chosen on dev | " + " | ".join(cells) + " |")
    for name, row in JOINTBERT.items():
        print(f"| {name} | " + " | ".join(f"{value:.2f}" for value in row) + " |")


if __name__ == "__main__":
    main()
