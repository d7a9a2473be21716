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

# The sections live in benchmarks/speed_sections/, one module each (see its __init__.py); this file is the command
# line: it parses the flags, runs the sections asked for and writes the JSON, the markdown table and the goals.

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # speed_sections/, also when this file is loaded by path (the tests)

import transformers  # noqa: E402
from speed_sections.common import (  # noqa: E402
    code_facts,
    load_predict_model,
    machine_facts,
    minilm_path,
    read_atis,
    read_sts_sentences,
    save_folder,
)
from speed_sections.encode_vs_st import section_b  # noqa: E402
from speed_sections.flops import section_e  # noqa: E402
from speed_sections.memory import memory_worker, section_d  # noqa: E402
from speed_sections.predict_vs_pipelines import section_a  # noqa: E402
from speed_sections.profiling import section_p  # noqa: E402
from speed_sections.training import section_c  # noqa: E402
from speed_sections.variants import section_variants  # noqa: E402

from modeling_mtl import MultiTaskModel  # noqa: E402

# What other scripts and the tests take from this module (onnx_speed.py: `from speed import interleave, ...`).
from speed_sections.common import atis_label_lists, interleave, paired_ratio  # noqa: E402, F401
from speed_sections.flops import encoder_flops, linear_weights  # noqa: E402, F401
from speed_sections.predict_vs_pipelines import compare_predictions, pipeline_word_spans  # noqa: E402, F401

DEFAULT_MODEL = REPO / "outputs" / "atis"  # what `python train_mtl.py configuration/atis.yaml` writes
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "speed.json"
SECTIONS = ("a", "b", "c", "d", "e", "p")
MEMORY_VARIANTS = ("predict", "pipelines", "encode", "st_encode", "train_mtl", "train_plain")
GOALS = {"a": 3.0, "b": 1.0, "c": 0.95, "e": 0.50}

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


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
            f"\nTraining (batch {r['batch_size']}, {r.get('train_sampling', 'random')} batches, {r['timed_steps']} timed "
            f"steps after {r['warmup_steps']}): "
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
    parser.add_argument("--train-sampling", default="random", choices=["random", "group_by_length"],
                        help="train_sampling_strategy of both trainers in c")
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
