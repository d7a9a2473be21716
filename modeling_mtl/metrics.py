"""Evaluation for `transformers.Trainer`: the bridge from model outputs to the local `multitask_metric` module.

Typical use::

    trainer = Trainer(  # or the package's Trainer subclass
        ...,
        compute_metrics=build_compute_metrics(eval_dataset, sentence_labels, token_labels),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )

The gold standard is read from the raw string columns of the evaluation data set (`sentence_label`, `tags`), not
from the label ids Trainer collects, so gold labels never seen in training count as errors instead of vanishing.
"""

from collections.abc import Mapping
from pathlib import Path

import evaluate
import numpy
import torch

from .decoding_mtl import bio_viterbi_batch
from .schema_mtl import TASKS

PADDING = -100  # what Trainer pads predictions with across batches
METRIC_PATH = str(Path(__file__).resolve().parent / "multitask_metric")


class TaskLossTotals:
    """Each task's loss summed over its labelled items, and their count, across batches: the mean loss per task of
    training's logs, of an evaluation (the trainer's) and of `python -m modeling_mtl evaluate`."""

    def __init__(self):
        self.totals = torch.zeros(2 * len(TASKS), dtype=torch.float64)  # [loss sum, count] per task, TASKS order

    def add(self, outputs):
        """Count a `MultiTaskModelOutput` (tasks without labels in it, or outputs without losses, add nothing)."""
        for index, task in enumerate(TASKS):
            mean = getattr(outputs, task.loss_field, None)
            if mean is None or not getattr(outputs, "label_counts", None):
                continue
            count = int(outputs.label_counts[task.name])
            self.totals[2 * index] += float(mean.detach()) * count
            self.totals[2 * index + 1] += count

    def take(self, prefix="", reduce=None, digits=4):
        """`{prefix}{task}_loss: mean}` for the tasks seen since the last call (rounded to `digits`, None: not
        rounded), and start again; `reduce` (e.g. a sum over processes) is applied to the totals first."""
        totals = self.totals if reduce is None else reduce(self.totals)
        self.totals = torch.zeros_like(self.totals)
        means = {
            f"{prefix}{task.loss_field}": float(totals[2 * index] / totals[2 * index + 1])
            for index, task in enumerate(TASKS)
            if totals[2 * index + 1] > 0
        }
        return means if digits is None else {key: round(value, digits) for key, value in means.items()}

    def reset(self):
        self.totals.zero_()


def load_multitask_metric(**kwargs):
    """Load the local `multitask_metric` evaluate module (works offline); `kwargs` go to `evaluate.load`.

    It is kept in memory unless `keep_in_memory=False` is passed, so computing it writes no cache file.
    """
    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(METRIC_PATH, **kwargs)


def preprocess_logits_for_metrics(logits, labels, token_decoding="argmax"):
    """Turn the model's `(sentence_logits [batch, n_sentence_labels], token_logits [batch, seq, n_token_labels])`
    into what `word_predictions` decodes, so Trainer keeps no more than it needs: `(sentence_pred_ids [batch],
    token_pred_ids [batch, seq])` for `token_decoding="argmax"`, `(sentence_pred_ids, token_log_probs [batch, seq,
    n_token_labels])` for `"bio_viterbi"` (the sequence decoding needs every tag's score).

    `labels` is unused; the argument is part of Trainer's `preprocess_logits_for_metrics` signature.
    """
    sentence_logits, token_logits = logits[0], logits[1]
    if token_decoding == "bio_viterbi":
        return sentence_logits.argmax(dim=-1), token_logits.float().log_softmax(dim=-1)
    return sentence_logits.argmax(dim=-1), token_logits.argmax(dim=-1)


