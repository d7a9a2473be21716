"""Time to quality: how many minutes of this machine a run file needs to reach a given test quality.

    python benchmarks/time_to_quality.py                          # today's default and the old recipe, seeds 42-44
    python benchmarks/time_to_quality.py --variants atis_fast --seeds 42 --output /tmp/ttq.json
    python benchmarks/time_to_quality.py --variant fast=configuration/atis.yaml:"--num_train_epochs 3"
    python benchmarks/time_to_quality.py --profile                # where one run's time goes (+ torch profiler)

Each run is a fresh `python` process that calls `train_mtl.main` (the same code as `accelerate launch train_mtl.py`)
with a `MultiTaskTrainer` subclass that only measures: at every evaluation on dev it also scores the test split (the
time that takes is taken off the clock) and records wall minutes, optimiser steps, examples seen, and the dev and test
intent accuracy, slot F1 and exact match. It also splits the run's wall time into phases (start-up: data, tokenising
and model; per training step: data collation, forward, backward, optimiser; evaluation; checkpoint saving; the end:
calibration, saving, test prediction, model card) and counts the padding share of the training batches.

Runs alternate between variants seed by seed (a, b, a, b, ...) so that the machine's noise falls on both alike. The
table gives, per variant, the end-to-end minutes (median over seeds), the minutes until the test metrics first reach
the target (by default the first variant's 3-seed test means minus one seed standard deviation, every metric at once;
`--target` sets it), and the 3-seed final test metrics. Writes `benchmarks/results/time_to_quality.json` after every
run, a plot `benchmarks/results/time_to_quality.png` (dev and test exact match against minutes) and prints markdown.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRICS = {"intent accuracy": "sentence_accuracy", "slot F1": "token_f1", "exact match": "exact_match"}

# name -> (what it is, run file, extra options)
VARIANTS = {
    "atis_10_epochs": ("configuration/atis.yaml: 10 epochs, random batches", "configuration/atis.yaml", ""),
    "atis_fast": ("configuration/atis_fast.yaml: 6 epochs, length-grouped batches", "configuration/atis_fast.yaml", ""),
}
PHASES = ("startup", "collate", "forward", "backward", "optimizer", "step_other", "evaluate", "checkpoint", "final",
          "other")


# ----------------------------------------------------------------------------------------------- one run (worker)

def make_recording_trainer(base, test_split, clock, profile=None):
    """A subclass of `base` (MultiTaskTrainer) that times the phases of a run and scores `test_split` at every dev
    evaluation, off the clock; `profile` (a TrainerCallback) is added to it too."""
    from transformers import TrainerCallback

    from modeling_mtl.metrics import build_compute_metrics

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.step_start = self.optimizer_start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.optimizer_start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            clock.add("optimizer", time.perf_counter() - self.optimizer_start)

        def on_step_end(self, args, state, control, **kwargs):
            clock.add("step", time.perf_counter() - self.step_start)

    class RecordingTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(StepTimes())
            if profile is not None:
                self.add_callback(profile)
            config = self.model.config
            self.test_metrics = build_compute_metrics(test_split, config.sentence_labels, config.token_labels)
            collate = self.data_collator

            def timed_collate(features):
                start = time.perf_counter()
                batch = collate(features)
                if self.model.training:
                    clock.add("collate", time.perf_counter() - start)
                    mask = batch["attention_mask"]
                    clock.tokens += int(mask.sum())
                    clock.padded += mask.numel()
                return batch

            self.data_collator = timed_collate

        def train(self, *args, **kwargs):
            clock.add("startup", clock.now())
            start = time.perf_counter()
            try:
                return super().train(*args, **kwargs)
            finally:
                clock.train_end = clock.now()
                clock.add("train", time.perf_counter() - start)

        def compute_loss(self, *args, **kwargs):
            start = time.perf_counter()
            result = super().compute_loss(*args, **kwargs)
            if self.model.training:
                clock.add("forward", time.perf_counter() - start)
            return result

        def training_step(self, *args, **kwargs):
            start = time.perf_counter()
            result = super().training_step(*args, **kwargs)
            clock.add("forward_backward", time.perf_counter() - start)
            return result

        def _save_checkpoint(self, *args, **kwargs):
            start = time.perf_counter()
            super()._save_checkpoint(*args, **kwargs)
            clock.add("checkpoint", time.perf_counter() - start)

        def evaluate(self, *args, metric_key_prefix="eval", **kwargs):
            start = time.perf_counter()
            metrics = super().evaluate(*args, metric_key_prefix=metric_key_prefix, **kwargs)
            clock.add("evaluate", time.perf_counter() - start)
            if metric_key_prefix == "eval" and test_split is not None:
                self._record_point(metrics)
            return metrics

        def _record_point(self, dev_metrics):
            minutes = clock.now() / 60
            start = time.perf_counter()
            dev_compute = self.compute_metrics
            self.compute_metrics = self.test_metrics
            try:
                test_metrics = self.predict(test_split, metric_key_prefix="curve").metrics
            finally:
                self.compute_metrics = dev_compute
            args = self.args
            clock.points.append({
                "minutes": round(minutes, 3),
                "step": self.state.global_step,
                "epoch": round(self.state.epoch or 0, 3),
                "examples_seen": self.state.global_step * args.per_device_train_batch_size
                * args.gradient_accumulation_steps * args.world_size,
                "dev": {name: round(100 * dev_metrics[f"eval_{key}"], 2) for name, key in METRICS.items()},
                "test": {name: round(100 * test_metrics[f"curve_{key}"], 2) for name, key in METRICS.items()},
            })
            clock.off_clock += time.perf_counter() - start

    return RecordingTrainer


class Clock:
    """Wall time since the run began, less the benchmark's own test scoring; phase totals in seconds."""

    def __init__(self):
        self.start = time.perf_counter()
        self.off_clock = 0.0
        self.totals = {}
        self.points = []
        self.tokens = self.padded = 0
        self.train_end = None

    def now(self):
        return time.perf_counter() - self.start - self.off_clock

    def add(self, phase, seconds):
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds

    def phases(self, total):
        t = self.totals
        steps = t.get("step", 0.0)
        forward = t.get("forward", 0.0)
        backward = t.get("forward_backward", 0.0) - forward
        optimizer = t.get("optimizer", 0.0)
        final = total - (self.train_end if self.train_end is not None else total)
        phases = {
            "startup": t.get("startup", 0.0), "collate": t.get("collate", 0.0), "forward": forward,
            "backward": backward, "optimizer": optimizer, "step_other": steps - forward - backward - optimizer,
            "evaluate": t.get("evaluate", 0.0), "checkpoint": t.get("checkpoint", 0.0), "final": final,
        }
        phases["other"] = total - sum(phases.values())
        return {name: round(seconds, 2) for name, seconds in phases.items()}


