"""Reliability (issue 7): every bad input at inference gets a defined result or a clear error naming its index.

Covers `MultiTaskModel.encode`, `MultiTaskModel.predict` and the standard `pipeline("text-classification")` /
`pipeline("token-classification")` views of a saved folder. The table in docs/reliability.md lists each case.
"""

import logging

import numpy as np
import pytest
import torch
from transformers import pipeline

from conftest import SENTENCE_LABELS, TOKEN_LABELS
from modeling_mtl import split_words

LOGGER = "modeling_mtl.modeling_mtl"

# Text that lies far beyond max_seq_length=64 of the tiny model (500 words, about 500 tokens).
LONG_TEXT = "word " * 500

UNICODE_TEXTS = {
    "emoji": "I ❤️ Paris 😀 and 👨‍👩‍👧 families 🇫🇷!",
    "cjk": "東京から大阪まで 新幹線で 行きます",
    "rtl": "مرحبا بالعالم שלום עולם",
    "rtl_marks": "\u202bשלום\u202c \u200fhello\u200e",
    "zero_width": "a\u200bb Pa\u200dris \ufeffnew\u2060york",
    "control": "fly\x00 to\x07 par\x1bis\x7f now",
    "mixed_scripts": "Zürich → 東京 via Москва, 😀 @user #tag don't",
}


def force_tags(model, tag):
    """Make the token head predict `tag` for every token (and so every word)."""
    with torch.no_grad():
        model.token_head.classifier.weight.zero_()
        model.token_head.classifier.bias.fill_(0.0)
        model.token_head.classifier.bias[model.config.token_label2id[tag]] = 10.0


def assert_entities_inside(text, entities):
    """Entities lie inside `text`, in order, without overlapping, and `text[start:end] == word`."""
    previous_end = 0
    for entity in entities:
        assert 0 <= previous_end <= entity["start"] < entity["end"] <= len(text), (text, entity)
        assert text[entity["start"] : entity["end"]] == entity["word"]
        previous_end = entity["end"]


# ---------------------------------------------------------------------------------------------------------------
# Empty and blank texts


@pytest.mark.parametrize(
    "text",
    ["", "   ", " \t\n\r ", "\u200b\u200b", "\x00\x01\x1f"],
    ids=["empty", "spaces", "whitespace_mix", "zero_width_only", "control_only"],
)
def test_blank_text_gets_a_defined_result(tiny_model, text):
    """A text without words: encode gives the embedding of the empty text, predict a label and no entity."""
    force_tags(tiny_model, "B-LOC")
    embedding = tiny_model.encode([text])
    assert embedding.shape == (1, 32) and np.isfinite(embedding).all()
    result = tiny_model.predict([text])[0]
    assert result["label"] in SENTENCE_LABELS and 0.0 <= result["score"] <= 1.0
    assert result["entities"] == []
    if not text.strip():  # whitespace is stripped before encoding: the same vector as ""
        np.testing.assert_allclose(embedding, tiny_model.encode([""]), atol=1e-6)


def test_empty_word_list_gets_a_defined_result(tiny_model):
    result = tiny_model.predict([[]])[0]
    assert result["label"] in SENTENCE_LABELS and result["entities"] == []


def test_empty_batch_gives_empty_results(tiny_model):
    assert tiny_model.encode([]).shape == (0, 32)
    assert tiny_model.encode([], convert_to_tensor=True).shape == (0, 32)
    assert tiny_model.predict([]) == []


# ---------------------------------------------------------------------------------------------------------------
# Wrong types: a clear error naming the index


@pytest.mark.parametrize(
    "item, type_name",
    [(None, "NoneType"), (3, "int"), (2.5, "float"), (float("nan"), "float"), (b"bytes", "bytes"), ({"text": "hi"}, "dict"), (True, "bool")],
    ids=["none", "int", "float", "nan", "bytes", "dict", "bool"],
)
@pytest.mark.parametrize("method", ["encode", "predict"])
def test_non_string_item_names_its_index(tiny_model, method, item, type_name):
    with pytest.raises(TypeError, match=rf"input 2 is {type_name} "):
        getattr(tiny_model, method)(["fine", "also fine", item, "fine"])


