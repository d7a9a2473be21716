"""The `multitask` pipeline and sentence-transformers on a saved folder; predict's aggregation strategies."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import pipeline

from conftest import BLOCK_PACKAGE, DEMO_DATA
from modeling_mtl import split_words
from modeling_mtl.decoding_mtl import bio_to_entities
from test_modeling import IRREGULAR_TEXTS

STRATEGIES = ["first", "average", "max", "none"]


def assert_same(got, expected, path="result", tol=1e-5):
    """Equal structures, floats within `tol` (pytest.approx does not nest)."""
    if isinstance(expected, float):
        assert isinstance(got, (int, float)) and abs(got - expected) <= tol, f"{path}: {got} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_same(got[key], expected[key], f"{path}.{key}", tol)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{path}: {got} != {expected}"
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{path}[{index}]", tol)
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def demo_sentences(count=6):
    lines = (DEMO_DATA / "test" / "seq.in").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()][:count]


def reference_word_tags(model, text, strategy):
    """Each word's tag and score, computed here from the token probabilities, independently of the model's code."""
    words = [w for w, _, _ in split_words(text)]
    encoding = model.tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**encoding).token_logits[0].softmax(-1)
    positions = {}
    for position, word in enumerate(encoding.word_ids(0)):
        if word is not None:
            positions.setdefault(word, []).append(position)
    tags, scores = [], []
    for index in range(len(words)):
        rows = probs[positions[index]]
        if strategy == "average":
            chosen = rows.mean(0)
        elif strategy == "max":
            chosen = rows[rows.max(-1).values.argmax()]
        else:
            chosen = rows[0]
        tags.append(model.config.token_labels[int(chosen.argmax())])
        scores.append(float(chosen.max()))
    return tags, scores


@pytest.mark.parametrize("strategy", ["first", "average", "max"])
def test_predict_aggregation_strategies_follow_the_sub_token_probabilities(lively_model, strategy):
    texts = ["Tromsø and Zürich welcomed the unbelievably enthusiastic Smithsonian delegation"] + IRREGULAR_TEXTS[:2]
    results = lively_model.predict(texts, aggregation_strategy=strategy)
    for text, result in zip(texts, results):
        tags, scores = reference_word_tags(lively_model, text, strategy)
        offsets = [(start, end) for _, start, end in split_words(text)]
        expected = bio_to_entities(text, tags, scores, offsets)
        assert [(e["entity_group"], e["start"], e["end"]) for e in result["entities"]] == [
            (e["entity_group"], e["start"], e["end"]) for e in expected
        ]
        assert [e["score"] for e in result["entities"]] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_predict_none_lists_every_tagged_word(lively_model):
    text = IRREGULAR_TEXTS[0]
    result = lively_model.predict([text], aggregation_strategy="none")[0]
    tags, scores = reference_word_tags(lively_model, text, "first")
    words = split_words(text)
    expected = [(i, tag, words[i][0]) for i, tag in enumerate(tags) if tag != "O"]
    assert [(e["index"], e["entity"], e["word"]) for e in result["entities"]] == expected
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["word"]
    with pytest.raises(ValueError, match="aggregation_strategy is 'simple'"):
        lively_model.predict([text], aggregation_strategy="simple")


def test_pipeline_in_process_matches_predict_batched_or_not(lively_model, tmp_path):
    folder = tmp_path / "model"
    lively_model.save_pretrained(folder)
    pipe = pipeline(model=str(folder), trust_remote_code=True)
    assert type(pipe).__name__ == "MultiTaskPipeline" and pipe.task == "multitask"
    texts = IRREGULAR_TEXTS + demo_sentences(3) + [""]
    for strategy in STRATEGIES:
        expected = json.loads(json.dumps(lively_model.predict(texts, aggregation_strategy=strategy)))
        for batch_size in (1, 4):
            got = pipe(texts, batch_size=batch_size, aggregation_strategy=strategy)
            assert_same(json.loads(json.dumps(got)), expected, f"{strategy}/{batch_size}")
    single = pipe(texts[0], return_embedding=True)
    assert single["label"] == expected[0]["label"] and len(single["embedding"]) == 32
    words = pipe(("fly", "to", "São", "Paulo"))  # a tuple is one pre-split text
    assert_same(words, lively_model.predict([["fly", "to", "São", "Paulo"]])[0])
    with pytest.raises(TypeError, match="unknown argument"):
        pipe("fly to paris", aggregation="first")
    with pytest.raises(ValueError, match="aggregation_strategy"):
        pipe("fly to paris", aggregation_strategy="simple")


CLEAN_PIPELINE_CLIENT = BLOCK_PACKAGE + textwrap.dedent(
    """
    import json
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, pipeline

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    pipe = pipeline(model=folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    out = {
        "pipeline_module": type(pipe).__module__,
        "model_module": type(pipe.model).__module__,
        "strategies": {s: pipe(texts, batch_size=3, aggregation_strategy=s) for s in ["first", "average", "max", "none"]},
        "embedding": pipe(texts[0], return_embedding=True)["embedding"],
        "predict": model.predict(texts),
        "st": SentenceTransformer(folder, trust_remote_code=True, device="cpu").encode(texts).tolist(),
        "encode": model.encode(texts).tolist(),
    }
    json.dump(out, open(sys.argv[3], "w"))
    """
)


def test_pipeline_and_sentence_transformers_in_a_clean_client(lively_model, tmp_path):
    pytest.importorskip("sentence_transformers")
    folder = tmp_path / "model"
    lively_model.save_pretrained(folder)
    texts = IRREGULAR_TEXTS + demo_sentences(4)
    script, out = tmp_path / "client.py", tmp_path / "out.json"
    script.write_text(CLEAN_PIPELINE_CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), json.dumps(texts), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = json.loads(out.read_text())
    assert "transformers_modules" in client["pipeline_module"] and "transformers_modules" in client["model_module"]

    for strategy, results in client["strategies"].items():
        expected = json.loads(json.dumps(lively_model.predict(texts, aggregation_strategy=strategy)))
        assert_same(results, expected, strategy)
        for text, item in zip(texts, results):
            assert set(item) == {"label", "score", "entities"}
            for entity in item["entities"]:
                assert text[entity["start"] : entity["end"]] == entity["word"], (strategy, text, entity)
    assert any(item["entities"] for item in client["strategies"]["first"])
    assert_same(client["predict"], client["strategies"]["first"])

    reference = lively_model.encode(texts)
    assert torch.allclose(torch.tensor(client["st"]), torch.from_numpy(reference), atol=1e-5)
    assert torch.allclose(torch.tensor(client["st"]), torch.tensor(client["encode"]), atol=1e-6)
    assert client["embedding"] == pytest.approx(client["encode"][0], abs=1e-5)
