"""Calibrated scores: one temperature for a head's logits, fitted on validation data by negative log-likelihood (Guo
et al. 2017, "On Calibration of Modern Neural Networks"), and the figures that say whether it worked: expected
calibration error over 15 equal-width bins of the top score, negative log-likelihood, and the bins themselves (the
model card's reliability diagram).

    temperature = fit_temperature(dev_logits, dev_labels)
    calibration_figures(test_logits, test_labels, temperature)   # {"ece", "nll", "ece_calibrated", "nll_calibrated"}

Logits are `[n, classes]` (a token head's: one row per scored token); a label below 0 (no label, or one unseen in
training) is left out, as the loss leaves it out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ECE_BINS = 15


def _labelled(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [n, classes] and labels [n], got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    keep = labels >= 0
    return logits[keep], labels[keep]


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of `softmax(logits / T)` on `labels` (LBFGS on log T, so T stays
    positive). Returns 1.0 when no example carries a label."""
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
    if not math.isfinite(temperature):
        raise ValueError("temperature fitting diverged (are the validation logits finite?)")
    return temperature


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


__all__ = ["ECE_BINS", "calibration_figures", "expected_calibration_error", "fit_temperature", "reliability_bins"]
