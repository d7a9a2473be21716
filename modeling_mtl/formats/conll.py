"""CoNLL column files: one token a line with its tag in the last column, a blank line between sentences; tab- or
space-separated (`token<TAB>tag` as WNUT-17, `token POS chunk tag` with `-DOCSTART-` lines as CoNLL-2003), IOB1 or
IOB2 (IOB1 becomes IOB2)."""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import DatasetDict

from .common import (
    BIO_TAG,
    check_bio,
    dataset_dict,
    files_in,
    folder_name,
    read_lines,
    require_dir,
    split_files,
    split_from_filename,
)

logger = logging.getLogger(__name__)

NAME = "conll"
SUFFIXES = (".txt", ".conll", ".iob", ".iob2", ".bio", ".tsv")
"""File name endings of CoNLL files whose columns may be separated by spaces (tab-separated files may have any name)."""
DETECTION = (f"files named *train*/*dev*/*valid*/*test* whose first token line is token<TAB>tag, or space-separated "
             f"columns with the tag last in *{', *'.join(SUFFIXES)} files (conll)")
DOCSTART = "-DOCSTART-"
BOM = "\ufeff"


def found_in(root: Path) -> bool:
    """Whether a file whose name names a split starts like CoNLL columns (`looks_like_conll`)."""
    return any(split_from_filename(path) and looks_like_conll(path) for path in files_in(root))


def line_fields(line: str) -> list[str]:
    """The columns of a CoNLL line (byte-order marks and outer whitespace stripped): split on tabs when it holds
    one, else on whitespace; [] for a blank line."""
    content = line.strip().strip(BOM).strip()
    if not content:
        return []
    return [field.strip() for field in (content.split("\t") if "\t" in content else content.split())]


def looks_like_conll(path: Path) -> bool:
    """Whether the first line of `path` that is neither blank nor `-DOCSTART-` is CoNLL columns: two or more, the
    last a BIO tag (`token<TAB>tag`, `token POS chunk tag`, ...). Space-separated columns count only in a file
    named `*.txt`, `*.conll`, `*.iob`, `*.iob2`, `*.bio` or `*.tsv`; tab-separated ones in any file."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                fields = line_fields(line)
                if fields and fields[0] != DOCSTART:
                    separated = "\t" in line.strip() or path.suffix.lower() in SUFFIXES
                    return separated and len(fields) >= 2 and BIO_TAG.fullmatch(fields[-1]) is not None
    except UnicodeDecodeError:
        return False
    return False


def load(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
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
    root = require_dir(data_dir)
    files = split_files(root, files_in(root), split_from_filename)
    columns = {split: read_file(path) for split, path in files.items()}
    return dataset_dict(columns, source_name or folder_name(root))


def read_file(path: Path) -> dict[str, list]:
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    first: tuple[int, int] | None = None  # (columns, line number) of the file's first token line
    for number, line in enumerate(read_lines(path), start=1):
        fields = line_fields(line)
        if not fields or fields[0] == DOCSTART:
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
        check_bio(fields[-1], where)
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences.")
    converted = sum(iob1_to_iob2(sentence_tags) for _, sentence_tags in sentences)
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


def iob1_to_iob2(tags: list[str]) -> int:
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
