"""`python -m modeling_mtl {predict,embed,evaluate,export-onnx}` on a tiny model folder."""

import argparse
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DEMO_DATA, make_lively, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS, REPO, is_valid_bio
from modeling_mtl.cli import main

TEXTS = ["Angela Merkel flew to Paris on Monday", "Buy a new laptop in Zürich!"]


@pytest.fixture
def model_folder(make_tiny_model, tmp_path):
    model = make_tiny_model(sentence_labels=DEMO_SENTENCE_LABELS, token_labels=DEMO_TOKEN_LABELS)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model, folder


def run_module(arguments, stdin=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "modeling_mtl", *arguments], input=stdin, cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )


def close(got, expected, tol=1e-5):
    if isinstance(expected, float):
        return abs(got - expected) <= tol
    if isinstance(expected, dict):
        return set(got) == set(expected) and all(close(got[k], expected[k], tol) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(close(a, b, tol) for a, b in zip(got, expected))
    return got == expected


def test_predict_reads_standard_input_and_prints_json_lines(model_folder):
    model, folder = model_folder
    result = run_module(["predict", "--model", str(folder), "--batch_size", "1"], stdin=f"{TEXTS[0]}\n\n   \n{TEXTS[1]}\n")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.pop("text") for line in lines] == TEXTS  # blank lines skipped, order kept
    assert close(lines, json.loads(json.dumps(model.predict(TEXTS))))


