"""Calibrated scores: one temperature for a head's logits, fitted on validation data by negative log-likelihood (Guo
et al. 2017, "On Calibration of Modern Neural Networks"), and the figures that say whether it worked: expected
calibration error over 15 equal-width bins of the top score, negative log-likelihood, and the bins themselves (the
model card's reliability diagram).

    dev = collect_logits(model, encoded["validation"], MultiTaskCollator(tokenizer))
    temperature = fit_temperature(dev["sentence_logits"], dev["sentence_labels"])
    calibration_figures(dev["sentence_logits"], dev["sentence_labels"], temperature)   # ece, nll, before / after
    threshold = threshold_for_recall(top_scores, target_recall=0.95)   # keeps 95% of in-scope texts

Logits are `[n, classes]` (a token head's: one row per scored token); a label below 0 (no label, or one unseen in
training) is left out, as the loss leaves it out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .data import IGNORE_INDEX, MODEL_INPUT_KEYS, length_order

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)
"""Fitted temperatures are kept in this range: logits that carry no information (an untrained head) would otherwise
push T towards infinity, every score towards uniform."""


def _labelled(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [n, classes] and labels [n], got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    keep = labels >= 0
    return logits[keep], labels[keep]


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The temperature T minimising the NLL of `softmax(logits / T)` on `labels` (LBFGS on log T, so T stays
    positive), clamped to `TEMPERATURE_RANGE`. Returns 1.0 when no example carries a label."""
    logits, labels = _labelled(logits, labels)
    if len(labels) == 0:
        return 1.0
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_temperature.detach().exp())
    if math.isnan(temperature):
        raise ValueError("temperature fitting diverged (are the validation logits finite?)")
    return min(max(temperature, TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1])


def reliability_bins(probs, labels, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of the top score (`(lo, hi]`, the first bin `[0, hi]`): `count`, mean `confidence` and
    `accuracy` (None for an empty bin)."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    index = torch.clamp(torch.ceil(confidence * bins).long() - 1, 0, bins - 1)
    out = []
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        out.append({"lo": number / bins, "hi": (number + 1) / bins, "count": count,
                    "confidence": float(confidence[members].mean()) if count else None,
                    "accuracy": float(correct[members].mean()) if count else None})
    return out


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - mean confidence|, weighted by the bin's share of the examples."""
    table = reliability_bins(probs, labels, bins)
    total = sum(row["count"] for row in table)
    if not total:
        return 0.0
    return sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"])


def calibration_figures(logits, labels, temperature: float) -> dict:
    """ECE and NLL of `softmax(logits)` and of `softmax(logits / temperature)`, over the labelled rows."""
    logits, labels = _labelled(logits, labels)
    if len(labels) == 0:
        return {}
    figures = {"examples": len(labels), "temperature": temperature}
    for suffix, scale in (("", 1.0), ("_calibrated", temperature)):
        scaled = logits / scale
        figures["ece" + suffix] = expected_calibration_error(scaled.softmax(-1), labels)
        figures["nll" + suffix] = float(F.cross_entropy(scaled, labels))
    return figures


@torch.no_grad()
def collect_logits(model, dataset, collator, batch_size: int = 64, tokens: bool = True) -> dict[str, torch.Tensor]:
    """Over an encoded split (`data.encode_dataset_dict`): `sentence_logits` [n, labels] with `sentence_labels` [n],
    the L2-normalised `sentence_embedding` [n, hidden], and (unless `tokens=False`) `token_logits` [tokens, tags] with
    `token_labels` [tokens] at the positions that carry a tag (a word's first sub-token), float32 on the CPU, in the
    data set's order; the model is left in the mode it was in. Batches are drawn in order of length, which pads far
    less than the data set's order."""
    was_training = model.training
    model.eval()
    order = length_order(dataset)
    rows = [None] * len(dataset)  # per example: sentence logits, label, embedding, (token logits, token labels)
    batches = DataLoader(dataset, batch_size=batch_size, sampler=order, collate_fn=collator)
    for start, batch in zip(range(0, len(order), batch_size), batches):
        inputs = {key: batch[key].to(model.device) for key in MODEL_INPUT_KEYS if key in batch}
        outputs = model(**inputs)
        sentence_logits = outputs.sentence_logits.float().cpu()
        embeddings = torch.nn.functional.normalize(outputs.sentence_embedding.float().cpu(), dim=-1)
        sentence_labels = batch.get("sentence_labels", torch.full((len(batch["input_ids"]),), IGNORE_INDEX))
        token_logits = outputs.token_logits.float().cpu() if tokens and "token_labels" in batch else None
        for row, index in enumerate(order[start:start + batch_size]):
            example = [sentence_logits[row], sentence_labels[row], embeddings[row]]
            if token_logits is not None:
                labelled = batch["token_labels"][row] != IGNORE_INDEX
                example += [token_logits[row][labelled], batch["token_labels"][row][labelled]]
            rows[index] = example
    model.train(was_training)
    columns = list(zip(*rows))
    tags = len(model.config.token_labels)
    return {
        "sentence_logits": torch.stack(columns[0]),
        "sentence_labels": torch.stack(columns[1]),
        "sentence_embedding": torch.stack(columns[2]),
        "token_logits": torch.cat(columns[3]) if len(columns) == 5 else torch.zeros(0, tags),
        "token_labels": torch.cat(columns[4]) if len(columns) == 5 else torch.zeros(0, dtype=torch.long),
    }


def class_centroids(embeddings, labels, num_classes: int) -> torch.Tensor:
    """`[num_classes, hidden]`: the L2-normalised mean of each class's (normalised) embeddings; a class without an
    example (or an unlabelled row, label < 0) contributes a zero row, which no text is close to."""
    embeddings = torch.nn.functional.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=-1)
    labels = torch.as_tensor(labels, dtype=torch.long)
    centroids = torch.zeros(num_classes, embeddings.shape[-1])
    labelled = labels >= 0
    centroids.index_add_(0, labels[labelled], embeddings[labelled])
    return torch.nn.functional.normalize(centroids, dim=-1)


def threshold_for_recall(scores, target_recall: float) -> float:
    """The highest threshold that keeps at least `target_recall` of `scores` (in-scope texts' top scores): a text is
    rejected when its score is below the threshold."""
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    ordered = sorted(float(score) for score in scores)
    if not ordered:
        raise ValueError("no scores to choose a threshold from")
    return ordered[int(math.floor(len(ordered) * (1 - target_recall) + 1e-9))] if target_recall < 1 else ordered[0]


__all__ = ["ECE_BINS", "TEMPERATURE_RANGE", "calibration_figures", "class_centroids", "collect_logits", "threshold_for_recall", "expected_calibration_error", "fit_temperature", "reliability_bins"]
