"""Tests for `modeling_mtl.formats.sst2`: `stsa.binary.<split>` files."""

import pytest

from conftest import write
from modeling_mtl.data import DataSource, load_source
from modeling_mtl.formats import detect_format


def test_sst2_maps_label_ids_to_names(tmp_path):
    write(tmp_path / "stsa.binary.train", "1 a fine , funny film\n0 it is n't good .\n")
    write(tmp_path / "stsa.binary.dev", "0 dull\n")
    write(tmp_path / "stsa.binary.phrases.train", "1 phrase\n")
    write(tmp_path / "labels.txt", "negative\npositive\n")
    assert detect_format(tmp_path) == "sst2"
    dsd = load_source(DataSource(data_dir=str(tmp_path)))
    assert list(dsd) == ["train", "validation"]
    assert dsd["train"]["sentence_label"] == ["positive", "negative"]
    assert dsd["train"][0]["text"] == "a fine , funny film"
    assert dsd["train"][1]["words"] == ["it", "is", "n't", "good", "."]
    assert dsd["train"]["tags"] == [None, None]


def test_sst2_without_labels_file_keeps_ids(tmp_path):
    write(tmp_path / "stsa.binary.train", "1 good\n")
    assert load_source(DataSource(data_dir=str(tmp_path)))["train"]["sentence_label"] == ["1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 good\n2 what\n", r"stsa\.binary\.train:2: label '2' is not a label id"),
        ("1 good\n0\n", r"stsa\.binary\.train:2: expected '<label> <sentence>'"),
    ],
)
def test_sst2_errors_name_file_and_line(tmp_path, content, message):
    write(tmp_path / "labels.txt", "negative\npositive\n")
    write(tmp_path / "stsa.binary.train", content)
    with pytest.raises(ValueError, match=message):
        load_source(DataSource(data_dir=str(tmp_path)))
