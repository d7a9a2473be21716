"""Label Studio exports: the JSON export (a list of tasks), JSON-MIN, and tasks one per line (JSON Lines).

A task's text is `data.text` (JSON) or `text` (JSON-MIN). Its entity spans are the `labels` results
(`value.start`, `value.end`, `value.text`, `value.labels` with one label), its sentence label the one `choices`
result (`value.choices` with one choice). Other result types (relations, text areas, ratings) are counted and left
out. The span's `value.text` is checked against the offsets (`spans.py` repairs the UTF-16 offsets a browser counts).

Which annotation of a task is read: the most recent (`updated_at`, else `created_at`, else the last listed) that is
not cancelled (`was_cancelled`); the others are counted ("cancelled_annotation_skipped", "older_annotation_skipped").
A task with no usable annotation but with `predictions` (pre-annotations, such as `predict --output-format
label-studio` writes) is read from its most recent prediction, counted "read_from_predictions"; a task with neither
is skipped, "unannotated_task_skipped".

Writing (`write`): a JSON list of tasks in the shape Label Studio imports (its "Import pre-annotated data" guide),
one task per record, `{"id", "data": {"text"}, "annotations": [{"id", "result", "was_cancelled": false}]}` for gold
records, or with `model_version` given, `"predictions": [{"model_version", "score", "result"}]` (pre-annotations,
shown for review). Each span is a `labels` result `{"id", "from_name": "label", "to_name": "text", "type":
"labels", "value": {"start", "end", "text", "labels": [type]}}`, the sentence label a `choices` result
`{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [label]}}`; a prediction's
results and the prediction carry a `score` when scores are given. These names fit a labeling configuration such as

    <View>
      <Text name="text" value="$text"/>
      <Labels name="label" toName="text"> <Label value="fromloc.city_name"/> ... </Labels>
      <Choices name="intent" toName="text" choice="single"> <Choice value="atis_flight"/> ... </Choices>
    </View>

Offsets are written in UTF-16 code units, as the tool itself counts them in the browser (an emoji counts 2), with
the span's `value.text`: the records' spans are Python str offsets, converted here; reading the file back repairs
them through `value.text` ("repaired_utf16_offsets" in the report), giving the same words and tags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..spans import ConversionReport, Span, SpanRecord
from .common import first_json_record, one_value, read_json_records, require_dict, require_text

NAME = "label-studio"
SUFFIXES = (".json", ".jsonl")
SPAN_KEYS = ("start", "end", "labels")
SPAN_CONTROL = "label"
CLASS_CONTROL = "intent"
TEXT_OBJECT = "text"


def detect(path: Path) -> bool:
    record = first_json_record(path)
    if not isinstance(record, dict):
        return False
    if isinstance(record.get("data"), dict) and ("annotations" in record or "predictions" in record):
        return True
    return bool(_is_json_min(record))


def _is_json_min(record: dict) -> bool:
    """JSON-MIN: the text at top level, and each control's value under its own name (spans: dicts with start, end,
    labels)."""
    if not isinstance(record.get("text"), str):
        return False
    return any(
        isinstance(value, list) and value and all(isinstance(item, dict) and set(SPAN_KEYS) <= set(item) for item in value)
        for value in record.values()
    ) or {"annotation_id", "annotator"} & set(record)


def read(path: Path, report: ConversionReport) -> list[SpanRecord]:
    records = []
    for where, task in read_json_records(path, "task"):
        task = require_dict(task, where)
        where = f"{Path(path).name}, task {task['id']}" if "id" in task else where
        if isinstance(task.get("data"), dict):
            record = _read_task(task, where, report)
        else:
            record = _read_json_min(task, where)
        if record is not None:
            records.append(record)
    return records


def _most_recent(items: list[dict]) -> dict:
    def key(indexed):
        index, item = indexed
        return (str(item.get("updated_at") or item.get("created_at") or ""), index)

    return max(enumerate(items), key=key)[1]


def _read_task(task: dict, where: str, report: ConversionReport) -> SpanRecord | None:
    text = require_text(task["data"], "text", f"{where}, data")
    annotations = [require_dict(a, f"{where}, annotation") for a in task.get("annotations") or []]
    usable = [a for a in annotations if not a.get("was_cancelled")]
    for _ in range(len(annotations) - len(usable)):
        report.add("cancelled_annotation_skipped", where, "a cancelled annotation was not read")
    if usable:
        chosen = _most_recent(usable)
        for _ in range(len(usable) - 1):
            report.add("older_annotation_skipped", where, f"annotation {chosen.get('id', '?')} read, an older one not")
    else:
        predictions = [require_dict(p, f"{where}, prediction") for p in task.get("predictions") or []]
        if not predictions:
            report.add("unannotated_task_skipped", where, "no annotation and no prediction")
            return None
        chosen = _most_recent(predictions)
        report.add("read_from_predictions", where, "no annotation: read the most recent prediction")
    spans, sentence_label = [], None
    for number, result in enumerate(chosen.get("result") or [], 1):
        result_where = f"{where}, result {number}"
        result = require_dict(result, result_where)
        value = require_dict(result.get("value"), f"{result_where}, value")
        kind = result.get("type")
        if kind == "labels" or (kind is None and "labels" in value):
            spans.append(_span(value, result_where))
        elif kind == "choices" or (kind is None and "choices" in value):
            if sentence_label is not None:
                raise ValueError(f"{result_where}: a second choices result; a task takes one sentence label")
            sentence_label = one_value(value.get("choices"), result_where, "choice")
        else:
            report.add("ignored_result_type", result_where, f"result of type {kind!r} left out")
    return SpanRecord(text=text, spans=spans, sentence_label=sentence_label, where=where)


def _span(value: dict, where: str) -> Span:
    missing = [key for key in SPAN_KEYS if key not in value]
    if missing:
        raise ValueError(f"{where}: a labels result without {', '.join(missing)}")
    label = one_value(value["labels"], where, "label")
    if label is None:
        raise ValueError(f"{where}: a span with no label")
    return Span(start=value["start"], end=value["end"], label=label, text=value.get("text"))


def _read_json_min(task: dict, where: str) -> SpanRecord:
    text = require_text(task, "text", where)
    spans, choices = [], []
    for key, value in task.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) and set(SPAN_KEYS) <= set(item) for item in value):
            spans += [_span(item, f"{where}, {key}") for item in value]
        elif key not in ("text", "id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"):
            if isinstance(value, dict) and "choices" in value:
                value = value["choices"]
            if isinstance(value, (str, list)):
                choices.append((key, value))
    if len(choices) > 1:
        raise ValueError(f"{where}: several class fields {[key for key, _ in choices]}; a task takes one sentence label")
    sentence_label = one_value(choices[0][1], f"{where}, {choices[0][0]}", "choice") if choices else None
    return SpanRecord(text=text, spans=spans, sentence_label=sentence_label, where=where)


# --------------------------------------------------------------------------------------------------------------
# Writing


def utf16_offset(text: str, index: int) -> int:
    """The UTF-16 code-unit offset (what JavaScript counts) of Python str index `index` of `text`."""
    return index + sum(1 for char in text[:index] if ord(char) > 0xFFFF)


def _span_result(record: SpanRecord, span: Span, result_id: str, score: float | None) -> dict:
    value = {
        "start": utf16_offset(record.text, span.start),
        "end": utf16_offset(record.text, span.end),
        "text": record.text[span.start : span.end],
        "labels": [span.label],
    }
    result = {"id": result_id, "from_name": SPAN_CONTROL, "to_name": TEXT_OBJECT, "type": "labels", "value": value}
    return result if score is None else {**result, "score": float(score)}


def _choice_result(label: str, result_id: str, score: float | None) -> dict:
    result = {"id": result_id, "from_name": CLASS_CONTROL, "to_name": TEXT_OBJECT, "type": "choices",
              "value": {"choices": [label]}}
    return result if score is None else {**result, "score": float(score)}


def _results(record: SpanRecord, task_id: int, scores: tuple[float, Sequence[float]] | None) -> list[dict]:
    """The `labels` results of the record's spans (Python offsets, written as UTF-16) and its `choices` result."""
    sentence_score, span_scores = scores if scores is not None else (None, [None] * len(record.spans))
    if len(span_scores) != len(record.spans):
        raise ValueError(f"{record.where}: {len(span_scores)} span scores for {len(record.spans)} spans")
    results = [_span_result(record, span, f"{task_id}-span-{number}", score)
               for number, (span, score) in enumerate(zip(record.spans, span_scores), 1)]
    if record.sentence_label is not None:
        results.append(_choice_result(record.sentence_label, f"{task_id}-class", sentence_score))
    return results


