"""Tests of the local `multitask_metric` evaluate module and of the Trainer bridge in `modeling_mtl.metrics`.

Every expected number is worked out by hand in the comments (not by calling seqeval).
"""

import json
import socket

import datasets
import evaluate
import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from modeling_mtl.metrics import (
    METRIC_PATH,
    build_compute_metrics,
    load_multitask_metric,
    predictions_to_records,
    preprocess_logits_for_metrics,
    word_predictions,
)

COUNT_KEYS = {"num_sentence_examples", "num_token_examples", "num_exact_match_examples"}
SENTENCE_KEYS = {"sentence_accuracy", "sentence_f1_macro"}
TOKEN_KEYS = {"token_precision", "token_recall", "token_f1", "token_accuracy"}


@pytest.fixture(scope="module")
def metric():
    return load_multitask_metric()


def ex(label, tags):
    return {"label": label, "tags": tags}


# Four examples with both references.
REFERENCES = [
    ex("greet", ["B-PER", "I-PER", "O", "B-LOC"]),  # PER(0-1), LOC(3)
    ex("book", ["O", "B-LOC", "I-LOC"]),  # LOC(1-2)
    ex("book", ["B-PER", "O"]),  # PER(0)
    ex("greet", ["O", "O"]),  # no entity
]
PREDICTIONS = [
    ex("greet", ["B-PER", "I-PER", "O", "O"]),  # label right; PER right, LOC missed
    ex("greet", ["O", "B-LOC", "I-LOC"]),  # label wrong; LOC right
    ex("book", ["B-PER", "O"]),  # all right
    ex("greet", ["O", "O"]),  # all right
]


def test_joint_scores_by_hand(metric):
    result = metric.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert set(result) == SENTENCE_KEYS | TOKEN_KEYS | {"exact_match"} | COUNT_KEYS
    # Labels (pred, gold): (greet, greet) ok, (greet, book) wrong, (book, book) ok, (greet, greet) ok -> 3/4.
    assert result["sentence_accuracy"] == pytest.approx(0.75)
    # greet: TP 2, predicted 3, gold 2 -> F1 = 2*2/(3+2) = 4/5.  book: TP 1, predicted 1, gold 2 -> 2/3.
    # Macro = (4/5 + 2/3) / 2 = 11/15.
    assert result["sentence_f1_macro"] == pytest.approx(11 / 15)
    # Gold entities 4, predicted 3, all 3 predicted ones right: P = 3/3, R = 3/4, F1 = 2*1*0.75/1.75 = 6/7.
    assert result["token_precision"] == pytest.approx(1.0)
    assert result["token_recall"] == pytest.approx(0.75)
    assert result["token_f1"] == pytest.approx(6 / 7)
    # 4 + 3 + 2 + 2 = 11 words, one wrong (B-LOC predicted O) -> 10/11.
    assert result["token_accuracy"] == pytest.approx(10 / 11)
    # Example 0 has a tag wrong, example 1 the label; 2 and 3 are fully right -> 2/4.
    assert result["exact_match"] == pytest.approx(0.5)
    assert (result["num_sentence_examples"], result["num_token_examples"], result["num_exact_match_examples"]) == (4, 4, 4)


def test_per_entity_scores(metric):
    result = metric.compute(predictions=PREDICTIONS, references=REFERENCES, per_entity=True)
    per_type = {f"token_{t}_{m}" for t in ("PER", "LOC") for m in ("precision", "recall", "f1", "support")}
    assert set(result) == SENTENCE_KEYS | TOKEN_KEYS | {"exact_match"} | COUNT_KEYS | per_type
    # PER: gold 2, predicted 2, both right.
    assert (result["token_PER_precision"], result["token_PER_recall"], result["token_PER_f1"]) == (1.0, 1.0, 1.0)
    assert result["token_PER_support"] == 2
    # LOC: gold 2, predicted 1 (right): P = 1, R = 1/2, F1 = 2*1*0.5/1.5 = 2/3.
    assert result["token_LOC_precision"] == pytest.approx(1.0)
    assert result["token_LOC_recall"] == pytest.approx(0.5)
    assert result["token_LOC_f1"] == pytest.approx(2 / 3)
    assert result["token_LOC_support"] == 2


