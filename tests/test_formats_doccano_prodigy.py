"""Doccano and Prodigy JSON Lines (modeling_mtl/formats/doccano.py, prodigy.py) on hand-written export files."""

from pathlib import Path

import pytest

from modeling_mtl.formats import doccano, prodigy
from modeling_mtl.spans import ConversionReport, records_to_columns

FIXTURES = Path(__file__).parent / "fixtures" / "span_formats"


def convert(module, path):
    report = ConversionReport()
    columns = records_to_columns(module.read(path, report), report)
    return [(label, list(zip(words, tags))) for label, words, tags in
            zip(columns["sentence_label"], columns["words"], columns["tags"])], report


def test_doccano_sequence_labelling_in_both_shapes():
    rows, report = convert(doccano, FIXTURES / "doccano_ner.jsonl")  # the file starts with a byte-order mark
    assert rows == [
        (None, [("fly", "O"), ("to", "O"), ("Boston", "B-city")]),  # "label": [[start, end, type]]
        ("social", [("😀", "O"), ("meet", "O"), ("Anna", "B-person")]),  # "entities" + "cats"; Python offsets
        (None, [("no", "O"), ("entity", "O"), ("at", "O"), ("all", "O")]),
    ]
    assert report.counts == {"ignored_relations": 1, "no_spans": 1}


def test_doccano_text_classification():
    rows, _ = convert(doccano, FIXTURES / "doccano_classification.jsonl")
    assert [label for label, _ in rows] == ["positive", "negative"]


def test_prodigy_skips_rejected_and_ignored_answers_and_reads_choices():
    rows, report = convert(prodigy, FIXTURES / "prodigy.jsonl")
    assert rows == [
        (None, [("fly", "O"), ("to", "O"), ("Boston", "B-CITY")]),
        ("travel", [("Zu\u0308rich", "B-CITY"), ("is", "O"), ("nice", "O")]),  # the accepted option
        ("POSITIVE", [("I", "O"), ("like", "O"), ("it", "O")]),  # an accepted classification
    ]
    assert report.counts["rejected_record_skipped"] == 1 and report.counts["ignored_record_skipped"] == 1
    assert report.examples["rejected_record_skipped"] == ["prodigy.jsonl, line 2: answer 'reject'"]


def test_detection():
    assert doccano.detect(FIXTURES / "doccano_ner.jsonl") and doccano.detect(FIXTURES / "doccano_classification.jsonl")
    assert prodigy.detect(FIXTURES / "prodigy.jsonl") and not doccano.detect(FIXTURES / "prodigy.jsonl")
    assert not prodigy.detect(FIXTURES / "doccano_ner.jsonl")


@pytest.mark.parametrize(
    "module, line, message",
    [
        (doccano, '{"text": "a b", "label": [[0, 1]]}', r"bad.jsonl, line 1, label 1: a span must be \[start, end, label\]"),
        (doccano, '{"text": "a", "label": ["x", "y"]}', r"line 1, label: 2 class values \['x', 'y'\]"),
        (doccano, '{"label": []}', "line 1: no text: 'text' is missing"),
        (prodigy, '{"text": "a", "answer": "maybe"}', "line 1: answer 'maybe'"),
        (prodigy, '{"text": "a", "spans": [{"start": 0}], "answer": "accept"}', "line 1, span 1: no end, label"),
        (prodigy, '{"text": "a",', r"bad.jsonl:1: not valid JSON"),
    ],
)
def test_bad_lines_fail_naming_file_and_line(tmp_path, module, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        module.read(path, ConversionReport())
