"""The inference API of a multi-task model: `encode`, `predict` and the building blocks the `multitask` pipeline
calls (tokenising, reading word tags from sub-tokens, building a result).

`MultiTaskInference` is a mixin: the PyTorch model (`modeling_mtl.MultiTaskModel`) and the onnxruntime one
(`modeling_mtl.onnx_export.OnnxMultiTaskModel`) both inherit it, so they tokenise, batch and decode with the same
code and differ only in the network. A class that uses it has `config` (a `MultiTaskConfig`), `tokenizer`, `device`,
`training`, `eval()` / `train(mode)`, and two methods of its own:

- `logits_batch(inputs)`: `{"sentence_logits", "token_logits", "sentence_embedding"}` for a tokenised batch (CPU,
  float), which `score_batch` turns into probabilities (the sentence head's with `config.sentence_temperature`);
- `embed_batch(inputs, normalize)`: the sentence embeddings of a tokenised batch, L2-normalised when `normalize`.

This file is copied into every saved model folder (the model code imports it), so it imports only `torch`,
`transformers` and the standard library.
"""

import logging

import torch
from transformers.utils.logging import tqdm

from .decoding_mtl import (
    bio_to_entities,
    bio_viterbi_batch,
    check_aggregation_strategy,
    check_texts,
    check_top_k,
    longest_first_batches,
    prepare_text,
)

logger = logging.getLogger(__name__)


def centroid_similarity(embeddings, centroids) -> torch.Tensor:
    """`[n]`: each embedding's largest cosine similarity to a (normalised) class centroid, the score of
    `reject_score="centroid_cosine"` (train_mtl.py chooses its threshold with the same function)."""
    embeddings = torch.nn.functional.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=-1)
    return (embeddings @ torch.as_tensor(centroids, dtype=torch.float32).T).max(-1).values