def test_unseen_reference_labels_are_errors_and_counted(metric):
    references = [ex("weather", ["B-CITY", "O"]), ex("greet", ["B-PER"])]
    predictions = [ex("greet", ["O", "O"]), ex("greet", ["B-PER"])]
    result = metric.compute(
        predictions=predictions,
        references=references,
        per_entity=True,
        sentence_labels=["greet", "book"],
        token_labels=["O", "B-PER", "I-PER"],
    )
    # "weather" is unseen: predicted greet, wrong. Accuracy 1/2.
    assert result["sentence_accuracy"] == pytest.approx(0.5)
    # weather: TP 0 -> F1 0.  greet: TP 1, predicted 2, gold 1 -> 2/3.  (book appears nowhere: not a class here.)
    assert result["sentence_f1_macro"] == pytest.approx(1 / 3)
    assert result["sentence_unseen_examples"] == 1
    # Gold CITY(0) and PER(0); predicted PER(0) only: P = 1, R = 1/2, F1 = 2/3.
    assert result["token_precision"] == pytest.approx(1.0)
    assert result["token_recall"] == pytest.approx(0.5)
    assert result["token_f1"] == pytest.approx(2 / 3)
    # CITY is never predicted: P (0/0) reported as 0, R = 0/1, support 1.
    assert (result["token_CITY_precision"], result["token_CITY_recall"], result["token_CITY_f1"]) == (0.0, 0.0, 0.0)
    assert result["token_CITY_support"] == 1
    # 3 words, B-CITY predicted O -> 2/3; B-CITY is the only unseen gold tag.
    assert result["token_accuracy"] == pytest.approx(2 / 3)
    assert result["token_unseen_words"] == 1
    assert result["exact_match"] == pytest.approx(0.5)


def test_predicted_class_absent_from_references_counts_in_macro_f1(metric):
    # Gold a, a; predicted a, b.  a: TP 1, predicted 1, gold 2 -> 2/3.  b: TP 0 -> 0.  Macro = 1/3.
    result = metric.compute(predictions=[ex("a", []), ex("b", [])], references=[ex("a", []), ex("a", [])])
    assert result["sentence_accuracy"] == pytest.approx(0.5)
    assert result["sentence_f1_macro"] == pytest.approx(1 / 3)


def test_sentence_only_gives_no_token_keys(metric):
    # Predicted tags of an example without gold tags are ignored, whatever their length.
    predictions = [ex("a", ["O", "B-X"]), ex("a", [])]
    references = [ex("a", []), ex("b", [])]
    result = metric.compute(predictions=predictions, references=references, sentence_labels=["a"], token_labels=["O"])
    assert set(result) == SENTENCE_KEYS | COUNT_KEYS | {"sentence_unseen_examples"}
    # (a, a) right, (a, b) wrong -> 1/2.  a: TP 1, predicted 2, gold 1 -> 2/3; b: 0.  Macro = 1/3.
    assert result["sentence_accuracy"] == pytest.approx(0.5)
    assert result["sentence_f1_macro"] == pytest.approx(1 / 3)
    assert result["sentence_unseen_examples"] == 1  # "b"
    assert (result["num_sentence_examples"], result["num_token_examples"], result["num_exact_match_examples"]) == (2, 0, 0)


