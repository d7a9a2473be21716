"""Span-annotated data: one module per annotation tool's export, in one table (`SPAN_FORMATS`).

Each module holds `NAME`, `SUFFIXES` (the file names it reads), `detect(path) -> bool` (a look at one file's
content) and `read(path, report) -> list[SpanRecord]` (texts, character spans, sentence labels, and where each comes
from). `spans.records_to_columns` turns the records into the canonical columns (words from `split_words`, IOB2
tags), counting every change and skipped item in one `ConversionReport`, which is logged per source.

A folder's files are split by name as for the other formats (train / dev / valid / validation / test); a folder
holding one file whose name names no split gives the train split. A file in which no record has an entity span
(a classification export) feeds the sentence head only: its tags are None, not all "O".

Adding a tool is one module here and one entry in `SPAN_FORMATS`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset, DatasetDict

from ..data_formats import FEATURES, SPLITS, folder_name, normalize_split_name
from ..spans import ConversionReport, records_to_columns
from . import doccano, label_studio, prodigy, rasa

logger = logging.getLogger(__name__)

# Detection tries them in this order: the most specific shapes first (Doccano's is the loosest).
SPAN_FORMATS = {module.NAME: module for module in (label_studio, prodigy, rasa, doccano)}


def _split_of(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    return normalize_split_name(stem) or next(
        (normalize_split_name(part) for part in stem.replace("-", "_").split("_") if normalize_split_name(part)), None
    )


def _candidate_files(root: Path, module=None) -> list[Path]:
    suffixes = module.SUFFIXES if module is not None else {s for m in SPAN_FORMATS.values() for s in m.SUFFIXES}
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def detect_span_format(data_dir: str | Path) -> str | None:
    """The span format of a folder's files (all must agree), or None when none of its files is span-annotated."""
    root = Path(data_dir)
    if not root.is_dir():
        return None
    found = {}
    for path in _candidate_files(root):
        name = next((name for name, module in SPAN_FORMATS.items() if path.suffix.lower() in module.SUFFIXES
                     and module.detect(path)), None)
        if name is not None:
            found[path.name] = name
    if len(set(found.values())) > 1:
        raise ValueError(f"{root}: files of several annotation formats ({found}); keep one format per folder, or "
                         "give each its own data source.")
    return next(iter(found.values()), None)


def _files_by_split(root: Path, module) -> dict[str, Path]:
    files = [path for path in _candidate_files(root, module) if module.detect(path)]
    if not files:
        raise ValueError(f"{root}: no {module.NAME} file ({', '.join(module.SUFFIXES)}) found.")
    if len(files) == 1 and _split_of(files[0]) is None:
        return {"train": files[0]}
    by_split = {}
    for path in files:
        split = _split_of(path)
        if split is None:
            raise ValueError(f"{path}: its name does not say whether it is train, validation or test "
                             "(several files in the folder: name each by its split).")
        if split in by_split:
            raise ValueError(f"{root}: two {split} files, {by_split[split].name} and {path.name}.")
        by_split[split] = path
    return by_split


def load_span_format(data_dir: str | Path, data_format: str, source_name: str | None = None, *,
                     edge_policy: str = "expand", overlap_policy: str = "refuse",
                     report: ConversionReport | None = None) -> DatasetDict:
    """Read a folder of `data_format` exports into the canonical schema; logs the conversion report.

    `report`, when given, receives the conversion counts (`inspect-data` shows them); a new one is used otherwise.
    """
    module = SPAN_FORMATS[data_format]
    root = Path(data_dir)
    report = ConversionReport() if report is None else report
    splits = {}
    for split, path in _files_by_split(root, module).items():
        records = module.read(path, report)
        columns = records_to_columns(records, report, edge_policy=edge_policy, overlap_policy=overlap_policy)
        if not any(any(tag != "O" for tag in tags) for tags in columns["tags"]):
            columns["tags"] = [None] * len(columns["tags"])
            logger.info("%s: no entity span in any record: it feeds the sentence head only.", path)
        columns["source"] = [source_name or folder_name(root)] * len(columns["text"])
        splits[split] = Dataset.from_dict(columns, features=FEATURES)
    if report.counts:
        logger.warning("%s (%s):\n%s", root, data_format, report.summary())
    return DatasetDict({split: splits[split] for split in SPLITS if split in splits})


__all__ = ["SPAN_FORMATS", "detect_span_format", "load_span_format"]
