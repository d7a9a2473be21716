"""Reliability (issue 7), property-based: word / sub-token alignment and span decoding.

For random word lists, separators and BIO tag sequences, the decoded entities (`bio_to_entities`, `predict`) never
overlap, always lie inside the text, round-trip (`text[start:end] == word`), and reconstruct exactly the groups of
tagged words that an independent reading of the BIO tags gives (B-X opens an entity, I-X continues an open X entity
or opens one, O closes). `predict` is driven by a token head that emits chosen tags, so the test covers the real
tokenisation, truncation and first-sub-token alignment.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_config
from modeling_mtl import MultiTaskModel, split_words
from modeling_mtl.decoding_mtl import bio_to_entities, join_words

TYPES = ["LOC", "PER"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
WORD_POOL = [
    "paris", "New", "York", "naïve", "Zürich", "東京", "大阪", "🤗", "😀", "👨‍👩‍👧", "❤️", "שלום", "مرحبا", "@user",
    "#tag", "n't", ",", ".", "e\u0301", "\u200b", "\ufe0f", "\ufeff", "a" * 40, "antidisestablishmentarianism", "3:30pm",
]
SEPARATORS = [" ", "  ", "\t", "\n", " \u200b ", "\u3000", "\xa0"]
MAX_SEQ_LENGTH = 16

words_strategy = st.lists(
    st.one_of(st.sampled_from(WORD_POOL), st.text(min_size=1, max_size=8).filter(lambda word: word.split() == [word])),
    min_size=0,
    max_size=14,
)


def expected_groups(tags):
    """(type, first word, last word) of each entity, read independently of bio_to_entities."""
    groups, open_group = [], None
    for index, tag in enumerate(tags):
        if tag == "O":
            open_group = None
            continue
        prefix, kind = tag.split("-", 1)
        if prefix == "I" and open_group is not None and open_group[0] == kind:
            open_group[2] = index
        else:
            open_group = [kind, index, index]
            groups.append(open_group)
    return [tuple(group) for group in groups]


def check_entities(text, entities, offsets, tags):
    previous_end = 0
    for entity in entities:
        assert previous_end <= entity["start"] < entity["end"] <= len(text)  # inside the text, no overlap
        assert text[entity["start"] : entity["end"]] == entity["word"]
        previous_end = entity["end"]
    assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
        (kind, offsets[first][0], offsets[last][1]) for kind, first, last in expected_groups(tags)
    ]


@st.composite
def tagged_text(draw):
    """Words joined by random separators: (text, words, offsets, tags)."""
    words = draw(words_strategy.filter(lambda words: all(word.strip() == word for word in words)))
    text, offsets = "", []
    lead = draw(st.sampled_from(["", " ", "\u200b"]))
    text += lead
    for index, word in enumerate(words):
        if index:
            text += draw(st.sampled_from(SEPARATORS))
        offsets.append((len(text), len(text) + len(word)))
        text += word
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=len(words), max_size=len(words)))
    return text, words, offsets, tags


@settings(max_examples=200, deadline=None)
@given(tagged_text(), st.data())
def test_bio_to_entities_spans(case, data):
    text, words, offsets, tags = case
    scores = data.draw(st.lists(st.floats(0, 1), min_size=len(words), max_size=len(words)))
    entities = bio_to_entities(text, tags, scores, offsets)
    check_entities(text, entities, offsets, tags)
    for entity, (kind, first, last) in zip(entities, expected_groups(tags)):
        assert entity["score"] == pytest.approx(sum(scores[first : last + 1]) / (last - first + 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_split_words_covers_every_visible_character(text):
    words = split_words(text)
    covered = set()
    previous_end = 0
    for word, start, end in words:
        assert previous_end <= start < end and text[start:end] == word
        assert word.split() == [word]  # a word holds no whitespace, so a word list round-trips
        covered.update(range(start, end))
        previous_end = end
    for index, character in enumerate(text):  # only whitespace, zero-width and control characters are left out
        if index not in covered:
            invisible = character in "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\x7f" or ord(character) < 32
            assert character.isspace() or invisible, repr(character)


@settings(max_examples=200, deadline=None)
@given(words_strategy)
def test_join_words_offsets_round_trip(words):
    text, offsets = join_words(words)
    assert [text[start:end] for start, end in offsets] == words
    assert all(end < next_start for (_, end), (next_start, _) in zip(offsets, offsets[1:]))


class TagsHead(torch.nn.Module):
    """A token head that emits chosen logits whatever the encoder says."""

    def __init__(self):
        super().__init__()
        self.logits = None

    def forward(self, token_states):
        assert self.logits.shape[:2] == token_states.shape[:2]
        return self.logits.to(token_states.dtype)


@pytest.fixture(scope="module")
def steered(tokenizer):
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_config(tokenizer.vocab_size, max_seq_length=MAX_SEQ_LENGTH))
    model.tokenizer = tokenizer
    model.token_head = TagsHead()
    return model.eval()


def steer(model, words, tags):
    """Make the token head emit each word's tag on all its sub-tokens; returns the tags predict can see (a word
    without a kept sub-token, truncated or dropped by the tokenizer, reads as O)."""
    encoding = model.tokenizer([words], is_split_into_words=True, truncation=True, max_length=MAX_SEQ_LENGTH)
    word_ids = encoding.word_ids(0)
    logits = torch.zeros(1, len(word_ids), len(TAGS))
    for position, word in enumerate(word_ids):
        logits[0, position, TAGS.index(tags[word]) if word is not None else 0] = 20.0
    model.token_head.logits = logits
    seen = {word for word in word_ids if word is not None}
    return [tag if index in seen else "O" for index, tag in enumerate(tags)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tagged_text())
def test_predict_on_word_lists(steered, case):
    _, words, _, tags = case
    visible = steer(steered, words, tags)
    text, offsets = join_words(words)
    [result] = steered.predict([words])
    check_entities(text, result["entities"], offsets, visible)
    for entity in result["entities"]:
        assert entity["score"] == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tagged_text(), st.data())
def test_predict_on_raw_text(steered, case, data):
    text = case[0]
    spans = split_words(text)
    words = [word for word, _, _ in spans]
    tags = data.draw(st.lists(st.sampled_from(TAGS), min_size=len(words), max_size=len(words)))
    visible = steer(steered, words, tags)
    [result] = steered.predict([text])
    check_entities(text, result["entities"], [(start, end) for _, start, end in spans], visible)


@pytest.fixture(scope="module")
def random_model(tokenizer):
    torch.manual_seed(1)
    model = MultiTaskModel(tiny_config(tokenizer.vocab_size, max_seq_length=MAX_SEQ_LENGTH))
    model.tokenizer = tokenizer
    with torch.no_grad():  # make entities frequent: B-/I- tags outweigh O
        model.token_head.classifier.bias[0] = -2.0
    return model.eval()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_predict_with_a_real_head_keeps_entities_inside(random_model, texts):
    """The untouched random model on arbitrary text (any code point but lone surrogates): spans stay inside, round
    trip, never overlap, and start and end on word boundaries."""
    for text, result in zip(texts, random_model.predict(texts, batch_size=2)):
        starts = {start for _, start, _ in split_words(text)}
        ends = {end for _, _, end in split_words(text)}
        previous_end = 0
        for entity in result["entities"]:
            assert previous_end <= entity["start"] < entity["end"] <= len(text)
            assert text[entity["start"] : entity["end"]] == entity["word"]
            assert entity["start"] in starts and entity["end"] in ends
            previous_end = entity["end"]
