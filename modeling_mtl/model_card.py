"""The model card of a trained folder: `README.md` with Hub metadata, tables and plots, filled from a training run.

    write_model_card(ModelCardInputs(output_dir, model, training_args, data_args=..., raw=...,
                                     log_history=trainer.state.log_history, predictions={"test": records},
                                     embeddings_before=(split, texts, labels, vectors)))

The card's words are the Jinja template `model_card_template.md`, package data beside this file (the repository's
`model_card.md` is the same file), rendered by `huggingface_hub.ModelCard`. This module only gathers what the
template shows: facts about the model and the run (label counts, parameter counts, the training policy, unseen
labels) and the data tables (labels, evaluation, hyper-parameters, log, versions). The YAML front matter is built
with `huggingface_hub.ModelCardData` from the tags `publishing_mtl` also gives a pushed folder's minimal card, so
it follows the Hub's specification. The plots are drawn by `model_card_plots`.
"""

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from .model_card_plots import SPLIT_PREFIXES, make_plots
from .publishing_mtl import CARD_TAGS, LIBRARY_NAME, PIPELINE_TAG, hub_base_model

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")
CARD_METRICS = ["accuracy", "f1", "precision", "recall", "seqeval", "exact_match"]
EMBEDDING_MAP_LIMIT = 1000  # dev sentences drawn in the embedding maps (t-SNE is quadratic)
LOG_TABLE_ROWS = 100

# (task type, task name, [(metric type, metric name, key in all_results without the split prefix, metric args)])
MODEL_INDEX_TASKS = [
    (
        "text-classification",
        "Sentence classification",
        "num_sentence_examples",
        [
            ("accuracy", "Sentence accuracy", "sentence_accuracy", None),
            ("f1", "Sentence F1 (macro)", "sentence_f1_macro", {"average": "macro"}),
        ],
    ),
    (
        "token-classification",
        "Token classification (BIO entities)",
        "num_token_examples",
        [
            ("precision", "Entity precision (seqeval)", "token_precision", None),
            ("recall", "Entity recall (seqeval)", "token_recall", None),
            ("f1", "Entity F1 (seqeval)", "token_f1", None),
            ("accuracy", "Word tag accuracy", "token_accuracy", None),
            ("exact_match", "Exact match (sentence label and every tag)", "exact_match", None),
        ],
    ),
]

EVALUATION_ROWS = [
    ("Sentence accuracy", "sentence_accuracy"),
    ("Sentence F1 (macro)", "sentence_f1_macro"),
    ("Entity precision", "token_precision"),
    ("Entity recall", "token_recall"),
    ("Entity F1", "token_f1"),
    ("Word tag accuracy", "token_accuracy"),
    ("Exact match (label and all tags)", "exact_match"),
    ("Loss (weighted sum)", "loss"),
    ("Sentence loss", "sentence_loss"),
    ("Token loss", "token_loss"),
    ("Examples", "samples"),
    ("Examples with a sentence label unseen in training", "examples_with_unseen_sentence_label"),
    ("Words with a tag unseen in training", "words_with_unseen_tag"),
    ("Truncated examples", "truncated_examples"),
    ("Sentence calibration error (ECE, 15 bins), raw scores", "sentence_ece"),
    ("Sentence calibration error (ECE), calibrated scores", "sentence_ece_calibrated"),
    ("Sentence NLL, raw scores", "sentence_nll"),
    ("Sentence NLL, calibrated scores", "sentence_nll_calibrated"),
    ("Temperature (fitted on validation)", "sentence_temperature"),
    ("Token calibration error (ECE), raw scores", "token_ece"),
    ("Texts rejected as out of scope", "rejected_share"),
]

HYPERPARAMETERS = [
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "lr_scheduler_type",
    "warmup_ratio",
    "warmup_steps",
    "seed",
    "fp16",
    "bf16",
    "eval_strategy",
    "save_strategy",
    "metric_for_best_model",
    "greater_is_better",
    "load_best_model_at_end",
    "label_smoothing_factor",
    "early_stopping_patience",
]

