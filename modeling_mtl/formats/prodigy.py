"""Prodigy (and spaCy-style) JSON Lines: `{"text", "spans": [{"start", "end", "label"}], "answer"}`, one text a line.

The sentence label is the text's `label` when the answer accepts it (a classification task), or the one option id
in `accept` (a choice task). Records answered `reject` or `ignore` are skipped and counted
("rejected_record_skipped", "ignored_record_skipped"): a rejected classification says what the text is not, which
a single-label head cannot learn. A span's own `text`, where Prodigy stores it, is checked against its offsets.
"""

from __future__ import annotations

from pathlib import Path

from ..spans import ConversionReport, Span, SpanRecord
from .common import first_json_record, one_value, read_json_records, require_dict, require_text

NAME = "prodigy"
SUFFIXES = (".jsonl", ".json")
SKIPPED_ANSWERS = {"reject": "rejected_record_skipped", "ignore": "ignored_record_skipped"}


def detect(path: Path) -> bool:
    record = first_json_record(path)
    return (
        isinstance(record, dict)
        and isinstance(record.get("text"), str)
        and ("spans" in record or "answer" in record or "_task_hash" in record)
    )


def read(path: Path, report: ConversionReport) -> list[SpanRecord]:
    records = []
    for where, row in read_json_records(path, "record"):
        row = require_dict(row, where)
        text = require_text(row, "text", where)
        answer = row.get("answer", "accept")
        if answer in SKIPPED_ANSWERS:
            report.add(SKIPPED_ANSWERS[answer], where, f"answer {answer!r}")
            continue
        if answer != "accept":
            raise ValueError(f"{where}: answer {answer!r}; expected 'accept', 'reject' or 'ignore'")
        spans = []
        for number, span in enumerate(row.get("spans") or [], 1):
            span = require_dict(span, f"{where}, span {number}")
            missing = [key for key in ("start", "end", "label") if key not in span]
            if missing:
                raise ValueError(f"{where}, span {number}: no {', '.join(missing)}")
            spans.append(Span(start=span["start"], end=span["end"], label=span["label"], text=span.get("text")))
        sentence_label = None
        if row.get("accept"):
            sentence_label = one_value([str(choice) for choice in row["accept"]], f"{where}, accept", "accepted option")
        elif isinstance(row.get("label"), str):
            sentence_label = row["label"]
        records.append(SpanRecord(text=text, spans=spans, sentence_label=sentence_label, where=where))
    return records
