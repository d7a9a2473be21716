"""Section e: achieved FLOP/s of the encoder in batched inference. Matmul FLOPs are counted from the model (2 x the
weights of every nn.Linear of the encoder per token, plus 4 x L^2 x hidden per layer and sequence for the attention
scores and the weighted values, L = the padded length actually computed) and divided by the time of (i) the encoder
alone on pre-tokenised batches and (ii) the whole `encode` call (section b's timings), as a fraction of this
machine's fp32 `torch.matmul` peak (large square matrices, same thread count, best of several runs, interleaved with
(i))."""

import statistics
import time

import torch
from speed_sections.common import encode_batches, first_batches, run_encoder, timed
from torch import nn


def linear_weights(encoder):
    return sum(module.weight.numel() for module in encoder.modules() if isinstance(module, nn.Linear))


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
        subset = first_batches(sentences, batch_size, args.max_batches)
        batches = encode_batches(encode_model, subset, batch_size)
        computed, useful = encoder_flops(encode_model.encoder, batches)

        def encoder_only(batches=batches):
            run_encoder(encode_model, batches)

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
