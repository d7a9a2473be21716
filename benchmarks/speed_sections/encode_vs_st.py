"""Section b: `MultiTaskModel.encode` vs `SentenceTransformer(minilm).encode` on the same STS-benchmark sentences and
batch size: the throughput ratio per batch size and the max abs difference of the embeddings."""

import statistics

import numpy as np
from speed_sections.common import first_batches, interleave, paired_ratio


def section_b(args, encode_model, st_model, sentences, log):
    results = {}
    for batch_size in args.batch_sizes:
        subset = first_batches(sentences, batch_size, args.max_batches)
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
