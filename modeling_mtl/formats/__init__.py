"""Every local data format, one module each, in one table (`FORMATS`), with folder detection and loading.

Word formats (`jointbert`, `conll`, `sst2`, `tabular` for csv and jsonl) hold words with tags, or texts with labels;
each module has `NAME` (or `NAMES`), `DETECTION` (what detection looks for, listed when nothing matches),
`found_in(root)` and `load(...) -> DatasetDict`. `columns` maps the column options of csv, jsonl and Hub sources.

Span formats (annotation-tool exports: `label_studio`, `doccano`, `prodigy`, `rasa`) hold texts with character spans;
each module has `NAME`, `SUFFIXES` (the file names it reads), `detect(path) -> bool` (a look at one file's content)
and `read(path, report) -> list[SpanRecord]` (texts, spans, sentence labels, and where each comes from), and those
that can be written a `write` (`formats.export`). `spans.records_to_columns` turns the records into the canonical
columns (words from `split_words`, IOB2 tags), counting every change and skipped item in one `ConversionReport`,
which is logged per source. A span folder's files are split by name as for the other formats (train / dev / valid /
validation / test); a folder holding one file whose name names no split gives the train split. A file in which no
record has an entity span (a classification export) feeds the sentence head only: its tags are None, not all "O".

Adding a format is one module here and one row in `FORMATS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset, DatasetDict

from ..spans import ConversionReport, records_to_columns
from . import conll, doccano, jointbert, label_studio, prodigy, rasa, sst2, tabular
from .common import FEATURES, SPLITS, files_in, folder_name, normalize_split_name, require_dir

if TYPE_CHECKING:
    from ..data import DataSource

logger = logging.getLogger(__name__)

# Span-format detection tries them in this order: the most specific shapes first (Doccano's is the loosest).
SPAN_FORMATS = {module.NAME: module for module in (label_studio, prodigy, rasa, doccano)}


@dataclass(frozen=True)
class DataFormat:
    """One row of `FORMATS`: how a folder of this format is recognised and read."""

    name: str
    found_in: Callable[[Path], bool]
    """Whether a folder holds this format (word formats; span formats are detected file by file)."""
    load: Callable[[DataSource, ConversionReport | None], DatasetDict]
    """The source's folder in the canonical schema."""
    column_options: bool = False
    """Whether `text_column`, `tokens_column`, `sentence_label_column`, `tags_column` apply."""
    last_resort: bool = False
    """Detected only when no other word format matches (CoNLL's shape is loose)."""


def _span_format(name: str) -> DataFormat:
    def load(source: DataSource, report: ConversionReport | None) -> DatasetDict:
        return load_span_format(source.data_dir, name, source.name, edge_policy=source.edge_policy,
                                overlap_policy=source.overlap_policy, report=report)

    return DataFormat(name, lambda root: detect_span_format(root) == name, load)


def _tabular_format(name: str) -> DataFormat:
    return DataFormat(name, lambda root: tabular.found_in(root, name),
                      lambda source, report: tabular.load(source.data_dir, name, source), column_options=True)


FORMATS: dict[str, DataFormat] = {row.name: row for row in (
    DataFormat(jointbert.NAME, jointbert.found_in, lambda source, report: jointbert.load(source.data_dir, source.name)),
    DataFormat(sst2.NAME, sst2.found_in, lambda source, report: sst2.load(source.data_dir, source.name)),
    *(_tabular_format(name) for name in tabular.NAMES),
    DataFormat(conll.NAME, conll.found_in, lambda source, report: conll.load(source.data_dir, source.name),
               last_resort=True),
    *(_span_format(name) for name in SPAN_FORMATS),
)}
"""Every local format by name: the word formats, then the span formats (`SPAN_FORMATS`)."""

WORD_FORMATS = tuple(name for name in FORMATS if name not in SPAN_FORMATS)
"""The formats of words with tags or texts with labels: jointbert, sst2, csv, jsonl, conll."""


def detect_format(data_dir: str | Path) -> str:
    """The format of a local data folder, a key of `FORMATS`.

    Span formats first (every span-annotated file must agree, `detect_span_format`), then the word formats:
    "jointbert" (`<split>/seq.in` sub-folders), "sst2" (`stsa.binary.<split>` files), "csv" (`*.csv` files),
    "jsonl" (`*.jsonl` files), and only when none of those matches "conll" (files whose names contain
    train/dev/valid/test and whose first token line is CoNLL columns, tag last: `conll.looks_like_conll`).

    Raises:
        FileNotFoundError: if `data_dir` is not a folder.
        ValueError: if no format or several formats match.
    """
    root = require_dir(data_dir)
    span_format = detect_span_format(root)
    if span_format is not None:
        return span_format
    word_formats = [FORMATS[name] for name in WORD_FORMATS]
    found = [row.name for row in word_formats if not row.last_resort and row.found_in(root)]
    found = found or [row.name for row in word_formats if row.last_resort and row.found_in(root)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{root} matches several formats ({', '.join(found)}); set data_format.")
    listing = ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(root.iterdir())) or "nothing"
    looked_for = [jointbert.DETECTION, sst2.DETECTION, tabular.DETECTION, conll.DETECTION,
                  "annotation-tool exports (" + ", ".join(f"{name}: {', '.join(module.SUFFIXES)}"
                                                  for name, module in SPAN_FORMATS.items()) + ")"]
    raise ValueError(f"Cannot detect the data format of {root}. Looked for {', '.join(looked_for)}; found {listing}.")


def load_folder(source: DataSource, data_format: str, report: ConversionReport | None = None) -> DatasetDict:
    """Read the folder of `source` as `data_format` (a key of `FORMATS`) into the canonical schema; `report`
    receives the span conversion counts of a span format."""
    row = FORMATS[data_format]
    if source.has_column_options and not row.column_options:
        raise ValueError(f"Column options only apply to csv, jsonl and Hub sources, not to {source.data_dir} "
                         f"({data_format}): its fields are fixed.")
    return row.load(source, report)


def _split_of(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    return normalize_split_name(stem) or next(
        (normalize_split_name(part) for part in stem.replace("-", "_").split("_") if normalize_split_name(part)), None
    )


def _candidate_files(root: Path, module=None) -> list[Path]:
    suffixes = module.SUFFIXES if module is not None else {s for m in SPAN_FORMATS.values() for s in m.SUFFIXES}
    return [path for path in files_in(root) if path.suffix.lower() in suffixes]


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


__all__ = ["FORMATS", "SPAN_FORMATS", "WORD_FORMATS", "DataFormat", "detect_format", "detect_span_format", "load_folder",
           "load_span_format"]
