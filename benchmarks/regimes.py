"""Transfer-learning regimes on ATIS, under one training budget: what each costs and what it gives.

    python benchmarks/regimes.py                                  # every regime, 2 epochs each (~25 min on 2 cores)
    python benchmarks/regimes.py --max_train_samples 256 --max_eval_samples 100 --max_sts_pairs 100 \
        --epochs 1 --output /tmp/check.json                       # a quick check of the script

Every regime starts from the same model (all-MiniLM-L6-v2 encoder, fresh heads, seed 42), trains through
`MultiTaskTrainer` with arguments parsed from `configuration/atis.yaml` plus the regime's options (the same keys a run
file takes), for the same number of epochs, then reports on the ATIS test split: intent accuracy, slot F1 (seqeval,
entity level), exact match (intent and every slot right), the STS-benchmark test Spearman of the sentence embeddings
after training (82.03 before any training), the trainable parameters and the wall-clock minutes of training.
Writes `benchmarks/results/regimes.json` (after every regime, so an interrupted run keeps what it finished) and prints
a markdown table.
"""

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import set_seed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.data import MultiTaskCollator, encode_dataset_dict  # noqa: E402
from modeling_mtl.metrics import build_compute_metrics  # noqa: E402
from modeling_mtl.trainer import MultiTaskTrainer  # noqa: E402
from modeling_mtl.training_args import parse_arguments  # noqa: E402
from sts_eval import read_sts, sts_spearman  # noqa: E402
from train_mtl import load_data  # noqa: E402

RUN_FILE = REPO / "configuration" / "atis.yaml"
STS_BEFORE_TRAINING = 82.03  # benchmarks/results/sts_minilm_test.json
HEADS_LR, ENCODER_LR = 1e-3, 1e-4