LOG_COLUMNS = [
    ("Step", "step"),
    ("Epoch", "epoch"),
    ("Training loss", "loss"),
    ("Sentence loss", "sentence_loss"),
    ("Token loss", "token_loss"),
    ("Learning rate", "learning_rate"),
    ("Validation loss", "eval_loss"),
    ("Val. sentence accuracy", "eval_sentence_accuracy"),
    ("Val. entity F1", "eval_token_f1"),
    ("Val. exact match", "eval_exact_match"),
]

VERSION_PACKAGES = ["modeling-mtl", "transformers", "torch", "datasets", "tokenizers", "accelerate", "huggingface_hub",
                    "evaluate", "seqeval", "sentence-transformers"]


# ---------------------------------------------------------------------------------------------------- small helpers


def find_template(template=None):
    """The card template: `template` when given, else the one installed with the package."""
    path = Path(template) if template is not None else TEMPLATE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"model card template {path} not found")
    return path


def format_value(value, digits=4):
    """A number as the card prints it: short, no trailing zeros, `–` for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if not value.is_integer() else str(int(value))
    return str(value)


def _cell(value):
    return format_value(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows):
    """A GitHub-flavoured markdown table (cells escaped)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _versions():
    rows = [("Python", sys.version.split()[0])]
    for package in VERSION_PACKAGES:
        try:
            rows.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            continue
    return rows


def label_counts(train_dataset):
    """`(sentence label -> training examples, BIO tag -> training words, entity type -> training entities)`."""
    sentence, tags, entities = Counter(), Counter(), Counter()
    if train_dataset is None:
        return sentence, tags, entities
    for label in train_dataset["sentence_label"]:
        if label is not None:
            sentence[label] += 1
    for sequence in train_dataset["tags"]:
        previous = "O"
        for tag in sequence or []:
            tags[tag] += 1
            if tag.startswith("B-") or (tag.startswith("I-") and previous[2:] != tag[2:]):
                entities[tag[2:]] += 1
            previous = tag
    return sentence, tags, entities


def _texts(split):
    texts = split["text"] if "text" in split.column_names else [None] * len(split)
    return [text if text else " ".join(words or []) for text, words in zip(texts, split["words"])]


def embedding_sample(raw, limit=EMBEDDING_MAP_LIMIT, seed=0):
    """The dev sentences drawn in the embedding maps: `(split, texts, labels)` from the validation split (else
    test), at most `limit` of them (a seeded sample), or None when there is neither split."""
    for split in ("validation", "test"):
        if raw is not None and split in raw and len(raw[split]):
            data = raw[split]
            if len(data) > limit:
                data = data.shuffle(seed=seed).select(range(limit))
            labels = [label if label is not None else "(none)" for label in data["sentence_label"]]
            return split, _texts(data), labels
    return None


def _example_text(raw):
    """A real sentence for the usage snippet: the first test (else validation, train) sentence with an entity."""
    for split in ("test", "validation", "train"):
        if raw is None or split not in raw or not len(raw[split]):
            continue
        data = raw[split].select(range(min(200, len(raw[split]))))
        texts = _texts(data)
        for text, tags in zip(texts, data["tags"]):
            if tags and any(tag != "O" for tag in tags) and 20 <= len(text) <= 120:
                return text
        if texts:
            return texts[0]
    return "A sentence to label."


def _data_sources(data_args):
    if data_args is None:
        return []
    try:
        return data_args.data_sources()
    except (AttributeError, ValueError):
        return []


def _dataset_identity(data_args):
    """`(Hub ids for the `datasets` metadata, dataset type for the model-index)`."""
    ids, names = [], []
    for source in _data_sources(data_args):
        ids += [source.dataset_name] if source.dataset_name else []
        names.append(source.dataset_name or source.name or Path(source.data_dir).name)
    return ids, "+".join(names) or "unknown"


