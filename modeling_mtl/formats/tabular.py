"""CSV (with a header) and JSON Lines files with a text (or tokens) column and a label and/or tags column; which
columns hold what is the source's column options (`formats.columns`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import DatasetDict

from .columns import ColumnMapping, warn_unlabelled
from .common import dataset_dict, files_in, read_lines, read_text, require_dir, split_files, split_from_filename

if TYPE_CHECKING:
    from ..data import DataSource

NAMES = ("csv", "jsonl")
DETECTION = "*.csv (csv), *.jsonl (jsonl)"


def found_in(root: Path, data_format: str) -> bool:
    """Whether the folder holds `*.csv` (`data_format` "csv") or `*.jsonl` ("jsonl") files."""
    return any(path.suffix.lower() == f".{data_format}" for path in files_in(root))


def load(data_dir: str | Path, data_format: str, source: DataSource) -> DatasetDict:
    """Load `*.csv` (comma-separated, with a header) or `*.jsonl` (one JSON object per line) files.

    Files map to splits by name (`*train*`, `*dev*`/`*valid*`, `*test*`). Columns are read as described by the
    column options of `source` (defaults: text in "text", sentence label in "label").

    Raises:
        ValueError: naming the file (and line) for a missing column, a line that is not a JSON object, or an
            invalid value.
    """
    root = require_dir(data_dir)
    suffix = f".{data_format}"
    files = split_files(root, [p for p in files_in(root) if p.suffix.lower() == suffix], split_from_filename)
    columns = {}
    for split, path in files.items():
        rows, wheres, names = read_csv(path) if data_format == "csv" else read_jsonl(path)
        if not rows:
            raise ValueError(f"{path}: no examples.")
        mapping = ColumnMapping.resolve(source, names, {}, str(path))
        converted = [mapping.convert(row, where) for row, where in zip(rows, wheres)]
        warn_unlabelled(converted, wheres, str(path))
        columns[split] = {key: [row[key] for row in converted] for key in ("text", "words", "tags", "sentence_label")}
    return dataset_dict(columns, source.name)


def read_csv(path: Path) -> tuple[list[dict], list[str], list[str]]:
    """Rows of a CSV file with a header. A row with more or fewer fields than the header is an error naming the
    line (an unquoted comma inside a text would otherwise shift the label silently)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    rows, wheres = [], []
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            extra = row.get(None, [])
            missing = sum(1 for key, value in row.items() if key is not None and value is None)
            if extra or missing:
                fields = len(reader.fieldnames) + len(extra) - missing
                raise ValueError(
                    f"{where}: {fields} fields for the {len(reader.fieldnames)} columns of the header "
                    f"({', '.join(map(repr, reader.fieldnames))}); quote a text that holds a comma."
                )
            rows.append(row)
            wheres.append(where)
    except csv.Error as error:
        raise ValueError(f"{path}:{reader.line_num}: not valid CSV ({error}).") from None
    return rows, wheres, list(reader.fieldnames or [])


def read_jsonl(path: Path) -> tuple[list[dict], list[str], list[str]]:
    rows, wheres, names = [], [], {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}).") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}.")
        rows.append(row)
        wheres.append(f"{path}:{number}")
        names.update(dict.fromkeys(row))
    return rows, wheres, list(names)
