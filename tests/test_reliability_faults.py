"""Reliability (issue 7): interrupted work is never lost, and a damaged model folder fails with a clear message.

- A `python train_mtl.py` run killed with SIGKILL part-way resumes with `--resume_from_checkpoint latest` and ends
  exactly where an uninterrupted run of the same configuration and seed ends (tolerance below).
- Loading a folder with missing, truncated or garbage weights, weights of the wrong shape, or a config of another
  `model_type` raises an error that names the problem (not a deep torch trace).
Atomic saving is tested in tests/test_modeling.py (see docs/reliability.md).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertConfig

from conftest import DEMO_DATA, REPO
from modeling_mtl import MultiTaskModel
from train_mtl import main

# Measured on CPU: the resumed run's per-step losses, final weights and eval/test metrics are bit-identical to the
# uninterrupted run (max difference 0.0). The tolerance allows for other BLAS builds, not for lost steps.
TOLERANCE = 1e-6

SIGKILL_RUN = [
    str(REPO / "configuration" / "demo.yaml"),
    "--data_dir", str(DEMO_DATA),
    "--max_train_samples", "48",
    "--max_eval_samples", "12",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "16",
    "--max_seq_length", "32",
    "--max_steps", "20",
    "--save_strategy", "steps",
    "--save_steps", "4",
    "--save_total_limit", "10",
    "--eval_strategy", "no",
    "--load_best_model_at_end", "false",
    "--logging_steps", "1",
    "--seed", "7",
    "--report_to", "none",
]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: the same arithmetic as the killed subprocess (OMP_NUM_THREADS=1), and no oversubscription of
    a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def complete_checkpoints(output):
    """Checkpoint folders whose trainer_state.json (written last by Trainer) exists and parses."""
    found = []
    for name in os.listdir(output) if output.is_dir() else []:
        state = output / name / "trainer_state.json"
        if name.startswith("checkpoint-") and state.is_file():
            try:
                json.loads(state.read_text())
            except ValueError:
                continue
            found.append(name)
    return sorted(found, key=lambda name: int(name.split("-")[1]))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny_encoder_dir, one_thread):
    """An uninterrupted reference run (in-process) and a `python train_mtl.py` subprocess killed with SIGKILL as soon
    as its first checkpoint is complete."""
    return interrupt_and_reference(tmp_path_factory.mktemp("sigkill"), SIGKILL_RUN + ["--encoder", tiny_encoder_dir])


@pytest.fixture(scope="module")
def interrupted_length_grouped(tmp_path_factory, tiny_encoder_dir, one_thread):
    """The same with batches grouped by length (trainer.LengthGroupedEpochSampler): killed mid-epoch (12 steps an
    epoch, the first checkpoint at step 4), the reference run crosses into a second epoch."""
    run = SIGKILL_RUN + ["--encoder", tiny_encoder_dir, "--train_sampling_strategy", "group_by_length"]
    return interrupt_and_reference(tmp_path_factory.mktemp("sigkill_grouped"), run)


def interrupt_and_reference(base, run):
    killed = base / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(base / "killed.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "train_mtl.py"), *run, "--output_dir", str(killed)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while process.poll() is None and not complete_checkpoints(killed) and time.monotonic() < deadline:
            time.sleep(0.01)
        still_running = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
    log_tail = (base / "killed.log").read_text()[-3000:]
    assert still_running, f"the run ended before it could be killed part-way:\n{log_tail}"
    assert process.returncode == -signal.SIGKILL
    assert complete_checkpoints(killed), log_tail
    assert not (killed / "all_results.json").exists()  # killed before the end of training

    reference = base / "reference"
    reference_trainer = main(run + ["--output_dir", str(reference)])
    return {"run": run, "killed": killed, "reference": reference, "reference_state": reference_trainer.state}


def losses(state):
    return [(log["step"], log["loss"]) for log in state.log_history if "loss" in log]


def assert_same_as_reference(interrupted, trainer, output):
    reference, reference_state = interrupted["reference"], interrupted["reference_state"]
    assert trainer.state.global_step == reference_state.global_step == 20
    resumed_losses, reference_losses = losses(trainer.state), losses(reference_state)
    assert [step for step, _ in resumed_losses] == [step for step, _ in reference_losses] == list(range(1, 21))
    for (_, resumed), (_, expected) in zip(resumed_losses, reference_losses):
        assert resumed == pytest.approx(expected, abs=TOLERANCE)
    weights, expected_weights = load_file(output / "model.safetensors"), load_file(reference / "model.safetensors")
    assert weights.keys() == expected_weights.keys()
    assert max(float((weights[key] - expected_weights[key]).abs().max()) for key in weights) <= TOLERANCE
    results = json.loads((output / "all_results.json").read_text())
    expected_results = json.loads((reference / "all_results.json").read_text())
    compared = [
        key
        for key in expected_results
        if key.startswith(("eval_", "test_")) and not key.endswith(("_runtime", "_per_second"))
    ]
    assert "eval_exact_match" in compared and "test_token_f1" in compared
    for key in compared:
        assert results[key] == pytest.approx(expected_results[key], abs=TOLERANCE), key
    predictions = (output / "test_predictions.jsonl").read_text()
    assert predictions == (reference / "test_predictions.jsonl").read_text()


@pytest.mark.parametrize("sampling", ["random", "group_by_length"])
def test_sigkilled_run_resumes_from_its_last_checkpoint(sampling, request, tmp_path):
    interrupted = request.getfixturevalue("interrupted" if sampling == "random" else "interrupted_length_grouped")
    output = tmp_path / "killed"
    shutil.copytree(interrupted["killed"], output)
    last = complete_checkpoints(output)[-1]
    trainer = main(interrupted["run"] + ["--output_dir", str(output), "--resume_from_checkpoint", "latest"])
    assert_same_as_reference(interrupted, trainer, output)
    # It went on from the last checkpoint: `train_loss` (transformers: the mean over the steps THIS call ran) is the
    # mean of the per-step losses after the checkpoint, not of all 20.
    resumed_from = int(last.split("-")[1])
    after = [loss for step, loss in losses(trainer.state) if step > resumed_from]
    train_loss = json.loads((output / "train_results.json").read_text())["train_loss"]
    assert 4 <= resumed_from < 20 and len(after) == 20 - resumed_from
    assert train_loss == pytest.approx(sum(after) / len(after), abs=TOLERANCE)


@pytest.mark.parametrize("damage", ["no_trainer_state", "truncated_trainer_state", "empty_folder"])
def test_a_checkpoint_killed_mid_save_is_skipped(interrupted, tmp_path, damage):
    """SIGKILL during a checkpoint save leaves checkpoint-N without trainer_state.json (Trainer writes it last), or
    with half of it. `--resume_from_checkpoint latest` must resume from the newest COMPLETE checkpoint (picking the
    damaged one, the resume fails: FileNotFoundError / JSONDecodeError / "Can't find a valid checkpoint")."""
    output = tmp_path / "killed"
    shutil.copytree(interrupted["killed"], output)
    last = complete_checkpoints(output)[-1]
    damaged = output / f"checkpoint-{int(last.split('-')[1]) + 4}"
    shutil.copytree(output / last, damaged)
    if damage == "no_trainer_state":
        for name in ("trainer_state.json", "rng_state.pth", "scheduler.pt", "optimizer.pt"):
            (damaged / name).unlink()
    elif damage == "truncated_trainer_state":
        state = (damaged / "trainer_state.json").read_text()
        (damaged / "trainer_state.json").write_text(state[: len(state) // 2])
    else:
        shutil.rmtree(damaged)
        damaged.mkdir()
    trainer = main(interrupted["run"] + ["--output_dir", str(output), "--resume_from_checkpoint", "latest"])
    assert_same_as_reference(interrupted, trainer, output)


# ---------------------------------------------------------------------------------------------------------------
# Loading a damaged folder


@pytest.fixture
def saved(tiny_model, tmp_path):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    return folder


def rewrite_weights(folder, change):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


LOADERS = {
    "MultiTaskModel": lambda folder: MultiTaskModel.from_pretrained(folder),
    "AutoModel_remote_code": lambda folder: AutoModel.from_pretrained(folder, trust_remote_code=True),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_weights_file(saved, loader):
    (saved / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"no file named model\.safetensors"):
        LOADERS[loader](saved)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupted_weights_file_names_the_file(saved, loader, damage):
    """Without the check, safetensors' `SafetensorError: Error while deserializing header: ...` names neither file nor
    folder."""
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(OSError, match=rf"{saved}.*model\.safetensors|model\.safetensors.*{saved}"):
        LOADERS[loader](saved)


def test_corrupted_weights_file_fails_before_any_use(saved):
    """Whatever the message, a corrupted weights file never loads: no model with random weights comes back."""
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(Exception, match="deserializ|safetensors"):
        MultiTaskModel.from_pretrained(saved)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_tensor_missing_from_the_weights_is_refused(saved, loader):
    """Without the check, the head is silently re-initialised at random (only a load report is printed)."""
    rewrite_weights(saved, lambda tensors: tensors.pop("token_head.classifier.weight"))
    with pytest.raises((OSError, ValueError), match=r"token_head\.classifier\.weight"):
        LOADERS[loader](saved)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_tensor_of_the_wrong_shape_is_refused(saved, loader):
    """The error names the key and both shapes (transformers itself only says "look at the above report")."""
    rewrite_weights(saved, lambda tensors: tensors.__setitem__("token_head.classifier.weight", torch.zeros(3, 32)))
    with pytest.raises(ValueError, match=r"token_head\.classifier\.weight has shape \[3, 32\] .* expects \[5, 32\]"):
        LOADERS[loader](saved)


def test_ignore_mismatched_sizes_reinitialises_the_wrong_shape(saved):
    """As in transformers: the user asks for the mismatched tensor to be re-initialised, and gets the report."""
    rewrite_weights(saved, lambda tensors: tensors.__setitem__("token_head.classifier.weight", torch.zeros(3, 32)))
    model, info = MultiTaskModel.from_pretrained(saved, ignore_mismatched_sizes=True, output_loading_info=True)
    assert [key for key, *_ in info["mismatched_keys"]] == ["token_head.classifier.weight"]
    assert model.token_head.classifier.weight.shape == (5, 32)


def test_a_config_of_another_model_type_is_refused(saved):
    """A BERT config.json in the folder: without the check, `AttributeError: property 'hidden_size' of 'MultiTaskConfig'
    object has no setter`, eleven frames deep. (`AutoModel` loads such a folder as the BertModel it is.)"""
    bert = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    bert.save_pretrained(saved)
    with pytest.raises(ValueError, match=r"model_type 'bert'.*multitask-sentence-transformer"):
        MultiTaskModel.from_pretrained(saved)


def test_a_folder_without_config_is_refused(saved):
    """What an interrupted save over an existing folder leaves (config.json goes last). `AutoModel` refuses it (see
    test_modeling.py); without the check, `MultiTaskModel.from_pretrained` builds a default config and fails on a size
    mismatch."""
    (saved / "config.json").unlink()
    with pytest.raises(OSError, match="config.json"):
        MultiTaskModel.from_pretrained(saved)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_config_that_is_not_json_is_refused(saved, loader):
    (saved / "config.json").write_text('{"model_type": "multitask-sentence-transformer", ')
    with pytest.raises(OSError, match=r"config\.json' is not a valid JSON file"):
        LOADERS[loader](saved)


def test_output_loading_info_returns_the_report(saved):
    """An override that assumes a bare model fails with `AttributeError: 'tuple' object has no attribute 'config'`."""
    model, info = MultiTaskModel.from_pretrained(saved, output_loading_info=True)
    assert model.tokenizer is not None and not info["missing_keys"] and not info["unexpected_keys"]
