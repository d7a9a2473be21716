"""ONNX export (modeling_mtl/onnx_export.py): a faithful float32 graph, an int8 one, and predict/encode through
onnxruntime with the PyTorch model's own tokenising and decoding."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")

from modeling_mtl.onnx_export import OnnxMultiTaskModel, export_onnx  # noqa: E402

TEXTS = ["fly from paris to rome tomorrow", "hello", "john smith lives in new york", "a b c d e f g h i j k l"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    from conftest import tiny_config
    import torch
    from modeling_mtl import MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel(tiny_config(tokenizer.vocab_size)).eval()
    model.tokenizer = tokenizer
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx") / "export")
    return model, folder


def test_the_export_folder_holds_both_graphs_config_and_tokenizer(exported):
    model, folder = exported
    names = {path.name for path in folder.iterdir()}
    assert {"model.onnx", "model_int8.onnx", "config.json", "tokenizer.json", "onnx_export.json"} <= names
    record = json.loads((folder / "onnx_export.json").read_text())
    assert record["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert record["outputs"] == ["sentence_logits", "token_logits", "sentence_embedding"]
    assert not [name for name in names if name.startswith(".")]  # no staging folder left behind


def test_float32_graph_predicts_and_encodes_like_the_pytorch_model(exported):
    model, folder = exported
    onnx_model = OnnxMultiTaskModel.from_folder(folder)
    # Batch 3 and 2 texts of different lengths: the batch and sequence dimensions are free in the graph.
    for batch_size in (3, 2):
        ours, reference = onnx_model.predict(TEXTS, batch_size=batch_size), model.predict(TEXTS)
        assert [r["label"] for r in ours] == [r["label"] for r in reference]
        for got, expected in zip(ours, reference):
            assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
            assert [{**e, "score": 0} for e in got["entities"]] == [{**e, "score": 0} for e in expected["entities"]]
            assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in expected["entities"]])
    assert np.abs(onnx_model.encode(TEXTS, batch_size=3) - model.encode(TEXTS)).max() < 1e-5
    assert onnx_model.encode("hello").shape == (model.config.hidden_size,)


@pytest.mark.parametrize("reject_score", ["softmax", "centroid_cosine"])
def test_the_onnx_runtime_follows_temperature_ranking_and_rejection(exported, reject_score):
    model, folder = exported
    onnx_model = OnnxMultiTaskModel.from_folder(folder)
    embeddings = model.encode(TEXTS, convert_to_tensor=True)
    # Centroids of two of the texts: the others are further from them, and the threshold lies between.
    centroids = torch.nn.functional.normalize(embeddings[:2], dim=-1).tolist()
    centroids += [[0.0] * len(centroids[0])] * (len(model.config.sentence_labels) - 2)
    settings = {"sentence_temperature": 0.7, "reject_threshold": 0.5}
    if reject_score == "centroid_cosine":
        similarities = (torch.nn.functional.normalize(embeddings, dim=-1) @ torch.tensor(centroids).T).max(-1).values
        settings.update(reject_score=reject_score, sentence_centroids=centroids,
                        reject_threshold=float(similarities.sort().values[1:3].mean()))
    for config in (model.config, onnx_model.config):
        for key, value in settings.items():
            setattr(config, key, value)
    try:
        ours, reference = onnx_model.predict(TEXTS, top_k=2), model.predict(TEXTS, top_k=2)
    finally:
        model.config.sentence_temperature, model.config.reject_threshold = 1.0, None
        model.config.reject_score, model.config.sentence_centroids = "softmax", None
    assert [r["label"] for r in ours] == [r["label"] for r in reference]
    assert [r.get("rejected_label") for r in ours] == [r.get("rejected_label") for r in reference]
    if reject_score == "centroid_cosine":
        assert sum("rejected_label" in r for r in ours) == 2
        assert [r["centroid_similarity"] for r in ours] == pytest.approx(
            [r["centroid_similarity"] for r in reference], abs=1e-5)
    for got, expected in zip(ours, reference):
        assert [item["label"] for item in got["intent_ranking"]] == [item["label"] for item in expected["intent_ranking"]]
        assert [item["score"] for item in got["intent_ranking"]] == pytest.approx(
            [item["score"] for item in expected["intent_ranking"]], abs=1e-5)


def test_onnx_encode_checks_its_inputs_as_the_pytorch_model_does(exported):
    model, folder = exported
    onnx_model = OnnxMultiTaskModel.from_folder(folder)
    assert np.abs(onnx_model.encode(tuple(TEXTS)) - model.encode(list(TEXTS))).max() < 1e-5
    with pytest.raises(TypeError, match="expected a list of texts, got set"):
        onnx_model.encode(set(TEXTS))
    with pytest.raises(TypeError, match="input 1 is int"):
        onnx_model.encode(["hello", 3])


def test_int8_graph_runs_and_stays_close(exported):
    model, folder = exported
    onnx_model = OnnxMultiTaskModel.from_folder(folder, quantized=True)
    assert (folder / "model_int8.onnx").stat().st_size < (folder / "model.onnx").stat().st_size
    inputs = model.encoder_inputs(model.tokenize_words([text.split() for text in TEXTS]))
    scores, reference = onnx_model.score_batch(inputs), model.score_batch(inputs)
    assert scores["token_probs"].shape == reference["token_probs"].shape
    assert 0 < float((scores["token_probs"] - reference["token_probs"]).abs().max()) < 0.2


def test_missing_graph_and_wrong_model_are_refused(exported, tmp_path):
    _, folder = exported
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxMultiTaskModel.from_folder(tmp_path)
    with pytest.raises(TypeError, match="MultiTaskModel"):
        export_onnx(object(), tmp_path / "x")
    with pytest.raises(ValueError, match="inference only"):
        OnnxMultiTaskModel.from_folder(folder).train()