@pytest.mark.parametrize(
    "words, message",
    [
        (["new", ""], r"input 1: word 1 is ''"),
        (["new", "york city"], r"input 1: word 1 is 'york city'"),
        (["new", None], r"input 1: word 1 is None"),
        ([3, "york"], r"input 1: word 0 is 3"),
        (["new", "york\n"], r"input 1: word 1 is 'york\\n'"),
    ],
    ids=["empty_word", "word_with_space", "none_word", "int_word", "word_with_newline"],
)
def test_bad_word_in_a_word_list_names_input_and_word(tiny_model, words, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.predict(["fine", words])


@pytest.mark.parametrize(
    "texts, type_name",
    [("a bare string", "str"), (iter(["a"]), "list_iterator"), (np.array(["a", "b"]), "ndarray"), (None, "NoneType"), (42, "int")],
    ids=["bare_string", "iterator", "ndarray", "none", "int"],
)
def test_predict_needs_a_list(tiny_model, texts, type_name):
    with pytest.raises(TypeError, match=rf"expected a list of texts, got {type_name}"):
        tiny_model.predict(texts)


def test_encode_takes_one_string_or_a_list(tiny_model):
    """encode("text") returns one vector (as SentenceTransformer.encode); anything but a string or a list is refused."""
    assert tiny_model.encode("a single sentence").shape == (32,)
    for texts, type_name in ((iter(["a"]), "list_iterator"), (np.array(["a"]), "ndarray"), (None, "NoneType")):
        with pytest.raises(TypeError, match=rf"expected a list of texts, got {type_name}"):
            tiny_model.encode(texts)


def test_mix_of_strings_and_word_lists(tiny_model):
    """predict takes strings and word lists in one batch (offsets refer to each item's own text); encode takes
    strings only and names the index of the first word list."""
    force_tags(tiny_model, "B-LOC")
    results = tiny_model.predict(["fly to paris", ["new", "york"], "  berlin ", ("rome",)], batch_size=3)
    texts = ["fly to paris", "new york", "  berlin ", "rome"]
    assert [[entity["word"] for entity in result["entities"]] for result in results] == [
        ["fly", "to", "paris"],
        ["new", "york"],
        ["berlin"],
        ["rome"],
    ]
    for text, result in zip(texts, results):
        assert_entities_inside(text, result["entities"])
    with pytest.raises(TypeError, match=r"input 1 is list \(\['new', 'york'\]\); expected a string"):
        tiny_model.encode(["fly to paris", ["new", "york"]])


@pytest.mark.parametrize("method", ["encode", "predict"])
def test_lone_surrogate_names_its_index(tiny_model, method):
    """A str holding a lone surrogate (e.g. bytes decoded with errors="surrogateescape") cannot be tokenised; without
    the check, the tokenizer raises a TypeError that names neither the input nor the reason."""
    with pytest.raises(ValueError, match=r"input 1 .*(surrogate|Unicode|UTF-8)"):
        getattr(tiny_model, method)(["fine", "caf\udce9 au lait"])


# ---------------------------------------------------------------------------------------------------------------
# Unicode: emoji, CJK, right-to-left, zero-width and control characters


@pytest.mark.parametrize("name", sorted(UNICODE_TEXTS))
@pytest.mark.parametrize("tag", ["B-LOC", "I-PER"])
def test_unicode_texts_keep_entities_inside_the_text(tiny_model, name, tag):
    text = UNICODE_TEXTS[name]
    force_tags(tiny_model, tag)
    embedding = tiny_model.encode([text])
    assert np.isfinite(embedding).all()
    result = tiny_model.predict([text])[0]
    assert result["entities"], text
    assert_entities_inside(text, result["entities"])
    word_starts = {start for _, start, _ in split_words(text)}
    word_ends = {end for _, _, end in split_words(text)}
    for entity in result["entities"]:
        # Entities start and end on word boundaries; zero-width and control characters are never a word.
        assert entity["start"] in word_starts and entity["end"] in word_ends
        if tag.startswith("B-"):
            assert not any(character in entity["word"] for character in "\u200b\u200d\u2060\ufeff\x00\x07\x1b\x7f")


@pytest.mark.parametrize("name", sorted(UNICODE_TEXTS))
def test_unicode_word_lists_keep_entities_inside_the_text(tiny_model, name):
    words = UNICODE_TEXTS[name].split()
    force_tags(tiny_model, "B-LOC")
    result = tiny_model.predict([words])[0]
    assert_entities_inside(" ".join(words), result["entities"])


MARKED_WORDS = {
    "devanagari": ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),
    "decomposed_latin": ("cafe\u0301 ole\u0301", ["cafe\u0301", "ole\u0301"]),
    "arabic_harakat": ("مَرْحَبًا بِكُمْ", ["مَرْحَبًا", "بِكُمْ"]),
    "hebrew_niqqud": ("שָׁלוֹם עוֹלָם", ["שָׁלוֹם", "עוֹלָם"]),
    "thai": ("ข้าวผัด อร่อย", ["ข้าวผัด", "อร่อย"]),
    "emoji_variation_selector": ("I ❤️ you", ["I", "❤️", "you"]),
}


@pytest.mark.parametrize("name", sorted(MARKED_WORDS))
def test_combining_marks_stay_in_their_word(name):
    """Words with combining marks (Hindi vowel signs, Arabic/Hebrew vowel points, Thai tone marks, NFD accents, an
    emoji's variation selector) are one word each; `\\w` alone does not match a mark, so such words would be cut into
    pieces and an entity could end in the middle of a letter."""
    text, expected = MARKED_WORDS[name]
    assert [word for word, _, _ in split_words(text)] == expected


# ---------------------------------------------------------------------------------------------------------------
# Texts longer than max_seq_length: truncated, with a warning that says so


