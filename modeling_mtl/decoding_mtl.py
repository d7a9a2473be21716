"""Words and BIO tags: how a text is split into words, how word tags become entities, the BIO-constrained Viterbi
decoder, and the checks every batch of inputs goes through.

This file is copied into every saved model folder (the model and inference code import it), so it imports only
`torch` and the standard library. The data pipeline and the metrics use the same functions, so training, evaluation
and `predict` split and decode text in one way.
"""

import collections.abc
import functools
import re
import unicodedata

import torch
from torch import nn

from .schema_mtl import AGGREGATION_STRATEGIES


@functools.lru_cache(maxsize=1)
def _word_pattern():
    """A word is a run of word characters and combining marks (optionally joined by ' - . : / inside, and with a
    leading @ or # as in tweets), or any single other visible character (punctuation, emoji, symbols) with the marks
    that follow it. Zero-width and control characters belong to no word.

    `re` has no class for combining marks (Unicode category M*: vowel signs, accents, variation selectors), so it is
    built from `unicodedata` on first use; every mark lies in U+0300..U+1FFFF or U+E0000..U+E0FFF.
    """
    marks = [
        chr(code)
        for block in (range(0x300, 0x20000), range(0xE0000, 0xE1000))
        for code in block
        if unicodedata.category(chr(code)).startswith("M")
    ]
    mark = "[" + re.escape("".join(marks)) + "]"
    word = rf"(?:\w|{mark})"
    return re.compile(
        rf"[@#]?\w{word}*(?:['’\-.:/]\w{word}*)*|[^\s\u200b-\u200f\u2060\ufeff\x00-\x1f\x7f]{mark}*"
    )


def split_words(text):
    """Split `text` into words with character offsets: a list of `(word, start, end)`, `text[start:end] == word`."""
    return [(m.group(), m.start(), m.end()) for m in _word_pattern().finditer(text)]


def join_words(words):
    """Join pre-split words with single spaces; returns the text and each word's `(start, end)` offsets."""
    offsets, position = [], 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), offsets


def bio_to_entities(text, tags, scores, offsets):
    """Group word-level BIO tags into entities with character offsets into `text`.

    An `I-X` that does not continue an entity of type X starts a new one (seqeval's lenient reading).
    Each entity's score is the mean of its words' scores.
    """
    entities, current = [], None
    for tag, score, (start, end) in zip(tags, scores, offsets):
        prefix, _, entity_type = tag.partition("-")
        if prefix == "I" and current is not None and current["entity_group"] == entity_type:
            current["end"] = end
            current["scores"].append(score)
            continue
        if current is not None:
            entities.append(current)
            current = None
        if prefix in ("B", "I"):
            current = {"entity_group": entity_type, "start": start, "end": end, "scores": [score]}
    if current is not None:
        entities.append(current)
    return [
        {
            "entity_group": entity["entity_group"],
            "score": sum(entity["scores"]) / len(entity["scores"]),
            "word": text[entity["start"] : entity["end"]],
            "start": entity["start"],
            "end": entity["end"],
        }
        for entity in entities
    ]


# Additive score of a forbidden tag transition; finite so that sums stay comparable.
_FORBIDDEN = -1e9


@functools.lru_cache(maxsize=8)
def _bio_structure(token_labels):
    """What BIO allows, for `token_labels` (a tuple): `(inside [n_tags] bool, begin [n_tags] long)`, where `inside[j]`
    marks an `I-x` tag, which may only follow `B-x` (at index `begin[j]`) or itself, and may not open a sequence;
    every other tag may follow anything (`begin[j] == j` for those, and for an `I-x` without a `B-x`)."""
    index = {tag: position for position, tag in enumerate(token_labels)}
    inside = [tag.startswith("I-") for tag in token_labels]
    begin = [index.get("B-" + tag[2:], j) if inside[j] else j for j, tag in enumerate(token_labels)]
    return torch.tensor(inside), torch.tensor(begin)


