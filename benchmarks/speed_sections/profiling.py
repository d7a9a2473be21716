"""Section p: where `predict` and `encode` spend their time at the headline batch size, as evidence for speeding them
up: `predict` split into tokenisation, encoder forward and decoding (and a vectorised decode sketch against it),
`encode` into tokenisation and the encoder, the padding that sorting saves, and eager attention against sdpa."""

import copy
import statistics

from speed_sections.common import encode_batches, entity_keys, first_batches, interleave, paired_ratio, run_encoder

from modeling_mtl import bio_to_entities


def section_p(args, model, texts, encode_model, sentences, log):
    """Time the building blocks of predict (tokenise, forward, decode) and of encode, at the headline batch."""
    batch_size = args.headline_batch_size
    predict_profile = profile_predict(model, texts, batch_size, args.repeats, log)
    subset = first_batches(sentences, batch_size, args.max_batches)
    batches = encode_batches(encode_model, subset, batch_size)
    encode_profile = profile_encode(encode_model, subset, batches, batch_size, args.repeats, log)
    attention = profile_attention(encode_model, batches, args.repeats)
    return {"predict": predict_profile, "encode": encode_profile, "attention": attention}


def shares(seconds, whole):
    """Each step's median time as a fraction of the median time of the `whole` call (timed with them)."""
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {name: median[name] / median[whole] for name in median if name != whole}


def decode_vectorised(model, prepared, chunks, encodings, scores):
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


def profile_predict(model, texts, batch_size, repeats, log):
    """`predict` against its steps (tokenise, forward, decode, and the vectorised decode), run one by one."""
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

    def vectorised():
        return decode_vectorised(model, prepared, chunks, encodings, scores)

    seconds = interleave(
        [
            ("predict", lambda: model.predict(texts, batch_size=batch_size)),
            ("tokenize", tokenize),
            ("forward", forward),
            ("decode", decode),
            ("decode_vectorised", vectorised),
        ],
        repeats,
    )
    reference = model.predict(texts, batch_size=batch_size)
    reordered = [None] * len(texts)
    for index, prediction in zip((index for chunk in chunks for index in chunk), vectorised()):
        reordered[index] = prediction
    same = sum(a["label"] == b["label"] and entity_keys(a) == entity_keys(b) for a, b in zip(reference, reordered))
    padded = sum(encoding["input_ids"].numel() for encoding in encodings)
    real = sum(int(encoding["attention_mask"].sum()) for encoding in encodings)
    # Padding without sorting (the pipelines' order) and with sorting by token count instead of by word count.
    unsorted_padded = 0
    for start in range(0, len(texts), batch_size):
        encoding = model.tokenize_words([words for _, words, _ in prepared[start : start + batch_size]])
        unsorted_padded += encoding["input_ids"].numel()
    profile = {
        "batch_size": batch_size,
        "texts": len(texts),
        "seconds": seconds,
        "share_of_predict": shares(seconds, "predict"),
        "decode_vectorised_speedup": statistics.median(seconds["decode"])
        / statistics.median(seconds["decode_vectorised"]),
        "decode_vectorised_identical_texts": same,
        "padding_fraction_sorted": 1 - real / padded,
        "padding_fraction_unsorted": 1 - real / unsorted_padded,
    }
    share = profile["share_of_predict"]
    log(
        f"  p: predict at batch {batch_size}: tokenize {share['tokenize']:.0%}, forward {share['forward']:.0%}, "
        f"decode {share['decode']:.0%} of the call; vectorised decode "
        f"{profile['decode_vectorised_speedup']:.1f}x faster ({same}/{len(texts)} identical)"
    )
    return profile


def profile_encode(encode_model, sentences, batches, batch_size, repeats, log):
    """`encode` against tokenisation and the encoder forward alone."""
    seconds = interleave(
        [
            ("encode", lambda: encode_model.encode(sentences, batch_size=batch_size)),
            ("tokenize", lambda: encode_batches(encode_model, sentences, batch_size)),
            ("encoder", lambda: run_encoder(encode_model, batches)),
        ],
        repeats,
    )
    profile = {
        "batch_size": batch_size,
        "sentences": len(sentences),
        "seconds": seconds,
        "share_of_encode": shares(seconds, "encode"),
    }
    share = profile["share_of_encode"]
    log(
        f"  p: encode at batch {batch_size}: tokenize {share['tokenize']:.0%}, encoder {share['encoder']:.0%} "
        "of the call"
    )
    return profile


def profile_attention(encode_model, batches, repeats):
    """The attention implementation: sdpa (the default) vs eager, encoder only."""
    eager = copy.deepcopy(encode_model)
    try:
        eager.encoder.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - older/other encoders
        eager.encoder.config._attn_implementation = "eager"
    seconds = interleave(
        [("sdpa", lambda: run_encoder(encode_model, batches)), ("eager", lambda: run_encoder(eager, batches))],
        repeats,
    )
    return {
        "current": encode_model.encoder.config._attn_implementation,
        "seconds": seconds,
        "eager_over_sdpa": paired_ratio(seconds["eager"], seconds["sdpa"]),
    }