def test_encode_warns_which_inputs_were_truncated(tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        embeddings = tiny_model.encode(["short", LONG_TEXT, "short too", LONG_TEXT.upper()], batch_size=8)
    assert embeddings.shape == (4, 32) and np.isfinite(embeddings).all()
    assert "inputs [1, 3] are longer than max_seq_length=64 tokens and were truncated" in caplog.text
    # What is kept is the first max_seq_length tokens: the embedding equals that of a text cut there.
    kept_ids = tiny_model.tokenizer(LONG_TEXT, truncation=True, max_length=64)["input_ids"]
    kept = tiny_model.tokenizer.decode(kept_ids[1:-1])
    np.testing.assert_allclose(embeddings[1], tiny_model.encode(kept), atol=1e-5)


def test_predict_tags_the_words_that_fit_and_warns(tiny_model, caplog):
    force_tags(tiny_model, "B-LOC")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = tiny_model.predict([LONG_TEXT])[0]
    assert "438 words lie beyond max_seq_length=64 tokens" in caplog.text and "left untagged" in caplog.text
    # 62 words fit (64 tokens less [CLS] and [SEP]); each is an entity, all inside the text.
    assert len(result["entities"]) == 62
    assert_entities_inside(LONG_TEXT, result["entities"])


def test_predict_warning_names_the_truncated_input(tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tiny_model.predict(["short", LONG_TEXT, "short too"])
    assert "inputs [1] are longer than max_seq_length=64 tokens and were truncated" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# The standard pipelines on a saved folder


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory, tokenizer):
    from conftest import tiny_config
    from modeling_mtl import MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel(tiny_config(tokenizer.vocab_size))
    model.tokenizer = tokenizer
    force_tags(model, "B-LOC")
    folder = tmp_path_factory.mktemp("pipelines") / "model"
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def text_pipe(saved_folder):
    return pipeline("text-classification", model=saved_folder, trust_remote_code=True)


@pytest.fixture(scope="module")
def token_pipe(saved_folder):
    return pipeline("token-classification", model=saved_folder, trust_remote_code=True)


BLANK_AND_UNICODE = {"empty": "", "spaces": "   ", **UNICODE_TEXTS}


@pytest.mark.parametrize("name", sorted(BLANK_AND_UNICODE))
def test_pipelines_on_blank_and_unicode_texts(text_pipe, token_pipe, name):
    text = BLANK_AND_UNICODE[name]
    [label] = text_pipe(text)
    assert label["label"] in SENTENCE_LABELS and 0.0 <= label["score"] <= 1.0
    tokens = token_pipe(text)
    if not text.strip():
        assert tokens == []
    previous_end = 0
    for token in tokens:  # the pipeline's `word` is the decoded sub-token (lower-cased), so only offsets are checked
        assert token["entity"] in TOKEN_LABELS
        assert previous_end <= token["start"] < token["end"] <= len(text)
        previous_end = token["end"]
    grouped = pipeline(
        "token-classification", model=token_pipe.model, tokenizer=token_pipe.tokenizer, aggregation_strategy="simple"
    )
    for entity in grouped(text):
        assert 0 <= entity["start"] < entity["end"] <= len(text)


@pytest.mark.parametrize("item", [None, 3], ids=["none", "int"])
def test_pipelines_refuse_non_text(text_pipe, token_pipe, item):
    """transformers' own pipelines raise a ValueError for an input that is not text (their message)."""
    with pytest.raises(ValueError):
        text_pipe(item)
    with pytest.raises(ValueError):
        token_pipe(item)


def test_pipelines_on_an_empty_batch(text_pipe, token_pipe):
    """An empty list: the token pipeline refuses it with a ValueError; transformers' text-classification pipeline
    reads `inputs[0]` and raises IndexError (upstream behaviour, not this package's code; `predict([])` returns [])."""
    with pytest.raises(ValueError, match="At least one input is required"):
        token_pipe([])
    with pytest.raises(IndexError):
        text_pipe([])


def test_text_pipeline_on_a_long_text(text_pipe, tiny_model):
    """The text-classification pipeline does not truncate by default; without the check, the encoder fails deep in
    torch ("The size of tensor a (502) must match the size of tensor b (128)"). Wanted: a clear error that says to
    pass truncation=True, and with truncation=True the same label and score as predict (cut at max_seq_length)."""
    with pytest.raises(ValueError, match="truncation=True"):
        text_pipe(LONG_TEXT)
    [label] = text_pipe(LONG_TEXT, truncation=True)
    expected = tiny_model.predict([LONG_TEXT])[0]
    assert label["label"] == expected["label"]
    assert label["score"] == pytest.approx(expected["score"], abs=1e-5)


def test_token_pipeline_on_a_long_text(token_pipe):
    """The token-classification pipeline truncates at the tokenizer's model_max_length: left at 512, beyond the tiny
    encoder's 128 positions, it fails deep in torch. Wanted: entities for the words within max_seq_length."""
    tokens = token_pipe(LONG_TEXT)
    assert 0 < len(tokens) <= 62
    assert all(0 <= token["start"] < token["end"] <= len(LONG_TEXT) for token in tokens)