def test_token_only_gives_no_sentence_keys(metric):
    predictions = [ex("whatever", ["B-X", "I-X", "O"])]
    references = [ex("", ["B-X", "I-X", "B-Y"])]
    result = metric.compute(predictions=predictions, references=references, sentence_labels=["a"], token_labels=["O"])
    assert set(result) == TOKEN_KEYS | COUNT_KEYS | {"token_unseen_words"}
    # Gold X(0-1), Y(2); predicted X(0-1): P = 1, R = 1/2, F1 = 2/3.  Words: 2/3 right.
    assert result["token_precision"] == pytest.approx(1.0)
    assert result["token_recall"] == pytest.approx(0.5)
    assert result["token_f1"] == pytest.approx(2 / 3)
    assert result["token_accuracy"] == pytest.approx(2 / 3)
    assert result["token_unseen_words"] == 3  # B-X, I-X, B-Y are not in ["O"]
    assert (result["num_sentence_examples"], result["num_token_examples"], result["num_exact_match_examples"]) == (0, 1, 0)


def test_examples_with_one_reference_each_give_no_exact_match(metric):
    predictions = [ex("a", ["O"]), ex("a", ["B-X", "I-X"])]
    references = [ex("a", []), ex("", ["B-X", "I-X"])]
    result = metric.compute(predictions=predictions, references=references)
    assert set(result) == SENTENCE_KEYS | TOKEN_KEYS | COUNT_KEYS
    assert result["sentence_accuracy"] == 1.0
    assert result["token_f1"] == 1.0
    assert result["num_exact_match_examples"] == 0


def test_no_reference_at_all_gives_counts_only(metric):
    result = metric.compute(predictions=[ex("a", ["O"])], references=[ex("", [])])
    assert result == {"num_sentence_examples": 0, "num_token_examples": 0, "num_exact_match_examples": 0}


def test_entities_follow_seqeval_default_mode(metric):
    # Default (conlleval-like) mode: an I- tag after O opens an entity, so I-PER I-PER is the span PER(0-1),
    # the same as the gold B-PER I-PER: P = R = F1 = 1, although the tag of word 0 is wrong (accuracy 1/2).
    result = metric.compute(predictions=[ex("", ["I-PER", "I-PER"])], references=[ex("", ["B-PER", "I-PER"])])
    assert (result["token_precision"], result["token_recall"], result["token_f1"]) == (1.0, 1.0, 1.0)
    assert result["token_accuracy"] == 0.5


def test_no_entities_anywhere_scores_zero(metric):
    # seqeval's zero division: no gold and no predicted entity gives P = R = F1 = 0, word accuracy 1.
    result = metric.compute(predictions=[ex("", ["O", "O"])], references=[ex("", ["O", "O"])])
    assert (result["token_precision"], result["token_recall"], result["token_f1"]) == (0.0, 0.0, 0.0)
    assert result["token_accuracy"] == 1.0


def test_mismatched_tag_lengths_name_the_example(metric):
    predictions = [ex("a", ["O"]), ex("a", ["O", "O"])]
    references = [ex("a", ["O"]), ex("a", ["O", "O", "B-X"])]
    with pytest.raises(ValueError, match=r"Example 1: 2 predicted tags for 3 reference tags"):
        metric.compute(predictions=predictions, references=references)


def test_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for loaded in (load_multitask_metric(), evaluate.load(METRIC_PATH)):
        assert loaded.compute(predictions=[ex("a", ["B-X"])], references=[ex("a", ["B-X"])])["exact_match"] == 1.0


def test_preprocess_logits_for_metrics():
    sentence_logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    token_logits = torch.zeros(2, 3, 4)
    token_logits[0, 0, 3] = token_logits[0, 1, 1] = token_logits[1, 2, 2] = 1.0
    sentence_ids, token_ids = preprocess_logits_for_metrics((sentence_logits, token_logits), labels=None)
    assert sentence_ids.tolist() == [1, 0]
    # All-zero rows take the first maximum, id 0.
    assert token_ids.tolist() == [[3, 1, 0], [0, 0, 2]]


