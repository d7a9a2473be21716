"""Doccano JSON Lines exports: sequence labelling and text classification, one text a line.

    {"text": "fly to Boston", "label": [[7, 13, "city"]]}                          sequence labelling (older export)
    {"text": "fly to Boston", "entities": [{"start_offset": 7, "end_offset": 13, "label": "city"}]}   (newer)
    {"text": "fly to Boston", "label": ["book_flight"]}                           text classification
    {"text": "...", "entities": [...], "cats": ["book_flight"]}                   both (`cats`: strings or {"label"})
    {"text": "fly to Boston", "entities": [[7, 13, "city"]], "cats": ["book_flight"]}   (intent detection and
                                                                                   slot filling projects)

Offsets are taken as given (the export carries no span text to check them against): Python str offsets (Doccano's
server counts in code points). Relations are left out and counted ("ignored_relations").

Writing (`write`): one JSON line per record, in the intent detection and slot filling shape
`{"text", "entities": [[start, end, type], ...], "cats": [label]}` when any record has a sentence label (a record
without one gets `"cats": []`), else in the sequence labelling shape `{"text", "label": [[start, end, type], ...]}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..spans import ConversionReport, Span, SpanRecord
from .common import first_json_record, one_value, read_json_records, require_dict, require_text

NAME = "doccano"
SUFFIXES = (".jsonl", ".json")


def detect(path: Path) -> bool:
    record = first_json_record(path)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "spans" in record:
        return False
    label = record.get("label")
    return "entities" in record or "cats" in record or isinstance(label, list)


def read(path: Path, report: ConversionReport) -> list[SpanRecord]:
    records = []
    for where, row in read_json_records(path, "record"):
        row = require_dict(row, where)
        text = require_text(row, "text", where)
        spans, categories = [], []
        label = row.get("label")
        if isinstance(label, list) and label and all(isinstance(item, list) for item in label):
            spans += [_span(item, f"{where}, label {number}") for number, item in enumerate(label, 1)]
        elif label is not None:
            categories.append(("label", label))
        for number, entity in enumerate(row.get("entities") or [], 1):
            if not isinstance(entity, list):
                entity = require_dict(entity, f"{where}, entity {number}")
                entity = [entity.get("start_offset"), entity.get("end_offset"), entity.get("label")]
            spans.append(_span(entity, f"{where}, entity {number}"))
        if "cats" in row:
            cats = [cat.get("label") if isinstance(cat, dict) else cat for cat in row["cats"] or []]
            categories.append(("cats", cats))
        if len(categories) > 1:
            raise ValueError(f"{where}: both 'label' and 'cats' hold classes; a text takes one sentence label")
        sentence_label = one_value(categories[0][1], f"{where}, {categories[0][0]}", "class") if categories else None
        if row.get("relations"):
            report.add("ignored_relations", where, f"{len(row['relations'])} relations left out")
        records.append(SpanRecord(text=text, spans=spans, sentence_label=sentence_label, where=where))
    return records


def _span(item: list, where: str) -> Span:
    if len(item) != 3 or item[2] is None:
        raise ValueError(f"{where}: a span must be [start, end, label], got {item!r}")
    return Span(start=item[0], end=item[1], label=item[2])


def _row(record: SpanRecord, with_classes: bool) -> dict:
    spans = [[span.start, span.end, span.label] for span in record.spans]
    if not with_classes:
        return {"text": record.text, "label": spans}
    cats = [] if record.sentence_label is None else [record.sentence_label]
    return {"text": record.text, "entities": spans, "cats": cats}


def write(records: Sequence[SpanRecord], stream: TextIO) -> None:
    """Write the records as Doccano JSON Lines (Python str offsets; the shape: see the module docstring)."""
    with_classes = any(record.sentence_label is not None for record in records)
    for record in records:
        stream.write(json.dumps(_row(record, with_classes), ensure_ascii=False) + "\n")