# ---------------------------------------------------------------------------------------------------- metadata


def model_index_results(results, dataset_type, dataset_name):
    """One `EvalResult` per metric, grouped by the Hub into one model-index entry per task and split. Values are
    the numbers of `all_results.json`, unrounded."""
    eval_results = []
    for split, prefix in SPLIT_PREFIXES.items():
        for task_type, task_name, count_key, metrics in MODEL_INDEX_TASKS:
            if not results.get(f"{prefix}_{count_key}"):
                continue
            for metric_type, metric_name, key, args in metrics:
                value = results.get(f"{prefix}_{key}")
                if value is None:
                    continue
                eval_results.append(
                    EvalResult(
                        task_type=task_type,
                        task_name=task_name,
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=metric_name,
                        metric_value=float(value),
                        metric_args=args,
                    )
                )
    return eval_results


def card_metadata(model, results, data_args, model_name, license="apache-2.0"):
    ids, dataset_type = _dataset_identity(data_args)
    eval_results = model_index_results(results, dataset_type, dataset_type)
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=list(CARD_TAGS),
        base_model=hub_base_model(model.config.encoder_name_or_path),
        datasets=ids or [dataset_type],
        metrics=list(CARD_METRICS),
        license=license,
        model_name=model_name,
        eval_results=eval_results or None,
    )


# ---------------------------------------------------------------------------------------------------- facts and tables


def parameter_counts(model):
    """Parameters of the whole model, the encoder and the heads, and how many of each are trainable now."""

    def count(module, trainable=False):
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    heads = [model.sentence_head, model.token_head]
    return {
        "total": count(model),
        "encoder": count(model.encoder),
        "heads": sum(count(h) for h in heads),
        "trainable": count(model, True),
        "encoder_trainable": count(model.encoder, True),
        "heads_trainable": sum(count(h, True) for h in heads),
    }


def encoder_layers(encoder_config):
    names = ("num_hidden_layers", "n_layer", "num_layers")
    return next((getattr(encoder_config, n) for n in names if hasattr(encoder_config, n)), None)


def entity_types(config):
    return sorted({tag[2:] for tag in config.token_labels if tag != "O"})


def label_tables(model, raw):
    sentence, tags, entities = label_counts(raw["train"] if raw is not None and "train" in raw else None)
    config = model.config
    sentence_rows = [(i, f"`{label}`", sentence.get(label, 0)) for i, label in enumerate(config.sentence_labels)]
    tag_rows = [(i, f"`{tag}`", tags.get(tag, 0)) for i, tag in enumerate(config.token_labels)]
    entity_rows = [(f"`{name}`", entities.get(name, 0)) for name in entity_types(config)]
    return (
        markdown_table(["id", "sentence label", "training examples"], sentence_rows),
        markdown_table(["id", "BIO tag", "training words"], tag_rows),
        markdown_table(["entity type", "training entities"], entity_rows) if entity_rows else "",
        sum(sentence.values()),
        sum(entities.values()),
    )


def evaluation_tables(results):
    splits = [(split, prefix) for split, prefix in SPLIT_PREFIXES.items() if f"{prefix}_loss" in results
              or f"{prefix}_samples" in results]
    if not splits:
        return "", ""
    rows = []
    for label, key in EVALUATION_ROWS:
        values = [results.get(f"{prefix}_{key}") for _, prefix in splits]
        if any(value is not None for value in values):
            rows.append([label] + values)
    main = markdown_table(["metric"] + [split for split, _ in splits], rows)
    types = sorted(
        {key[len(prefix) + 7 : -3] for _, prefix in splits for key in results
         if key.startswith(f"{prefix}_token_") and key.endswith("_f1") and key != f"{prefix}_token_f1"}
    )
    entity_rows = []
    for name in types:
        for split, prefix in splits:
            if f"{prefix}_token_{name}_f1" in results:
                entity_rows.append([f"`{name}`", split] + [
                    results.get(f"{prefix}_token_{name}_{m}") for m in ("precision", "recall", "f1", "support")
                ])
    per_entity = markdown_table(["entity type", "split", "precision", "recall", "F1", "support"], entity_rows) if entity_rows else ""
    return main, per_entity


