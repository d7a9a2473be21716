"""Data loading, label maps, tokenisation and collation for the multi-task model.

Every source is loaded into one canonical schema (a `datasets.DatasetDict` with splits `train`, `validation`,
`test`), with one row per example:

- `text` (`str`): the original text (`" ".join(words)` for pre-tokenised sources),
- `words` (`list[str]`): the words the token labels refer to (`split_words(text)` for raw-text sources),
- `tags` (`list[str] | None`): one BIO tag per word, or None when the source has no token labels,
- `sentence_label` (`str | None`): the sentence label, or None when the source has no sentence labels,
- `source` (`str`): the short name of the source the example comes from.

Sources are described by `DataSource` and loaded with `load_source` / `load_sources`: local folders in JointBERT,
CoNLL, SST-2, CSV or JSON Lines format (see `detect_format`), or Hugging Face Hub datasets. Label maps come from
the training split only (`build_label_maps`); labels that only occur in validation/test are counted and reported
(`count_unseen_labels`), never dropped. `encode_dataset_dict` tokenises with word alignment and
`MultiTaskCollator` pads batches for both heads.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, LargeList, Value

from .decoding_mtl import split_words

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
"""Canonical split names, in order."""

FORMATS = ("jointbert", "conll", "sst2", "csv", "jsonl")
"""Local folder formats understood by `load_source` (see `detect_format`)."""

IGNORE_INDEX = -100
"""Label id ignored by the losses and the metrics (PyTorch's `CrossEntropyLoss` default)."""

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

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
"""Encoder inputs padded by `MultiTaskCollator` (`token_type_ids` only when the tokenizer produces them)."""

_SPLIT_ALIASES = {
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
_SPLIT_KEYWORDS = {"train": "train", "dev": "validation", "valid": "validation", "test": "test"}
_BIO_TAG = re.compile(r"O|[BI]-\S+")
_BOM = "\ufeff"
_TABULAR_FORMATS = ("csv", "jsonl")
_SST2_PREFIX = "stsa.binary."


@dataclass
class DataSource:
    """Where one data source comes from and how to read it.

    Give exactly one of `data_dir` (a local folder) and `dataset_name` (a Hugging Face Hub dataset id).

    Args:
        data_dir: Local folder in one of `FORMATS`.
        data_format: Format of `data_dir`; None detects it (`detect_format`).
        dataset_name: Hub dataset id, loaded with `datasets.load_dataset(dataset_name, dataset_config_name)`.
        dataset_config_name: Hub dataset configuration.
        text_column: Column holding raw text, split into words with `split_words` (csv, jsonl and Hub sources;
            default "text" when `tokens_column` is not given).
        tokens_column: Column holding a list of words (jsonl and Hub sources), instead of `text_column`.
        sentence_label_column: Column holding the sentence label (csv, jsonl and Hub sources; default "label",
            used when the data has such a column).
        tags_column: Column holding one BIO tag per word of `tokens_column` (jsonl and Hub sources).
        name: Short source name written in the `source` column; defaults to the folder name, or to
            `dataset_name` (with `/dataset_config_name` when given).
    """

    data_dir: str | None = None
    data_format: str | None = None
    dataset_name: str | None = None
    dataset_config_name: str | None = None
    text_column: str | None = None
    tokens_column: str | None = None
    sentence_label_column: str | None = None
    tags_column: str | None = None
    name: str | None = None

    def __post_init__(self):
        if (self.data_dir is None) == (self.dataset_name is None):
            raise ValueError(
                "A DataSource needs exactly one of data_dir (a local folder) and dataset_name (a Hub dataset id); "
                f"got data_dir={self.data_dir!r}, dataset_name={self.dataset_name!r}."
            )
        if self.data_format is not None:
            if self.data_dir is None:
                raise ValueError("data_format only applies to a data_dir source.")
            if self.data_format not in FORMATS:
                raise ValueError(f"Unknown data_format {self.data_format!r}; expected one of {', '.join(FORMATS)}.")
        if self.dataset_config_name is not None and self.dataset_name is None:
            raise ValueError("dataset_config_name only applies to a dataset_name source.")
        if self.text_column is not None and self.tokens_column is not None:
            raise ValueError("Give text_column (raw text) or tokens_column (a list of words), not both.")
        if self.tags_column is not None and self.tokens_column is None:
            raise ValueError("tags_column needs tokens_column: word-level tags need the words they label.")
        if self.name is None:
            if self.data_dir is not None:
                self.name = _folder_name(self.data_dir)
            elif self.dataset_config_name is not None:
                self.name = f"{self.dataset_name}/{self.dataset_config_name}"
            else:
                self.name = self.dataset_name

    @property
    def has_column_options(self) -> bool:
        """Whether any of the column options is set."""
        columns = (self.text_column, self.tokens_column, self.sentence_label_column, self.tags_column)
        return any(column is not None for column in columns)


# --------------------------------------------------------------------------------------------------------------
# Small helpers


def normalize_split_name(name: str) -> str | None:
    """Map a split name (`train`, `dev`, `valid`, `validation`, `test`, ...) to one of `SPLITS`, or None."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def _split_from_filename(path: Path) -> str | None:
    """The split a file name refers to (`wnut17train.conll` -> train), or None; ambiguous names are an error."""
    lowered = path.name.lower()
    splits = {split for keyword, split in _SPLIT_KEYWORDS.items() if keyword in lowered}
    if len(splits) > 1:
        raise ValueError(f"{path}: the file name matches several splits ({', '.join(sorted(splits))}); rename it.")
    return splits.pop() if splits else None


def _assign_split(files: dict[str, Path], split: str, path: Path) -> None:
    if split in files:
        raise ValueError(f"Both {files[split]} and {path} hold the {split} split; keep one.")
    files[split] = path


def _read_text(path: Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark removed); bytes that are not UTF-8 are an error naming
    the file, the 1-based line and the column."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line}: not valid UTF-8 (byte {data[error.start]:#04x} at column {error.start - line_start + 1}); "
            "save the file as UTF-8."
        ) from None


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (leading byte-order mark, line ends and one final newline removed)."""
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _check_bio(tag: str, where: str) -> None:
    if not _BIO_TAG.fullmatch(tag):
        raise ValueError(f"{where}: tag {tag!r} is not a BIO tag (expected 'O', 'B-<type>' or 'I-<type>').")


def _folder_name(data_dir: str | Path) -> str:
    return Path(os.path.abspath(data_dir)).name


def _dataset_dict(columns_by_split: Mapping[str, Mapping[str, list]], source_name: str) -> DatasetDict:
    """Canonical-schema splits (in `SPLITS` order) from their columns; `source` is filled with `source_name`."""
    out = {}
    for split in SPLITS:
        if split in columns_by_split:
            columns = dict(columns_by_split[split])
            columns["source"] = [source_name] * len(columns["text"])
            out[split] = Dataset.from_dict(columns, features=FEATURES)
    return DatasetDict(out)


def _files_in(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def _require_dir(data_dir: str | Path) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {root} does not exist or is not a folder.")
    return root


def _split_files(root: Path, candidates: Iterable[Path], split_of: Callable[[Path], str | None]) -> dict[str, Path]:
    """Candidate files by split; files that name no split are skipped with a warning."""
    files: dict[str, Path] = {}
    for path in candidates:
        split = split_of(path)
        if split is None:
            logger.warning("Skipping %s: its name does not say whether it is train, validation or test.", path)
            continue
        _assign_split(files, split, path)
    if not files:
        raise ValueError(f"No train/validation/test files found in {root}.")
    return files


# --------------------------------------------------------------------------------------------------------------
# Format detection


def _looks_like_conll(path: Path) -> bool:
    """Whether the first non-blank line of `path` is `token<TAB>BIO-tag`."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                content = line.strip().strip(_BOM).strip()
                if content:
                    fields = content.split("\t")
                    return len(fields) >= 2 and _BIO_TAG.fullmatch(fields[-1].strip()) is not None
    except UnicodeDecodeError:
        return False
    return False


def detect_format(data_dir: str | Path) -> str:
    """Detect the format of a local data folder.

    Returns:
        One of `FORMATS`: "jointbert" (`<split>/seq.in` sub-folders), "sst2" (`stsa.binary.<split>` files),
        "csv" (`*.csv` files), "jsonl" (`*.jsonl` files) or "conll" (files whose names contain train/dev/valid/test
        and whose first line is `token<TAB>tag`).

    Raises:
        ValueError: if no format or several formats match.
    """
    root = _require_dir(data_dir)
    files = _files_in(root)
    found = []
    if any((child / "seq.in").is_file() for child in root.iterdir() if child.is_dir()):
        found.append("jointbert")
    if any(p.name.startswith(_SST2_PREFIX) for p in files):
        found.append("sst2")
    if any(p.suffix.lower() == ".csv" for p in files):
        found.append("csv")
    if any(p.suffix.lower() == ".jsonl" for p in files):
        found.append("jsonl")
    if not found and any(_split_from_filename(p) and _looks_like_conll(p) for p in files):
        found.append("conll")
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{root} matches several formats ({', '.join(found)}); set data_format.")
    listing = ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(root.iterdir())) or "nothing"
    raise ValueError(
        f"Cannot detect the data format of {root}. Looked for <split>/seq.in (jointbert), "
        f"{_SST2_PREFIX}<split> (sst2), *.csv (csv), *.jsonl (jsonl) and files named *train*/*dev*/*valid*/*test* "
        f"whose first line is token<TAB>tag (conll); found {listing}."
    )


# --------------------------------------------------------------------------------------------------------------
# Local loaders


def load_jointbert(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
    """Load a JointBERT folder: `<split>/seq.in` (words), `<split>/seq.out` (BIO tags), `<split>/label` (intent).

    `seq.out` or `label` may be absent (that task's column is then None). Words and tags are split on whitespace;
    multi-intent labels such as `atis_flight#atis_airfare` stay one label. Split folders are named `train`,
    `dev`/`valid`/`validation` and `test`; other folders are skipped. Every file of every split is checked before
    any dataset is built.

    Raises:
        ValueError: naming the file and 1-based line, for an empty line or split, files of one split with different
            line counts, a line with different word and tag counts, or a tag that is not BIO.
    """
    root = _require_dir(data_dir)
    split_dirs: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and (child / "seq.in").is_file():
            split = normalize_split_name(child.name)
            if split is None:
                logger.warning("Skipping %s: not a train/dev/valid/validation/test folder.", child)
                continue
            _assign_split(split_dirs, split, child)
    if not split_dirs:
        raise ValueError(f"No <split>/seq.in files in {root} (expected train/, dev/ and test/ folders).")
    columns = {split: _read_jointbert_split(folder) for split, folder in split_dirs.items()}
    return _dataset_dict(columns, source_name or _folder_name(root))


def _read_jointbert_split(folder: Path) -> dict[str, list]:
    seq_in, seq_out, label_file = folder / "seq.in", folder / "seq.out", folder / "label"
    if not seq_out.is_file() and not label_file.is_file():
        raise ValueError(f"{folder} has neither seq.out (slot tags) nor label (intents): the split has no labels.")
    in_lines = _read_lines(seq_in)
    if not in_lines:
        raise ValueError(f"{seq_in}: empty file, the split has no examples.")
    words = []
    for number, line in enumerate(in_lines, start=1):
        if not line.strip():
            raise ValueError(f"{seq_in}:{number}: empty line.")
        words.append(line.split())
    rows: dict[str, list] = {"text": [" ".join(w) for w in words], "words": words}

    if seq_out.is_file():
        out_lines = _read_lines(seq_out)
        _check_line_counts(seq_in, len(in_lines), seq_out, len(out_lines))
        rows["tags"] = []
        for number, (line, line_words) in enumerate(zip(out_lines, words), start=1):
            where = f"{seq_out}:{number}"
            if not line.strip():
                raise ValueError(f"{where}: empty line.")
            tags = line.split()
            if len(tags) != len(line_words):
                raise ValueError(
                    f"{where}: {len(tags)} tags for the {len(line_words)} words on line {number} of {seq_in}."
                )
            for tag in tags:
                _check_bio(tag, where)
            rows["tags"].append(tags)
    else:
        rows["tags"] = [None] * len(words)

    if label_file.is_file():
        label_lines = _read_lines(label_file)
        _check_line_counts(seq_in, len(in_lines), label_file, len(label_lines))
        for number, line in enumerate(label_lines, start=1):
            if not line.strip():
                raise ValueError(f"{label_file}:{number}: empty line.")
        rows["sentence_label"] = [line.strip() for line in label_lines]
    else:
        rows["sentence_label"] = [None] * len(words)
    return rows


def _check_line_counts(reference: Path, reference_count: int, other: Path, other_count: int) -> None:
    if reference_count != other_count:
        longer = reference if reference_count > other_count else other
        raise ValueError(
            f"{other} has {other_count} lines but {reference} has {reference_count}: "
            f"{longer}:{min(reference_count, other_count) + 1} has no counterpart."
        )


def load_conll(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
    """Load CoNLL column files: one `token<TAB>tag` per line, a blank line between sentences (token-only).

    Files map to splits by name (`*train*`, `*dev*`/`*valid*`, `*test*`; e.g. WNUT-17's `wnut17train.conll`,
    `emerging.dev.conll`, `emerging.test.annotated`). A line that is empty once byte-order marks and whitespace are
    stripped, or a `-DOCSTART-` line, ends a sentence. Lines without tabs are split on whitespace; the token is the
    first field and the tag the last.

    Raises:
        ValueError: naming the file and 1-based line, for a line with a single field or a tag that is not BIO, or
            naming the file when it holds no sentence.
    """
    root = _require_dir(data_dir)
    files = _split_files(root, _files_in(root), _split_from_filename)
    columns = {split: _read_conll_file(path) for split, path in files.items()}
    return _dataset_dict(columns, source_name or _folder_name(root))


def _read_conll_file(path: Path) -> dict[str, list]:
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(_read_lines(path), start=1):
        content = line.strip().strip(_BOM).strip()
        fields = [field.strip() for field in (content.split("\t") if "\t" in content else content.split())]
        if not content or fields[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            raise ValueError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}.")
        _check_bio(fields[-1], f"{path}:{number}")
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences.")
    return {
        "text": [" ".join(w) for w, _ in sentences],
        "words": [w for w, _ in sentences],
        "tags": [t for _, t in sentences],
        "sentence_label": [None] * len(sentences),
    }


def load_sst2(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
    """Load SST-2 files `stsa.binary.<split>`: one `<label> <sentence>` per line (sentence-only).

    When the folder has a `labels.txt` (one label name per line, line `i` naming label id `i`), label ids are
    replaced by their names; otherwise they are kept as written. Files such as `stsa.binary.phrases.train`, whose
    suffix is not a split name, are skipped.

    Raises:
        ValueError: naming the file and 1-based line, for a line without a sentence or a label id missing from
            `labels.txt`.
    """
    root = _require_dir(data_dir)
    labels_file = root / "labels.txt"
    names = [line.strip() for line in _read_lines(labels_file) if line.strip()] if labels_file.is_file() else None
    candidates = [p for p in _files_in(root) if p.name.startswith(_SST2_PREFIX)]
    files = _split_files(root, candidates, lambda p: normalize_split_name(p.name[len(_SST2_PREFIX) :]))
    columns = {split: _read_sst2_file(path, names, labels_file) for split, path in files.items()}
    return _dataset_dict(columns, source_name or _folder_name(root))


def _read_sst2_file(path: Path, names: list[str] | None, labels_file: Path) -> dict[str, list]:
    texts, labels = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise ValueError(f"{path}:{number}: expected '<label> <sentence>', got {line!r}.")
        label, text = parts[0], parts[1].strip()
        if names is not None:
            if not (label.isascii() and label.isdigit()) or int(label) >= len(names):
                raise ValueError(
                    f"{path}:{number}: label {label!r} is not a label id of {labels_file} (0..{len(names) - 1})."
                )
            label = names[int(label)]
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"{path}: empty file, the split has no examples.")
    return {
        "text": texts,
        "words": [[word for word, _, _ in split_words(text)] for text in texts],
        "tags": [None] * len(texts),
        "sentence_label": labels,
    }


def load_tabular(data_dir: str | Path, data_format: str, source: DataSource) -> DatasetDict:
    """Load `*.csv` (comma-separated, with a header) or `*.jsonl` (one JSON object per line) files.

    Files map to splits by name (`*train*`, `*dev*`/`*valid*`, `*test*`). Columns are read as described by the
    column options of `source` (defaults: text in "text", sentence label in "label").

    Raises:
        ValueError: naming the file (and line) for a missing column, a line that is not a JSON object, or an
            invalid value.
    """
    root = _require_dir(data_dir)
    suffix = f".{data_format}"
    files = _split_files(root, [p for p in _files_in(root) if p.suffix.lower() == suffix], _split_from_filename)
    columns = {}
    for split, path in files.items():
        rows, wheres, names = _read_csv(path) if data_format == "csv" else _read_jsonl(path)
        if not rows:
            raise ValueError(f"{path}: no examples.")
        mapping = _ColumnMapping.resolve(source, names, {}, str(path))
        converted = [mapping.convert(row, where) for row, where in zip(rows, wheres)]
        _warn_unlabelled(converted, wheres, str(path))
        columns[split] = {key: [row[key] for row in converted] for key in ("text", "words", "tags", "sentence_label")}
    return _dataset_dict(columns, source.name)


def _read_csv(path: Path) -> tuple[list[dict], list[str], list[str]]:
    """Rows of a CSV file with a header. A row with more or fewer fields than the header is an error naming the
    line (an unquoted comma inside a text would otherwise shift the label silently)."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
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


def _read_jsonl(path: Path) -> tuple[list[dict], list[str], list[str]]:
    rows, wheres, names = [], [], {}
    for number, line in enumerate(_read_lines(path), start=1):
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


def _warn_unlabelled(rows: Sequence[Mapping[str, Any]], wheres: Sequence[str], origin: str) -> None:
    """Log the rows that carry neither a sentence label nor tags: they are kept, but train no head."""
    unlabelled = [where for row, where in zip(rows, wheres) if row["sentence_label"] is None and row["tags"] is None]
    if unlabelled:
        logger.warning(
            "%s: %d of %d examples have neither a sentence label nor tags (first: %s); they are kept but train no "
            "head.",
            origin,
            len(unlabelled),
            len(rows),
            unlabelled[0],
        )


# --------------------------------------------------------------------------------------------------------------
# Column mapping (csv, jsonl and Hub sources)


@dataclass(frozen=True)
class _ColumnMapping:
    """Resolved columns of a tabular source and the label names of its `ClassLabel` columns."""

    text_column: str | None
    tokens_column: str | None
    sentence_label_column: str | None
    tags_column: str | None
    label_names: Sequence[str] | None
    tag_names: Sequence[str] | None

    @classmethod
    def resolve(
        cls, source: DataSource, columns: Sequence[str], features: Mapping[str, Any], origin: str
    ) -> _ColumnMapping:
        """Check the columns `source` asks for against `columns` (an error names `origin` and its columns)."""

        def require(column: str, option: str) -> str:
            if column not in columns:
                raise ValueError(
                    f"{origin}: no {option} column {column!r}; it has columns {', '.join(map(repr, columns))}."
                )
            return column

        if source.tokens_column is not None:
            tokens_column, text_column = require(source.tokens_column, "tokens"), None
        else:
            tokens_column, text_column = None, require(source.text_column or "text", "text")
        tags_column = require(source.tags_column, "tags") if source.tags_column is not None else None
        if source.sentence_label_column is not None:
            label_column = require(source.sentence_label_column, "sentence label")
        elif "label" in columns:
            label_column = "label"
        elif tags_column is None:
            label_column = require("label", "sentence label")
        else:
            label_column = None

        label_feature = features.get(label_column)
        tags_feature = features.get(tags_column)
        tags_inner = tags_feature.feature if isinstance(tags_feature, (datasets.Sequence, LargeList)) else None
        return cls(
            text_column=text_column,
            tokens_column=tokens_column,
            sentence_label_column=label_column,
            tags_column=tags_column,
            label_names=label_feature.names if isinstance(label_feature, ClassLabel) else None,
            tag_names=tags_inner.names if isinstance(tags_inner, ClassLabel) else None,
        )

    def convert(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """One row in the canonical schema (without `source`); `where` locates the row in error messages."""
        if self.tokens_column is not None:
            words = row.get(self.tokens_column)
            if not isinstance(words, (list, tuple)) or not all(isinstance(word, str) for word in words):
                raise ValueError(f"{where}: column {self.tokens_column!r} must hold a list of strings.")
            words = list(words)
            text = " ".join(words)
        else:
            text = row.get(self.text_column)
            if not isinstance(text, str):
                raise ValueError(f"{where}: column {self.text_column!r} must hold a string, got {text!r}.")
            words = [word for word, _, _ in split_words(text)]
        if not words:
            raise ValueError(f"{where}: empty text.")

        tags = None
        if self.tags_column is not None and row.get(self.tags_column) is not None:
            tags = [_label_name(tag, self.tag_names) for tag in row[self.tags_column]]
            if None in tags or _INVALID in tags:
                raise ValueError(f"{where}: missing tag or invalid tag id in column {self.tags_column!r}.")
            if len(tags) != len(words):
                raise ValueError(f"{where}: {len(tags)} tags for {len(words)} words.")
            for tag in tags:
                _check_bio(tag, where)

        label = None
        if self.sentence_label_column is not None:
            label = _label_name(row.get(self.sentence_label_column), self.label_names)
            if label is _INVALID:
                raise ValueError(
                    f"{where}: column {self.sentence_label_column!r} holds {row.get(self.sentence_label_column)!r}, "
                    + (
                        f"not a label id of its ClassLabel (0..{len(self.label_names) - 1}, or -1 for no label)."
                        if self.label_names is not None
                        else "not a label (a string or an integer; null or \"\" for no label)."
                    )
                )
        return {"text": text, "words": words, "tags": tags, "sentence_label": label}


_INVALID = object()


def _label_name(value: Any, names: Sequence[str] | None) -> Any:
    """A label as a string: `ClassLabel` ids become names; None, "" and negative `ClassLabel` ids (the Hub's "no
    label") give None. Anything else (an id beyond the `ClassLabel` names, a float, a list, a bool, ...) gives
    `_INVALID`, which the caller reports with the row."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return _INVALID
    if names is not None:
        if not isinstance(value, int) or value >= len(names):
            return _INVALID
        return names[value] if value >= 0 else None
    if isinstance(value, (str, int)):
        return str(value)
    return _INVALID


def standardize_dataset_dict(raw: DatasetDict, source: DataSource) -> DatasetDict:
    """Map an already loaded DatasetDict (e.g. from the Hub) to the canonical schema.

    Split names are normalised (`dev`/`valid` -> validation; other splits are skipped with a warning). Columns are
    taken as described by the column options of `source`; `ClassLabel` sentence labels and `Sequence(ClassLabel)`
    tags become label strings (`int2str`), a negative `ClassLabel` id (unlabelled example) becomes None.

    Raises:
        ValueError: naming the split for a missing column, and the split and row for an invalid value.
    """
    out = {}
    for split_name, dataset in raw.items():
        split = normalize_split_name(split_name)
        if split is None:
            logger.warning("Skipping split %r of source %r: not train/validation/test.", split_name, source.name)
            continue
        if split in out:
            raise ValueError(f"Source {source.name!r} has several {split} splits; keep one.")
        origin = f"source {source.name!r} split {split_name!r}"
        mapping = _ColumnMapping.resolve(source, dataset.column_names, dataset.features, origin)

        def convert_batch(batch: dict[str, list], indices: list[int], mapping=mapping, origin=origin) -> dict:
            rows = [
                mapping.convert(dict(zip(batch, values)), f"{origin} row {index + 1}")
                for values, index in zip(zip(*batch.values()), indices)
            ]
            converted = {key: [row[key] for row in rows] for key in ("text", "words", "tags", "sentence_label")}
            converted["source"] = [source.name] * len(rows)
            return converted

        out[split] = dataset.map(
            convert_batch,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            features=FEATURES,
            desc=f"Reading {origin}",
        )
        labels = zip(out[split]["sentence_label"], out[split]["tags"])
        rows = [{"sentence_label": label, "tags": tags} for label, tags in labels]
        _warn_unlabelled(rows, [f"{origin} row {index + 1}" for index in range(len(rows))], origin)
    return DatasetDict({split: out[split] for split in SPLITS if split in out})


# --------------------------------------------------------------------------------------------------------------
# Loading several sources


def load_source(source: DataSource) -> DatasetDict:
    """Load one source into the canonical schema (splits among `SPLITS`)."""
    if source.dataset_name is not None:
        raw = datasets.load_dataset(source.dataset_name, source.dataset_config_name)
        return standardize_dataset_dict(raw, source)
    data_format = source.data_format or detect_format(source.data_dir)
    if data_format in _TABULAR_FORMATS:
        loaded = load_tabular(source.data_dir, data_format, source)
    elif source.has_column_options:
        raise ValueError(
            f"Column options only apply to csv, jsonl and Hub sources, not to {source.data_dir} ({data_format})."
        )
    else:
        loaded = {"jointbert": load_jointbert, "conll": load_conll, "sst2": load_sst2}[data_format](
            source.data_dir, source.name
        )
    logger.info(
        "Loaded %s (%s): %s", source.name, data_format, ", ".join(f"{s} {len(d)}" for s, d in loaded.items())
    )
    return loaded


def load_sources(sources: Sequence[DataSource]) -> DatasetDict:
    """Load several sources and concatenate them split by split.

    Sources may cover different tasks (e.g. ATIS with both, SST-2 sentence-only, WNUT token-only); a split missing
    from some sources is fine.

    Raises:
        ValueError: if no source is given, two sources share a name, or a source has no train split.
    """
    if not sources:
        raise ValueError("No data source given.")
    names = Counter(source.name for source in sources)
    duplicates = sorted(name for name, count in names.items() if count > 1)
    if duplicates:
        raise ValueError(f"Several sources are named {', '.join(map(repr, duplicates))}; give each a distinct name.")
    loaded = [load_source(source) for source in sources]
    for source, dataset_dict in zip(sources, loaded):
        if "train" not in dataset_dict:
            raise ValueError(
                f"Source {source.name!r} has no train split (it has: {', '.join(dataset_dict) or 'nothing'})."
            )
        for split, dataset in dataset_dict.items():
            if len(dataset) == 0:
                raise ValueError(f"Source {source.name!r}: the {split} split has no examples.")
    return DatasetDict(
        {
            split: datasets.concatenate_datasets([d[split] for d in loaded if split in d])
            for split in SPLITS
            if any(split in d for d in loaded)
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Label maps


def build_label_maps(train: Dataset) -> tuple[list[str], list[str]]:
    """Label lists (index = label id) from the training split.

    Returns:
        `(sentence_labels, token_labels)`: sentence labels sorted; token labels `"O"` first, then for each entity
        type (sorted) `B-<type>` and `I-<type>`, both always present so a B->I mapping never misses. A list is empty
        when the split has no label of that kind.
    """
    sentence_labels = sorted({label for label in train["sentence_label"] if label is not None})
    types: set[str] = set()
    has_tags = False
    for tags in train["tags"]:
        if tags is not None:
            has_tags = True
            types.update(tag[2:] for tag in tags if tag != "O")
    token_labels = ["O"] + [f"{prefix}-{t}" for t in sorted(types) for prefix in "BI"] if has_tags else []
    return sentence_labels, token_labels


def count_unseen_labels(
    dataset: Dataset, sentence_labels: Sequence[str], token_labels: Sequence[str]
) -> dict[str, Any]:
    """Count the labels of `dataset` missing from the label maps (they are kept, and score as errors).

    Returns:
        `{"examples_with_unseen_sentence_label": int, "unseen_sentence_labels": {label: examples},
        "words_with_unseen_tag": int, "unseen_tags": {tag: words}}`.
    """
    known_sentence, known_token = set(sentence_labels), set(token_labels)
    unseen_sentence = Counter(
        label for label in dataset["sentence_label"] if label is not None and label not in known_sentence
    )
    unseen_tags = Counter(tag for tags in dataset["tags"] if tags is not None for tag in tags if tag not in known_token)
    return {
        "examples_with_unseen_sentence_label": sum(unseen_sentence.values()),
        "unseen_sentence_labels": dict(sorted(unseen_sentence.items())),
        "words_with_unseen_tag": sum(unseen_tags.values()),
        "unseen_tags": dict(sorted(unseen_tags.items())),
    }


# --------------------------------------------------------------------------------------------------------------
# Tokenisation


def _inside_tag(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def tokenize_and_align(
    batch: Mapping[str, list],
    tokenizer,
    sentence_label2id: Mapping[str, int],
    token_label2id: Mapping[str, int],
    max_length: int | None,
    label_all_tokens: bool = False,
) -> dict[str, list]:
    """Tokenise a batch of canonical examples (for `Dataset.map(batched=True)`) and align the labels to tokens.

    Tokenises `words` with `is_split_into_words=True`, truncating to `max_length` (None: the tokenizer's
    `model_max_length`); needs a fast tokenizer (`word_ids()`).

    Returns:
        The tokenizer outputs (`input_ids`, `attention_mask`, and `token_type_ids` when it gives them) and
        - `sentence_labels`: the label id, IGNORE_INDEX when the example has no label or an unseen one;
        - `token_labels`: per token, the tag id on the first sub-token of each word, IGNORE_INDEX on special tokens,
          on the other sub-tokens (with `label_all_tokens`: their word's tag, `B-X` mapped to `I-X`), on every
          token of an example without tags and on the tokens of a word with an unseen tag;
        - `word_token_index`: per word, the position of its first kept sub-token, -1 when it has none (truncated
          away, or the tokenizer produced no sub-token for it);
        - `num_truncated_words`: how many words lost all their sub-tokens to truncation.
    """
    encoding = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=max_length)
    out = {key: encoding[key] for key in encoding.keys()}
    out.update(sentence_labels=[], token_labels=[], word_token_index=[], num_truncated_words=[])
    for i, (words, tags, label) in enumerate(zip(batch["words"], batch["tags"], batch["sentence_label"])):
        if tags is not None and len(tags) != len(words):
            raise ValueError(f"Example {i} of the batch has {len(tags)} tags for {len(words)} words.")
        word_ids = encoding.word_ids(i)
        first: dict[int, int] = {}
        for position, word in enumerate(word_ids):
            if word is not None and word not in first:
                first[word] = position

        token_labels = []
        for position, word in enumerate(word_ids):
            tag_id = None if word is None or tags is None else token_label2id.get(tags[word])
            if tag_id is None:
                token_labels.append(IGNORE_INDEX)
            elif position == first[word]:
                token_labels.append(tag_id)
            elif label_all_tokens:
                token_labels.append(token_label2id.get(_inside_tag(tags[word]), tag_id))
            else:
                token_labels.append(IGNORE_INDEX)

        overflow_words = {w for o in encoding.encodings[i].overflowing for w in o.word_ids if w is not None}
        out["sentence_labels"].append(IGNORE_INDEX if label is None else sentence_label2id.get(label, IGNORE_INDEX))
        out["token_labels"].append(token_labels)
        out["word_token_index"].append([first.get(word, -1) for word in range(len(words))])
        out["num_truncated_words"].append(len(overflow_words - first.keys()))
    return out


def encode_dataset_dict(
    dataset_dict: DatasetDict,
    tokenizer,
    sentence_labels: Sequence[str],
    token_labels: Sequence[str],
    max_length: int | None,
    label_all_tokens: bool = False,
) -> tuple[DatasetDict, dict[str, dict[str, Any]]]:
    """Tokenise every split with `tokenize_and_align`, keeping the raw columns (the metrics' gold standard).

    Unseen labels and truncation are logged as warnings.

    Returns:
        `(encoded, stats)`; `stats[split]` holds `examples`, `truncated_examples` (examples that lost at least one
        word to truncation), `words_lost`, `words_without_token` (words the tokenizer gives no sub-token, e.g. a lone
        zero-width character; their tags cannot be learned) and `unseen` (the `count_unseen_labels` counts).

    Raises:
        ValueError: naming the split, when a split has no examples.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Word alignment needs a fast (Rust-backed) tokenizer, which provides word_ids().")
    fn_kwargs = {
        "tokenizer": tokenizer,
        "sentence_label2id": {label: i for i, label in enumerate(sentence_labels)},
        "token_label2id": {label: i for i, label in enumerate(token_labels)},
        "max_length": max_length,
        "label_all_tokens": label_all_tokens,
    }
    encoded, stats = {}, {}
    for split, dataset in dataset_dict.items():
        if len(dataset) == 0:
            raise ValueError(
                f"The {split} split has no examples (an empty file, or max_train_samples / max_eval_samples of 0)."
            )
        unseen = count_unseen_labels(dataset, sentence_labels, token_labels)
        if unseen["examples_with_unseen_sentence_label"] or unseen["words_with_unseen_tag"]:
            logger.warning(
                "%s: %d examples have a sentence label unseen in training %s and %d words a tag unseen in training "
                "%s; they are kept and count as errors.",
                split,
                unseen["examples_with_unseen_sentence_label"],
                unseen["unseen_sentence_labels"],
                unseen["words_with_unseen_tag"],
                unseen["unseen_tags"],
            )
        encoded[split] = dataset.map(tokenize_and_align, batched=True, fn_kwargs=fn_kwargs, desc=f"Tokenizing {split}")
        lost = encoded[split]["num_truncated_words"]
        # Words without any sub-token (e.g. a lone zero-width or variation-selector character): their tag cannot be
        # learned, and they are predicted "O".
        without_token = [
            sum(1 for index in positions if index == -1) - truncated
            for positions, truncated in zip(encoded[split]["word_token_index"], lost)
        ]
        stats[split] = {
            "examples": len(dataset),
            "truncated_examples": sum(1 for n in lost if n),
            "words_lost": sum(lost),
            "words_without_token": sum(without_token),
            "unseen": unseen,
        }
        if stats[split]["words_without_token"]:
            first = next(index for index, count in enumerate(without_token) if count)
            logger.warning(
                "%s: %d words produce no sub-token with this tokenizer (first in example %d: %s); their tags cannot "
                "be learned and they are predicted 'O'.",
                split,
                stats[split]["words_without_token"],
                first,
                ascii([w for w in dataset[first]["words"] if not tokenizer(w, add_special_tokens=False)["input_ids"]]),
            )
        if stats[split]["truncated_examples"]:
            logger.warning(
                "%s: %d examples were truncated to %s tokens, losing %d words (scored as missed).",
                split,
                stats[split]["truncated_examples"],
                max_length or tokenizer.model_max_length,
                stats[split]["words_lost"],
            )
    return DatasetDict(encoded), stats


# --------------------------------------------------------------------------------------------------------------
# Collation


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


@dataclass
class MultiTaskCollator:
    """Pad encoded examples into a batch for both heads.

    Pads `input_ids`, `attention_mask` and `token_type_ids` (those present) with `tokenizer.pad`, pads
    `token_labels` with IGNORE_INDEX to the same length (on the tokenizer's padding side) and stacks
    `sentence_labels`. Each label tensor is emitted when any feature carries it; features without it are filled with
    IGNORE_INDEX, so every batch has the same keys. All other keys (`word_token_index`, raw columns, ...) are
    dropped. Features may hold python lists or tensors.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [{key: _as_list(f[key]) for key in MODEL_INPUT_KEYS if key in f} for f in features]
        batch = dict(
            self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        )
        length = batch["input_ids"].shape[1]
        if any("token_labels" in f for f in features):
            rows = []
            for f in features:
                labels = _as_list(f["token_labels"]) if "token_labels" in f else []
                padding = [IGNORE_INDEX] * (length - len(labels))
                rows.append(padding + labels if self.tokenizer.padding_side == "left" else labels + padding)
            batch["token_labels"] = torch.tensor(rows, dtype=torch.long)
        if any("sentence_labels" in f for f in features):
            batch["sentence_labels"] = torch.tensor(
                [int(f.get("sentence_labels", IGNORE_INDEX)) for f in features], dtype=torch.long
            )
        return batch