def bio_viterbi_batch(log_probs, token_labels):
    """The most likely BIO-valid tag ids (a list per sequence) for a list of per-word tag log-probabilities
    `[n_words, n_tags]` (lengths may differ), whose columns are `token_labels` (a tuple).

    One dynamic program for the whole batch. Each step is O(n_tags), not O(n_tags^2): a tag other than `I-x` takes
    the best previous tag whatever it is, and `I-x` the better of `B-x` and `I-x`."""
    results = [[] for _ in log_probs]
    rows = [row for row, sequence in enumerate(log_probs) if len(sequence)]
    if not rows:
        return results
    inside, begin = _bio_structure(token_labels)
    lengths = torch.tensor([len(log_probs[row]) for row in rows])
    padded = nn.utils.rnn.pad_sequence([log_probs[row].float().cpu() for row in rows], batch_first=True)
    batch, n_tags = len(rows), len(token_labels)
    itself = torch.arange(n_tags).expand(batch, n_tags)
    begin = begin.expand(batch, n_tags)
    score = padded[:, 0].masked_fill(inside, _FORBIDDEN)
    pointers = []
    for step in range(1, padded.shape[1]):
        best_any, any_previous = score.max(-1, keepdim=True)
        from_begin = score.gather(1, begin)
        stay = score >= from_begin
        previous = torch.where(inside, torch.where(stay, itself, begin), any_previous.expand(batch, n_tags))
        running = (step < lengths)[:, None]  # a finished sequence keeps its score and points at itself
        score = torch.where(running, score.gather(1, previous) + padded[:, step], score)
        pointers.append(torch.where(running, previous, itself))
    current = score.argmax(-1)
    path = [current]
    for previous in reversed(pointers):
        current = previous.gather(1, current[:, None])[:, 0]
        path.append(current)
    paths = torch.stack(path[::-1], 1).tolist()
    for row, path, length in zip(rows, paths, lengths.tolist()):
        results[row] = path[:length]
    return results


def bio_viterbi(log_probs, token_labels):
    """`bio_viterbi_batch` for one sequence `[n_words, n_tags]`: its tag ids, a list."""
    return bio_viterbi_batch([log_probs], token_labels)[0]


def _check_unicode(text, where):
    """A str with a lone surrogate (bytes decoded with errors="surrogateescape") cannot be tokenised."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where} is not valid Unicode: character {error.start} is a lone surrogate ({text[error.start]!r}); "
            "decode the bytes it came from with their real encoding (or errors='replace')"
        ) from None


def check_texts(texts, allow_words=True):
    """Validate a batch of inputs (a list, tuple or other sequence, such as a `datasets` column) and return it as a
    list; name the offending index in every error."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, collections.abc.Sequence):
        raise TypeError(f"expected a list of texts, got {type(texts).__name__}")
    texts = list(texts)
    for index, item in enumerate(texts):
        if isinstance(item, str):
            _check_unicode(item, f"input {index}")
            continue
        if allow_words and isinstance(item, (list, tuple)):
            bad = [i for i, word in enumerate(item) if not isinstance(word, str) or not word or word.split() != [word]]
            if bad:
                raise ValueError(
                    f"input {index}: word {bad[0]} is {item[bad[0]]!r}; pre-split words must be non-empty "
                    "strings without whitespace"
                )
            for word in item:
                _check_unicode(word, f"input {index}")
            continue
        expected = "a string or a list of word strings" if allow_words else "a string"
        raise TypeError(f"input {index} is {type(item).__name__} ({item!r}); expected {expected}")
    return texts


def longest_first_batches(lengths, batch_size):
    """Input indices in batches of `batch_size`, longest input first: inputs of similar length share a batch, so
    dynamic padding stays small."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]



def check_aggregation_strategy(aggregation_strategy):
    """The strategy name, lower-cased (an `AggregationStrategy` enum member is accepted), or a ValueError."""
    name = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
    if name not in AGGREGATION_STRATEGIES:
        raise ValueError(
            f"aggregation_strategy is {aggregation_strategy!r}; choose one of {list(AGGREGATION_STRATEGIES)}"
        )
    return name


def check_top_k(top_k):
    """`top_k` as given (None, or a positive int: how many sentence labels `intent_ranking` lists), or an error."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k is {top_k!r}; give a positive integer (or None for no intent_ranking)")
    return top_k


def prepare_text(item):
    """`(text, words, offsets)` for a string (split with `split_words`) or a pre-split word list (joined with single
    spaces); `offsets[i]` is `(start, end)` of `words[i]` in `text`."""
    if isinstance(item, str):
        spans = split_words(item)
        return item, [word for word, _, _ in spans], [(start, end) for _, start, end in spans]
    text, offsets = join_words(list(item))
    return text, list(item), offsets
