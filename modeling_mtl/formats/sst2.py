"""SST-2 files as the SST-2 copies of the sentence-classification literature ship them: `stsa.binary.<split>`,
one `<label> <sentence>` a line, optionally with a `labels.txt` naming the label ids."""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

from ..decoding_mtl import split_words
from .common import dataset_dict, files_in, folder_name, normalize_split_name, read_lines, require_dir, split_files

NAME = "sst2"
PREFIX = "stsa.binary."
DETECTION = f"{PREFIX}<split> (sst2)"


def found_in(root: Path) -> bool:
    return any(path.name.startswith(PREFIX) for path in files_in(root))


def load(data_dir: str | Path, source_name: str | None = None) -> DatasetDict:
    """Load SST-2 files `stsa.binary.<split>`: one `<label> <sentence>` per line (sentence-only).

    When the folder has a `labels.txt` (one label name per line, line `i` naming label id `i`), label ids are
    replaced by their names; otherwise they are kept as written. Files such as `stsa.binary.phrases.train`, whose
    suffix is not a split name, are skipped.

    Raises:
        ValueError: naming the file and 1-based line, for a line without a sentence or a label id missing from
            `labels.txt`.
    """
    root = require_dir(data_dir)
    labels_file = root / "labels.txt"
    names = [line.strip() for line in read_lines(labels_file) if line.strip()] if labels_file.is_file() else None
    candidates = [p for p in files_in(root) if p.name.startswith(PREFIX)]
    files = split_files(root, candidates, lambda p: normalize_split_name(p.name[len(PREFIX) :]))
    columns = {split: read_file(path, names, labels_file) for split, path in files.items()}
    return dataset_dict(columns, source_name or folder_name(root))


def read_file(path: Path, names: list[str] | None, labels_file: Path) -> dict[str, list]:
    texts, labels = [], []
    for number, line in enumerate(read_lines(path), start=1):
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
