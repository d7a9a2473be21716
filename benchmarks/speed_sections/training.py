"""Section c: training samples/s of `MultiTaskTrainer` (both tasks, the package's data pipeline and
`MultiTaskCollator` on ATIS train) vs a plain `transformers.Trainer` on `AutoModelForTokenClassification` (MiniLM,
token task only): same batch size, same shuffled batches (checked; under `--train-sampling group_by_length` each
trainer draws with its own length-grouped sampler, so batches of similar padding but not the same ones),
`max_steps` = warm-up + timed steps, no eval, no save. Section d builds the same trainers to measure their memory."""

import contextlib
import gc
import io
import tempfile
import time

import torch
import transformers
from speed_sections.common import SHARED, minilm_path, paired_ratio

from modeling_mtl import MultiTaskModel

class _Recorder:
    """Wraps a collator and records each batch's shape and real token count (to check both trainers see the same
    batches)."""

    def __init__(self, collator):
        self.collator = collator
        self.batches = []

    def __call__(self, features):
        batch = self.collator(features)
        self.batches.append((tuple(batch["input_ids"].shape), int(batch["attention_mask"].sum())))
        return batch


class _StepClock(transformers.TrainerCallback):
    def __init__(self, start_step, end_step):
        self.start_step, self.end_step = start_step, end_step
        self.start = self.end = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.start_step:
            self.start = time.perf_counter()
        elif state.global_step == self.end_step:
            self.end = time.perf_counter()


def training_data(max_length):
    """ATIS train encoded by the package's data pipeline (as train_mtl.py does), the label lists and a plain
    token-classification copy (`labels` = the same first-sub-token tags)."""
    from modeling_mtl.data import DataSource, build_label_maps, encode_dataset_dict, load_sources

    raw = load_sources([DataSource(data_dir=str(SHARED / "atis"))])
    sentence_labels, token_labels = build_label_maps(raw["train"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    encoded, _ = encode_dataset_dict(
        {"train": raw["train"]}, tokenizer, sentence_labels, token_labels, max_length=max_length
    )
    train = encoded["train"]
    keep = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in train.column_names]
    plain = train.select_columns(keep + ["token_labels"]).rename_column("token_labels", "labels")
    return train, plain, sentence_labels, token_labels, tokenizer


def build_trainer(kind, data, batch_size, warmup_steps, timed_steps, output_dir, seed=42, sampling="random"):
    """A `MultiTaskTrainer` (kind "mtl") or a plain `Trainer` on `AutoModelForTokenClassification` ("plain"), with
    the same arguments, a step clock and a collator that records the batches."""
    from modeling_mtl.data import MultiTaskCollator
    from modeling_mtl.trainer import MultiTaskTrainer
    from modeling_mtl.training_args import MultiTaskTrainingArguments

    train, plain, sentence_labels, token_labels, tokenizer = data
    total = warmup_steps + timed_steps
    clock = _StepClock(warmup_steps, total)
    common = dict(
        output_dir=output_dir,
        max_steps=total,
        per_device_train_batch_size=batch_size,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        use_cpu=True,
        optim="adamw_torch",
        learning_rate=5e-5,
        warmup_steps=0,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        train_sampling_strategy=sampling,
    )
    torch.manual_seed(seed)
    if kind == "mtl":
        model = MultiTaskModel.from_encoder(minilm_path(), sentence_labels=sentence_labels, token_labels=token_labels)
        args = MultiTaskTrainingArguments(load_best_model_at_end=False, **common)
        recorder = _Recorder(MultiTaskCollator(model.tokenizer))
        trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train, data_collator=recorder, callbacks=[clock])
    elif kind == "plain":
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            minilm_path(),
            num_labels=len(token_labels),
            id2label=dict(enumerate(token_labels)),
            label2id={label: i for i, label in enumerate(token_labels)},
        )
        args = transformers.TrainingArguments(**common)
        recorder = _Recorder(transformers.DataCollatorForTokenClassification(tokenizer))
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=plain, data_collator=recorder, callbacks=[clock]
        )
    else:
        raise ValueError(f"unknown trainer kind {kind!r}")
    return trainer, clock, recorder


def run_training(kind, data, batch_size, warmup_steps, timed_steps, seed=42, sampling="random"):
    """One short training run; returns samples/s over the timed steps and the recorded batches."""
    with tempfile.TemporaryDirectory() as output_dir:
        trainer, clock, recorder = build_trainer(kind, data, batch_size, warmup_steps, timed_steps, output_dir, seed,
                                                 sampling)
        with contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its final metrics
            trainer.train()
    seconds = clock.end - clock.start
    total = warmup_steps + timed_steps
    timed_batches = recorder.batches[warmup_steps:total]
    return {
        "seconds": seconds,
        "samples_per_s": sum(shape[0] for shape, _ in timed_batches) / seconds,
        "tokens_per_s": sum(tokens for _, tokens in timed_batches) / seconds,
        "batches": recorder.batches[:total],
    }


def section_c(args, log):
    data = training_data(max_length=256)
    log(f"  c: ATIS train {len(data[0])} examples; {args.warmup_steps} warm-up + {args.train_steps} timed steps")
    runs = {"mtl": [], "plain": []}
    for repeat in range(args.train_repeats):
        for kind in ("mtl", "plain") if repeat % 2 == 0 else ("plain", "mtl"):
            gc.collect()
            result = run_training(kind, data, args.train_batch_size, args.warmup_steps, args.train_steps,
                                  sampling=args.train_sampling)
            runs[kind].append(result)
            log(f"    repeat {repeat + 1}/{args.train_repeats} {kind}: {result['samples_per_s']:.1f} samples/s")
    ratio = paired_ratio([r["samples_per_s"] for r in runs["mtl"]], [r["samples_per_s"] for r in runs["plain"]])
    same_batches = all(r["batches"] == runs["mtl"][0]["batches"] for r in runs["mtl"] + runs["plain"])
    return {
        "batch_size": args.train_batch_size,
        "train_sampling": args.train_sampling,
        "warmup_steps": args.warmup_steps,
        "timed_steps": args.train_steps,
        "mtl_samples_per_s": [r["samples_per_s"] for r in runs["mtl"]],
        "plain_samples_per_s": [r["samples_per_s"] for r in runs["plain"]],
        "mtl_tokens_per_s": [r["tokens_per_s"] for r in runs["mtl"]],
        "plain_tokens_per_s": [r["tokens_per_s"] for r in runs["plain"]],
        "mtl_over_plain": ratio,
        "same_batches": same_batches,
        "batch_shapes_first_run": [shape for shape, _ in runs["mtl"][0]["batches"]],
    }
