"""`predict` of an older version of the code against the package's `predict` now, on the same weights and texts.

    git worktree add /tmp/before 8b583e7
    (cd /tmp/before && python -c "from modeling_mtl import MultiTaskModel as M; \
        M.from_pretrained('$PWD/outputs/atis').save_pretrained('/tmp/atis_before')")
    python benchmarks/predict_before_after.py --before /tmp/atis_before --model outputs/atis \
        --output benchmarks/results/predict_before_after_split.json

A saved folder carries the code that saved it: `--before` is loaded through its own remote-code files (the old
version), `--model` through the installed package (the new one). Both predict the first ATIS test texts at each batch
size, interleaved in alternating order `--repeats` times; the figure is the median of the per-repeat time ratios
before / after (above 1: the package is now faster). The predictions of the two must be identical, or the script stops.
"""

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers.dynamic_module_utils import get_class_from_dynamic_module

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl import MultiTaskModel  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a folder saved by the older code (its code files load it)")
    parser.add_argument("--model", required=True, help="a folder of the same weights, loaded by the package")
    parser.add_argument("--data_dir", default=str(SHARED / "atis"), help="JointBERT folder whose test/seq.in is read")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--texts", type=int, default=893)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    texts = (Path(args.data_dir) / "test" / "seq.in").read_text(encoding="utf-8").splitlines()[: args.texts]
    before_class = get_class_from_dynamic_module("modeling_mtl.MultiTaskModel", args.before)
    before = before_class.from_pretrained(args.before).eval()
    after = MultiTaskModel.from_pretrained(args.model).eval()
    if type(before) is type(after):
        raise SystemExit("--before loaded with the package's class: it must be a folder saved by another version")
    report = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "threads": torch.get_num_threads(),
              "before_code": str(Path(args.before).resolve()), "batches": {}}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        subset = texts[: max(64, min(len(texts), 16 * batch_size))]
        if before.predict(subset, batch_size=batch_size) != after.predict(subset, batch_size=batch_size):
            raise SystemExit(f"batch {batch_size}: the two versions predict differently")
        ratios = []
        for repeat in range(args.repeats):
            order = [("before", before), ("after", after)]
            seconds = {}
            for name, model in order if repeat % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                model.predict(subset, batch_size=batch_size)
                seconds[name] = time.perf_counter() - start
            ratios.append(seconds["before"] / seconds["after"])
        median = statistics.median(ratios)
        report["batches"][batch_size] = {"texts": len(subset), "before_over_after": sorted(ratios), "median": median}
        print(f"batch {batch_size:>4}, {len(subset)} texts: before / after time {median:.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f}), same predictions", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
