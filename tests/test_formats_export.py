"""Writing span formats (modeling_mtl/formats/export.py and each format's `write`): Label Studio tasks checked
against the import format of Label Studio's documentation, round trips through every writer and reader, and
pre-annotations from a real `predict` read back as training data."""

import io
import json

import pytest

from modeling_mtl.data import DataSource, load_source
from modeling_mtl.decoding_mtl import bio_to_entities, split_words
from modeling_mtl.formats import SPAN_FORMATS, doccano, export, label_studio, rasa
from modeling_mtl.spans import ConversionReport, Span, SpanRecord, records_to_columns

FILE_NAMES = {"label-studio": "train.json", "doccano": "train.jsonl", "rasa": "train.yml"}

# Before the first span: an emoji (2 UTF-16 units) and "e" with a combining diaeresis (2 code points).
EMOJI_TEXT = "😀 Zu\u0308rich flights from Boston to New York"
RECORDS = [
    SpanRecord(EMOJI_TEXT, [Span(23, 29, "fromloc.city_name"), Span(33, 41, "toloc.city_name")], "atis_flight", "r1"),
    SpanRecord("book a table in Köln for two", [Span(16, 20, "city"), Span(25, 28, "party_size@booking")],
               "book_restaurant", "r2"),
    SpanRecord("hello there", [], "greet", "r3"),
]
EXPECTED = {
    "text": [EMOJI_TEXT, "book a table in Köln for two", "hello there"],
    "words": [["😀", "Zu\u0308rich", "flights", "from", "Boston", "to", "New", "York"],
              ["book", "a", "table", "in", "Köln", "for", "two"], ["hello", "there"]],
    "tags": [["O", "O", "O", "O", "B-fromloc.city_name", "O", "B-toloc.city_name", "I-toloc.city_name"],
             ["O", "O", "O", "O", "B-city", "O", "B-party_size@booking"], ["O", "O"]],
    "sentence_label": ["atis_flight", "book_restaurant", "greet"],
}


def read_back(path, output_format):
    report = ConversionReport()
    return records_to_columns(SPAN_FORMATS[output_format].read(path, report), report), report


def utf16_slice(text, start, end):
    """`text[start:end]` with the offsets counted in UTF-16 code units (as JavaScript counts)."""
    return text.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le")


# ---------------------------------------------------------------------------------------------- Label Studio schema
# Written from Label Studio's guide "Import pre-annotated data into Label Studio" (docs/source/guide/predictions.md)
# and its task format page: a JSON list of tasks; each task's `data` holds the value the labeling configuration's
# object tag names (`$text`); `annotations` / `predictions` hold a `result` list, predictions a `model_version`
# (string) and an optional `score`; each result has `id`, `from_name`, `to_name`, `type` and `value` (for text spans,
# type `labels` with `start`, `end`, `text`, `labels`; for a class, type `choices` with `choices`); IDs differ for
# every result. Scores are floats in [0, 1]. Offsets are JavaScript string offsets (UTF-16 code units).


def check_score(owner, where):
    if "score" in owner:
        score = owner["score"]
        assert isinstance(score, float) and 0.0 <= score <= 1.0, f"{where}: score {score!r}"


def check_result(result, text, where):
    for key in ("id", "from_name", "to_name", "type"):
        assert isinstance(result.get(key), str) and result[key], f"{where}: {key} {result.get(key)!r}"
    assert result["to_name"] == "text", where
    value = result["value"]
    assert isinstance(value, dict), where
    if result["type"] == "labels":
        assert result["from_name"] == label_studio.SPAN_CONTROL, where
        assert all(isinstance(value[key], int) for key in ("start", "end")), where
        assert 0 <= value["start"] < value["end"] <= len(text.encode("utf-16-le")) // 2, where
        assert utf16_slice(text, value["start"], value["end"]) == value["text"], where
        assert isinstance(value["labels"], list) and len(value["labels"]) == 1, where
        assert isinstance(value["labels"][0], str), where
    else:
        assert result["type"] == "choices" and result["from_name"] == label_studio.CLASS_CONTROL, where
        assert isinstance(value["choices"], list) and len(value["choices"]) == 1, where
    check_score(result, where)


def check_label_studio_tasks(tasks, kind):
    """Every check above; `kind` is "annotations" or "predictions". Returns the number of results checked."""
    assert isinstance(tasks, list) and tasks
    result_ids, checked = set(), 0
    for task in tasks:
        assert isinstance(task["data"], dict) and isinstance(task["data"]["text"], str)
        assert set(task) == {"id", "data", kind}
        assert isinstance(task[kind], list) and len(task[kind]) == 1
        for item in task[kind]:
            assert isinstance(item["result"], list)
            if kind == "predictions":
                assert isinstance(item["model_version"], str) and item["model_version"]
                check_score(item, f"task {task['id']}")
            else:
                assert item["was_cancelled"] is False
            for result in item["result"]:
                check_result(result, task["data"]["text"], f"task {task['id']}, result {result['id']}")
                assert result["id"] not in result_ids
                result_ids.add(result["id"])
                checked += 1
    return checked