class MultiTaskInference:
    """`encode`, `predict` and their building blocks, over a subclass's `logits_batch` and `embed_batch`."""

    def require_tokenizer(self):
        """The model's tokenizer, or a ValueError that says how to set one."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: set `model.tokenizer = AutoTokenizer.from_pretrained(...)`")
        return self.tokenizer

    def tokenize_texts(self, batch, **kwargs):
        """Tokenise a batch, padded and truncated to `config.max_seq_length`, on the model's device."""
        tokenizer = self.require_tokenizer()
        encoding = tokenizer(
            batch, padding=True, truncation=True, max_length=self.config.max_seq_length, return_tensors="pt", **kwargs
        )
        mask = encoding["attention_mask"]
        if mask.shape[1] == 0 or not mask.any(1).all():
            # A tokenizer that adds no special token (GPT-2 style) gives an empty text no token at all: such a text
            # is read as one pad token, which the encoder and the pooling can handle.
            if mask.shape[1] == 0:
                for key in ("input_ids", "attention_mask", "token_type_ids"):
                    if key in encoding:
                        encoding[key] = torch.zeros(mask.shape[0], 1, dtype=torch.long)
                encoding["input_ids"].fill_(tokenizer.pad_token_id)
            column = -1 if tokenizer.padding_side == "left" else 0
            encoding["attention_mask"][~encoding["attention_mask"].any(1), column] = 1
        return encoding.to(self.device)

    @torch.inference_mode()
    def encode(
        self,
        sentences,
        batch_size=32,
        normalize_embeddings=None,
        show_progress_bar=None,
        convert_to_numpy=True,
        convert_to_tensor=False,
    ):
        """Sentence embeddings, as `SentenceTransformer.encode` computes them for the same encoder.

        `sentences` is a string (one vector back) or a list of strings (or another sequence, e.g. a `datasets`
        column). Texts are batched longest first, which
        keeps padding small; `normalize_embeddings=None` follows `config.normalize_embeddings`.
        """
        single = isinstance(sentences, str)
        texts = check_texts([sentences] if single else sentences, allow_words=False)
        normalize = self.config.normalize_embeddings if normalize_embeddings is None else normalize_embeddings
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= 1000
        batches = longest_first_batches([len(text) for text in texts], batch_size)
        was_training = self.training
        self.eval()
        chunks = []
        for indices in tqdm(batches, desc="Batches", disable=not show_progress_bar):
            encoding = self.tokenize_texts([texts[index].strip() for index in indices])
            self._warn_truncated(encoding, indices)
            chunks.append(self.embed_batch(self.encoder_inputs(encoding), normalize))
        self.train(was_training)
        hidden = self.config.hidden_size
        embeddings = torch.cat(chunks) if chunks else torch.empty(0, hidden, device=self.device)
        order = [index for indices in batches for index in indices]
        embeddings = embeddings[torch.tensor(sorted(range(len(order)), key=order.__getitem__), dtype=torch.long)]
        if single:
            embeddings = embeddings[0]
        if convert_to_tensor or not convert_to_numpy:
            return embeddings
        return embeddings.float().cpu().numpy()

    @torch.inference_mode()
    def predict(self, texts, batch_size=32, return_embeddings=False, aggregation_strategy="first", top_k=None):
        """Sentence label and entities for each text, from one encoder pass.

        `texts` is a list (or another sequence, e.g. a `datasets` column) of strings (split into words by
        `split_words`) or of pre-split word lists (joined with single spaces, to which the offsets then refer). Each result is
        `{"label": str, "score": float, "entities": [{"entity_group", "score", "word", "start", "end"}]}` with
        `text[start:end] == word` (and `"embedding"` with `return_embeddings=True`). Words beyond
        `config.max_seq_length` tokens get no tag (a warning says how many).

        Sentence scores are `softmax(logits / config.sentence_temperature)` (calibrated when training fitted the
        temperature). `top_k=N` adds `"intent_ranking"`: the N best sentence labels, `[{"label", "score"}]`, highest
        first. With `config.reject_threshold` (best score below it; with `config.reject_score="centroid_cosine"`,
        the embedding's largest cosine similarity to a class centroid, returned as `"centroid_similarity"`) or
        `config.ambiguity_margin` (two best scores closer than it), a rejected text gets `"label":
        config.out_of_scope_label` and `"rejected_label"` (the best label); `"score"` stays the best label's score,
        the ranking lists the labels as scored, and the entities are returned as for any text.

        `aggregation_strategy` says how a word's tag comes from its sub-tokens, as in the token-classification
        pipeline: `"first"` (the first sub-token's prediction), `"average"` (the mean of the sub-tokens'
        probabilities), `"max"` (the sub-token with the most confident prediction), or `"none"` (as `"first"`,
        but `entities` lists every tagged word, `{"entity": "B-LOC", "score", "index", "word", "start", "end"}`,
        without grouping B-/I- words into entities).
        """
        texts = check_texts(texts, allow_words=True)
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        top_k = check_top_k(top_k)
        prepared = [self.prepare_text(item) for item in texts]
        results = [None] * len(prepared)
        untagged_words = 0
        was_training = self.training
        self.eval()
        for indices in longest_first_batches([len(words) for _, words, _ in prepared], batch_size):
            encoding = self.tokenize_words([prepared[index][1] for index in indices])
            self._warn_truncated(encoding, indices)
            scores = self.score_batch(self.encoder_inputs(encoding))
            decoded = self.decode_words_batch(
                [
                    (scores["token_probs"][row], encoding.word_ids(row), len(prepared[index][1]))
                    for row, index in enumerate(indices)
                ],
                strategy,
            )
            for row, (index, (tags, tag_scores, untagged)) in enumerate(zip(indices, decoded)):
                text, _, offsets = prepared[index]
                results[index] = self.prediction_result(
                    text,
                    offsets,
                    tags,
                    tag_scores,
                    scores["sentence_probs"][row],
                    strategy,
                    embedding=scores["sentence_embedding"][row] if return_embeddings else None,
                    top_k=top_k,
                    in_scope_score=scores["in_scope_score"][row],
                )
                untagged_words += untagged
        self.train(was_training)
        if untagged_words:
            logger.warning(
                f"{untagged_words} words lie beyond max_seq_length={self.config.max_seq_length} tokens (or produce "
                "no sub-token) and were left untagged"
            )
        return results

    # The building blocks of `predict`, also used by the `multitask` pipeline (pipeline_mtl.py), which cannot import
    # this module and reaches them through the model.
    check_aggregation_strategy = staticmethod(check_aggregation_strategy)
    check_inputs = staticmethod(check_texts)
    check_top_k = staticmethod(check_top_k)
    prepare_text = staticmethod(prepare_text)

    def score_batch(self, inputs):
        """Probabilities of both heads and the sentence embedding for a tokenised batch (CPU, float32):
        `{"sentence_probs": [batch, n_sentence_labels], "token_probs": [batch, seq, n_token_labels],
        "sentence_embedding": [batch, hidden], "in_scope_score": [batch]}`; the sentence head's with
        `config.sentence_temperature`; `in_scope_score` is what rejection compares (`in_scope_scores`)."""
        outputs = self.logits_batch(inputs)
        sentence_probs = (outputs["sentence_logits"].float() / float(self.config.sentence_temperature)).softmax(-1)
        embedding = outputs["sentence_embedding"].float()
        return {
            "sentence_probs": sentence_probs,
            "token_probs": outputs["token_logits"].float().softmax(-1),
            "sentence_embedding": embedding,
            "in_scope_score": self.in_scope_scores(sentence_probs, embedding),
        }

    def in_scope_scores(self, sentence_probs, embedding):
        """What `config.reject_threshold` compares, per text (`[batch]`): the best sentence probability, or for
        `reject_score="centroid_cosine"` the largest cosine similarity of the embedding to a class centroid."""
        if self.config.reject_score == "centroid_cosine":
            return centroid_similarity(embedding, self.config.sentence_centroids)
        return sentence_probs.max(-1).values

    def tokenize_words(self, word_lists, to_device=True):
        """Tokenise lists of words (`is_split_into_words=True`), padded and truncated to `config.max_seq_length`.
        A text without words still gets one sequence (its special tokens, or one pad token)."""
        encoding = self.tokenize_texts(word_lists, is_split_into_words=True)
        return encoding if to_device else encoding.to("cpu")

    def encoder_inputs(self, encoding):
        """The tensors of a tokenizer encoding that the model takes (`input_ids`, `attention_mask`,
        `token_type_ids` when present)."""
        return {key: encoding[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoding}

    def decode_words(self, token_probs, word_ids, num_words, aggregation_strategy="first"):
        """Word-level BIO tags and scores from one sequence's token probabilities.

        Each word's tag distribution is read from its sub-tokens (`aggregation_strategy`), then decoded as
        `config.token_decoding` says: per word (`"argmax"`) or as the best valid BIO sequence (`"bio_viterbi"`).

        Args:
            token_probs: `[seq, n_token_labels]` probabilities of one sequence.
            word_ids: the word index of each position (None for special and padding tokens), as
                `BatchEncoding.word_ids()` gives it for that sequence.
            num_words: how many words the text has; a word without a sub-token (truncated) is tagged `"O"`.
            aggregation_strategy: `"first"`, `"average"`, `"max"` or `"none"` (read as `"first"` here).

        Returns:
            `(tags, scores, untagged)`: one tag and its probability per word, and how many words had no sub-token.
        """
        return self.decode_words_batch([(token_probs, word_ids, num_words)], aggregation_strategy)[0]

    def decode_words_batch(self, sequences, aggregation_strategy="first"):
        """`decode_words` for several sequences at once, each `(token_probs, word_ids, num_words)`: a list of
        `(tags, scores, untagged)`. `bio_viterbi` decodes them in one batched pass."""
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        labels = self.config.token_labels
        tagged_words, word_probs = zip(*(self._word_probs(*sequence, strategy) for sequence in sequences))
        if self.config.token_decoding == "bio_viterbi":
            all_tag_ids = bio_viterbi_batch([probs.clamp_min(1e-30).log() for probs in word_probs], tuple(labels))
            all_best = [probs[range(len(ids)), ids].tolist() for probs, ids in zip(word_probs, all_tag_ids)]
        else:
            all_best, all_tag_ids = zip(*((values.tolist() for values in probs.max(-1)) for probs in word_probs))
        decoded = []
        for (_, _, num_words), tagged, tag_ids, best in zip(sequences, tagged_words, all_tag_ids, all_best):
            tags, scores = ["O"] * num_words, [0.0] * num_words
            for word, tag_id, score in zip(tagged, tag_ids, best):
                tags[word], scores[word] = labels[tag_id], score
            decoded.append((tags, scores, num_words - len(tagged)))
        return decoded

    def _word_probs(self, token_probs, word_ids, num_words, strategy):
        """`(tagged, word_probs)`: the words that have a sub-token, and each one's tag distribution
        `[len(tagged), n_token_labels]` read from its sub-tokens as `strategy` says."""
        positions = [[] for _ in range(num_words)]
        for position, word_id in enumerate(word_ids):
            if word_id is not None and word_id < num_words:
                positions[word_id].append(position)
        tagged = [word for word, word_positions in enumerate(positions) if word_positions]
        token_probs = token_probs.float().cpu()
        if not tagged:
            return tagged, token_probs.new_zeros(0, len(self.config.token_labels))
        if strategy in ("first", "none"):
            # One gather for all words: per-word tensor indexing made decoding ~6x slower.
            return tagged, token_probs[[positions[word][0] for word in tagged]]
        if strategy == "average":
            return tagged, torch.stack([token_probs[positions[word]].mean(0) for word in tagged])
        # "max": the sub-token with the most confident prediction
        candidates = [token_probs[positions[word]] for word in tagged]
        return tagged, torch.stack([probs[probs.max(-1).values.argmax()] for probs in candidates])

    def decode_prediction(
        self,
        text,
        words,
        offsets,
        sentence_probs,
        token_probs,
        word_ids,
        aggregation_strategy="first",
        embedding=None,
        top_k=None,
        in_scope_score=None,
    ):
        """One `predict` result from one sequence's probabilities (see `score_batch` and `decode_words`); returns
        `(result, untagged_words)`."""
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        tags, scores, untagged = self.decode_words(token_probs, word_ids, len(words), strategy)
        result = self.prediction_result(text, offsets, tags, scores, sentence_probs, strategy, embedding, top_k,
                                        in_scope_score)
        return result, untagged

    def sentence_result(self, sentence_probs, top_k=None, empty=False, in_scope_score=None):
        """`{"label", "score"}` of one text's sentence probabilities, with the config's rejection applied
        (`"rejected_label"` when rejected) and, for `top_k`, `"intent_ranking"` (see `predict`). An `empty` text (no
        word) is always rejected by a model that rejects at all: whatever its score, it says nothing in scope.
        `in_scope_score` is the text's `score_batch` value, which `reject_threshold` compares (without it, the
        best probability); with `reject_score="centroid_cosine"` the result carries it as `"centroid_similarity"`."""
        labels, config = self.config.sentence_labels, self.config
        ranked_scores, ranked_ids = sentence_probs.float().topk(min(len(labels), max(top_k or 0, 2)))
        best = float(ranked_scores[0])
        runner_up = float(ranked_scores[1]) if len(ranked_scores) > 1 else 0.0
        result = {"label": labels[int(ranked_ids[0])], "score": best}
        if config.reject_score == "centroid_cosine":
            if in_scope_score is None:
                raise ValueError("reject_score centroid_cosine needs the text's in_scope_score (see score_batch)")
            in_scope_score = float(in_scope_score)
            result["centroid_similarity"] = in_scope_score
        elif in_scope_score is None:
            in_scope_score = best
        threshold, margin = config.reject_threshold, config.ambiguity_margin
        if ((threshold is not None or margin is not None) and empty) or (
            threshold is not None and float(in_scope_score) < threshold
        ) or (margin is not None and best - runner_up < margin):
            result = {**result, "label": config.out_of_scope_label, "rejected_label": result["label"]}
        if top_k:
            result["intent_ranking"] = [
                {"label": labels[int(index)], "score": float(score)}
                for score, index in zip(ranked_scores[:top_k], ranked_ids[:top_k])
            ]
        return result

    def prediction_result(
        self, text, offsets, tags, scores, sentence_probs, aggregation_strategy, embedding=None, top_k=None,
        in_scope_score=None,
    ):
        """One `predict` result from a text's decoded word tags and scores and its sentence probabilities."""
        if aggregation_strategy == "none":
            entities = [
                {
                    "entity": tag,
                    "score": score,
                    "index": index,
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
                for index, (tag, score, (start, end)) in enumerate(zip(tags, scores, offsets))
                if tag != "O"
            ]
        else:
            entities = bio_to_entities(text, tags, scores, offsets)
        result = {**self.sentence_result(sentence_probs, top_k, empty=not offsets, in_scope_score=in_scope_score),
                  "entities": entities}
        if embedding is not None:
            result["embedding"] = embedding.float().cpu().tolist()
        return result

    def _warn_truncated(self, encoding, indices):
        truncated = [index for row, index in enumerate(indices) if encoding.encodings[row].overflowing]
        if truncated:
            logger.warning(
                f"inputs {truncated} are longer than max_seq_length={self.config.max_seq_length} tokens and were "
                "truncated"
            )

