"""Tests for `modeling_mtl.calibration`: temperature fitting on synthetic logits of a known temperature, ECE and its
bins on hand-computed cases."""

import pytest
import torch

from modeling_mtl.calibration import (
    TEMPERATURE_RANGE,
    calibration_figures,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    threshold_for_recall,
)


def sampled(temperature, n=20000, classes=6, seed=0):
    """Logits and labels drawn from softmax(logits / temperature): a model over-confident by `temperature`."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 4
    labels = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_a_known_temperature_is_recovered_within_5_percent(temperature):
    logits, labels = sampled(temperature)
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.05)


def test_calibrating_lowers_ece_and_nll_of_an_over_confident_model():
    logits, labels = sampled(2.5, seed=1)
    temperature = fit_temperature(*sampled(2.5, seed=2))  # fitted on other data, as on dev
    figures = calibration_figures(logits, labels, temperature)
    assert figures["ece"] > 0.1 and figures["ece_calibrated"] < 0.02
    assert figures["nll_calibrated"] < figures["nll"]


def test_unlabelled_rows_are_left_out():
    logits, labels = sampled(2.0, n=4000)
    with_missing = torch.cat([labels[:2000], torch.full((2000,), -100)])
    assert fit_temperature(logits, with_missing) == pytest.approx(fit_temperature(logits[:2000], labels[:2000]))
    assert calibration_figures(logits, with_missing, 2.0)["examples"] == 2000
    assert fit_temperature(logits[:3], torch.full((3,), -100)) == 1.0


def test_ece_and_bins_on_a_hand_computed_case():
    # Ten examples at confidence 0.9, half of them right (gap 0.4); ten at 0.45, all right (gap 0.55): ECE 0.475.
    probs = torch.tensor([[0.9, 0.05, 0.05]] * 10 + [[0.45, 0.3, 0.25]] * 10)
    labels = torch.tensor([0] * 5 + [1] * 5 + [0] * 10)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.55)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and sum(row["count"] for row in bins) == 20
    full = [row for row in bins if row["count"]]
    assert [(row["count"], row["accuracy"]) for row in full] == [(10, 1.0), (10, 0.5)]
    assert full[0]["lo"] < 0.45 <= full[0]["hi"] and full[1]["lo"] < 0.9 <= full[1]["hi"]


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected logits \[n, classes\] and labels \[n\]"):
        fit_temperature(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def test_logits_without_information_get_the_largest_temperature_not_infinity():
    logits = torch.randn(2000, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.randint(0, 4, (2000,), generator=torch.Generator().manual_seed(6))  # unrelated to the logits
    assert fit_temperature(logits, labels) == TEMPERATURE_RANGE[1]


def test_the_threshold_keeps_the_target_share_of_in_scope_scores():
    scores = torch.linspace(0.01, 1.0, 100)
    threshold = threshold_for_recall(scores, 0.95)
    assert float((scores >= threshold).double().mean()) >= 0.95
    assert float((scores >= threshold + 1e-6).double().mean()) < 0.95  # the highest such threshold
    assert threshold_for_recall(scores, 1.0) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="target recall must be in"):
        threshold_for_recall(scores, 0)


def test_collect_logits_keeps_the_data_set_order_while_batching_by_length(make_tiny_model):
    """Batches are drawn shortest first, but every row comes back where its example is, equal to that example's
    own forward pass; `tokens=False` leaves the token logits out."""
    from conftest import DEMO_DATA, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS
    from modeling_mtl.calibration import collect_logits
    from modeling_mtl.data import DataSource, MultiTaskCollator, encode_dataset_dict, load_sources

    model = make_tiny_model(sentence_labels=DEMO_SENTENCE_LABELS, token_labels=DEMO_TOKEN_LABELS)
    raw = load_sources([DataSource(data_dir=str(DEMO_DATA))])
    split = encode_dataset_dict(raw, model.tokenizer, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS, max_length=64)[0]
    split = split["validation"].select(range(20))
    lengths = [len(ids) for ids in split["input_ids"]]
    assert lengths != sorted(lengths)  # else the order would not be tested
    collator = MultiTaskCollator(model.tokenizer)
    batched = collect_logits(model, split, collator, batch_size=8)
    alone = [collect_logits(model, split.select([index]), collator) for index in range(len(split))]
    for key in ("sentence_logits", "sentence_embedding"):
        assert torch.allclose(batched[key], torch.cat([one[key] for one in alone]), atol=1e-5), key
    assert torch.equal(batched["sentence_labels"], torch.cat([one["sentence_labels"] for one in alone]))
    assert torch.equal(batched["token_labels"], torch.cat([one["token_labels"] for one in alone]))
    assert torch.allclose(batched["token_logits"], torch.cat([one["token_logits"] for one in alone]), atol=1e-5)
    without = collect_logits(model, split, collator, batch_size=8, tokens=False)
    assert without["token_logits"].shape == (0, len(DEMO_TOKEN_LABELS)) and len(without["token_labels"]) == 0
    assert torch.equal(without["sentence_logits"], batched["sentence_logits"])
