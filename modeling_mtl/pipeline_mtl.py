"""The `multitask` pipeline: sentence label, entities and (optionally) the embedding of each text.

This file is copied into every saved model folder (the config's `custom_pipelines` points at it), so
`pipeline(model=folder_or_repo, trust_remote_code=True)` works without the modeling_mtl package. It imports nothing
from modeling_mtl.py (transformers may load this file first): it reaches the model's code through `self.model`.

    pipe = pipeline(model="outputs/demo", trust_remote_code=True)            # task "multitask", from the config
    pipe("Angela Merkel flew to Paris")
    # {'label': 'politics', 'score': 0.97, 'entities': [{'entity_group': 'PERSON', 'score': 0.99,
    #   'word': 'Angela Merkel', 'start': 0, 'end': 13}, ...]}
    pipe(texts, batch_size=16, aggregation_strategy="average", return_embedding=True)   # a list in, a list out
    pipe("fly to denver", top_k=3)   # + "intent_ranking": the 3 best sentence labels with their scores
"""

import logging

from transformers import Pipeline

logger = logging.getLogger(__name__)


class MultiTaskPipeline(Pipeline):
    """`pipeline(model=folder, trust_remote_code=True)(text)` -> `{"label", "score", "entities": [...]}`.

    Inputs: a string, a tuple of words (one pre-split text; offsets then refer to the words joined with single
    spaces), or a list of those (a list of results back). Strings are split into words as `model.predict` splits
    them, and every entity satisfies `text[start:end] == word`.

    Parameters (at construction or per call):
        aggregation_strategy: how a word's tag comes from its sub-tokens, as in the token-classification pipeline:
            `"first"` (default: the first sub-token, what `model.predict` does), `"average"` (mean of the sub-tokens'
            probabilities), `"max"` (the most confident sub-token), or `"none"` (one entry per tagged word,
            `{"entity": "B-LOC", "score", "index", "word", "start", "end"}`, B-/I- words not grouped).
        return_embedding: add `"embedding"` (the sentence embedding, a list of floats) to each result.
        top_k: add `"intent_ranking"`, the `top_k` best sentence labels `[{"label", "score"}]`, highest first.

    Sentence scores, rejection (`"label": config.out_of_scope_label` with `"rejected_label"`) and the ranking follow
    the model's config exactly as `model.predict` does.
        batch_size: texts per forward pass (padding as the tokenizer pads).

    The tokenizer is the model's own (`model.tokenizer`, set up by `from_pretrained`); a tokenizer object passed to
    `pipeline(...)` replaces it.
    """

    _load_tokenizer = False  # the model loads (and adapts) its own tokenizer
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model, tokenizer=None, **kwargs):
        for name in ("score_batch", "decode_prediction", "prepare_text", "tokenize_words"):
            if not hasattr(model, name):
                raise TypeError(
                    f"the multitask pipeline needs a multi-task model (AutoModel with trust_remote_code=True), got "
                    f"{type(model).__name__}"
                )
        if tokenizer is not None and not isinstance(tokenizer, (str, tuple)):
            model.tokenizer = tokenizer
        if getattr(model, "tokenizer", None) is None:
            raise ValueError("the model has no tokenizer: set `model.tokenizer` or pass `tokenizer=` to the pipeline")
        super().__init__(model=model, tokenizer=model.tokenizer, **kwargs)

    def _sanitize_parameters(self, aggregation_strategy=None, return_embedding=None, top_k=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"unknown argument(s) {sorted(kwargs)} for the multitask pipeline; it takes aggregation_strategy, "
                "return_embedding, top_k and batch_size"
            )
        postprocess = {}
        if aggregation_strategy is not None:
            postprocess["aggregation_strategy"] = self.model.check_aggregation_strategy(aggregation_strategy)
        if return_embedding is not None:
            postprocess["return_embedding"] = bool(return_embedding)
        if top_k is not None:
            postprocess["top_k"] = self.model.check_top_k(top_k)
        return {}, {}, postprocess

    def preprocess(self, inputs):
        item = list(inputs) if isinstance(inputs, tuple) else inputs
        self.model.check_inputs([item])
        text, words, offsets = self.model.prepare_text(item)
        encoding = self.model.tokenize_words([words], to_device=False)
        model_inputs = dict(self.model.encoder_inputs(encoding))
        length = model_inputs["input_ids"].shape[1]
        word_ids = list(encoding.word_ids(0))
        word_ids += [None] * (length - len(word_ids))  # a text without tokens is read as one pad token
        model_inputs.update(text=text, words=words, offsets=offsets, word_ids=word_ids)
        return model_inputs

    def _forward(self, model_inputs):
        passed = {key: model_inputs.pop(key) for key in ("text", "words", "offsets", "word_ids")}
        # The first key holds a tensor: the pipeline reads the batch size from it when it unbatches.
        return {**self.model.score_batch(model_inputs), **passed}

    def postprocess(self, model_outputs, aggregation_strategy="first", return_embedding=False, top_k=None):
        token_probs = model_outputs["token_probs"][0]
        word_ids = list(model_outputs["word_ids"])
        padding = [None] * (token_probs.shape[0] - len(word_ids))  # added when batched with longer texts
        word_ids = padding + word_ids if self.tokenizer.padding_side == "left" else word_ids + padding
        result, untagged = self.model.decode_prediction(
            model_outputs["text"],
            model_outputs["words"],
            model_outputs["offsets"],
            model_outputs["sentence_probs"][0],
            token_probs,
            word_ids,
            aggregation_strategy=aggregation_strategy,
            embedding=model_outputs["sentence_embedding"][0] if return_embedding else None,
            top_k=top_k,
            in_scope_score=model_outputs["in_scope_score"][0],
        )
        if untagged:
            logger.warning(
                f"{untagged} words lie beyond max_seq_length={self.model.config.max_seq_length} tokens and were left "
                "untagged"
            )
        return result