def test_predict_top_k_and_a_calibrated_rejecting_config(make_tiny_model, tmp_path, capsys):
    model = make_tiny_model(sentence_labels=DEMO_SENTENCE_LABELS, token_labels=DEMO_TOKEN_LABELS,
                            sentence_temperature=1.5, reject_threshold=0.99)
    model.save_pretrained(tmp_path / "model")
    out = io.StringIO()
    assert main(["predict", "--model", str(tmp_path / "model"), "--top_k", "2", *TEXTS], stdout=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = json.loads(json.dumps(model.predict(TEXTS, top_k=2)))
    assert close([{k: v for k, v in line.items() if k != "text"} for line in lines], expected)
    assert all(line["label"] == "out_of_scope" and len(line["intent_ranking"]) == 2 for line in lines)
    assert main(["predict", "--model", str(tmp_path / "model"), "--top_k", "0", "x"], stdout=io.StringIO()) == 2
    assert "--top_k must be at least 1, got 0" in capsys.readouterr().err


def test_predict_and_embed_in_process(model_folder):
    model, folder = model_folder
    out = io.StringIO()
    assert main(["predict", "--model", str(folder), "--aggregation_strategy", "none", "--return_embedding", *TEXTS],
                stdout=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = model.predict(TEXTS, aggregation_strategy="none", return_embeddings=True)
    assert close([{k: v for k, v in line.items() if k != "text"} for line in lines], json.loads(json.dumps(expected)))

    out = io.StringIO()
    assert main(["predict", "--model", str(folder), "--token_decoding", "bio_viterbi", *TEXTS], stdout=out) == 0
    model.config.token_decoding = "bio_viterbi"
    expected = json.loads(json.dumps(model.predict(TEXTS)))
    assert close([{k: v for k, v in json.loads(line).items() if k != "text"} for line in out.getvalue().splitlines()],
                 expected)
    model.config.token_decoding = "argmax"

    out = io.StringIO()
    assert main(["embed", "--model", str(folder)], stdin=io.StringIO("\n".join(TEXTS) + "\n"), stdout=out) == 0
    vectors = np.array([json.loads(line) for line in out.getvalue().splitlines()])
    assert vectors.shape == (2, 32) and np.allclose(vectors, model.encode(TEXTS), atol=1e-6)
    out = io.StringIO()
    assert main(["embed", "--model", str(folder), "--no-normalize", TEXTS[0]], stdout=out) == 0
    assert np.allclose(json.loads(out.getvalue()), model.encode(TEXTS[0], normalize_embeddings=False), atol=1e-6)


def test_bf16_runs_under_autocast_and_stays_close(model_folder, monkeypatch):
    """`--bf16` runs the model under bf16 autocast (the encoder's matmuls then give bf16 states) and prints float32
    JSON close to the fp32 output (bf16 keeps 8 bits of mantissa)."""
    import torch

    model, folder = model_folder
    dtypes = []
    original = torch.nn.Linear.forward
    monkeypatch.setattr(torch.nn.Linear, "forward", lambda self, x: dtypes.append(out := original(self, x)) or out)
    out = io.StringIO()
    assert main(["embed", "--model", str(folder), "--bf16", *TEXTS], stdout=out) == 0
    assert dtypes and all(tensor.dtype == torch.bfloat16 for tensor in dtypes)
    vectors = np.array([json.loads(line) for line in out.getvalue().splitlines()])
    assert vectors.dtype == np.float64 and np.allclose(vectors, model.encode(TEXTS), atol=0.05)
    dtypes.clear()
    out = io.StringIO()
    assert main(["predict", "--model", str(folder), "--bf16", *TEXTS], stdout=out) == 0
    assert dtypes and all(tensor.dtype == torch.bfloat16 for tensor in dtypes)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["text"] for line in lines] == TEXTS and all(0 <= line["score"] <= 1 for line in lines)


def test_compile_gives_the_same_embeddings(model_folder):
    model, folder = model_folder
    out = io.StringIO()
    assert main(["embed", "--model", str(folder), "--compile", *TEXTS], stdout=out) == 0
    vectors = np.array([json.loads(line) for line in out.getvalue().splitlines()])
    assert np.allclose(vectors, model.encode(TEXTS), atol=1e-5)


def test_evaluate_prints_the_metric_table(model_folder):
    _, folder = model_folder
    result = run_module(["evaluate", "--model", str(folder), "--data_dir", str(DEMO_DATA), "--max_samples", "20"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"on the test split of {DEMO_DATA} (20 examples)" in result.stdout
    for name in ("sentence_accuracy", "sentence_f1_macro", "token_f1", "token_LOC_f1", "exact_match", "token_loss"):
        assert any(line.split()[:1] == [name] for line in result.stdout.splitlines()), name


@pytest.mark.parametrize("token_decoding", ["argmax", "bio_viterbi"])
def test_evaluate_gives_the_numbers_training_reports(make_tiny_model, tmp_path, token_decoding):
    """The same split scored by Trainer as train_mtl.py scores it, and by the CLI: the same metrics, and the tags
    `predict` gives."""
    from transformers import TrainingArguments

    from modeling_mtl.data import DataSource, MultiTaskCollator, encode_dataset_dict, load_sources
    from modeling_mtl.metrics import build_compute_metrics, predictions_to_records
    from modeling_mtl.trainer import MultiTaskTrainer

    model = make_tiny_model(sentence_labels=DEMO_SENTENCE_LABELS, token_labels=DEMO_TOKEN_LABELS)
    with torch.no_grad():  # a random token head, so argmax and bio_viterbi tag differently
        model.token_head.classifier.weight.normal_(std=5.0)
    folder = tmp_path / "model"
    model.save_pretrained(folder)  # saved with argmax: --token_decoding overrides it
    model.config.token_decoding = token_decoding
    out = io.StringIO()
    report_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(folder), "--config", str(REPO / "configuration" / "demo.yaml"),
                 "--data_dir", str(DEMO_DATA), "--split", "validation", "--json", "--output", str(report_path),
                 "--token_decoding", token_decoding], stdout=out) == 0
    report = json.loads(out.getvalue())
    assert report == json.loads(report_path.read_text()) and report["split"] == "validation"
    assert report["token_decoding"] == token_decoding

    raw = load_sources([DataSource(data_dir=str(DEMO_DATA))])
    encoded, _ = encode_dataset_dict(raw, model.tokenizer, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS, max_length=64)
    trainer = MultiTaskTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True,
                               label_names=["sentence_labels", "token_labels"], per_device_eval_batch_size=32),
        data_collator=MultiTaskCollator(model.tokenizer),
        compute_metrics=build_compute_metrics(encoded["validation"], DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS, True),
    )
    reference = trainer.predict(encoded["validation"], metric_key_prefix="eval").metrics
    metrics = report["metrics"]
    assert metrics["samples"] == len(encoded["validation"]) == 75
    for key, value in metrics.items():
        if f"eval_{key}" in reference:
            assert value == pytest.approx(reference[f"eval_{key}"], abs=1e-4 if key.endswith("loss") else 1e-9), key
    assert {"sentence_accuracy", "token_f1", "token_PERSON_f1", "exact_match", "sentence_loss"} <= set(metrics)

    output = trainer.predict(encoded["validation"])
    records = predictions_to_records(encoded["validation"], output.predictions, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS)
    predicted = model.predict(list(encoded["validation"]["words"]), aggregation_strategy="none")
    for record, result in zip(records, predicted, strict=True):
        tags = {entity["index"]: entity["entity"] for entity in result["entities"]}
        assert record["predicted_tags"] == [tags.get(index, "O") for index in range(len(record["words"]))]
    validity = [is_valid_bio(record["predicted_tags"]) for record in records]
    assert all(validity) if token_decoding == "bio_viterbi" else not all(validity)


