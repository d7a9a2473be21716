"""train_mtl.py end to end: plain python, two-process DDP over gloo, resuming; the result loads in a clean client."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import DEMO_DATA, REPO
from test_modeling import run_clean_client
from modeling_mtl.training_args import parse_arguments
from train_mtl import load_data, main

TINY_RUN = [
    "--max_train_samples", "48",
    "--max_eval_samples", "12",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16",
    "--logging_steps", "2",
    "--max_seq_length", "64",
]


def test_demo_run_leaves_a_complete_model_folder(tiny_encoder_dir, tmp_path, caplog):
    output = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="train_mtl")
    main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir", str(DEMO_DATA),
          "--output_dir", str(output), "--num_train_epochs", "2", "--reject_threshold", "auto", *TINY_RUN])

    # The data summary of `inspect-data` is logged once the subsets are taken.
    assert re.search(r"Data:\nSource demo: jointbert\ntrain: 48 examples\n  sentence labels \(5\): ", caplog.text), caplog.text
    results = json.loads((output / "all_results.json").read_text())
    for prefix in ("eval", "test"):
        for name in ("loss", "sentence_loss", "token_loss", "sentence_accuracy", "sentence_f1_macro", "token_precision",
                     "token_recall", "token_f1", "exact_match", "token_LOC_f1"):
            assert f"{prefix}_{name}" in results, f"{prefix}_{name}"
    assert results["test_samples"] == 12 and results["train_world_size"] == 1
    # Calibrated on validation (the saved config carries the temperature); ECE / NLL before and after on both splits.
    config = json.loads((output / "config.json").read_text())
    assert config["sentence_temperature"] == results["eval_sentence_temperature"] == results["test_sentence_temperature"]
    assert config["reject_threshold"] == results["eval_reject_threshold"]  # --reject_threshold auto
    # ... on the default score: the class centroids of the training embeddings, one normalised row per label.
    assert config["reject_score"] == "centroid_cosine"
    centroids = torch.tensor(config["sentence_centroids"])
    assert centroids.shape == (len(config["sentence_labels"]), config["encoder_config"]["hidden_size"])
    assert torch.allclose(centroids.norm(dim=-1), torch.ones(len(centroids)), atol=1e-5)
    assert results["eval_sentence_nll_calibrated"] <= results["eval_sentence_nll"] + 1e-9
    for name in ("sentence_ece", "sentence_ece_calibrated", "test_sentence_nll", "token_ece", "rejected_share"):
        assert any(key.endswith(name) for key in results), name
    assert results["eval_rejected_share"] == 0.0  # auto keeps at least 95% of the 12 validation texts: all of them
    lines = (output / "test_predictions.jsonl").read_text().splitlines()
    assert len(lines) == 12
    # Predicted in order of length, written in the data set's order (train_mtl's own selection of 12 test examples).
    _, data_args, training_args = parse_arguments([str(REPO / "configuration" / "demo.yaml"), "--data_dir",
                                                   str(DEMO_DATA), "--output_dir", str(tmp_path / "x"), *TINY_RUN])
    test_split = load_data(data_args, training_args.seed)[0]["test"]
    assert [json.loads(line)["words"] for line in lines] == test_split["words"]
    lengths = [len(words) for words in test_split["words"]]
    assert lengths != sorted(lengths)
    record = json.loads(lines[0])
    assert {"text", "gold_label", "predicted_label", "gold_tags", "predicted_tags"} <= set(record)
    assert len(record["predicted_tags"]) == len(record["gold_tags"])
    state = json.loads((output / "trainer_state.json").read_text())
    assert any("sentence_loss" in log and "token_loss" in log for log in state["log_history"])
    assert any("eval_sentence_loss" in log for log in state["log_history"])
    for name in ("config.json", "model.safetensors", "modeling_mtl.py", "configuration_mtl.py", "tokenizer.json",
                 "training_args.json"):
        assert (output / name).exists(), name
    # The run's arguments are JSON, not Trainer's pickled training_args.bin, in the model folder and its checkpoints.
    assert not list(output.rglob("training_args.bin"))
    assert json.loads((output / "training_args.json").read_text())["output_dir"] == str(output)

    client = tmp_path / "client"
    client.mkdir()
    tensors, outputs = run_clean_client(output, client)
    assert tensors["token_logits"].shape[-1] == 9  # O + B/I of PERSON, LOC, ORG, DATE
    # The run rejects (--reject_threshold auto): a text is answered with a label or, below the threshold, out_of_scope.
    first = outputs["predict"][0]
    assert first.get("rejected_label", first["label"]) in {"travel", "technology", "politics", "sports", "other"}
    assert first["label"] == first.get("rejected_label", first["label"]) or first["label"] == "out_of_scope"


def test_resume_from_the_latest_checkpoint(tiny_encoder_dir, tmp_path):
    output = tmp_path / "run"
    common = [str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir",
              str(DEMO_DATA), "--output_dir", str(output), *TINY_RUN, "--eval_strategy", "steps",
              "--save_strategy", "steps", "--eval_steps", "2", "--save_steps", "2"]
    main(common + ["--max_steps", "4"])
    assert (output / "checkpoint-4").is_dir()
    trainer = main(common + ["--max_steps", "6", "--resume_from_checkpoint", "latest"])
    assert trainer.state.global_step == 6
    assert [log["step"] for log in trainer.state.log_history if "loss" in log] == [2, 4, 6]


@pytest.fixture
def one_task_sources(tmp_path):
    """A sentence-only and a token-only source: most batches carry labels for one head only."""
    sentences = tmp_path / "reviews"
    sentences.mkdir()
    rows = [("what a great movie", "positive"), ("an awful waste of time", "negative")] * 12
    for split in ("train", "validation"):
        (sentences / f"{split}.jsonl").write_text(
            "\n".join(json.dumps({"text": text, "label": label}) for text, label in rows)
        )
    entities = tmp_path / "entities"
    entities.mkdir()
    sentence = "john\tB-PER\nlives\tO\nin\tO\nparis\tB-LOC\n"
    for split in ("train", "dev"):
        (entities / f"{split}.conll").write_text("\n".join([sentence] * 12))
    return sentences, entities


def test_two_process_ddp_with_one_task_batches(tiny_encoder_dir, one_task_sources, tmp_path):
    sentences, entities = one_task_sources
    output = tmp_path / "ddp"
    config = tmp_path / "ddp.yaml"
    config.write_text(
        json.dumps(
            {
                "encoder": tiny_encoder_dir,
                "sources": [{"data_dir": str(sentences)}, {"data_dir": str(entities)}],
                "output_dir": str(output),
                "max_steps": 6,
                "per_device_train_batch_size": 2,
                "eval_strategy": "steps",
                "save_strategy": "steps",
                "eval_steps": 3,
                "save_steps": 3,
                "logging_steps": 1,
                "max_seq_length": 32,
                # Unused parameters would make DDP fail loudly here instead of being searched for.
                "ddp_find_unused_parameters": False,
            }
        )
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configuration" / "accelerate_ddp_cpu.yaml"), str(REPO / "train_mtl.py"), str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "world size 2, process 0" in result.stderr
    results = json.loads((output / "all_results.json").read_text())
    assert results["train_world_size"] == 2
    assert {"eval_sentence_loss", "eval_token_loss", "eval_sentence_accuracy", "eval_token_f1"} <= set(results)
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 6

    client = tmp_path / "client"
    client.mkdir()
    tensors, _ = run_clean_client(output, client)
    reference = load_file(output / "model.safetensors")
    assert tensors["sentence_logits"].shape[-1] == 2 and "sentence_head.classifier.weight" in reference


def test_auto_rejection_needs_a_validation_split(tiny_encoder_dir, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "seq.in").write_text("fly to paris\nhello there\n")
    (data / "seq.out").write_text("O O B-LOC\nO O\n")
    (data / "label").write_text("travel\nother\n")
    with pytest.raises(ValueError, match="reject_threshold: auto is chosen on the validation split"):
        main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir", str(tmp_path / "data"),
              "--output_dir", str(tmp_path / "run"), "--reject_threshold", "auto", "--validation_split_percentage", "0",
              "--test_split_percentage", "0"])