def test_word_predictions_first_subtoken_truncation_and_padding():
    token_labels = ["O", "B-PER", "I-PER"]
    token_pred_ids = np.array([[0, 1, 2, 2, -100], [0, 2, 1, -100, -100]])
    # Row 0: words at positions 1, 2 and a truncated word (-1 -> "O").
    # Row 1: positions 2, 1, and a position that only holds Trainer's -100 padding -> "O".
    word_token_index = [[1, 2, -1], [2, 1, 3]]
    expected = [["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]]
    assert word_predictions(token_pred_ids, word_token_index, token_labels) == expected
    # A {id: label} mapping works too, with int or (JSON round-trip) str keys.
    assert word_predictions(token_pred_ids, word_token_index, dict(enumerate(token_labels))) == expected
    assert word_predictions(token_pred_ids, word_token_index, {str(i): t for i, t in enumerate(token_labels)}) == expected
    # An example with no word gives no tag.
    assert word_predictions(token_pred_ids[:1], [[]], token_labels) == [[]]


def test_preprocess_logits_for_bio_viterbi_keeps_the_token_log_probabilities():
    sentence_logits, token_logits = torch.randn(2, 3), torch.randn(2, 4, 5)
    sentence_ids, token_log_probs = preprocess_logits_for_metrics(
        (sentence_logits, token_logits), labels=None, token_decoding="bio_viterbi"
    )
    assert torch.equal(sentence_ids, sentence_logits.argmax(-1))
    assert torch.allclose(token_log_probs, token_logits.log_softmax(-1))


def test_word_predictions_decode_log_probabilities_as_valid_bio():
    token_labels = ["O", "B-PER", "I-PER"]
    # Per-position argmax would read "O I-PER" for the two words (positions 1 and 3; position 2 is a later
    # sub-token and does not count). The best valid sequence is "O B-PER" (0.6 * 0.3 > 0.3 * 0.5 > 0.6 * 0.2).
    probs = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5], [-100, -100, -100]])
    log_probs = np.log(np.clip(probs, 1e-9, None))
    log_probs[-1] = -100  # Trainer's padding: a word pointing there is tagged "O"
    assert word_predictions(np.argmax(log_probs, -1)[None], [[1, 3]], token_labels) == [["O", "I-PER"]]
    assert word_predictions(log_probs[None], [[1, 3]], token_labels) == [["O", "B-PER"]]
    assert word_predictions(log_probs[None], [[1, 3, 4, -1]], token_labels) == [["O", "B-PER", "O", "O"]]
    assert word_predictions(log_probs[None], [[]], token_labels) == [[]]


SENTENCE_LABELS = ["greet", "book"]
TOKEN_LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture()
def eval_dataset():
    return datasets.Dataset.from_dict(
        {
            "text": ["hi John Smith", "book now", "hello Ann", "cancel it Bob"],
            "words": [["hi", "John", "Smith"], ["book", "now"], ["hello", "Ann"], ["cancel", "it", "Bob"]],
            "sentence_label": ["greet", "book", None, "cancel"],  # "cancel" unseen in training
            "tags": [["O", "B-PER", "I-PER"], None, ["O", "B-PER"], ["O", "O", "B-NAME"]],  # B-NAME unseen
            "word_token_index": [[1, 2, 3], [1, 2], [1, -1], [1, 2, 3]],  # "Ann" truncated away
        }
    )


def hand_made_predictions():
    sentence_pred_ids = np.array([0, 0, 1, 1])  # greet, greet, book, book
    token_pred_ids = np.array(
        [
            [0, 0, 1, 2, 2],  # words -> O B-PER I-PER (right)
            [0, 0, 0, -100, -100],  # O O (no gold tags: ignored)
            [0, 0, -100, -100, -100],  # hello -> O, Ann (-1) -> O; gold O B-PER
            [0, 0, 0, 1, -100],  # O O B-PER; gold O O B-NAME
        ]
    )
    return sentence_pred_ids, token_pred_ids


