"""Section d: peak memory. Each variant (predict, the two pipelines, encode, SentenceTransformer.encode, each
trainer) at each batch size runs in a FRESH `python benchmarks/speed.py --memory-worker ...` process, which reports
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (the kernel's resident-set high-water mark of that process: the
interpreter, the libraries, the weights) and the high-water mark just after loading (`VmHWM` of /proc/self/status),
so `peak - loaded` is what running the variant added."""

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from speed_sections.common import SCRIPT, load_predict_model, make_pipelines, minilm_path, read_atis, read_sts_sentences
from speed_sections.training import build_trainer, training_data

from modeling_mtl import MultiTaskModel


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
            str(SCRIPT),
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
