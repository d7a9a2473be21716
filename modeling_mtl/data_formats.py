"""Reading data folders and Hub data sets into the canonical example schema (see `modeling_mtl.data`): the
local formats (JointBERT, CoNLL, SST-2, CSV, JSON Lines), their detection, split naming, and the column mapping of
tabular and Hub sources. Every problem is reported with the file, line or row it comes from.

A new data format is a reader here (`load_<format>(data_dir, source_name) -> DatasetDict`), a name in `FORMATS`,
its detection in `detect_format`, and one line in `data.load_source`.

It is over 600 lines because it holds five readers with their error reporting; the next readers go to
`modeling_mtl/formats/` (one module per format, one table), where these five can move one at a time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, LargeList, Value

from .decoding_mtl import split_words

if TYPE_CHECKING:
    from .data import DataSource

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
"""Canonical split names, in order."""

FORMATS = ("jointbert", "conll", "sst2", "csv", "jsonl")
"""Local folder formats understood by `load_source` (see `detect_format`)."""

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
TABULAR_FORMATS = ("csv", "jsonl")
_SST2_PREFIX = "stsa.binary."
_CONLL_SUFFIXES = (".txt", ".conll", ".iob", ".iob2", ".bio", ".tsv")
"""File name endings of CoNLL files whose columns may be separated by spaces (tab-separated files may have any name)."""
_DOCSTART = "-DOCSTART-"



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


def folder_name(data_dir: str | Path) -> str:
    """A data folder's name (the default name of its source)."""
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


def _conll_fields(line: str) -> list[str]:
    """The columns of a CoNLL line (byte-order marks and outer whitespace stripped): split on tabs when it holds
    one, else on whitespace; [] for a blank line."""
    content = line.strip().strip(_BOM).strip()
    if not content:
        return []
    return [field.strip() for field in (content.split("\t") if "\t" in content else content.split())]


def _looks_like_conll(path: Path) -> bool:
    """Whether the first line of `path` that is neither blank nor `-DOCSTART-` is CoNLL columns: two or more, the
    last a BIO tag (`token<TAB>tag`, `token POS chunk tag`, ...). Space-separated columns count only in a file
    named `*.txt`, `*.conll`, `*.iob`, `*.iob2`, `*.bio` or `*.tsv`; tab-separated ones in any file."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                fields = _conll_fields(line)
                if fields and fields[0] != _DOCSTART:
                    separated = "\t" in line.strip() or path.suffix.lower() in _CONLL_SUFFIXES
                    return separated and len(fields) >= 2 and _BIO_TAG.fullmatch(fields[-1]) is not None
    except UnicodeDecodeError:
        return False
    return False


def detect_format(data_dir: str | Path) -> str:
    """Detect the format of a local data folder.

    Returns:
        One of `FORMATS`: "jointbert" (`<split>/seq.in` sub-folders), "sst2" (`stsa.binary.<split>` files),
        "csv" (`*.csv` files), "jsonl" (`*.jsonl` files) or "conll" (files whose names contain train/dev/valid/test
        and whose first token line is CoNLL columns, tag last: see `_looks_like_conll`). CoNLL is only considered
        when no other format matches.

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
        f"whose first token line is token<TAB>tag, or space-separated columns with the tag last in "
        f"*{', *'.join(_CONLL_SUFFIXES)} files (conll); found {listing}."
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
    return _dataset_dict(columns, source_name or folder_name(root))


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
    """Load CoNLL column files: one token per line, a blank line between sentences (token-only).

    Files map to splits by name (`*train*`, `*dev*`/`*valid*`, `*test*`; e.g. WNUT-17's `wnut17train.conll`,
    `emerging.dev.conll`, `emerging.test.annotated`, CoNLL-2003's `train.txt`, `valid.txt`, `test.txt`). A line
    that is empty once byte-order marks and whitespace are stripped, or a `-DOCSTART-` line, ends a sentence. Lines
    with a tab are split on tabs, others on whitespace; the token is the first column and the tag the last (so
    `token<TAB>tag` and CoNLL-2003's `token POS chunk tag` both work), and every token line of a file has the same
    number of columns.

    IOB1 tags (CoNLL-2003's original tagging, where `I-X` starts an entity) become IOB2: an `I-X` that follows
    neither `B-X` nor `I-X` becomes `B-X`, with one warning per file giving the count. The check is per file, but
    as the conversion leaves valid IOB2 unchanged, per sentence would give the same tags; a valid IOB2 file is
    untouched and logs nothing (an IOB2 file with a stray `I-X` is repaired the same way).

    Raises:
        ValueError: naming the file and 1-based line, for a line with a single column, a line with a different
            number of columns than the file's first token line, or a tag that is not BIO; naming the file when it
            holds no sentence.
    """
    root = _require_dir(data_dir)
    files = _split_files(root, _files_in(root), _split_from_filename)
    columns = {split: _read_conll_file(path) for split, path in files.items()}
    return _dataset_dict(columns, source_name or folder_name(root))


def _read_conll_file(path: Path) -> dict[str, list]:
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    first: tuple[int, int] | None = None  # (columns, line number) of the file's first token line
    for number, line in enumerate(_read_lines(path), start=1):
        fields = _conll_fields(line)
        if not fields or fields[0] == _DOCSTART:
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        where = f"{path}:{number}"
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            raise ValueError(
                f"{where}: expected 'token<TAB>tag' (or columns separated by spaces, the tag last), got {line!r}."
            )
        if first is None:
            first = (len(fields), number)
        elif len(fields) != first[0]:
            raise ValueError(
                f"{where}: {len(fields)} columns, but line {first[1]} has {first[0]}; every token line of a CoNLL "
                f"file needs the same columns, got {line!r}."
            )
        _check_bio(fields[-1], where)
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences.")
    converted = sum(_iob1_to_iob2(sentence_tags) for _, sentence_tags in sentences)
    if converted:
        logger.warning(
            "%s: %d I- tags begin an entity (IOB1 tagging as in the original CoNLL-2003, or IOB2 mistakes); "
            "converted them to B- (IOB2).",
            path,
            converted,
        )
    return {
        "text": [" ".join(w) for w, _ in sentences],
        "words": [w for w, _ in sentences],
        "tags": [t for _, t in sentences],
        "sentence_label": [None] * len(sentences),
    }


def _iob1_to_iob2(tags: list[str]) -> int:
    """Turn one sentence's tags into IOB2 in place: an `I-X` that follows neither `B-X` nor `I-X` starts an entity
    and becomes `B-X`. Returns how many tags changed (0 for valid IOB2, which is left as it is)."""
    changed = 0
    previous = "O"
    for index, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tags[index] = "B-" + tag[2:]
            changed += 1
        previous = tag
    return changed


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
    return _dataset_dict(columns, source_name or folder_name(root))


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