def test_build_compute_metrics_end_to_end(eval_dataset):
    compute_metrics = build_compute_metrics(eval_dataset, SENTENCE_LABELS, TOKEN_LABELS)
    # label_ids are ignored: the gold standard is the raw string columns.
    result = compute_metrics(EvalPrediction(predictions=hand_made_predictions(), label_ids=np.zeros(4)))
    assert set(result) == SENTENCE_KEYS | TOKEN_KEYS | COUNT_KEYS | {
        "exact_match",
        "sentence_unseen_examples",
        "token_unseen_words",
    }
    # Sentence examples 0, 1, 3: (greet, greet) right, (greet, book) wrong, (book, cancel) wrong -> 1/3.
    assert result["sentence_accuracy"] == pytest.approx(1 / 3)
    # greet: TP 1, predicted 2, gold 1 -> 2/3; book: TP 0 -> 0; cancel: TP 0 -> 0.  Macro = 2/9.
    assert result["sentence_f1_macro"] == pytest.approx(2 / 9)
    assert result["sentence_unseen_examples"] == 1
    # Token examples 0, 2, 3.  Gold PER(0:1-2), PER(2:1), NAME(3:2); predicted PER(0:1-2), PER(3:2).
    # TP 1: P = 1/2, R = 1/3, F1 = 2 * (1/6) / (5/6) = 2/5.
    assert result["token_precision"] == pytest.approx(1 / 2)
    assert result["token_recall"] == pytest.approx(1 / 3)
    assert result["token_f1"] == pytest.approx(2 / 5)
    # 3 + 2 + 3 = 8 words; wrong: Ann (O for B-PER) and Bob (B-PER for B-NAME) -> 6/8.
    assert result["token_accuracy"] == pytest.approx(0.75)
    assert result["token_unseen_words"] == 1
    # Both references in examples 0 (all right) and 3 (wrong) -> 1/2.
    assert result["exact_match"] == pytest.approx(0.5)
    assert (result["num_sentence_examples"], result["num_token_examples"], result["num_exact_match_examples"]) == (3, 3, 2)


def test_build_compute_metrics_per_entity(eval_dataset):
    compute_metrics = build_compute_metrics(eval_dataset, SENTENCE_LABELS, TOKEN_LABELS, per_entity=True)
    result = compute_metrics(EvalPrediction(predictions=hand_made_predictions(), label_ids=None))
    # PER: gold 2, predicted 2, 1 right -> P = R = F1 = 1/2.  NAME: gold 1, never predicted -> 0, 0, 0.
    assert result["token_PER_f1"] == pytest.approx(0.5)
    assert result["token_PER_support"] == 2
    assert result["token_NAME_recall"] == 0.0
    assert result["token_NAME_support"] == 1


def test_build_compute_metrics_rejects_wrong_prediction_count(eval_dataset):
    compute_metrics = build_compute_metrics(eval_dataset, SENTENCE_LABELS, TOKEN_LABELS)
    sentence_pred_ids, token_pred_ids = hand_made_predictions()
    with pytest.raises(ValueError, match="for 4 examples"):
        compute_metrics(EvalPrediction(predictions=(sentence_pred_ids[:3], token_pred_ids[:3]), label_ids=None))


def test_predictions_to_records(eval_dataset):
    records = predictions_to_records(eval_dataset, hand_made_predictions(), SENTENCE_LABELS, TOKEN_LABELS)
    assert records[0] == {
        "text": "hi John Smith",
        "words": ["hi", "John", "Smith"],
        "gold_label": "greet",
        "predicted_label": "greet",
        "gold_tags": ["O", "B-PER", "I-PER"],
        "predicted_tags": ["O", "B-PER", "I-PER"],
    }
    assert records[1]["gold_tags"] is None and records[1]["predicted_tags"] == ["O", "O"]
    assert records[2]["gold_label"] is None and records[2]["predicted_label"] == "book"
    assert records[2]["predicted_tags"] == ["O", "O"]
    assert records[3]["gold_label"] == "cancel" and records[3]["predicted_tags"] == ["O", "O", "B-PER"]
    # JSON Lines ready.
    assert [json.loads(json.dumps(r)) for r in records] == records