def word_predictions(token_predictions, word_token_index, id2label):
    """Predicted tag of every word: `list[list[str]]`, one list per example.

    Args:
        token_predictions: per example (array or list of rows), either `[seq]` predicted token label ids or
            `[seq, n_token_labels]` log-probabilities, which are decoded as the best valid BIO sequence over the
            words' first sub-tokens (`bio_viterbi`); rows may be padded with -100 (Trainer pads across batches).
        word_token_index: for each example, the position of each word's first sub-token in its row, or -1 for a
            word with no sub-token (e.g. truncated away): such a word is tagged `"O"`.
        id2label: the token labels by id, a list (`token_labels`) or a `{id: label}` mapping.
    """
    if isinstance(id2label, Mapping):
        names = [id2label[i] for i in sorted(id2label, key=int)]
    else:
        names = list(id2label)
    rows = []  # (positions, kept positions, their tag ids or, for log-probabilities, None)
    sequences = []  # the log-probability rows, decoded together
    for row, positions in zip(token_predictions, word_token_index, strict=True):
        row = numpy.asarray(row)
        positions = [int(position) for position in ([] if positions is None else positions)]
        inside = [position for position in positions if 0 <= position < len(row)]
        if row.ndim == 2:  # log-probabilities of every tag
            kept = [position for position in inside if not (row[position] == PADDING).all()]
            sequences.append(torch.from_numpy(row[kept]))
            rows.append((positions, kept, None))
        else:
            kept = [position for position in inside if row[position] >= 0]
            rows.append((positions, kept, row[kept].tolist()))
    decoded_sequences = iter(bio_viterbi_batch(sequences, tuple(names)) if sequences else [])
    result = []
    for positions, kept, tag_ids in rows:
        decoded = dict(zip(kept, next(decoded_sequences) if tag_ids is None else tag_ids))
        result.append([names[decoded[position]] if position in decoded else "O" for position in positions])
    return result


def predictions_to_records(eval_dataset, predictions, sentence_labels, token_labels):
    """One JSON-ready dict per example, gold and predicted side by side, for writing predictions as JSON Lines.

    Args:
        eval_dataset: a `datasets.Dataset` with `sentence_label` (str or None), `tags` (list[str] or None),
            `word_token_index` (list[int]) and, where present, `text` and `words` columns.
        predictions: `(sentence_pred_ids [n], token_predictions)` in data set order, as from
            `preprocess_logits_for_metrics` and `Trainer.predict` (see `word_predictions`).
        sentence_labels, token_labels: the training label lists, indexed by predicted id.

    Returns:
        `[{"text", "words", "gold_label", "predicted_label", "gold_tags", "predicted_tags"}, ...]`; a gold field
        (or `text`/`words`) is None where the data set has none.
    """
    sentence_pred_ids, token_predictions = predictions[0], predictions[1]
    n = len(eval_dataset)
    if len(sentence_pred_ids) != n or len(token_predictions) != n:
        raise ValueError(
            f"Got {len(sentence_pred_ids)} sentence and {len(token_predictions)} token predictions for {n} examples."
        )

    def column(name):
        return eval_dataset[name] if name in eval_dataset.column_names else [None] * n

    predicted_tags = word_predictions(token_predictions, column("word_token_index"), token_labels)
    return [
        {
            "text": text,
            "words": words,
            "gold_label": gold_label,
            "predicted_label": sentence_labels[int(label_id)],
            "gold_tags": gold_tags,
            "predicted_tags": tags,
        }
        for text, words, gold_label, label_id, gold_tags, tags in zip(
            column("text"), column("words"), column("sentence_label"), sentence_pred_ids, column("tags"), predicted_tags
        )
    ]


def build_compute_metrics(eval_dataset, sentence_labels, token_labels, per_entity=False):
    """A `compute_metrics(eval_pred)` for Trainer, scoring `eval_pred.predictions` against `eval_dataset`.

    Args:
        eval_dataset: the evaluation `datasets.Dataset` (raw gold columns, see `predictions_to_records`), in the
            order Trainer evaluates it.
        sentence_labels, token_labels: the label lists the model was trained with (index = predicted id); gold
            labels outside them are counted as errors and reported as `sentence_unseen_examples` /
            `token_unseen_words`.
        per_entity: also report `token_<TYPE>_precision/_recall/_f1/_support`.

    The returned function ignores `eval_pred.label_ids` and returns the metric dict without prefix (Trainer adds
    `eval_` / `test_`).
    """
    metric = load_multitask_metric()

    def compute_metrics(eval_pred):
        records = predictions_to_records(eval_dataset, eval_pred.predictions, sentence_labels, token_labels)
        return metric.compute(
            predictions=[{"label": r["predicted_label"], "tags": r["predicted_tags"]} for r in records],
            references=[{"label": r["gold_label"] or "", "tags": r["gold_tags"] or []} for r in records],
            per_entity=per_entity,
            sentence_labels=list(sentence_labels),
            token_labels=list(token_labels),
        )

    return compute_metrics
