"""Section a: `MultiTaskModel.predict` (one encoder pass for both tasks) vs the two standard transformers pipelines
(`text-classification` + `token-classification`, aggregation_strategy="first") run one after the other on a folder
saved from the same model: the throughput ratio per batch size, each pipeline's share at the headline batch size, and
how far the predictions agree (sentence label; entity groups and spans, split by whether the pipeline's word
segmentation equals `split_words`'s)."""

import statistics

from speed_sections.common import entity_key, entity_keys, first_batches, interleave, make_pipelines, paired_ratio

from modeling_mtl import split_words


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
        mine_keys = entity_keys(mine)
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
        subset = first_batches(texts, batch_size, args.max_batches)
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
        subset = first_batches(texts, batch_size, args.max_batches)
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
