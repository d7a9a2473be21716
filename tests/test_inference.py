"""Tests for the sentence side of `modeling_mtl.inference_mtl`: calibrated scores (`sentence_temperature`), the
intent ranking (`top_k`) and rejection (`reject_threshold`, `ambiguity_margin`, `out_of_scope_label`), in
`predict`, the `multitask` pipeline and a clean client that has only the saved folder."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import BLOCK_PACKAGE, REPO, SENTENCE_LABELS, SHARED_DATA
from modeling_mtl.calibration import class_centroids
from modeling_mtl.inference_mtl import centroid_similarity
from test_pipeline import assert_same

TEXTS = ["fly from boston to new york", "buy a new laptop", "hello", "what is the weather in paris"]


@pytest.fixture
def model(make_tiny_model):
    """A tiny model whose sentence head gives clearly different scores to different texts."""
    model = make_tiny_model()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        head = model.sentence_head.classifier
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.3)
    return model


def midway(model, rejected):
    """A threshold that rejects the `rejected` lowest-scored of TEXTS, halfway between two scores."""
    scores = sorted(result["score"] for result in model.predict(TEXTS))
    return (scores[rejected - 1] + scores[rejected]) / 2


def use_centroids(model, rejected):
    """Switch `model` to centroid rejection with a threshold that rejects the last `rejected` of TEXTS: each other
    text is its own class's centroid (similarity 1), the rejected ones are unlabelled. The tiny random encoder's
    embeddings are all alike (cosine above 0.9), so class means would put similarities within 1e-6 of each other and a
    one-text forward pass (the pipeline's) could land on the other side of the threshold."""
    labels = [index if index < len(TEXTS) - rejected else -1 for index in range(len(TEXTS))]
    embeddings = model.encode(TEXTS, convert_to_tensor=True)
    centroids = class_centroids(embeddings, labels, len(SENTENCE_LABELS))
    model.config.sentence_centroids = centroids.tolist()
    model.config.reject_score = "centroid_cosine"
    similarities = sorted(centroid_similarity(embeddings, centroids).tolist())
    assert similarities[rejected] - similarities[rejected - 1] > 1e-3, f"no clear margin: {similarities}"
    model.config.reject_threshold = (similarities[rejected - 1] + similarities[rejected]) / 2
    return centroids


def sentence_logits(model, texts):
    inputs = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).sentence_logits


def test_scores_are_the_softmax_of_the_logits_over_the_temperature(model):
    logits = sentence_logits(model, TEXTS)
    plain = model.predict(TEXTS)
    model.config.sentence_temperature = 2.5
    calibrated = model.predict(TEXTS)
    for row, before, after in zip(logits, plain, calibrated):
        assert after["label"] == before["label"] == SENTENCE_LABELS[int(row.argmax())]
        assert after["score"] == pytest.approx(float((row / 2.5).softmax(-1).max()), abs=1e-6)
        assert after["score"] < before["score"]
        assert after["entities"] == before["entities"]


def test_top_k_ranks_the_labels_highest_first(model):
    model.config.sentence_temperature = 1.7
    logits = sentence_logits(model, TEXTS)
    for row, result in zip(logits, model.predict(TEXTS, top_k=2)):
        probabilities = (row / 1.7).softmax(-1)
        order = probabilities.argsort(descending=True)[:2]
        assert [item["label"] for item in result["intent_ranking"]] == [SENTENCE_LABELS[int(i)] for i in order]
        assert [item["score"] for item in result["intent_ranking"]] == pytest.approx(probabilities[order].tolist())
        assert result["intent_ranking"][0] == {"label": result["label"], "score": result["score"]}
    # More than there are labels lists them all; none: no ranking.
    assert len(model.predict(TEXTS[:1], top_k=10)[0]["intent_ranking"]) == len(SENTENCE_LABELS)
    assert "intent_ranking" not in model.predict(TEXTS[:1])[0]


@pytest.mark.parametrize("top_k", [0, -1, 1.5, "2", True])
def test_a_bad_top_k_is_refused(model, top_k):
    with pytest.raises(ValueError, match="top_k is .*; give a positive integer"):
        model.predict(TEXTS[:1], top_k=top_k)