def unseen_labels(results):
    """Per evaluated split, the examples and words whose gold label training never gave (they count as errors)."""
    return [
        {
            "name": split,
            "examples": results.get(f"{prefix}_examples_with_unseen_sentence_label") or 0,
            "words": results.get(f"{prefix}_words_with_unseen_tag") or 0,
        }
        for split, prefix in SPLIT_PREFIXES.items()
    ]


def _extra_training_fields(training_args):
    """The training arguments this project adds to `transformers.TrainingArguments` (freezing, learning-rate
    policy, loss weighting, sampling, ...), whatever they are named; tokens and other secrets never."""
    base = {f.name for f in dataclasses.fields(TrainingArguments)} | set(HYPERPARAMETERS)
    fields = []
    for item in dataclasses.fields(training_args):
        name = item.name
        if name in base or name.endswith("token") or "secret" in name or "password" in name:
            continue
        value = getattr(training_args, name, None)
        fields.append((name, getattr(value, "value", value)))
    return fields


def training_policy(training_args):
    """The freezing / learning-rate / loss policy of a run, read from whichever training arguments exist (plain
    `TrainingArguments` have none of the project's transfer-learning options); the template words it."""
    args = training_args
    freeze = getattr(args, "freeze", None)
    learning_rates = None
    if hasattr(args, "head_learning_rate") or hasattr(args, "encoder_learning_rate"):
        learning_rates = {
            "heads": getattr(args, "head_learning_rate", None) or args.learning_rate,
            "encoder": getattr(args, "encoder_learning_rate", None) or args.learning_rate,
            "layer_decay": getattr(args, "layerwise_lr_decay", 1.0) or 1.0,
        }
    return {
        "frozen": freeze if freeze is None or isinstance(freeze, str) else ", ".join(map(str, freeze)),
        "frozen_layers": getattr(args, "freeze_encoder_layers", 0) or 0,
        "unfreezing": getattr(args, "unfreezing", None),
        "unfreeze_unit": getattr(args, "unfreeze_unit", "epochs"),
        "unfreeze_warmup": getattr(args, "unfreeze_warmup", 0),
        "unfreeze_every": getattr(args, "unfreeze_every", 1),
        "learning_rate": args.learning_rate,
        "learning_rates": learning_rates,
        "scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        "loss_weighting": getattr(args, "loss_weighting", None),
        "label_smoothing": getattr(args, "label_smoothing_factor", 0.0) or 0.0,
        "ema_decay": getattr(args, "ema_decay", None),
        "task_sampling": getattr(args, "task_sampling", None),
        "task_sampling_temperature": getattr(args, "task_sampling_temperature", None),
    }


def hyperparameter_table(model, training_args, data_args):
    rows = []
    for name in HYPERPARAMETERS:
        if not hasattr(training_args, name):
            continue
        value = getattr(training_args, name)
        if name == "max_steps" and (value is None or value <= 0):
            continue
        if name in ("warmup_steps", "early_stopping_patience") and not value:
            continue
        rows.append((f"`{name}`", getattr(value, "value", value)))
    world = getattr(training_args, "world_size", 1)
    effective = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world
    rows.append(("processes (world size)", world))
    rows.append(("effective batch size", effective))
    for name in ("label_all_tokens", "max_train_samples", "max_eval_samples"):
        if data_args is not None and getattr(data_args, name, None) is not None:
            rows.append((f"`{name}`", getattr(data_args, name)))
    for name in ("max_seq_length", "pooling_mode", "normalize_embeddings", "head_dropout", "sentence_loss_weight",
                 "token_loss_weight", "token_decoding", "sentence_label_separator"):
        if getattr(model.config, name, None) is not None:
            rows.append((f"`{name}`", getattr(model.config, name)))
    return markdown_table(["hyper-parameter", "value"], rows)