def run_worker(args):
    """One training run in this process; writes its record to args.record."""
    clock = Clock()
    sys.path.insert(0, str(REPO))
    import train_mtl
    from modeling_mtl import MultiTaskModel
    from modeling_mtl.data import encode_dataset_dict
    from modeling_mtl.training_args import parse_arguments

    argv = [args.run_file, "--seed", str(args.seed), "--output_dir", args.output_dir, *shlex.split(args.options)]
    # The test split as train_mtl will encode it, prepared off the clock.
    preparing = time.perf_counter()
    model_args, data_args, training_args = parse_arguments(argv)
    raw, sentence_labels, token_labels = train_mtl.load_data(data_args, training_args.seed)
    model = MultiTaskModel.from_encoder(model_args.encoder, sentence_labels=sentence_labels, token_labels=token_labels,
                                        **model_args.config_overrides())
    test_split = encode_dataset_dict({"test": raw["test"]}, model.tokenizer, sentence_labels, token_labels,
                                     max_length=model.config.max_seq_length,
                                     label_all_tokens=data_args.label_all_tokens)[0]["test"]
    del model
    clock.off_clock += time.perf_counter() - preparing

    profile = torch_profile(args.torch_profile_steps) if args.torch_profile_steps else None
    trainer_class = make_recording_trainer(train_mtl.MultiTaskTrainer, test_split, clock, profile)
    clock.start, clock.off_clock = time.perf_counter(), 0.0
    trainer = train_mtl.main(argv, trainer_class=trainer_class)
    total = clock.now()
    with open(os.path.join(args.output_dir, "all_results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    record = {
        "seed": args.seed,
        "minutes": round(total / 60, 2),
        "steps": trainer.state.global_step,
        "phases_seconds": clock.phases(total),
        "padding_share": round(1 - clock.tokens / max(clock.padded, 1), 4),
        "curve": clock.points,
        "final_test": {name: round(100 * results[f"test_{key}"], 2) for name, key in METRICS.items()},
        "final_dev": {name: round(100 * results[f"eval_{key}"], 2) for name, key in METRICS.items()},
    }
    if profile is not None:
        record["torch_profile"] = profile.table
    Path(args.record).write_text(json.dumps(record, indent=1), encoding="utf-8")


def torch_profile(steps):
    """A TrainerCallback that runs torch.profiler over training steps 10 .. 10+steps; its `table` then holds the top
    operators by self CPU time (made here: the benchmark's parent process does not import transformers)."""
    import torch
    from transformers import TrainerCallback

    class Profile(TrainerCallback):
        def __init__(self):
            self.profiler, self.table = None, None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 10 and self.profiler is None:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 10 + steps and self.profiler is not None and self.table is None:
                self.profiler.__exit__(None, None, None)
                events = self.profiler.key_averages()
                total = sum(event.self_cpu_time_total for event in events)
                top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:15]
                self.table = [{"op": event.key, "self_cpu_share": round(event.self_cpu_time_total / total, 4),
                               "self_cpu_ms_per_step": round(event.self_cpu_time_total / 1000 / steps, 2),
                               "calls_per_step": round(event.count / steps, 1)} for event in top]

    return Profile()


