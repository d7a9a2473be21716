"""What the span-format readers share: reading a UTF-8 file, JSON and JSON Lines with errors that name the file and
line, and the one-value checks (one label per span, one class per text) whose failures name the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark removed); bytes that are not UTF-8 are an error naming
    the file, the 1-based line and the column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line}: not valid UTF-8 (byte {data[error.start]:#04x} at column {error.start - line_start + 1}); "
            "save the file as UTF-8."
        ) from None


def read_json_records(path: Path, record_name: str = "record") -> list[tuple[str, Any]]:
    """`(where, record)` for each record of a JSON file holding a list, or of a JSON Lines file (one record a
    non-blank line); `where` is "<file name>, <record_name> <n>" (n from 1) or "<file name>, line <n>"."""
    path = Path(path)
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of {record_name}s, got {type(records).__name__}")
        return [(f"{path.name}, {record_name} {index}", record) for index, record in enumerate(records, 1)]
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path.name}, line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}, column {error.colno})") from None
    return out


def first_json_record(path: Path) -> Any:
    """The first record of a JSON list or JSON Lines file, for format detection; None when the file holds neither."""
    try:
        text = read_text(path)
    except (OSError, ValueError):
        return None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(text)
            return records[0] if records else None
        line = next((line for line in text.split("\n") if line.strip()), None)
        return json.loads(line) if line is not None else None
    except (json.JSONDecodeError, IndexError, TypeError):
        return None


def require_dict(record: Any, where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def require_text(record: dict, key: str, where: str) -> str:
    text = record.get(key)
    if not isinstance(text, str):
        raise ValueError(f"{where}: no text: {key!r} is {'missing' if text is None else type(text).__name__}")
    return text


def one_value(values: Any, where: str, what: str) -> str | None:
    """The single value of a list of labels (None for an empty list); several are refused: one head, one label."""
    if values is None:
        return None
    if isinstance(values, str):
        return values
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise ValueError(f"{where}: {what} must be a string or a list of strings, got {values!r}")
    if len(values) > 1:
        raise ValueError(
            f"{where}: {len(values)} {what} values {values!r}; each text or span takes one (the heads are single-label)"
        )
    return values[0] if values else None
