"""Tests for `modeling_mtl.formats.columns`: Hub-style DatasetDicts (built in memory) mapped to the canonical schema."""

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from modeling_mtl.data import FEATURES, DataSource, standardize_dataset_dict


def test_standardize_converts_class_labels():
    labels = ClassLabel(names=["neg", "pos"])
    sentiment = Dataset.from_dict(
        {"sentence": ["good film", "bad", "unlabelled"], "label": [1, 0, -1], "idx": [0, 1, 2]},
        features=Features({"sentence": Value("string"), "label": labels, "idx": Value("int32")}),
    )
    raw = DatasetDict({"train": sentiment, "dev": sentiment.select([0]), "unsupervised": sentiment})
    dsd = standardize_dataset_dict(raw, DataSource(dataset_name="toy/sentiment", text_column="sentence"))
    assert list(dsd) == ["train", "validation"]
    assert dsd["train"]["sentence_label"] == ["pos", "neg", None]
    assert dsd["train"]["words"] == [["good", "film"], ["bad"], ["unlabelled"]]
    assert dsd["train"]["source"] == ["toy/sentiment"] * 3
    assert dsd["train"].features == FEATURES

    tags = ClassLabel(names=["O", "B-PER", "I-PER"])
    ner = Dataset.from_dict(
        {"tokens": [["John", "Smith", "runs"]], "ner_tags": [[1, 2, 0]]},
        features=Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(tags)}),
    )
    source = DataSource(dataset_name="toy/ner", tokens_column="tokens", tags_column="ner_tags")
    example = standardize_dataset_dict(DatasetDict({"train": ner}), source)["train"][0]
    assert example == {
        "text": "John Smith runs",
        "words": ["John", "Smith", "runs"],
        "tags": ["B-PER", "I-PER", "O"],
        "sentence_label": None,
        "source": "toy/ner",
    }


def test_standardize_errors_name_split_and_row():
    ner = Dataset.from_dict({"tokens": [["a"], ["b", "c"]], "tags": [["O"], ["O"]]})
    source = DataSource(dataset_name="toy", tokens_column="tokens", tags_column="tags")
    with pytest.raises(ValueError, match="source 'toy' split 'train' row 2: 1 tags for 2 words"):
        standardize_dataset_dict(DatasetDict({"train": ner}), source)
    bad_id = Dataset.from_dict(
        {"tokens": [["a"]], "tags": [[-1]]},
        features=Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=["O"]))}),
    )
    with pytest.raises(ValueError, match="split 'test' row 1: missing tag or invalid tag id in column 'tags'"):
        standardize_dataset_dict(DatasetDict({"train": ner.select([0]), "test": bad_id}), source)
    with pytest.raises(ValueError, match="split 'train': no tokens column 'words'; it has columns 'tokens', 'tags'"):
        standardize_dataset_dict(DatasetDict({"train": ner}), DataSource(dataset_name="toy", tokens_column="words"))
