"""Tests for `modeling_mtl.formats.jointbert`: JointBERT folders (`<split>/seq.in`, `seq.out`, `label`)."""

import pytest

from conftest import make_jointbert, write
from modeling_mtl.data import DataSource, load_source
from modeling_mtl.formats import detect_format


def test_jointbert_loads_and_normalizes_splits(tmp_path):
    root = make_jointbert(tmp_path / "atis")
    assert detect_format(root) == "jointbert"
    dsd = load_source(DataSource(data_dir=str(root)))
    assert list(dsd) == ["train", "validation", "test"]
    first = dsd["train"][0]
    # The trailing space of the first line does not produce an empty word.
    assert first["words"] == ["show", "me", "flights", "to", "boston"]
    assert first["text"] == "show me flights to boston"
    assert first["tags"] == ["O", "O", "O", "O", "B-toloc"]
    assert first["source"] == "atis"
    assert dsd["train"][1]["sentence_label"] == "atis_flight#atis_airfare"
    # No `label` file in test: the sentence label is None.
    assert dsd["test"][0]["sentence_label"] is None
    assert dsd["test"][0]["tags"] == ["O", "B-toloc", "I-toloc"]


def test_jointbert_without_seq_out_has_no_tags(tmp_path):
    write(tmp_path / "train" / "seq.in", "a b\n")
    write(tmp_path / "train" / "label", "x\n")
    dsd = load_source(DataSource(data_dir=str(tmp_path), data_format="jointbert"))
    assert dsd["train"][0]["tags"] is None
    assert dsd["train"][0]["sentence_label"] == "x"


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("seq.out", "O O O O B-toloc\nO O\n", r"train/seq\.out:2: 2 tags for the 3 words on line 2 of .*seq\.in"),
        ("seq.out", "O O O O B-toloc\nO O toloc\n", r"train/seq\.out:2: tag 'toloc' is not a BIO tag"),
        ("seq.out", "O O O O B-toloc\n\n", r"train/seq\.out:2: empty line"),
        ("seq.out", "O O O O B-toloc\n", r"train/seq\.out has 1 lines but .*train/seq\.in has 2: .*seq\.in:2 has"),
        ("label", "atis_flight\natis_flight\nextra\n", r"train/label has 3 lines .* .*train/label:3 has no"),
        ("label", "atis_flight\n \n", r"train/label:2: empty line"),
        ("seq.in", "", r"train/seq\.in: empty file"),
        ("seq.in", "show me\n\n", r"train/seq\.in:2: empty line"),
    ],
)
def test_jointbert_errors_name_file_and_line(tmp_path, file, content, message):
    root = make_jointbert(tmp_path / "atis")
    write(root / "train" / file, content)
    with pytest.raises(ValueError, match=message):
        load_source(DataSource(data_dir=str(root)))


def test_jointbert_checks_every_split_before_building(tmp_path):
    root = make_jointbert(tmp_path / "atis")
    write(root / "test" / "seq.out", "O B-toloc\n")
    with pytest.raises(ValueError, match=r"test/seq\.out:1: 2 tags for the 3 words"):
        load_source(DataSource(data_dir=str(root)))
