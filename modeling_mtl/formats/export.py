"""Writing span records in an annotation tool's format: a data set's labels (to review or extend in the tool, or to
train from the tool's export) and `predict`'s results as pre-annotations (to correct instead of label from scratch).

    from modeling_mtl.data import DataSource, load_source
    splits = load_source(DataSource(data_dir="../shared/data/atis"))
    write_records(rows_to_records(splits["train"], "train"), "outputs/atis_ls/train.json", "label-studio")

    texts = ["fly from boston to denver"]
    write_pre_annotations(texts, model.predict(texts), sys.stdout, "label-studio", model_version="atis@4f2c1e0")

Each tool's writer is the `write(records, stream, ...)` of its module in `formats/`; `WRITERS` holds the formats of
`SPAN_FORMATS` that have one, so a format added with a `write` function is written here too. Records hold Python str
offsets (as `rows_to_records` and `predictions_to_records` make them); a writer converts them where its tool counts
otherwise (Label Studio: UTF-16 code units). Reading a written file back (`load_source`, or the module's `read`
and `spans.records_to_columns`) gives the same words, tags and sentence labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from ..decoding_mtl import bio_to_entities, join_words, prepare_text
from ..spans import Span, SpanRecord
from . import SPAN_FORMATS, label_studio

WRITERS = {name: module for name, module in SPAN_FORMATS.items() if hasattr(module, "write")}
"""Format name -> module, for the formats that can be written."""


def rows_to_records(rows: Iterable[Mapping], name: str = "rows") -> list[SpanRecord]:
    """Span records of canonical rows (`words`, `tags` (or None), `sentence_label`, as `load_source` gives them):
    the text is the words joined with single spaces, each entity (B-/I- run of its tags, an I- without its B-
    starting one, as `predict` reads tags) a span of Python str offsets with its text; `where` is
    "<name>, row <n>" (n from 1)."""
    records = []
    for number, row in enumerate(rows, 1):
        where = f"{name}, row {number}"
        words, tags = list(row["words"]), row.get("tags")
        text, offsets = join_words(words)
        spans = []
        if tags is not None:
            if len(tags) != len(words):
                raise ValueError(f"{where}: {len(tags)} tags for {len(words)} words")
            entities = bio_to_entities(text, list(tags), [1.0] * len(tags), offsets)
            spans = [Span(entity["start"], entity["end"], entity["entity_group"], entity["word"]) for entity in entities]
        records.append(SpanRecord(text=text, spans=spans, sentence_label=row.get("sentence_label"), where=where))
    return records


def _entities(prediction: Mapping, where: str) -> list[Mapping]:
    entities = prediction.get("entities") or []
    if any("entity_group" not in entity for entity in entities):
        raise ValueError(f"{where}: entities without 'entity_group' (predict with aggregation_strategy='none' lists "
                         "tagged words, not entities); predict with another aggregation strategy to write them")
    return entities


def predictions_to_records(texts: Sequence, predictions: Sequence[Mapping], name: str = "input") -> list[SpanRecord]:
    """Span records of `predict`'s results: each text (a string, or a word list joined with single spaces, as
    `predict` joins it) with its entities as spans (`entity_group` the label) and its label as sentence label;
    `where` is "<name>, text <n>" (n from 1)."""
    if len(texts) != len(predictions):
        raise ValueError(f"{len(texts)} texts for {len(predictions)} predictions")
    records = []
    for number, (item, prediction) in enumerate(zip(texts, predictions), 1):
        where = f"{name}, text {number}"
        text = prepare_text(item)[0]
        spans = []
        for entity in _entities(prediction, where):
            if text[entity["start"] : entity["end"]] != entity["word"]:
                raise ValueError(f"{where}: entity {entity['start']}-{entity['end']} {entity['word']!r} does not match "
                                 f"the text there ({text[entity['start'] : entity['end']]!r}): not this text's result")
            spans.append(Span(entity["start"], entity["end"], entity["entity_group"], entity["word"]))
        records.append(SpanRecord(text=text, spans=spans, sentence_label=prediction.get("label"), where=where))
    return records


def prediction_scores(predictions: Sequence[Mapping]) -> list[tuple[float, list[float]]]:
    """`(sentence score, one score per entity)` of each `predict` result."""
    return [(float(prediction["score"]), [float(entity["score"]) for entity in prediction.get("entities") or []])
            for prediction in predictions]


def _writer(output_format: str):
    if output_format not in WRITERS:
        raise ValueError(f"cannot write {output_format!r}; formats that can be written: {sorted(WRITERS)}")
    return WRITERS[output_format]


def _write(destination: str | Path | TextIO, write, *args, **options) -> None:
    """Call `write(*args, stream, **options)` on `destination`: a text stream, or a path opened as UTF-8 with "\\n"
    line ends (its folder created)."""
    if hasattr(destination, "write"):
        write(*args, destination, **options)
        return
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        write(*args, stream, **options)


def write_records(records: Sequence[SpanRecord], destination: str | Path | TextIO, output_format: str,
                  **options) -> None:
    """Write `records` (Python str offsets) as `output_format` (a key of `WRITERS`) to a path or a text stream;
    `options` go to the format's `write` (Rasa: `keep_order`)."""
    _write(destination, _writer(output_format).write, records, **options)


def write_pre_annotations(texts: Sequence, predictions: Sequence[Mapping], destination: str | Path | TextIO,
                          output_format: str, model_version: str) -> None:
    """Write `predict`'s results for `texts` as pre-annotations in `output_format` to a path or a text stream.

    Label Studio: tasks with `predictions` (not annotations) tagged `model_version` and carrying the sentence score
    (on the prediction and its choice) and each entity's score. Doccano and Rasa have no place for a model version
    or scores: their files hold the predicted labels only.
    """
    records = predictions_to_records(texts, predictions)
    if output_format == label_studio.NAME:
        options = {"model_version": model_version, "scores": prediction_scores(predictions)}
    else:
        options = {}
    write_records(records, destination, output_format, **options)


__all__ = ["WRITERS", "prediction_scores", "predictions_to_records", "rows_to_records", "write_pre_annotations",
           "write_records"]
