"""Reliability (issue 7), security: weights come only from safetensors, the code files of a model folder import only
torch, transformers and the standard library, nothing opens a network connection offline, and no token or secret
ends up in logs, cards or saved files."""

import ast
import json
import logging
import pickle
import socket
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, pipeline

from conftest import DEMO_DATA, REPO
from modeling_mtl import MultiTaskModel
from train_mtl import main

PACKAGE = REPO / "modeling_mtl"

# ---------------------------------------------------------------------------------------------------------------
# Weights: safetensors only, no pickle anywhere


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling (torch.load, pickle.load(s), pickle.Unpickler) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was read")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def pickle_folder(model, folder):
    """A saved folder whose weights are ONLY a pickle `pytorch_model.bin` (what an old or hostile repo holds)."""
    model.save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("remote_code", [False, True], ids=["MultiTaskModel", "AutoModel_remote_code"])
def test_a_pickle_only_folder_is_refused(tiny_model, tmp_path, no_unpickling, remote_code):
    """Without use_safetensors=True, transformers falls back to `torch.load(pytorch_model.bin, weights_only=True)` and
    the model loads."""
    folder = pickle_folder(tiny_model, tmp_path / "model")
    with pytest.raises(OSError, match=r"model\.safetensors"):
        if remote_code:
            AutoModel.from_pretrained(folder, trust_remote_code=True)
        else:
            MultiTaskModel.from_pretrained(folder)


def test_a_pickle_next_to_safetensors_is_never_read(tiny_model, tmp_path, no_unpickling):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not a real pickle, and never opened")
    for loaded in (MultiTaskModel.from_pretrained(folder), AutoModel.from_pretrained(folder, trust_remote_code=True)):
        assert torch.equal(loaded.token_head.classifier.weight, tiny_model.token_head.classifier.weight)


def test_saved_folders_hold_no_pickle(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    names = [path.name for path in (tmp_path / "model").rglob("*")]
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))], names


UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNPICKLING_CALLS = {("torch", "load"), ("torch.jit", "load"), ("torch.serialization", "load"), ("np", "load"), ("numpy", "load")}


def package_sources():
    return sorted(PACKAGE.rglob("*.py")) + [REPO / "train_mtl.py"]


