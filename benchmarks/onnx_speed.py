"""ONNX export for serving: onnxruntime float32 and int8 against the PyTorch model, on the same trained weights.

    python benchmarks/onnx_speed.py --model outputs/atis          # about 5 minutes on 2 CPU cores
    python benchmarks/onnx_speed.py --model outputs/atis --batch-sizes 1 32 --repeats 5 --output /tmp/onnx.json

1. Export: `export_onnx` writes `model.onnx` (checked against PyTorch) and `model_int8.onnx` (onnxruntime's dynamic
   quantisation: int8 MatMul weights, activations quantised per batch) into `--onnx_dir`; sizes and time recorded.
2. Accuracy: `python -m modeling_mtl evaluate` on the ATIS test split (`--config`'s data), once per runtime, so all
   three are scored by the code that scores training (intent accuracy, slot F1, exact match), plus the share of
   test texts whose `predict` output (label and entities) equals PyTorch's.
3. Speed: `predict` on the ATIS test texts at each batch size, the three runtimes interleaved (alternating order,
   `--repeats` times); the figures are medians of per-repeat ratios (the CPU may be shared), with the thread counts.
"""

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from speed import interleave, load_predict_model, machine_facts, paired_ratio, read_atis  # noqa: E402

from modeling_mtl.cli import main as cli  # noqa: E402
from modeling_mtl.onnx_export import ONNX_NAME, QUANTIZED_NAME, OnnxMultiTaskModel, export_onnx  # noqa: E402

RUNTIMES = ("pytorch", "onnx fp32", "onnx int8")
METRICS = ("sentence_accuracy", "token_f1", "exact_match")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "outputs" / "atis"), help="a trained model folder")
    parser.add_argument("--onnx_dir", default=None, help="where to export (default: a temporary folder)")
    parser.add_argument("--config", default=str(REPO / "configuration" / "atis.yaml"), help="run file with the data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--sentences", type=int, default=None, help="first N ATIS test texts for the speed part")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "onnx.json"))
    return parser.parse_args(argv)


def evaluate(model_dir, config, split, onnx=None):
    stdout = io.StringIO()
    arguments = ["evaluate", "--model", str(model_dir), "--config", config, "--split", split, "--json",
                 "--no-per_entity"]
    with contextlib.redirect_stderr(io.StringIO()):
        status = cli(arguments + (["--onnx", onnx] if onnx else []), stdout=stdout)
    if status != 0:
        raise SystemExit(f"evaluate {model_dir} (onnx={onnx}) failed")
    metrics = json.loads(stdout.getvalue())["metrics"]
    return {key: 100 * metrics[key] for key in METRICS}


def same_prediction(ours, reference):
    """Label and entity spans/groups equal (scores aside)."""
    def spans(result):
        return [(e["entity_group"], e["start"], e["end"]) for e in result["entities"]]

    return ours["label"] == reference["label"] and spans(ours) == spans(reference)


def main(argv=None):
    args = parse_args(argv)
    report = {
        "command": "python benchmarks/onnx_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine_facts(),
        "settings": vars(args),
    }
    model, source = load_predict_model(args.model)
    report["model"] = source
    with tempfile.TemporaryDirectory() as scratch:
        onnx_dir = Path(args.onnx_dir or Path(scratch) / "onnx")
        start = time.perf_counter()
        export_onnx(model, onnx_dir)
        report["export"] = {
            "seconds": round(time.perf_counter() - start, 1),
            "megabytes": {name: round((onnx_dir / name).stat().st_size / 2**20, 1) for name in (ONNX_NAME, QUANTIZED_NAME)},
        }
        print(json.dumps(report["export"]), flush=True)
        runners = {
            "pytorch": model,
            "onnx fp32": OnnxMultiTaskModel.from_folder(onnx_dir),
            "onnx int8": OnnxMultiTaskModel.from_folder(onnx_dir, quantized=True),
        }
        report["threads"] = {"torch": torch.get_num_threads(),
                             "onnxruntime": runners["onnx fp32"].session.get_session_options().intra_op_num_threads}

        accuracy = {}
        if (Path(args.model) / "config.json").is_file():
            for name, (folder, onnx) in zip(RUNTIMES, ((args.model, None), (onnx_dir, "fp32"), (onnx_dir, "int8"))):
                accuracy[name] = evaluate(folder, args.config, args.split, onnx)
                print(name, json.dumps(accuracy[name]), flush=True)
        texts = read_atis()[: args.sentences]
        outputs = {name: runner.predict(texts, batch_size=32) for name, runner in runners.items()}
        agreement = {
            name: sum(same_prediction(a, b) for a, b in zip(outputs[name], outputs["pytorch"])) / len(texts)
            for name in RUNTIMES[1:]
        }
        report["accuracy"] = {"split": args.split, "metrics": accuracy, "same_predict_output_as_pytorch": agreement}

        speed = {}
        for batch_size in args.batch_sizes:
            variants = [(name, lambda r=runner, b=batch_size: r.predict(texts, batch_size=b))
                        for name, runner in runners.items()]
            seconds = interleave(variants, args.repeats)
            speed[str(batch_size)] = {
                "texts": len(texts),
                "seconds": seconds,
                "speedup_over_pytorch": {name: paired_ratio(seconds["pytorch"], seconds[name]) for name in RUNTIMES[1:]},
            }
            print(batch_size, {n: round(v["median"], 2) for n, v in speed[str(batch_size)]["speedup_over_pytorch"].items()},
                  flush=True)
        report["speed"] = speed
    report["table"] = table(report)
    print(report["table"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


def table(report):
    rows = ["| runtime | file MB | " + " | ".join(f"predict speed-up, batch {b}" for b in report["speed"])
            + " | intent acc. | slot F1 | exact match | same predict output |", "|---" * (6 + len(report["speed"])) + "|"]
    sizes = {"pytorch": "–", "onnx fp32": report["export"]["megabytes"][ONNX_NAME],
             "onnx int8": report["export"]["megabytes"][QUANTIZED_NAME]}
    accuracy = report["accuracy"]
    for name in RUNTIMES:
        speedups = [f"{r['speedup_over_pytorch'][name]['median']:.2f}x" if name != "pytorch" else "1.00x"
                    for r in report["speed"].values()]
        scores = accuracy["metrics"].get(name)
        score_cells = [f"{scores[k]:.2f}" for k in METRICS] if scores else ["–"] * 3
        same = accuracy["same_predict_output_as_pytorch"].get(name)
        rows.append(f"| {name} | {sizes[name]} | " + " | ".join(speedups + score_cells)
                    + f" | {'–' if same is None else f'{100 * same:.1f}%'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