# ------------------------------------------------------------------------------------------------- the benchmark

def parse_variant(text):
    name, _, spec = text.partition("=")
    run_file, _, options = spec.partition(":")
    if not name or not run_file:
        raise SystemExit(f"--variant {text!r}: give NAME=RUN_FILE[:OPTIONS]")
    return name, (f"{run_file} {options}".strip(), run_file, options)


def run_one(name, run_file, options, seed, args, scratch):
    output_dir = os.path.join(scratch, f"{name}-{seed}")
    record = os.path.join(scratch, f"{name}-{seed}.json")
    command = [sys.executable, __file__, "--worker", "--run_file", run_file, "--seed", str(seed),
               "--output_dir", output_dir, "--record", record, "--options", options]
    if args.torch_profile_steps:
        command += ["--torch_profile_steps", str(args.torch_profile_steps)]
    log = os.path.join(scratch, f"{name}-{seed}.log")
    print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: {shlex.join(command[2:])} (log {log})", flush=True)
    with open(log, "w", encoding="utf-8") as handle:
        completed = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        raise SystemExit(f"{name} seed {seed} failed (exit {completed.returncode}); see {log}")
    result = json.loads(Path(record).read_text(encoding="utf-8"))
    shutil.rmtree(output_dir)  # the model (the record and the log stay)
    print(f"    {result['minutes']} min, test {result['final_test']}, phases {result['phases_seconds']}", flush=True)
    return result