def test_label_studio_gold_tasks_follow_the_documented_import_format_with_utf16_offsets(tmp_path):
    path = tmp_path / "train.json"
    export.write_records(RECORDS, path, "label-studio")
    tasks = json.loads(path.read_text(encoding="utf-8"))
    assert check_label_studio_tasks(tasks, "annotations") == 7
    first = tasks[0]["annotations"][0]["result"][0]["value"]
    # Python offsets 23-29; the emoji counts 2 UTF-16 units: Label Studio's own offsets.
    assert (first["start"], first["end"], first["text"]) == (24, 30, "Boston")
    assert tasks[2]["annotations"][0]["result"] == [
        {"id": "3-class", "from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": ["greet"]}}
    ]


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("output_format", sorted(export.WRITERS))
def test_every_writer_reads_back_to_the_same_text_words_tags_and_labels(tmp_path, output_format):
    path = tmp_path / FILE_NAMES[output_format]
    export.write_records(RECORDS, path, output_format)
    columns, report = read_back(path, output_format)
    assert columns == EXPECTED
    assert report.records == 3 and report.spans == 4
    # Only Label Studio's UTF-16 offsets are repaired (one per span of the emoji text), through value.text.
    repaired = {"repaired_utf16_offsets": 2} if output_format == "label-studio" else {}
    assert report.counts == {"no_spans": 1, **repaired}


@pytest.mark.parametrize("output_format", sorted(export.WRITERS))
def test_a_written_folder_is_detected_and_loads_like_the_records(tmp_path, output_format):
    export.write_records(RECORDS, tmp_path / FILE_NAMES[output_format], output_format)
    loaded = load_source(DataSource(data_dir=str(tmp_path)))
    assert list(loaded) == ["train"]
    assert {key: loaded["train"][key] for key in EXPECTED} == EXPECTED


def test_canonical_rows_become_records_of_the_joined_words_and_read_back_unchanged(tmp_path):
    rows = [
        {"words": ["fly", "from", "st.", "louis", "to", "dallas"], "sentence_label": "atis_flight",
         "tags": ["O", "O", "B-fromloc.city_name", "I-fromloc.city_name", "O", "B-toloc.city_name"]},
        {"words": ["I-only", "start"], "tags": ["I-x", "O"], "sentence_label": None},  # an I- opens an entity
        {"words": ["great", "movie"], "tags": None, "sentence_label": "positive"},
    ]
    records = export.rows_to_records(rows, "train")
    assert records[0] == SpanRecord("fly from st. louis to dallas", [
        Span(9, 18, "fromloc.city_name", "st. louis"), Span(22, 28, "toloc.city_name", "dallas")
    ], "atis_flight", "train, row 1")
    assert records[1].spans == [Span(0, 6, "x", "I-only")] and records[2].spans == []
    path = tmp_path / "train.json"
    export.write_records(records[:1], path, "label-studio")
    columns, _ = read_back(path, "label-studio")
    # The word splitter makes "st." two words; the entity keeps its text and offsets.
    assert columns["words"] == [["fly", "from", "st", ".", "louis", "to", "dallas"]]
    assert columns["tags"] == [["O", "O", "B-fromloc.city_name", "I-fromloc.city_name", "I-fromloc.city_name", "O",
                                "B-toloc.city_name"]]
    with pytest.raises(ValueError, match=r"train, row 1: 1 tags for 2 words"):
        export.rows_to_records([{"words": ["a", "b"], "tags": ["O"], "sentence_label": None}], "train")


def test_doccano_writes_the_sequence_labelling_shape_without_sentence_labels_and_reads_intent_shape_lists():
    stream = io.StringIO()
    doccano.write([SpanRecord("fly to Boston", [Span(7, 13, "city")], None, "r")], stream)
    assert stream.getvalue() == '{"text": "fly to Boston", "label": [[7, 13, "city"]]}\n'
    stream = io.StringIO()
    doccano.write([SpanRecord("fly to Boston", [Span(7, 13, "city")], "flight", "r"),
                   SpanRecord("hi", [], None, "s")], stream)
    assert stream.getvalue().splitlines() == [
        '{"text": "fly to Boston", "entities": [[7, 13, "city"]], "cats": ["flight"]}',
        '{"text": "hi", "entities": [], "cats": []}',
    ]


def test_rasa_writes_roles_groups_and_quotes_intents_yaml_would_misread():
    stream = io.StringIO()
    rasa.write([
        SpanRecord("to Boston", [Span(3, 9, "toloc.city_name")], "yes", "r1"),
        SpanRecord("in Köln (de)", [Span(3, 7, "city@1"), Span(8, 12, "paren name")], "null", "r2"),
        SpanRecord("fly to Rome", [Span(7, 11, "city")], "yes", "r3"),
    ], stream)
    assert stream.getvalue() == (
        'version: "3.1"\nnlu:\n'
        '- intent: "yes"\n  examples: |\n'
        '    - to [Boston]{"entity": "city_name", "role": "toloc"}\n'
        '    - fly to [Rome](city)\n'
        '- intent: "null"\n  examples: |\n'
        '    - in [Köln]{"entity": "city", "group": "1"} [(de)]{"entity": "paren name"}\n'
    )