def test_a_score_under_the_threshold_is_rejected_with_its_entities_kept(model):
    plain = model.predict(TEXTS, top_k=3)
    model.config.reject_threshold = midway(model, 2)  # the two lowest-scored texts are rejected
    model.config.out_of_scope_label = "nlu_fallback"
    rejected = model.predict(TEXTS, top_k=3)
    assert sum(result["label"] == "nlu_fallback" for result in rejected) == 2
    for before, after in zip(plain, rejected):
        if before["score"] < model.config.reject_threshold:
            assert after == {**before, "label": "nlu_fallback", "rejected_label": before["label"]}
        else:
            assert after == before


def test_centroid_rejection_compares_the_embedding_to_the_class_centroids(model):
    plain = model.predict(TEXTS, top_k=2)
    centroids = use_centroids(model, 2)
    rejected = model.predict(TEXTS, top_k=2)
    embeddings = torch.nn.functional.normalize(model.encode(TEXTS, convert_to_tensor=True), dim=-1)
    expected = (embeddings @ centroids.T).max(-1).values
    assert sum(result["label"] == "out_of_scope" for result in rejected) == 2
    for before, after, similarity in zip(plain, rejected, expected.tolist()):
        assert after["centroid_similarity"] == pytest.approx(similarity, abs=1e-5)
        # The label's own score and the ranking stay the softmax's; only the decision to reject changes.
        kept = {**before, "centroid_similarity": after["centroid_similarity"]}
        if similarity < model.config.reject_threshold:
            assert after == {**kept, "label": "out_of_scope", "rejected_label": before["label"]}
        else:
            assert after == kept
    # A threshold of -1 rejects nothing (a cosine similarity is never below it); the empty-text rule still holds.
    model.config.reject_threshold = -1.0
    assert all("rejected_label" not in result for result in model.predict(TEXTS))
    assert model.predict([""])[0]["label"] == "out_of_scope"


@pytest.mark.parametrize(("settings", "message"), [
    ({"reject_score": "energy"}, r"`reject_score` is 'energy'; choose one of \['softmax', 'centroid_cosine'\]"),
    ({"reject_score": "centroid_cosine"}, r"centroid_cosine needs `sentence_centroids`"),
    ({"reject_score": "centroid_cosine", "sentence_centroids": [[1.0, 0.0]]}, r"must be 2 rows \(one per sentence"),
    ({"reject_score": "centroid_cosine", "sentence_centroids": [[1.0, 0.0], [1.0]]}, r"of equal length"),
    ({"reject_score": "centroid_cosine", "sentence_centroids": [[1.0], [0.5]], "reject_threshold": -1.5},
     r"`reject_threshold` must be a score in \[-1, 1\]"),
])
def test_bad_centroid_settings_are_refused(settings, message):
    from modeling_mtl import MultiTaskConfig

    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(sentence_labels=["a", "b"], **settings)
    config = MultiTaskConfig(sentence_labels=["a", "b"], reject_score="centroid_cosine",
                             sentence_centroids=[[1.0, 0.0], [0.0, 1.0]], reject_threshold=-0.5)
    assert config.reject_threshold == -0.5


def test_two_labels_closer_than_the_margin_are_rejected(model):
    plain = model.predict(TEXTS, top_k=2)
    gaps = [result["intent_ranking"][0]["score"] - result["intent_ranking"][1]["score"] for result in plain]
    model.config.ambiguity_margin = sorted(gaps)[0] + 1e-6  # only the most ambiguous text
    rejected = model.predict(TEXTS)
    assert [result["label"] == "out_of_scope" for result in rejected] == [gap == min(gaps) for gap in gaps]
    model.config.ambiguity_margin = None
    model.config.reject_threshold = 0.0
    assert all(result["label"] != "out_of_scope" for result in model.predict(TEXTS))