@pytest.mark.parametrize(
    "arguments, stdin, message",
    [
        (["predict", "--model", "/no/such/folder", "x"], None, "model folder /no/such/folder not found"),
        (["predict", "--model", "{data}", "x"], None, "is not a model folder: it has no config.json"),
        (["predict", "--model", "{model}"], "", "no text given"),
        (["predict", "--model", "{model}", "--batch_size", "0", "x"], None, "--batch_size must be at least 1"),
        (["evaluate", "--model", "{model}"], None, "no data given"),
        (["export-onnx", "--model", "/no/such/folder", "--output", "/tmp/x"], None, "model folder /no/such/folder"),
        (["evaluate", "--model", "{model}", "--data_dir", "/no/such/data"], None, "data folder /no/such/data not found"),
        (["evaluate", "--model", "{model}", "--data_dir", "{data}", "--split", "train", "--config", "/no.yaml"], None,
         "run file /no.yaml not found"),
    ],
)
def test_clear_errors(model_folder, capsys, arguments, stdin, message):
    _, folder = model_folder
    arguments = [a.replace("{model}", str(folder)).replace("{data}", str(DEMO_DATA)) for a in arguments]
    assert main(arguments, stdin=io.StringIO(stdin) if stdin is not None else None, stdout=io.StringIO()) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_another_model_type_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert main(["embed", "--model", str(tmp_path), "x"]) == 2
    assert "holds a 'bert' model, not a multi-task model" in capsys.readouterr().err


