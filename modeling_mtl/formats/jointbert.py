"""JointBERT folders: `<split>/seq.in` (words, space-separated), `<split>/seq.out` (one BIO tag per word) and
`<split>/label` (one sentence label per line), as monologg/JointBERT ships ATIS and SNIPS."""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import DatasetDict

from .common import assign_split, check_bio, dataset_dict, folder_name, normalize_split_name, read_lines, require_dir

logger = logging.getLogger(__name__)

NAME = "jointbert"
DETECTION = "<split>/seq.in (jointbert)"
"""What detection looks for, for the error that lists every format's."""


def found_in(root: Path) -> bool:
    """Whether the folder has a sub-folder with a `seq.in` file."""
    return any((child / "seq.in").is_file() for child in root.iterdir() if child.is_dir())


def load(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
    """Load a JointBERT folder: `<split>/seq.in` (words), `<split>/seq.out` (BIO tags), `<split>/label` (intent).

    `seq.out` or `label` may be absent (that task's column is then None). Words and tags are split on whitespace;
    multi-intent labels such as `atis_flight#atis_airfare` stay one label. Split folders are named `train`,
    `dev`/`valid`/`validation` and `test`; other folders are skipped. Every file of every split is checked before
    any dataset is built.

    Raises:
        ValueError: naming the file and 1-based line, for an empty line or split, files of one split with different
            line counts, a line with different word and tag counts, or a tag that is not BIO.
    """
    root = require_dir(data_dir)
    split_dirs: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and (child / "seq.in").is_file():
            split = normalize_split_name(child.name)
            if split is None:
                logger.warning("Skipping %s: not a train/dev/valid/validation/test folder.", child)
                continue
            assign_split(split_dirs, split, child)
    if not split_dirs:
        raise ValueError(f"No <split>/seq.in files in {root} (expected train/, dev/ and test/ folders).")
    columns = {split: read_split(folder) for split, folder in split_dirs.items()}
    return dataset_dict(columns, source_name or folder_name(root))


def read_split(folder: Path) -> dict[str, list]:
    seq_in, seq_out, label_file = folder / "seq.in", folder / "seq.out", folder / "label"
    if not seq_out.is_file() and not label_file.is_file():
        raise ValueError(f"{folder} has neither seq.out (slot tags) nor label (intents): the split has no labels.")
    in_lines = read_lines(seq_in)
    if not in_lines:
        raise ValueError(f"{seq_in}: empty file, the split has no examples.")
    words = []
    for number, line in enumerate(in_lines, start=1):
        if not line.strip():
            raise ValueError(f"{seq_in}:{number}: empty line.")
        words.append(line.split())
    rows: dict[str, list] = {"text": [" ".join(w) for w in words], "words": words}

    if seq_out.is_file():
        out_lines = read_lines(seq_out)
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
                check_bio(tag, where)
            rows["tags"].append(tags)
    else:
        rows["tags"] = [None] * len(words)

    if label_file.is_file():
        label_lines = read_lines(label_file)
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