def summarize(values):
    return {"mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}


def minutes_to_reach(curve, target):
    for point in curve:
        if all(point["test"][name] >= value for name, value in target.items()):
            return point["minutes"]
    return None


def summarize_results(report, target=None):
    variants = report["variants"]
    first = next(iter(variants.values()))
    if target is None and len(first["runs"]) > 1:
        target = {name: round(summarize([run["final_test"][name] for run in first["runs"]])["mean"]
                              - summarize([run["final_test"][name] for run in first["runs"]])["std"], 2)
                  for name in METRICS}
    report["target"] = target
    for variant in variants.values():
        runs = variant["runs"]
        if not runs:
            continue
        variant["summary"] = {
            "minutes_median": round(statistics.median(run["minutes"] for run in runs), 2),
            "final_test": {name: summarize([run["final_test"][name] for run in runs]) for name in METRICS},
            "phases_seconds_median": {phase: round(statistics.median(run["phases_seconds"][phase] for run in runs), 1)
                                      for phase in PHASES},
            "padding_share": round(statistics.mean(run["padding_share"] for run in runs), 4),
        }
        if target:
            reached = [minutes_to_reach(run["curve"], target) for run in runs]
            variant["summary"]["minutes_to_target"] = reached
            variant["summary"]["minutes_to_target_median"] = (
                round(statistics.median(reached), 2) if all(value is not None for value in reached) else None)
    return report


def markdown(report):
    target = report.get("target") or {}
    target_text = " / ".join(f"{value:.2f}" for value in target.values()) if target else "n/a"
    lines = [f"| variant | minutes end to end (median) | minutes to reach {target_text} (median; per seed) "
             "| test intent acc. | test slot F1 | test exact match | padding |",
             "|---|---|---|---|---|---|---|"]
    for name, variant in report["variants"].items():
        summary = variant.get("summary")
        if not summary:
            continue
        reached = summary.get("minutes_to_target") or []
        reached_text = ", ".join("never" if value is None else f"{value:.1f}" for value in reached)
        median = summary.get("minutes_to_target_median")
        final = summary["final_test"]
        lines.append(
            f"| `{name}` | {summary['minutes_median']:.1f} | {'n/a' if median is None else f'{median:.1f}'}"
            f" ({reached_text}) | " + " | ".join(f"{final[m]['mean']:.2f} ± {final[m]['std']:.2f}" for m in METRICS)
            + f" | {100 * summary['padding_share']:.0f}% |")
    lines += ["", "| phase (seconds, median) | " + " | ".join(f"`{name}`" for name in report["variants"]) + " |",
              "|---|" + "---|" * len(report["variants"])]
    for phase in PHASES:
        cells = [f"{variant['summary']['phases_seconds_median'][phase]:.0f}" if variant.get("summary") else ""
                 for variant in report["variants"].values()]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (name, variant) in zip(colours, report["variants"].items()):
        for index, run in enumerate(variant["runs"]):
            minutes = [point["minutes"] for point in run["curve"]]
            for axis, split in zip(axes, ("dev", "test")):
                axis.plot(minutes, [point[split]["exact match"] for point in run["curve"]], marker=".",
                          color=colour, alpha=0.8, label=name if index == 0 else None)
    target = report.get("target")
    for axis, split in zip(axes, ("dev", "test")):
        axis.set_title(f"{split} exact match")
        axis.set_xlabel("minutes (2 CPU cores)")
        axis.grid(alpha=0.3)
        if target and split == "test":
            axis.axhline(target["exact match"], color="grey", linestyle="--", label="target")
    axes[0].set_ylabel("exact match (%)")
    axes[0].set_ylim(bottom=70)
    axes[1].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help=f"of {sorted(VARIANTS)}")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=RUN_FILE[:OPTIONS]",
                        help="an extra variant: a run file and train_mtl options")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--seeds_for", action="append", default=[], metavar="NAME=SEED[,SEED...]",
                        help="other seeds for one variant (e.g. fewer for a slow reference)")
    parser.add_argument("--target", type=float, nargs=3, metavar=("INTENT", "SLOT_F1", "EXACT_MATCH"),
                        help="the test quality to reach (default: the first variant's means minus one std)")
    parser.add_argument("--output", default=str(RESULTS / "time_to_quality.json"))
    parser.add_argument("--scratch", default=str(REPO / "outputs" / "time_to_quality"),
                        help="where each run trains (its model is deleted after the run; its log and record stay)")
    parser.add_argument("--profile", action="store_true",
                        help="one seed of the first variant with torch.profiler over 20 training steps; writes "
                        "benchmarks/results/time_to_quality_profile.json unless --output is given")
    parser.add_argument("--torch_profile_steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--run_file", "--output_dir", "--record", "--options"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    args, unknown = parser.parse_known_args()
    if unknown:
        parser.error(f"unknown arguments {unknown}")
    if args.worker:
        return run_worker(args)

    variants = {name: VARIANTS[name] for name in args.variants}
    variants.update(parse_variant(text) for text in args.variant)
    output = Path(args.output)
    if args.profile:
        variants = dict([next(iter(variants.items()))])
        args.seeds = args.seeds[:1]
        args.torch_profile_steps = args.torch_profile_steps or 20
        if args.output == parser.get_default("output"):
            output = RESULTS / "time_to_quality_profile.json"
    target = dict(zip(METRICS, args.target)) if args.target else None
    report = {
        "command": shlex.join(["python", "benchmarks/time_to_quality.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch fp32",
        "clock": "wall time of train_mtl.main (data, model, training, evaluation, checkpoints, calibration, test, "
                 "model card), less the benchmark's own test scoring at each evaluation; Python start-up excluded",
        "variants": {name: {"what": what, "run_file": run_file, "options": options, "runs": []}
                     for name, (what, run_file, options) in variants.items()},
    }
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    seeds_for = {}
    for text in args.seeds_for:
        name, _, seeds = text.partition("=")
        if name not in variants or not seeds:
            raise SystemExit(f"--seeds_for {text!r}: give NAME=SEED[,SEED...] for one of {sorted(variants)}")
        seeds_for[name] = [int(seed) for seed in seeds.split(",")]
    report["seeds"] = {name: seeds_for.get(name, args.seeds) for name in variants}
    for seed in sorted({seed for seeds in report["seeds"].values() for seed in seeds}):
        for name, (_, run_file, options) in variants.items():
            if seed not in report["seeds"][name]:
                continue
            report["variants"][name]["runs"].append(run_one(name, run_file, options, seed, args, scratch))
            summarize_results(report, target)
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if not args.profile:
        plot(report, output.with_suffix(".png"))
    print(markdown(report))
    for name, variant in report["variants"].items():
        for run in variant["runs"]:
            if run.get("torch_profile"):
                print(f"\ntorch.profiler, {name} seed {run['seed']}, steps 10-{10 + args.torch_profile_steps}:")
                print("| operator | self CPU share | ms per step | calls per step |\n|---|---|---|---|")
                for row in run["torch_profile"]:
                    print(f"| `{row['op']}` | {100 * row['self_cpu_share']:.1f}% | {row['self_cpu_ms_per_step']} "
                          f"| {row['calls_per_step']} |")
    print(f"\nwritten {output}")


if __name__ == "__main__":
    main()