def test_export_onnx_writes_a_graph_that_predicts_and_evaluates_like_the_model(model_folder, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
    from modeling_mtl.onnx_export import OnnxMultiTaskModel

    model, folder = model_folder
    stdout = io.StringIO()
    assert main(["export-onnx", "--model", str(folder), "--output", str(tmp_path / "onnx"), "--no-quantize"],
                stdout=stdout) == 0
    assert stdout.getvalue().splitlines()[0].startswith(str(tmp_path / "onnx" / "model.onnx"))
    assert not (tmp_path / "onnx" / "model_int8.onnx").exists()
    exported = OnnxMultiTaskModel.from_folder(tmp_path / "onnx").predict(TEXTS)
    assert [r["label"] for r in exported] == [r["label"] for r in model.predict(TEXTS)]

    # The same evaluation, through the PyTorch model and through the float32 graph: the same numbers.
    data = ["--data_dir", str(DEMO_DATA), "--split", "validation", "--json"]
    reports = []
    for source in (["--model", str(folder)], ["--model", str(tmp_path / "onnx"), "--onnx", "fp32"]):
        stdout = io.StringIO()
        assert main(["evaluate", *source, *data], stdout=stdout) == 0
        reports.append(json.loads(stdout.getvalue()))
    assert reports[1]["onnx"] == "fp32"
    for key in ("sentence_accuracy", "token_f1", "exact_match", "samples"):
        assert reports[1]["metrics"][key] == reports[0]["metrics"][key], key
    stdout = io.StringIO()
    assert main(["predict", "--model", str(tmp_path / "onnx"), "--onnx", "fp32", *TEXTS], stdout=stdout) == 0
    assert [json.loads(line)["label"] for line in stdout.getvalue().splitlines()] == [r["label"] for r in exported]

    assert main(["embed", "--model", str(tmp_path / "onnx"), "--onnx", "int8", "x"]) == 2
    assert "model_int8.onnx does not exist" in capsys.readouterr().err
    assert main(["embed", "--model", str(tmp_path / "onnx"), "--onnx", "fp32", "--bf16", "x"]) == 2
    assert "--bf16 do not apply" in capsys.readouterr().err
    if model.config.normalize_embeddings:
        assert main(["embed", "--model", str(tmp_path / "onnx"), "--onnx", "fp32", "--no-normalize", "x"]) == 2
        assert "normalised embeddings only" in capsys.readouterr().err


def test_token_decoding_choices_are_the_configs():
    from modeling_mtl.cli import build_parser
    from modeling_mtl.configuration_mtl import TOKEN_DECODINGS

    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name in ("predict", "evaluate"):
        option = next(a for a in commands.choices[name]._actions if "--token_decoding" in a.option_strings)
        assert tuple(option.choices) == TOKEN_DECODINGS


@pytest.mark.parametrize("output_format, file_name", [("label-studio", "train.json"), ("doccano", "train.jsonl"),
                                                     ("rasa", "train.yml")])
def test_predict_writes_pre_annotations_that_read_back_as_training_data(model_folder, tmp_path, output_format,
                                                                         file_name):
    from modeling_mtl.data import DataSource, load_source

    model = make_lively(model_folder[0])
    folder = tmp_path / "lively"
    model.save_pretrained(folder)
    out = io.StringIO()
    arguments = ["predict", "--model", str(folder), "--output-format", output_format, "--model_version", "demo@1"]
    assert main([*arguments, *TEXTS], stdout=out) == 0
    if output_format == "label-studio":
        tasks = json.loads(out.getvalue())
        assert [task["data"]["text"] for task in tasks] == TEXTS and all("annotations" not in task for task in tasks)
        assert {prediction["model_version"] for task in tasks for prediction in task["predictions"]} == {"demo@1"}
    data = tmp_path / "exported"
    data.mkdir()
    (data / file_name).write_text(out.getvalue(), encoding="utf-8")
    raw = load_source(DataSource(data_dir=str(data), validation_split_percentage=0, test_split_percentage=0))
    expected = model.predict(TEXTS)
    assert sum(len(prediction["entities"]) for prediction in expected) >= 2
    by_text = {" ".join(words): row for words, row in zip(raw["train"]["words"], raw["train"])}
    assert len(by_text) == len(TEXTS)
    for text, prediction in zip(TEXTS, expected):
        row = by_text[" ".join(text.split()).replace("!", " !")]
        assert row["sentence_label"] == prediction["label"]
        entity_words = [" ".join(row["words"][i] for i, tag in enumerate(row["tags"]) if tag != "O")]
        assert entity_words == [" ".join(entity["word"] for entity in prediction["entities"])]


def test_predict_pre_annotations_refuse_word_level_output(model_folder, capsys):
    _, folder = model_folder
    status = main(["predict", "--model", str(folder), "--output-format", "label-studio", "--aggregation_strategy",
                   "none", TEXTS[0]], stdout=io.StringIO())
    assert status == 2 and "--aggregation_strategy none does not apply" in capsys.readouterr().err