def task_of(record: SpanRecord, task_id: int, *, model_version: str | None = None,
            scores: tuple[float, Sequence[float]] | None = None) -> dict:
    """One Label Studio task: the record as an annotation, or with `model_version` as a prediction; `scores` is
    `(sentence score, one score per span)` (written on the prediction and its results), or None."""
    for span in record.spans:
        if not 0 <= span.start <= span.end <= len(record.text):
            raise ValueError(f"{record.where}: span {span.start}-{span.end} ({span.label}) does not fit the text "
                             f"({len(record.text)} characters); spans must be Python str offsets")
    results = _results(record, task_id, scores)
    task = {"id": task_id, "data": {"text": record.text}}
    if model_version is None:
        task["annotations"] = [{"id": task_id, "result": results, "was_cancelled": False}]
        return task
    prediction = {"model_version": model_version, "result": results}
    if scores is not None:
        prediction["score"] = float(scores[0])
    task["predictions"] = [prediction]
    return task


def write(records: Sequence[SpanRecord], stream: TextIO, *, model_version: str | None = None,
          scores: Sequence[tuple[float, Sequence[float]]] | None = None) -> None:
    """Write the records as a JSON list of Label Studio tasks (ids from 1; see the module docstring): annotations,
    or with `model_version` predictions, with `scores[i]` = (sentence score, span scores) of record i when given."""
    if scores is not None and len(scores) != len(records):
        raise ValueError(f"{len(scores)} scores for {len(records)} records")
    tasks = [task_of(record, number, model_version=model_version, scores=None if scores is None else scores[number - 1])
             for number, record in enumerate(records, 1)]
    json.dump(tasks, stream, ensure_ascii=False, indent=1)
    stream.write("\n")