def log_table(log_history):
    """Training and evaluation logs merged by step (the last row per step wins); long logs are thinned, keeping
    every evaluation."""
    rows = {}
    for log in log_history or []:
        if "step" not in log or not any(key in log for _, key in LOG_COLUMNS[2:]):
            continue
        rows.setdefault(log["step"], {}).update(log)
    steps = sorted(rows)
    if len(steps) > LOG_TABLE_ROWS:
        keep = {steps[int(i * (len(steps) - 1) / (LOG_TABLE_ROWS - 1))] for i in range(LOG_TABLE_ROWS)}
        keep |= {step for step in steps if "eval_loss" in rows[step]}
        steps = sorted(keep)
    columns = [(title, key) for title, key in LOG_COLUMNS if any(key in rows[s] for s in steps)]
    if not steps:
        return ""
    return markdown_table([t for t, _ in columns], [[rows[s].get(k) for _, k in columns] for s in steps])


# ---------------------------------------------------------------------------------------------------- the card


@dataclass
class ModelCardInputs:
    """Everything a model card is filled from.

    Args:
        output_dir: the trained model folder; the card is its `README.md`, the plots its `plots/`.
        model: the trained `MultiTaskModel` (its config names the labels; the "after" embeddings come from it).
        training_args: the run's `TrainingArguments` (hyper-parameters, policy; the project's own options when it
            is a `MultiTaskTrainingArguments`).
        data_args: the run's `DataArguments` (the data sources named in the card and its metadata).
        raw: the raw `DatasetDict` (training counts, the example sentence, split sizes, embedding sample).
        results: the metrics; default: `<output_dir>/all_results.json` when it exists.
        log_history: `trainer.state.log_history` (training log table and curves).
        predictions: `{split: records}` as `predictions_to_records` returns them (confusion matrix).
        embeddings_before: `(split, texts, labels, vectors)` computed before training (`embedding_sample`).
        reliability: `{"split", "before", "after"}`, the sentence head's `calibration.reliability_bins` of one split.
        model_id: what the usage snippet loads (the Hub id when the model is pushed; default: `output_dir`).
        space: a Hugging Face Space id that demonstrates the model (default: the run's `demo_space`); linked.
        template: a card template other than the package's `model_card_template.md`.
        license: the card's `license` metadata.
    """

    output_dir: str | Path
    model: Any
    training_args: Any
    data_args: Any = None
    raw: Any = None
    results: dict | None = None
    log_history: list | None = None
    predictions: dict | None = None
    embeddings_before: tuple | None = None
    reliability: dict | None = None
    model_id: str | None = None
    space: str | None = None
    template: str | Path | None = None
    license: str = "apache-2.0"


def _embeddings(inputs, seed):
    """The embedding-map sample with its vectors before (when given) and after training, or None."""
    if inputs.embeddings_before is not None:
        split, texts, labels, before = inputs.embeddings_before
    else:
        sample = embedding_sample(inputs.raw, seed=seed)
        if sample is None:
            return None
        (split, texts, labels), before = sample, None
    after = inputs.model.encode(texts) if texts else None
    return {"split": split, "texts": texts, "labels": labels, "before": before, "after": after}