# name -> (what it is, [stages: run-file options]); the stages of a regime share the epochs of the budget.
REGIMES = {
    "full": (
        "full fine-tuning, one learning rate (1e-4) for everything",
        [{"learning_rate": 1e-4}],
    ),
    "full_discriminative": (
        "full fine-tuning, heads 1e-3, encoder 1e-4, layer-wise decay 0.9",
        [{"head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR, "layerwise_lr_decay": 0.9}],
    ),
    "frozen_encoder": (
        "linear probe: encoder frozen (a fixed feature extractor), heads 1e-3",
        [{"freeze": "encoder", "head_learning_rate": HEADS_LR}],
    ),
    "frozen_lower_3": (
        "embeddings and layers 0-2 frozen, layers 3-5 at 1e-4, heads 1e-3",
        [{"freeze_encoder_layers": 3, "head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR}],
    ),
    "gradual_unfreezing": (
        "heads alone for 0.25 epoch, then one layer thaws every 0.125 epoch top-down (all by epoch 1); heads 1e-3, "
        "encoder 1e-4",
        [{"unfreezing": "gradual", "unfreeze_warmup": 0.25, "unfreeze_every": 0.125, "unfreeze_unit": "epochs",
          "head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR}],
    ),
    "probe_then_finetune": (
        "linear probe for 0.5 epoch, then everything; heads 1e-3, encoder 1e-4",
        [{"unfreezing": "linear_probe", "unfreeze_warmup": 0.5, "unfreeze_unit": "epochs",
          "head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR}],
    ),
    "sentence_head_frozen": (
        "half the budget as a linear probe (both heads learn), then the intent head frozen while the encoder and the "
        "slot head train (heads 1e-3, encoder 1e-4)",
        [{"freeze": "encoder", "head_learning_rate": HEADS_LR},
         {"freeze": "sentence_head", "head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR}],
    ),
    "uncertainty_weighting": (
        "as full_discriminative, with learned task weights (Kendall et al. 2018; log-variances at 1e-2)",
        [{"head_learning_rate": HEADS_LR, "encoder_learning_rate": ENCODER_LR, "layerwise_lr_decay": 0.9,
          "loss_weighting": "uncertainty", "uncertainty_learning_rate": 1e-2}],
    ),
}


def stage_arguments(options, epochs, output_dir, data_options):
    """Training arguments for one stage: atis.yaml, the benchmark's fixed settings, the regime's options."""
    argv = [str(RUN_FILE)]
    fixed = {
        "output_dir": output_dir,
        "num_train_epochs": epochs,
        "eval_strategy": "no",  # test metrics at the end only: the budget goes to training
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "report_to": "none",
        "logging_steps": 20,
        "disable_tqdm": True,
        **data_options,
    }
    for key, value in {**fixed, **options}.items():
        argv += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return parse_arguments(argv)


def run_regime(name, stages, data, args):
    raw, encoded, sentence_labels, token_labels, sts_pairs = data
    set_seed(args.seed)
    model = MultiTaskModel.from_encoder(args.encoder, sentence_labels=sentence_labels, token_labels=token_labels)
    test = encoded["test"]
    result = {"regime": name, "stages": [], "load_average_at_start": round(os.getloadavg()[0], 2)}
    train_seconds = train_cpu_seconds = 0.0
    for index, options in enumerate(stages):
        epochs = args.epochs / len(stages)
        model.requires_grad_(True)  # what a stage freezes is its own choice, not the previous stage's
        with tempfile.TemporaryDirectory() as output_dir:
            _, _, training_args = stage_arguments(options, epochs, output_dir, {"seed": args.seed})
            trainer = MultiTaskTrainer(
                model=model,
                args=training_args,
                train_dataset=encoded["train"],
                data_collator=MultiTaskCollator(model.tokenizer),
                compute_metrics=build_compute_metrics(test, sentence_labels, token_labels, False),
            )
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.train()
            train_seconds += time.perf_counter() - start
            train_cpu_seconds += time.process_time() - start_cpu  # all threads: steadier than wall-clock when shared
            logs = [log for log in trainer.state.log_history if "loss" in log]
            stage = {
                "options": options,
                "epochs": epochs,
                "steps": trainer.state.global_step,
                "trainable_parameters": trainer.transfer.num_trainable(final=True),
                "final_train_log": logs[-1] if logs else None,
            }
            if index < len(stages) - 1:  # where an intermediate stage left the model
                metrics = trainer.predict(test).metrics
                stage["test_sentence_accuracy"] = round(100 * metrics["test_sentence_accuracy"], 2)
                stage["test_token_f1"] = round(100 * metrics["test_token_f1"], 2)
            result["stages"].append(stage)
    start = time.perf_counter()
    metrics = trainer.predict(test).metrics
    sts = sts_spearman(model, sts_pairs)
    result.update(
        {
            "intent_accuracy": round(100 * metrics["test_sentence_accuracy"], 2),
            "slot_f1": round(100 * metrics["test_token_f1"], 2),
            "exact_match": round(100 * metrics["test_exact_match"], 2),
            "sts_spearman": round(sts, 2),
            "trainable_parameters": max(stage["trainable_parameters"] for stage in result["stages"]),
            "total_parameters": sum(p.numel() for p in model.parameters()),
            "train_minutes": round(train_seconds / 60, 2),
            "train_cpu_minutes": round(train_cpu_seconds / 60, 2),
            "evaluation_minutes": round((time.perf_counter() - start) / 60, 2),
            "steps": sum(stage["steps"] for stage in result["stages"]),
            "load_average_at_end": round(os.getloadavg()[0], 2),  # > 2 on 2 cores: other jobs shared the CPU
        }
    )
    if trainer.loss_weighting is not None:
        result["uncertainty"] = trainer.loss_weighting.log_values()
    return result


def markdown_table(results):
    lines = [
        "| regime | intent acc. | slot F1 | exact match | STS Spearman | trainable params | train min |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['regime']} | {r['intent_accuracy']:.2f} | {r['slot_f1']:.2f} | {r['exact_match']:.2f} | "
            f"{r['sts_spearman']:.2f} | {r['trainable_parameters'] / 1e6:.2f} M | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--epochs", type=float, default=2.0, help="training budget of every regime (default 2)")
    parser.add_argument("--max_train_samples", type=int, default=None, help="a quick check on part of ATIS")
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--max_sts_pairs", type=int, default=None, help="a quick check on the first N STS pairs")
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "regimes.json"))
    parser.add_argument("--note", default=None, help="recorded in the JSON (e.g. that the CPU was shared)")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data_options = {"encoder": args.encoder}
    for key in ("max_train_samples", "max_eval_samples"):
        if getattr(args, key) is not None:
            data_options[key] = getattr(args, key)
    model_args, data_args, training = stage_arguments({}, args.epochs, tempfile.gettempdir(), data_options)
    raw, sentence_labels, token_labels = load_data(data_args, args.seed)
    model = MultiTaskModel.from_encoder(args.encoder, sentence_labels=sentence_labels, token_labels=token_labels)
    encoded, _ = encode_dataset_dict(raw, model.tokenizer, sentence_labels, token_labels, model.config.max_seq_length)
    del model
    sts_pairs = read_sts("test")[: args.max_sts_pairs]
    data = (raw, encoded, sentence_labels, token_labels, sts_pairs)

    report = {
        "command": "python benchmarks/regimes.py " + shlex.join(sys.argv[1:]),
        "data": "ATIS (../shared/data/atis): train %d, test %d; STS-benchmark test %d pairs"
        % (len(encoded["train"]), len(encoded["test"]), len(sts_pairs)),
        "budget": f"{args.epochs:g} epochs per regime (a regime of two stages gives each half), batch "
        f"{training.per_device_train_batch_size}, {training.lr_scheduler_type} schedule with "
        f"{training.warmup_ratio:g} warm-up, weight decay {training.weight_decay:g}, seed {args.seed}",
        "sts_spearman_before_training": STS_BEFORE_TRAINING,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        "note": args.note,
        "regimes": {name: REGIMES[name][0] for name in args.regimes},
        "results": [],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for name in args.regimes:
        print(f"=== {name}: {REGIMES[name][0]}", flush=True)
        result = run_regime(name, REGIMES[name][1], data, args)
        report["results"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "stages"}), flush=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report["results"]))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
