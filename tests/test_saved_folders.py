"""Saved folders across the split of modeling_mtl.py into flat remote-code files (issue 18): a folder written by the
code as it was before the split (commit PRE_SPLIT_COMMIT, taken from this repository's git history) loads with the
package as it is now, in a clean client with its own code files, through the pipelines and sentence-transformers,
exports to ONNX with the same predictions, and saves again into a folder that does all of that too.

The old code saves a tiny random model and records its `predict` (every aggregation strategy) and `encode`; every
check compares against that record. Skipped where git or the commit is not available (e.g. an unpacked sdist).
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from conftest import REPO
from test_modeling import IRREGULAR_TEXTS
from test_pipeline import CLEAN_PIPELINE_CLIENT, STRATEGIES, assert_same, demo_sentences

PRE_SPLIT_COMMIT = "8b583e7079367a68747d6cf65352fde3128d9472"
CODE_FILES_AFTER = {
    "handler.py",
    "configuration_mtl.py",
    "decoding_mtl.py",
    "inference_mtl.py",
    "modeling_mtl.py",
    "pipeline_mtl.py",
    "publishing_mtl.py",
    "schema_mtl.py",
}
CODE_FILES_BEFORE = {"configuration_mtl.py", "modeling_mtl.py", "pipeline_mtl.py"}

SAVE_WITH_OLD_CODE = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoTokenizer, BertConfig
    import modeling_mtl
    from modeling_mtl import MultiTaskConfig, MultiTaskModel

    old_package, minilm, folder, texts, out = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
    assert modeling_mtl.__file__.startswith(old_package), modeling_mtl.__file__
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    encoder = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder_config=encoder, sentence_labels=["travel", "technology", "other"],
                                           token_labels=["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], max_seq_length=64))
    model.tokenizer = tokenizer
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a token head that predicts a mix of tags
        head = model.token_head.classifier
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator))
        head.bias.copy_(torch.randn(head.bias.shape, generator=generator))
    model.eval().save_pretrained(folder)
    record = {s: model.predict(texts, aggregation_strategy=s) for s in ["first", "average", "max", "none"]}
    record["encode"] = model.encode(texts).tolist()
    json.dump(record, open(out, "w"))
    """
)


def texts():
    return IRREGULAR_TEXTS + demo_sentences(4)


@pytest.fixture(scope="module")
def old_folder(tmp_path_factory, minilm_path):
    """`(folder, record)`: a model saved by the pre-split code, and what that code's predict / encode returned."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the pre-split code comes from the repository's history")
    root = tmp_path_factory.mktemp("pre_split")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PRE_SPLIT_COMMIT, "modeling_mtl"],
        capture_output=True, timeout=120,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {PRE_SPLIT_COMMIT[:7]} is not in this checkout's history: {archive.stderr.decode()[:200]}")
    (root / "code.tar").write_bytes(archive.stdout)
    with tarfile.open(root / "code.tar") as tar:
        tar.extractall(root / "code", filter="data")
    script, folder, out = root / "save.py", root / "model", root / "record.json"
    script.write_text(SAVE_WITH_OLD_CODE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root / "code")}
    result = subprocess.run(
        [sys.executable, str(script), str(root / "code"), minilm_path, str(folder), json.dumps(texts()), str(out)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path.name for path in folder.glob("*.py")} == CODE_FILES_BEFORE
    return folder, json.loads(out.read_text())


def clean_client(folder, tmp_path):
    script, out = tmp_path / "client.py", tmp_path / "client.json"
    script.write_text(CLEAN_PIPELINE_CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), json.dumps(texts()), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def assert_client_matches(client, record):
    assert "transformers_modules" in client["model_module"] and "transformers_modules" in client["pipeline_module"]
    for strategy in STRATEGIES:
        assert_same(client["strategies"][strategy], record[strategy], strategy)
    assert_same(client["predict"], record["first"], "predict")
    assert np.allclose(client["encode"], record["encode"], atol=1e-5)
    assert np.allclose(client["st"], record["encode"], atol=1e-5)


def test_a_folder_saved_before_the_split_loads_with_the_package_now(old_folder):
    from modeling_mtl import MultiTaskModel

    folder, record = old_folder
    model = MultiTaskModel.from_pretrained(folder)
    for strategy in STRATEGIES:
        assert_same(json.loads(json.dumps(model.predict(texts(), aggregation_strategy=strategy))), record[strategy])
    assert np.allclose(model.encode(texts()), record["encode"], atol=1e-6)


def test_a_folder_saved_before_the_split_works_in_a_clean_client(old_folder, tmp_path):
    pytest.importorskip("sentence_transformers")
    folder, record = old_folder
    assert_client_matches(clean_client(folder, tmp_path), record)


def test_saved_again_it_carries_the_split_code_files_and_works_in_a_clean_client(old_folder, tmp_path):
    pytest.importorskip("sentence_transformers")
    from modeling_mtl import MultiTaskModel

    folder, record = old_folder
    MultiTaskModel.from_pretrained(folder).save_pretrained(tmp_path / "resaved")
    assert {path.name for path in (tmp_path / "resaved").glob("*.py")} == CODE_FILES_AFTER
    assert_client_matches(clean_client(tmp_path / "resaved", tmp_path), record)


def test_a_folder_saved_before_the_split_exports_to_onnx_with_the_same_predictions(old_folder, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
    from modeling_mtl import MultiTaskModel
    from modeling_mtl.onnx_export import OnnxMultiTaskModel, export_onnx

    folder, record = old_folder
    export_onnx(MultiTaskModel.from_pretrained(folder), tmp_path / "onnx", quantize=False)
    onnx_model = OnnxMultiTaskModel.from_folder(tmp_path / "onnx")
    for strategy in STRATEGIES:
        got = json.loads(json.dumps(onnx_model.predict(texts(), aggregation_strategy=strategy)))
        assert_same(got, record[strategy], strategy, tol=1e-4)
    assert np.allclose(onnx_model.encode(texts()), record["encode"], atol=1e-4)