def test_rasa_keep_order_gives_one_item_per_run_of_an_intent(tmp_path):
    records = [SpanRecord(text, [], intent, text) for text, intent in (("a", "x"), ("b", "y"), ("c", "x"))]
    path = tmp_path / "train.yml"
    export.write_records(records, path, "rasa", keep_order=True)
    assert path.read_text(encoding="utf-8").count("- intent:") == 3
    assert read_back(path, "rasa")[0]["text"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "record, message",
    [
        (SpanRecord("see [1] here", [], "x", "f, row 1"), r"f, row 1: the text holds '\['"),
        (SpanRecord("two\nlines", [], "x", "f, row 2"), r"f, row 2: the text holds '\\n'"),
        (SpanRecord("a]b c", [Span(0, 3, "t")], "x", "f, row 3"), r"f, row 3: span 0-3 \(t\) 'a]b' holds '\]'"),
        (SpanRecord("a b", [Span(0, 3, "t"), Span(2, 3, "u")], "x", "f, row 4"), r"f, row 4: span 2-3 \(u\) overlaps"),
        (SpanRecord("a b", [Span(1, 1, "t")], "x", "f, row 5"), r"f, row 5: span 1-1 \(t\) is empty"),
        (SpanRecord("a b", [Span(0, 1, "a.b.c")], "x", "f, row 6"), r"f, row 6: span 0-1 \(a.b.c\): the label"),
        (SpanRecord("a b", [], None, "f, row 7"), r"f, row 7: no sentence label"),
    ],
)
def test_rasa_refuses_what_its_markup_cannot_hold_naming_the_record(record, message):
    with pytest.raises(ValueError, match=message):
        rasa.write([record], io.StringIO())


def test_writing_an_unknown_format_names_the_writable_ones():
    with pytest.raises(ValueError, match=r"cannot write 'prodigy'.*\['doccano', 'label-studio', 'rasa'\]"):
        export.write_records(RECORDS, io.StringIO(), "prodigy")


# ---------------------------------------------------------------------------------------------- pre-annotations

PREDICT_TEXTS = ["😀 fly from Zu\u0308rich to Boston tomorrow", "Angela Merkel flew to Paris", "buy a new laptop",
                 ["pre", "split", "words", "here"]]


def entities_of(text, tags):
    """(type, start, end, word) of each entity of word tags over `split_words(text)`."""
    offsets = [(start, end) for _, start, end in split_words(text)]
    return [(e["entity_group"], e["start"], e["end"], e["word"])
            for e in bio_to_entities(text, tags, [1.0] * len(tags), offsets)]


def test_label_studio_pre_annotations_follow_the_documented_format(lively_model):
    predictions = lively_model.predict(PREDICT_TEXTS)
    stream = io.StringIO()
    export.write_pre_annotations(PREDICT_TEXTS, predictions, stream, "label-studio", model_version="tiny@0123abc")
    tasks = json.loads(stream.getvalue())
    entity_count = sum(len(p["entities"]) for p in predictions)
    assert check_label_studio_tasks(tasks, "predictions") == entity_count + len(PREDICT_TEXTS)
    for task, prediction in zip(tasks, predictions):
        (item,) = task["predictions"]
        assert item["model_version"] == "tiny@0123abc" and item["score"] == prediction["score"]
        assert [r["score"] for r in item["result"]] == [e["score"] for e in prediction["entities"]] + [item["score"]]
        assert item["result"][-1]["value"] == {"choices": [prediction["label"]]}
    assert tasks[3]["data"]["text"] == "pre split words here"  # a word list is joined as predict joins it


@pytest.mark.parametrize("output_format", sorted(export.WRITERS))
def test_pre_annotations_read_back_as_training_data_with_predicts_words_and_entities(
    lively_model, tmp_path, output_format
):
    predictions = lively_model.predict(PREDICT_TEXTS)
    assert sum(len(p["entities"]) for p in predictions) >= 3  # the check below has entities to compare
    export.write_pre_annotations(PREDICT_TEXTS, predictions, tmp_path / FILE_NAMES[output_format], output_format,
                                 model_version="tiny@0123abc")
    train = load_source(DataSource(data_dir=str(tmp_path)))["train"]
    texts = [text if isinstance(text, str) else " ".join(text) for text in PREDICT_TEXTS]
    assert train["text"] == texts
    assert train["words"] == [[word for word, _, _ in split_words(text)] for text in texts]
    assert train["sentence_label"] == [p["label"] for p in predictions]
    for text, tags, prediction in zip(texts, train["tags"], predictions):
        assert entities_of(text, tags) == [(e["entity_group"], e["start"], e["end"], e["word"])
                                           for e in prediction["entities"]]


def test_pre_annotations_need_grouped_entities(lively_model):
    predictions = lively_model.predict(PREDICT_TEXTS[:1], aggregation_strategy="none")
    with pytest.raises(ValueError, match=r"input, text 1: entities without 'entity_group'"):
        export.write_pre_annotations(PREDICT_TEXTS[:1], predictions, io.StringIO(), "doccano", model_version="v")