@pytest.mark.parametrize("empty", ["", "   ", "\n\t", []])
def test_a_text_without_words_is_rejected_by_a_model_that_rejects(model, empty):
    (unconfigured,) = model.predict([empty])
    assert "rejected_label" not in unconfigured  # a model without rejection still answers as always
    model.config.reject_threshold = 0.0  # no score is below it: only the empty-text rule can reject
    (result,) = model.predict([empty])
    assert result == {**unconfigured, "label": "out_of_scope", "rejected_label": unconfigured["label"]}
    assert "rejected_label" not in model.predict([TEXTS[0]])[0]
    model.config.reject_threshold, model.config.ambiguity_margin = None, 0.0
    assert model.predict([empty])[0]["label"] == "out_of_scope"


ATIS_MODEL = REPO / "outputs" / "atis_span_roundtrip" / "run_jointbert (original)"


@pytest.mark.skipif(not (ATIS_MODEL / "config.json").is_file() or not (SHARED_DATA / "atis").is_dir(),
                    reason="needs a trained ATIS model (python benchmarks/atis_span_roundtrip.py writes it) and "
                    "../shared/data/atis")
def test_a_trained_atis_model_rejects_empty_foreign_and_noisy_texts():
    """Item 6 of the out-of-scope issue on a real model: calibrated on ATIS dev with reject_threshold auto (95% of
    dev kept) on the default score (centroid_cosine), as training does, every empty text, request in another
    language or script, unrelated English request and noise string of benchmarks/atis_confidence.py is rejected."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from atis_confidence import STRANGE_INPUTS, calibration

    from modeling_mtl import MultiTaskModel

    atis = MultiTaskModel.from_pretrained(ATIS_MODEL).eval()
    figures = calibration(atis, ATIS_MODEL)
    assert figures["test_sentence_ece_calibrated"] < 0.02
    assert atis.config.reject_score == "centroid_cosine"
    for group in ("empty", "other languages", "unrelated English", "noise"):
        results = atis.predict(STRANGE_INPUTS[group])
        accepted = [(text, r["label"], r["score"]) for text, r in zip(STRANGE_INPUTS[group], results)
                    if "rejected_label" not in r]
        assert not accepted, f"{group}: accepted with a confident in-scope label: {accepted}"


@pytest.mark.parametrize("reject_score", ["softmax", "centroid_cosine"])
def test_the_pipeline_follows_the_config_like_predict(model, reject_score):
    from modeling_mtl.pipeline_mtl import MultiTaskPipeline

    model.config.sentence_temperature = 1.3
    model.config.reject_threshold = midway(model, 1)
    if reject_score == "centroid_cosine":
        use_centroids(model, 1)
    pipe = MultiTaskPipeline(model=model)
    expected = model.predict(TEXTS, top_k=3)
    assert sum(result["label"] == "out_of_scope" for result in expected) == 1
    assert_same(pipe(TEXTS, top_k=3), expected)  # one text a forward pass: floats equal to 1e-5
    with pytest.raises(ValueError, match="top_k is 0"):
        pipe(TEXTS[0], top_k=0)


CLIENT = BLOCK_PACKAGE + textwrap.dedent(
    """
    import json

    from transformers import AutoModel, pipeline

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    pipe = pipeline(model=folder, trust_remote_code=True)
    print(json.dumps({"predict": model.predict(texts, top_k=3), "pipeline": pipe(texts, top_k=3)}))
    """
)


@pytest.mark.parametrize("reject_score", ["softmax", "centroid_cosine"])
def test_a_clean_client_gets_the_calibrated_scores_rankings_and_rejections(model, tmp_path, reject_score):
    model.config.sentence_temperature = 1.7
    model.config.reject_threshold = midway(model, 1)
    if reject_score == "centroid_cosine":
        use_centroids(model, 1)
    expected = json.loads(json.dumps(model.predict(TEXTS, top_k=3)))
    assert sum(result["label"] == "out_of_scope" for result in expected) == 1
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["sentence_temperature"] == 1.7 and saved["reject_threshold"] == model.config.reject_threshold
    assert saved["reject_score"] == reject_score
    assert (saved["sentence_centroids"] is None) == (reject_score == "softmax")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "model"), json.dumps(TEXTS)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert outputs["predict"] == expected
    assert_same(outputs["pipeline"], expected)
