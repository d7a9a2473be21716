"""The `--bf16` and `--compile` variants of `encode` and `predict` at `--variant-batch-size`: bf16 autocast
(`torch.autocast("cpu", dtype=torch.bfloat16)` around the call) and a compiled encoder (`model.encoder.compile()`,
the in-place form of `torch.compile(model.encoder)`), each timed against plain fp32, with the change in outputs."""

import copy
import time

import numpy as np
import torch
from speed_sections.common import entity_keys, first_batches, interleave, paired_ratio


def prediction_agreement(reference, other):
    labels = sum(a["label"] == b["label"] for a, b in zip(reference, other))
    entities = sum(entity_keys(a) == entity_keys(b) for a, b in zip(reference, other))
    return {"texts": len(reference), "same_label": labels, "same_entities": entities}


def section_variants(args, model, texts, sentences, log):
    batch_size = args.variant_batch_size
    texts = first_batches(texts, batch_size, args.max_batches)
    sentences = first_batches(sentences, batch_size, args.max_batches)
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
