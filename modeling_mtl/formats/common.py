"""What the format readers share: the canonical schema (`FEATURES`, `SPLITS`), split names from folder and file
names, reading UTF-8 text, lines, JSON and JSON Lines with errors that name the file and line, the BIO tag check,
building the canonical splits, and the one-value checks of the span formats (one label per span, one class per
text) whose failures name the record."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, Features, Value

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
"""Canonical split names, in order."""

FEATURES = Features(
    {
        "text": Value("string"),
        "words": datasets.Sequence(Value("string")),
        "tags": datasets.Sequence(Value("string")),
        "sentence_label": Value("string"),
        "source": Value("string"),
    }
)
"""Features of the canonical example schema."""

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
# Substrings of a file name that give its split (`wnut17train.conll`, `emerging.dev.conll`, `sst_valid.csv`).
SPLIT_KEYWORDS = {"train": "train", "dev": "validation", "valid": "validation", "test": "test"}
BIO_TAG = re.compile(r"O|[BI]-\S+")


def normalize_split_name(name: str) -> str | None:
    """Map a split name (`train`, `dev`, `valid`, `validation`, `test`, ...) to one of `SPLITS`, or None."""
    return SPLIT_ALIASES.get(name.strip().lower())


def split_from_filename(path: Path) -> str | None:
    """The split a file name refers to (`wnut17train.conll` -> train), or None; ambiguous names are an error."""
    lowered = path.name.lower()
    splits = {split for keyword, split in SPLIT_KEYWORDS.items() if keyword in lowered}
    if len(splits) > 1:
        raise ValueError(f"{path}: the file name matches several splits ({', '.join(sorted(splits))}); rename it.")
    return splits.pop() if splits else None


def assign_split(files: dict[str, Path], split: str, path: Path) -> None:
    if split in files:
        raise ValueError(f"Both {files[split]} and {path} hold the {split} split; keep one.")
    files[split] = path


def folder_name(data_dir: str | Path) -> str:
    """A data folder's name (the default name of its source)."""
    return Path(os.path.abspath(data_dir)).name


def require_dir(data_dir: str | Path) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {root} does not exist or is not a folder.")
    return root


def files_in(root: Path) -> list[Path]:
    """The files of a folder (not hidden ones), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def split_files(root: Path, candidates: Iterable[Path], split_of: Callable[[Path], str | None]) -> dict[str, Path]:
    """Candidate files by split; files that name no split are skipped with a warning."""
    files: dict[str, Path] = {}
    for path in candidates:
        split = split_of(path)
        if split is None:
            logger.warning("Skipping %s: its name does not say whether it is train, validation or test.", path)
            continue
        assign_split(files, split, path)
    if not files:
        raise ValueError(f"No train/validation/test files found in {root}.")
    return files


def dataset_dict(columns_by_split: Mapping[str, Mapping[str, list]], source_name: str) -> DatasetDict:
    """Canonical-schema splits (in `SPLITS` order) from their columns; `source` is filled with `source_name`."""
    out = {}
    for split in SPLITS:
        if split in columns_by_split:
            columns = dict(columns_by_split[split])
            columns["source"] = [source_name] * len(columns["text"])
            out[split] = Dataset.from_dict(columns, features=FEATURES)
    return DatasetDict(out)


def check_bio(tag: str, where: str) -> None:
    if not BIO_TAG.fullmatch(tag):
        raise ValueError(f"{where}: tag {tag!r} is not a BIO tag (expected 'O', 'B-<type>' or 'I-<type>').")


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


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (leading byte-order mark, line ends and one final newline removed)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


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