def write_model_card(inputs):
    """Fill the template from a `ModelCardInputs`; writes `<output_dir>/README.md` and `<output_dir>/plots/*.png`
    and returns the card's path."""
    output_dir, model, training_args, raw = Path(inputs.output_dir), inputs.model, inputs.training_args, inputs.raw
    config = model.config
    results = inputs.results
    if results is None:
        path = output_dir / "all_results.json"
        results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    model_id = str(inputs.model_id or output_dir)
    model_name = model_id.rstrip("/").split("/")[-1]
    seed = getattr(training_args, "seed", 0)

    embeddings = _embeddings(inputs, seed)
    plots = make_plots(output_dir, model, results, inputs.log_history, inputs.predictions, embeddings, seed=seed,
                       reliability=inputs.reliability)
    example = _example_text(raw)
    example_output = None
    try:
        example_output = json.dumps(model.predict([example])[0], indent=2, ensure_ascii=False)
    except Exception as error:  # the card is still useful without it
        logger.warning(f"example prediction failed: {error}")
    sentence_table, tag_table, entity_table, n_sentence, n_entities = label_tables(model, raw)
    evaluation, per_entity = evaluation_tables(results)
    extras = _extra_training_fields(training_args)

    card = ModelCard.from_template(
        card_metadata(model, results, inputs.data_args, model_name, license=inputs.license),
        template_path=str(find_template(inputs.template)),
        fmt=format_value,
        config=config,
        model_name=model_name,
        model_id_literal=json.dumps(model_id),
        space=inputs.space or getattr(training_args, "demo_space", None),
        base_model=config.encoder_name_or_path,
        base_model_is_hub=hub_base_model(config.encoder_name_or_path) is not None,
        encoder_type=config.encoder_config.model_type,
        encoder_layers=encoder_layers(config.encoder_config),
        parameters=parameter_counts(model),
        label_parts=len(model.sentence_head.classifier.weight),
        entity_types=entity_types(config),
        example_literal=json.dumps(example, ensure_ascii=False),
        example_output=example_output,
        sentence_label_table=sentence_table,
        tag_table=tag_table,
        entity_table=entity_table,
        training_examples=n_sentence,
        training_entities=n_entities,
        data_sources=_data_sources(inputs.data_args),
        split_sizes={split: len(raw[split]) for split in ("train", "validation", "test") if raw is not None and split in raw},
        evaluation_table=evaluation,
        entity_evaluation_table=per_entity,
        unseen=unseen_labels(results),
        plots=plots,
        hyperparameter_table=hyperparameter_table(model, training_args, inputs.data_args),
        policy=training_policy(training_args),
        extra_options_table=markdown_table(["option", "value"], [(f"`{n}`", v) for n, v in extras]) if extras else "",
        log_table=log_table(inputs.log_history),
        versions_table=markdown_table(["package", "version"], _versions()),
    )
    path = output_dir / "README.md"
    card.save(path)
    logger.info(f"model card written to {path} ({len(plots)} plots)")
    return path


def read_card_metadata(path):
    """The YAML front matter of a card as a dict (for tests and tools)."""
    return ModelCard.load(path).data.to_dict()


CARD_STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;color:#1f2937}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #d1d5db;padding:4px 8px;text-align:left}
th{background:#f3f4f6}img{max-width:100%}pre{background:#f3f4f6;padding:8px;overflow:auto}code{font-size:90%}"""


def card_html(card_text, title="Model card"):
    """A card as the Hub shows it: the YAML header is metadata (not shown), Markdown with tables and fenced code,
    images relative to the card's folder. Needs the `markdown` package (the demo and test extras)."""
    import html
    import re

    import markdown

    body = re.sub(r"\A---\n.*?\n---\n", "", card_text, count=1, flags=re.S)
    rendered = markdown.markdown(body, extensions=["tables", "fenced_code"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CARD_STYLE}</style></head><body>{rendered}</body></html>")


__all__ = [
    "ModelCardInputs",
    "card_html",
    "embedding_sample",
    "find_template",
    "format_value",
    "label_counts",
    "markdown_table",
    "model_index_results",
    "read_card_metadata",
    "training_policy",
    "write_model_card",
]
