"""Label Studio exports (modeling_mtl/formats/label_studio.py) on hand-written files in the tool's export shapes."""

from pathlib import Path

import pytest

from modeling_mtl.formats import doccano, label_studio, prodigy
from modeling_mtl.spans import ConversionReport, SpanError, records_to_columns

FIXTURES = Path(__file__).parent / "fixtures" / "span_formats"


def convert(path, **policies):
    report = ConversionReport()
    columns = records_to_columns(label_studio.read(path, report), report, **policies)
    rows = [(label, list(zip(words, tags))) for label, words, tags in
            zip(columns["sentence_label"], columns["words"], columns["tags"])]
    return rows, report


def test_the_json_export_reads_the_latest_annotation_repairs_offsets_and_counts_every_skip():
    rows, report = convert(FIXTURES / "label_studio.json")
    assert rows == [
        # Task 1: the cancelled (newest) and the older annotation skipped: annotation 13 read.
        ("atis_flight", [("fly", "O"), ("from", "O"), ("Boston", "B-city"), ("to", "O"), ("Denver", "B-city"),
                         ("tomorrow", "O")]),
        # Task 2: an emoji and a combining mark before the spans; offsets counted in UTF-16 units, proven by value.text.
        ("travel", [("😀", "O"), ("visit", "O"), ("Zu\u0308rich", "B-city"), ("with", "O"), ("Anna", "B-person")]),
        # Task 3: CRLF text, offsets counted on the text with "\n".
        ("atis_flight", [("first", "O"), ("line", "O"), ("fly", "O"), ("to", "O"), ("Paris", "B-city")]),
        ("greeting", [("hello", "O"), ("there", "O")]),  # no span: all O
        # Task 5: a label with a space; the relation result left out; no choice.
        (None, [("I", "O"), ("love", "O"), ("New", "B-big_city"), ("York", "I-big_city"), ("in", "O"), ("May", "O")]),
        ("travel", [("Boston's", "B-city"), ("harbour", "O")]),  # the edge inside Boston's: grown to the word
        ("atis_flight", [("fly", "O"), ("to", "O"), ("Rome", "B-city")]),  # Task 7: from its prediction
    ]  # Task 8 (no annotation, no prediction) skipped
    assert report.counts == {
        "cancelled_annotation_skipped": 1, "older_annotation_skipped": 1, "repaired_utf16_offsets": 2,
        "repaired_crlf_offsets": 1, "no_spans": 1, "label_spaces_replaced": 1, "ignored_result_type": 1,
        "expanded_to_word": 1, "read_from_predictions": 1, "unannotated_task_skipped": 1,
    }
    assert report.examples["unannotated_task_skipped"] == ["label_studio.json, task 8: no annotation and no prediction"]
    assert report.labels["big_city"] == "big city"


def test_a_span_edge_inside_a_word_can_be_refused():
    with pytest.raises(SpanError, match=r"label_studio.json, task 6.*Boston's"):
        convert(FIXTURES / "label_studio.json", edge_policy="refuse")


def test_overlapping_spans_are_refused_naming_both_or_the_longest_kept():
    with pytest.raises(SpanError, match=r"task 1.*New York.*York City|task 1.*York City.*New York"):
        convert(FIXTURES / "label_studio_overlap.json")
    rows, report = convert(FIXTURES / "label_studio_overlap.json", overlap_policy="keep_longest")
    # "York City" (9 characters) outlasts "New York" (8).
    assert rows == [(None, [("fly", "O"), ("from", "O"), ("New", "O"), ("York", "B-place"), ("City", "I-place")])]
    assert report.counts["dropped_overlapping_span"] == 1


def test_json_min_gives_the_same_fields():
    rows, _ = convert(FIXTURES / "label_studio_min.json")
    assert rows == [("atis_flight", [("fly", "O"), ("to", "O"), ("Boston", "B-city")]), ("greeting", [("hello", "O")])]


def test_detection_tells_the_exports_apart(tmp_path):
    assert label_studio.detect(FIXTURES / "label_studio.json") and label_studio.detect(FIXTURES / "label_studio_min.json")
    for other in ("doccano_ner.jsonl", "prodigy.jsonl"):
        assert not label_studio.detect(FIXTURES / other), other
    (tmp_path / "broken.json").write_text("[{", encoding="utf-8")
    assert not label_studio.detect(tmp_path / "broken.json")
    assert not doccano.detect(FIXTURES / "label_studio.json") and not prodigy.detect(FIXTURES / "label_studio.json")


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"id": 3, "data": {"txt": "x"}, "annotations": []}]', "task 3, data: no text: 'text' is missing"),
        ('[{"id": 4, "data": {"text": "a b"}, "annotations": [{"result": [{"type": "labels", "value": '
         '{"start": 0, "end": 1, "text": "a", "labels": ["X", "Y"]}}]}]}]',
         r"task 4, result 1: 2 label values \['X', 'Y'\]"),
        ('[{"id": 5, "data": {"text": "a"}, "annotations": [{"result": [{"type": "labels", "value": {"start": 0}}]}]}]',
         "task 5, result 1: a labels result without end, labels"),
        ('[{"id": 6, "data": {"text": "a"},\n "annotations": [}]', r"bad.json:2: not valid JSON"),
    ],
)
def test_bad_exports_fail_naming_the_task(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        label_studio.read(path, ConversionReport())
