"""The model card train_mtl.py writes: Hub metadata, model-index = all_results.json, plots, a usage snippet that runs."""

import contextlib
import io
import json
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from conftest import DEMO_DATA, REPO
from modeling_mtl.model_card import ModelCardInputs, find_template, format_value, write_model_card
from modeling_mtl.publishing_mtl import hub_base_model
from train_mtl import main

CARD_RUN = [
    "--num_train_epochs", "1",
    "--max_train_samples", "24",
    "--max_eval_samples", "24",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "24",
    "--logging_steps", "1",
    "--max_seq_length", "64",
]

# (model-index task type, metric type) -> key of all_results.json without the split prefix
MODEL_INDEX_KEYS = {
    ("text-classification", "accuracy"): "sentence_accuracy",
    ("text-classification", "f1"): "sentence_f1_macro",
    ("token-classification", "precision"): "token_precision",
    ("token-classification", "recall"): "token_recall",
    ("token-classification", "f1"): "token_f1",
    ("token-classification", "accuracy"): "token_accuracy",
    ("token-classification", "exact_match"): "exact_match",
}
SPLIT_PREFIX = {"validation": "eval", "test": "test"}
SECTIONS = ["## Usage", "## Architecture", "## Labels", "## Training data", "## Evaluation", "## Embedding space",
            "### Hyper-parameters", "### Freezing and learning-rate policy", "### Training curves",
            "### Training log", "### Framework versions", "## Limitations"]
PLOTS = ["confusion_matrix", "entity_f1", "reliability", "training_loss", "validation_metrics", "embeddings_pca",
         "embeddings_tsne"]


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("card") / "run"
    trainer = main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir",
                    str(DEMO_DATA), "--output_dir", str(output), *CARD_RUN])
    return output, trainer


