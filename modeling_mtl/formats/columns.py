"""The column options of CSV, JSON Lines and Hub sources (`text_column` or `tokens_column`, `sentence_label_column`,
`tags_column`): resolving them against a file's or a data set's columns, and turning a row into the canonical
schema (`ClassLabel` ids into names, BIO tags checked), with errors naming the row; `standardize_dataset_dict` maps a
loaded Hub `DatasetDict`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
from datasets import ClassLabel, DatasetDict, LargeList

from ..decoding_mtl import split_words
from .common import FEATURES, SPLITS, check_bio, normalize_split_name

if TYPE_CHECKING:
    from ..data import DataSource

logger = logging.getLogger(__name__)


def warn_unlabelled(rows: Sequence[Mapping[str, Any]], wheres: Sequence[str], origin: str) -> None:
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


@dataclass(frozen=True)
class ColumnMapping:
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
    ) -> ColumnMapping:
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
            tags = [label_name(tag, self.tag_names) for tag in row[self.tags_column]]
            if None in tags or INVALID in tags:
                raise ValueError(f"{where}: missing tag or invalid tag id in column {self.tags_column!r}.")
            if len(tags) != len(words):
                raise ValueError(f"{where}: {len(tags)} tags for {len(words)} words.")
            for tag in tags:
                check_bio(tag, where)

        label = None
        if self.sentence_label_column is not None:
            label = label_name(row.get(self.sentence_label_column), self.label_names)
            if label is INVALID:
                raise ValueError(
                    f"{where}: column {self.sentence_label_column!r} holds {row.get(self.sentence_label_column)!r}, "
                    + (
                        f"not a label id of its ClassLabel (0..{len(self.label_names) - 1}, or -1 for no label)."
                        if self.label_names is not None
                        else "not a label (a string or an integer; null or \"\" for no label)."
                    )
                )
        return {"text": text, "words": words, "tags": tags, "sentence_label": label}


INVALID = object()


def label_name(value: Any, names: Sequence[str] | None) -> Any:
    """A label as a string: `ClassLabel` ids become names; None, "" and negative `ClassLabel` ids (the Hub's "no
    label") give None. Anything else (an id beyond the `ClassLabel` names, a float, a list, a bool, ...) gives
    `INVALID`, which the caller reports with the row."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return INVALID
    if names is not None:
        if not isinstance(value, int) or value >= len(names):
            return INVALID
        return names[value] if value >= 0 else None
    if isinstance(value, (str, int)):
        return str(value)
    return INVALID


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
        mapping = ColumnMapping.resolve(source, dataset.column_names, dataset.features, origin)

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
        warn_unlabelled(rows, [f"{origin} row {index + 1}" for index in range(len(rows))], origin)
    return DatasetDict({split: out[split] for split in SPLITS if split in out})