@pytest.mark.parametrize("path", package_sources(), ids=lambda path: str(path.relative_to(REPO)))
def test_package_source_has_no_pickle_path(path):
    """No module of the package (nor train_mtl.py) imports a pickle library, calls torch.load / np.load, passes
    weights_only=False or allow_pickle=True, or calls eval / exec."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            problems += [alias.name for alias in node.names if alias.name.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in UNPICKLING_MODULES:
            problems.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "numpy") and any(a.name == "load" for a in node.names):
            problems.append(f"from {node.module} import load")
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute) and (ast.unparse(function.value), function.attr) in UNPICKLING_CALLS:
                problems.append(ast.unparse(function))
            if isinstance(function, ast.Name) and function.id in ("eval", "exec"):
                problems.append(function.id)
            for keyword in node.keywords:
                value = keyword.value
                if (keyword.arg, getattr(value, "value", None)) in (("weights_only", False), ("allow_pickle", True)):
                    problems.append(f"{keyword.arg}={value.value}")
    assert not problems, f"{path.name}: {problems}"


# ---------------------------------------------------------------------------------------------------------------
# Code files of a model folder (loaded with trust_remote_code=True)

ALLOWED_TOP_LEVEL = {"torch", "transformers"} | set(sys.stdlib_module_names)


def test_code_files_import_only_torch_transformers_and_the_standard_library(tiny_model, tmp_path):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    code_files = sorted(folder.glob("*.py"))
    assert {path.name for path in code_files} >= {"modeling_mtl.py", "configuration_mtl.py"}
    siblings = {path.stem for path in code_files}
    imports = {}
    for path in code_files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [(alias.name, 0) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "", node.level)]
            else:
                continue
            for name, level in names:
                imports.setdefault(path.name, set()).add("." * level + name)
                if level:  # a relative import must name another code file of the folder
                    assert level == 1 and name.split(".")[0] in siblings, f"{path.name}: from {'.' * level}{name}"
                else:
                    assert name.split(".")[0] in ALLOWED_TOP_LEVEL, f"{path.name} imports {name}"
    # Every file the config's auto_map / custom_pipelines names is there (the folder is self-contained).
    config = json.loads((folder / "config.json").read_text())
    referenced = {value.split(".")[0] for value in config["auto_map"].values()}
    referenced |= {spec["impl"].split(".")[0] for spec in (config.get("custom_pipelines") or {}).values()}
    assert referenced <= siblings
    assert imports["modeling_mtl.py"] >= {"torch", "transformers", ".configuration_mtl"}


# ---------------------------------------------------------------------------------------------------------------
# No network when offline, no token anywhere


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def blocked_network(monkeypatch):
    """Every way of opening a connection (and DNS) raises and is recorded."""
    attempts = []

    def block(name):
        def refuse(*args, **kwargs):
            attempts.append((name, args[1:2] if name.startswith("connect") else args[:2]))
            raise NetworkBlocked(f"network access attempted: {name}{attempts[-1][1]}")

        return refuse

    monkeypatch.setattr(socket.socket, "connect", block("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", block("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", block("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", block("getaddrinfo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return attempts


def test_offline_inference_opens_no_connection(blocked_network, tiny_encoder_dir, tmp_path):
    model = MultiTaskModel.from_encoder(tiny_encoder_dir, sentence_labels=["a", "b"], token_labels=["O", "B-X", "I-X"])
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    for loaded in (MultiTaskModel.from_pretrained(folder), AutoModel.from_pretrained(folder, trust_remote_code=True)):
        assert loaded.encode(["fly to paris"]).shape == (1, 32)
        assert loaded.predict(["fly to paris", ["new", "york"]])[1]["label"] in ("a", "b")
    pipeline("text-classification", model=str(folder), trust_remote_code=True)("fly to paris")
    pipeline("token-classification", model=str(folder), trust_remote_code=True)("fly to paris")
    assert blocked_network == []


def test_offline_default_encoder_opens_no_connection(blocked_network, minilm_path):
    """The default encoder id resolves to the pip-shipped copy without even a DNS look-up when HF_HUB_OFFLINE=1."""
    model = MultiTaskModel.from_encoder(sentence_labels=["a", "b"])
    assert model.encode(["a sentence"]).shape == (1, 384)
    assert blocked_network == []


FAKE_TOKENS = {
    "HF_TOKEN": "hf_fakeReliabilityEnvToken0123456789AB",
    "HUGGING_FACE_HUB_TOKEN": "hf_fakeReliabilityLegacyToken0123456789",
    "WANDB_API_KEY": "fakeReliabilityWandbKey0123456789abcdef",
}
RUN_FILE_TOKEN = "hf_fakeReliabilityRunFileToken01234567"  # given as --hub_token (without --push_to_hub)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


def test_offline_training_opens_no_connection_and_writes_no_token(
    blocked_network, tiny_encoder_dir, tmp_path, monkeypatch, capsys
):
    """A tiny train_mtl run with tokens in the environment (and one given as --hub_token): no connection attempt,
    and no token in any file it writes (checkpoints, training_args.json, trainer_state.json, model card, predictions)
    nor in its logs or printed output."""
    for name, value in FAKE_TOKENS.items():
        monkeypatch.setenv(name, value)
    records = Records()
    loggers = [logging.getLogger(name) for name in (None, "transformers", "datasets", "modeling_mtl")]
    for logger in loggers:
        logger.addHandler(records)
    output = tmp_path / "run"
    try:
        main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir", str(DEMO_DATA),
              "--output_dir", str(output), "--max_train_samples", "16", "--max_eval_samples", "8", "--max_steps", "2",
              "--per_device_train_batch_size", "8", "--max_seq_length", "32", "--eval_strategy", "steps",
              "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
              "--hub_token", RUN_FILE_TOKEN])
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    assert blocked_network == []
    written = [path for path in output.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.json" for path in written)  # scanned for the token below
    assert not any(path.name == "training_args.bin" for path in written)
    assert any(path.parent.name == "checkpoint-2" for path in written)
    captured = capsys.readouterr()
    logs = "\n".join(records.lines) + captured.out + captured.err
    assert "world size 1" in logs
    for value in [*FAKE_TOKENS.values(), RUN_FILE_TOKEN]:
        for secret in (value, value[3:], value[-12:]):  # also a part of it
            assert secret not in logs
            leaks = [str(path.relative_to(output)) for path in written if secret.encode() in path.read_bytes()]
            assert not leaks, f"{secret!r} written to {leaks}"