def front_matter(text):
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "the card starts with a YAML block between --- lines"
    return yaml.safe_load(match.group(1))


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def markdown_rows(text, header_start):
    """The rows of the markdown table whose header line starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_card_matches_the_run(trained):
    output, trainer = trained
    text = (output / "README.md").read_text(encoding="utf-8")
    results = json.loads((output / "all_results.json").read_text())
    meta = front_matter(text)

    # Hub metadata, and huggingface_hub reads the same.
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert {"custom_code", "multi-task", "sentence-transformers"} <= set(meta["tags"])
    assert meta["license"] and meta["datasets"] == ["demo"] and {"accuracy", "f1", "seqeval"} <= set(meta["metrics"])
    assert "base_model" not in meta  # the encoder is a local folder here, not a Hub id
    assert ModelCard(text).data.to_dict()["model-index"] == meta["model-index"]

    # model-index: one entry per task and split, values exactly those of all_results.json.
    entries = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "run"
    assert sorted((e["task"]["type"], e["dataset"]["split"]) for e in entries) == sorted(
        (task, split) for task in ("text-classification", "token-classification") for split in ("validation", "test")
    )
    checked = 0
    for entry in entries:
        prefix = SPLIT_PREFIX[entry["dataset"]["split"]]
        assert entry["dataset"]["type"] == "demo"
        for metric in entry["metrics"]:
            key = MODEL_INDEX_KEYS[(entry["task"]["type"], metric["type"])]
            assert metric["value"] == results[f"{prefix}_{key}"], (prefix, key)
            checked += 1
    assert checked == 2 * len(MODEL_INDEX_KEYS)

    for section in SECTIONS:
        assert f"\n{section}\n" in text, section

    # Label tables with the training counts (they add up to the training examples).
    rows = markdown_rows(text, "| id | sentence label | training examples |")
    assert [row[1].strip("`") for row in rows] == trainer.model.config.sentence_labels
    assert sum(int(row[2]) for row in rows) == results["train_samples"]
    tag_rows = markdown_rows(text, "| id | BIO tag | training words |")
    assert [row[1].strip("`") for row in tag_rows] == trainer.model.config.token_labels
    assert all(int(row[2]) > 0 for row in tag_rows if row[1] == "`O`")

    # Evaluation table = all_results, rounded.
    evaluation = {row[0]: row for row in markdown_rows(text, "| metric | validation | test |")}
    assert float(evaluation["Sentence accuracy"][2]) == pytest.approx(results["test_sentence_accuracy"], abs=1e-4)
    assert float(evaluation["Entity F1"][1]) == pytest.approx(results["eval_token_f1"], abs=1e-4)
    for row, key in (("Sentence calibration error (ECE, 15 bins), raw scores", "sentence_ece"),
                     ("Sentence calibration error (ECE), calibrated scores", "sentence_ece_calibrated"),
                     ("Temperature (fitted on validation)", "sentence_temperature")):
        assert float(evaluation[row][2]) == pytest.approx(results[f"test_{key}"], abs=1e-4), row
    temperature = trainer.model.config.sentence_temperature
    assert temperature != 1.0 and "### Confidence and out-of-scope texts" in text
    assert f"by a temperature of\n{format_value(temperature)}, fitted on the validation split" in text

    # Hyper-parameters, policy and the training log (one row per logged step).
    hyper = {row[0].strip("`"): row[1] for row in markdown_rows(text, "| hyper-parameter | value |")}
    assert float(hyper["learning_rate"]) == pytest.approx(trainer.args.learning_rate)
    assert hyper["per_device_train_batch_size"] == "8" and hyper["effective batch size"] == "8"
    assert "Trainable parameters at the end of training" in text
    logged_steps = sorted({log["step"] for log in trainer.state.log_history if "loss" in log or "eval_loss" in log})
    log_rows = markdown_rows(text, "| Step | Epoch |")
    assert [int(row[0]) for row in log_rows] == logged_steps
    assert "| transformers |" in text and "| torch |" in text

    # Every plot exists, is a PNG, and is shown in the card.
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(shown) == sorted(f"plots/{name}.png" for name in PLOTS)
    for path in shown:
        assert (output / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_the_usage_snippets_run(trained):
    output, _ = trained
    text = (output / "README.md").read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert len(blocks) == 2 and "trust_remote_code=True" in blocks[0] and "pipeline(" in blocks[0]
    assert f'model_id = "{output}"' in blocks[0]
    printed = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], "card-usage", "exec"), namespace)
    assert type(namespace["model"]).__name__ == "MultiTaskModel"  # the package's class here; remote code elsewhere
    assert type(namespace["classifier"]).__name__ == "MultiTaskPipeline"
    lines = printed.getvalue().splitlines()
    assert "'label':" in lines[0] and lines[1] == "(1, 32)"
    # The card's example output is what predict printed.
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    assert example["label"] in namespace["model"].config.sentence_labels
    pytest.importorskip("sentence_transformers")
    exec(compile(blocks[1], "card-sentence-transformers", "exec"), namespace)
    assert namespace["embeddings"].shape == (1, 32)


def test_a_card_without_a_run_and_with_a_hub_encoder(tiny_model, tmp_path):
    """Only a model: metadata with base_model (a Hub id), no model-index, no plots, still a valid card."""
    tiny_model.config.encoder_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    folder = tmp_path / "bare"
    tiny_model.save_pretrained(folder)

    args = TrainingArguments(output_dir=str(tmp_path / "unused"), learning_rate=5e-5, label_smoothing_factor=0.1,
                             report_to="none")
    path = write_model_card(ModelCardInputs(folder, tiny_model, args, model_id="someone/bare"))
    text = path.read_text(encoding="utf-8")
    meta = front_matter(text)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and "model-index" not in meta
    assert 'model_id = "someone/bare"' in text and "This run was not evaluated." in text
    assert "label-smoothed with ε = 0.1" in text
    assert not re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "demo Space" not in text  # none given
    spaced = write_model_card(ModelCardInputs(folder, tiny_model, args, model_id="someone/bare", space="someone/demo"))
    assert ("Try it in the demo Space: [someone/demo](https://huggingface.co/spaces/someone/demo)."
            in spaced.read_text(encoding="utf-8"))
    assert hub_base_model("/abs/folder") is None and hub_base_model("./x") is None
    # The template is package data, and the repository's model_card.md is that same file.
    assert find_template().name == "model_card_template.md" and find_template().parent.name == "modeling_mtl"
    assert (REPO / "model_card.md").resolve() == find_template().resolve()



def test_the_card_describes_a_head_that_scores_label_parts(make_tiny_model, tmp_path):
    model = make_tiny_model(sentence_labels=["flight", "airfare", "flight#airfare"], sentence_label_separator="#")
    model.save_pretrained(tmp_path / "parts")
    args = TrainingArguments(output_dir=str(tmp_path / "unused"), report_to="none")
    text = write_model_card(ModelCardInputs(tmp_path / "parts", model, args)).read_text(encoding="utf-8")
    assert "2 label parts; a label's logit is the sum of its parts' plus a bias of its own" in text
    assert "(labels split on `#`, 3 labels)" in text
    assert re.search(r"\| `sentence_label_separator` \| # \|", text)
