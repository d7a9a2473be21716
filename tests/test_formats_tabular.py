"""Tests for `modeling_mtl.formats.tabular`: CSV and JSON Lines files with their column options."""

import json

import pytest

from conftest import write
from modeling_mtl.data import DataSource, load_source
from modeling_mtl.formats import detect_format


def test_csv_default_columns(tmp_path):
    write(tmp_path / "train.csv", 'text,label\n"Hello, world!",greeting\nbye now,farewell\n')
    write(tmp_path / "valid.csv", "text,label\nhi,greeting\n")
    assert detect_format(tmp_path) == "csv"
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert dsd["train"][0] == {
        "text": "Hello, world!",
        "words": ["Hello", ",", "world", "!"],
        "tags": None,
        "sentence_label": "greeting",
        "source": tmp_path.name,
    }
    assert dsd["validation"]["sentence_label"] == ["greeting"]


def test_csv_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,intent\nhi,greet\n")
    with pytest.raises(ValueError, match=rf"{path}: no text column 'text'; it has columns 'sentence', 'intent'"):
        load_source(DataSource(data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"train\.csv: no sentence label column 'label'; it has columns"):
        load_source(DataSource(data_dir=str(tmp_path), text_column="sentence"))
    dsd = load_source(DataSource(data_dir=str(tmp_path), text_column="sentence", sentence_label_column="intent"))
    assert dsd["train"]["sentence_label"] == ["greet"]


def test_jsonl_text_and_token_columns(tmp_path):
    rows = [{"text": "good film", "label": 1}, {"text": "bad", "label": 0}]
    write(tmp_path / "train.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
    assert detect_format(tmp_path) == "jsonl"
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert dsd["train"]["sentence_label"] == ["1", "0"]
    assert dsd["train"]["words"] == [["good", "film"], ["bad"]]

    ner = tmp_path / "ner"
    write(ner / "train.jsonl", json.dumps({"tokens": ["New", "York"], "ner": ["B-LOC", "I-LOC"]}) + "\n")
    dsd = load_source(DataSource(data_dir=str(ner), tokens_column="tokens", tags_column="ner"))
    assert dsd["train"][0]["text"] == "New York"
    assert dsd["train"][0]["tags"] == ["B-LOC", "I-LOC"]
    assert dsd["train"][0]["sentence_label"] is None


def test_jsonl_row_without_text_is_an_error(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n{"label": 0}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl:2: column 'text' must hold a string, got None"):
        load_source(DataSource(data_dir=str(tmp_path)))


def test_jsonl_errors_name_file_and_line(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(ValueError, match=r"train\.jsonl:2: not valid JSON"):
        load_source(DataSource(data_dir=str(tmp_path)))
    write(tmp_path / "train.jsonl", '{"tokens": ["a", "b"], "ner": ["O"]}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl:1: 1 tags for 2 words"):
        load_source(DataSource(data_dir=str(tmp_path), tokens_column="tokens", tags_column="ner"))
