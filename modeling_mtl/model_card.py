"""The model card of a trained folder: `README.md` with Hub metadata, tables and plots, filled from a training run.

    write_model_card(output_dir, model, training_args, data_args=..., raw=..., log_history=trainer.state.log_history,
                     predictions={"test": records}, embeddings_before=(texts, labels, vectors))

The template is `model_card.md` at the repository root (Jinja, rendered by `huggingface_hub.ModelCard`); the YAML
front matter (`library_name`, `pipeline_tag`, `tags`, `base_model`, `datasets`, `metrics`, `license`, `model-index`)
is built with `huggingface_hub.ModelCardData`, so it follows the Hub's specification. The plots are PNG files in
`<output_dir>/plots/`, drawn with matplotlib's object API (no pyplot, no global backend); the t-SNE map needs
scikit-learn. A plot that cannot be drawn is left out of the card with a warning, never failing the run.
"""

import dataclasses
import json
import logging
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from .publishing_mtl import hub_base_model

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "model_card.md"
PLOTS_DIR = "plots"
LIBRARY_NAME = "transformers"
PIPELINE_TAG = "text-classification"
CARD_TAGS = [
    "custom_code",
    "multi-task",
    "sentence-transformers",
    "text-classification",
    "token-classification",
    "ner",
    "feature-extraction",
]
CARD_METRICS = ["accuracy", "f1", "precision", "recall", "seqeval", "exact_match"]
SPLIT_PREFIXES = {"validation": "eval", "test": "test"}
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

VERSION_PACKAGES = [
    "modeling-mtl",
    "transformers",
    "torch",
    "datasets",
    "tokenizers",
    "accelerate",
    "huggingface_hub",
    "evaluate",
    "seqeval",
    "sentence-transformers",
]


# ---------------------------------------------------------------------------------------------------- small helpers


def find_template(template=None):
    """The card template: `template` when given, else `model_card.md` at the repository root (a source checkout or
    an editable install), else the copy installed with the package (`<prefix>/share/modeling_mtl/`)."""
    if template is not None:
        path = Path(template)
        if not path.is_file():
            raise FileNotFoundError(f"model card template {path} not found")
        return path
    candidates = [
        Path(__file__).resolve().parents[1] / TEMPLATE_NAME,
        Path(sys.prefix) / "share" / "modeling_mtl" / TEMPLATE_NAME,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"model card template {TEMPLATE_NAME} not found in {[str(p) for p in candidates]}")


def _format(value, digits=4):
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
    return _format(value).replace("|", "\\|").replace("\n", " ")


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
    """`(Hub ids for the `datasets` metadata, dataset type for the model-index, readable description)`."""
    sources = _data_sources(data_args)
    ids, names, described = [], [], []
    for source in sources:
        if source.dataset_name:
            ids.append(source.dataset_name)
            names.append(source.dataset_name)
            config = f" ({source.dataset_config_name})" if source.dataset_config_name else ""
            described.append(f"[{source.dataset_name}](https://huggingface.co/datasets/{source.dataset_name}){config}")
        else:
            name = source.name or Path(source.data_dir).name
            names.append(name)
            described.append(f"`{source.data_dir}` (local folder, {source.data_format or 'format detected'})")
    if not names:
        return [], "unknown", "not recorded"
    return ids, "+".join(names), ", ".join(described)


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
    ids, dataset_type, _ = _dataset_identity(data_args)
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


# ---------------------------------------------------------------------------------------------------- plots


def _figure(width=6.4, height=4.8):
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_confusion_matrix(path, gold, predicted, labels, split):
    present = list(labels) + sorted({g for g in gold if g not in labels})
    index = {label: i for i, label in enumerate(present)}
    matrix = np.zeros((len(present), len(present)), dtype=int)
    for g, p in zip(gold, predicted):
        if g in index and p in index:
            matrix[index[g], index[p]] += 1
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.6 * len(present) + 2.5)
    figure = _figure(size, size * 0.85)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the gold row")
    axes.set_xticks(range(len(present)), present, rotation=45, ha="right")
    axes.set_yticks(range(len(present)), present)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("gold label")
    axes.set_title(f"Sentence head, {split} split ({int(matrix.sum())} examples)")
    if len(present) <= 25:
        for i in range(len(present)):
            for j in range(len(present)):
                if matrix[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    figure.savefig(path)


def plot_entity_f1(path, results, entity_types):
    splits = [(split, prefix) for split, prefix in SPLIT_PREFIXES.items() if f"{prefix}_token_f1" in results]
    figure = _figure(max(5.0, 1.0 * len(entity_types) + 2), 4)
    axes = figure.add_subplot()
    width = 0.8 / max(len(splits), 1)
    positions = np.arange(len(entity_types))
    for offset, (split, prefix) in enumerate(splits):
        values = [results.get(f"{prefix}_token_{name}_f1") or 0.0 for name in entity_types]
        bars = axes.bar(positions + offset * width - 0.4 + width / 2, values, width, label=split)
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    axes.set_xticks(positions, entity_types)
    axes.set_ylim(0, 1.08)
    axes.set_ylabel("F1 (entity level)")
    axes.set_title("Token head: F1 per entity type")
    if splits:
        axes.legend()
    figure.savefig(path)


def _series(log_history, key):
    points = [(log["step"], log[key]) for log in log_history if key in log and "step" in log]
    return [p[0] for p in points], [p[1] for p in points]


def plot_losses(path, log_history):
    figure = _figure(7, 4.2)
    axes = figure.add_subplot()
    for task, colour, label in (("", "C0", "combined (weighted sum)"), ("sentence_", "C1", "sentence"), ("token_", "C2", "token")):
        steps, values = _series(log_history, f"{task}loss")
        if steps:
            axes.plot(steps, values, "-", color=colour, label=f"{label}, training batches")
        steps, values = _series(log_history, f"eval_{task}loss")
        if steps:
            axes.plot(steps, values, "--o", color=colour, markersize=4, label=f"{label}, validation")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("cross-entropy")
    axes.set_title("Loss per task")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.savefig(path)


def plot_dev_metrics(path, log_history):
    figure = _figure(7, 4.2)
    axes = figure.add_subplot()
    drawn = 0
    for key, label in (
        ("eval_sentence_accuracy", "sentence accuracy"),
        ("eval_sentence_f1_macro", "sentence F1 (macro)"),
        ("eval_token_f1", "entity F1"),
        ("eval_exact_match", "exact match"),
    ):
        steps, values = _series(log_history, key)
        if steps:
            axes.plot(steps, values, "-o", label=label, markersize=4)
            drawn += 1
    axes.set_xlabel("optimiser step")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("Validation metrics during training")
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize=8)
    figure.savefig(path)
    return drawn


def pca_2d(vectors):
    """The first two principal components (numpy SVD; signs fixed so the result is deterministic) and the fraction
    of the variance they explain."""
    centred = np.asarray(vectors, dtype=np.float64) - np.mean(vectors, axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(1)])
    projected = centred @ (components * signs[:, None]).T
    variance = singular**2
    explained = float(variance[:2].sum() / variance.sum()) if variance.sum() > 0 else 0.0
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected, explained


def tsne_2d(vectors, seed=0):
    from sklearn.manifold import TSNE

    count = len(vectors)
    perplexity = float(min(30.0, max(1.0, (count - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(vectors, dtype=np.float32)
    )


def plot_embedding_map(path, maps, labels, title):
    """`maps`: `[(panel title, [n, 2] points)]`, side by side, coloured by `labels`."""
    names = sorted(set(labels))
    figure = _figure(5.2 * len(maps) + 1.6, 5)
    axes_list = figure.subplots(1, len(maps), squeeze=False)[0]
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    markers = "os^Dv<>PX*"
    for axes, (panel, points) in zip(axes_list, maps):
        for i, name in enumerate(names):
            chosen = [k for k, label in enumerate(labels) if label == name]
            axes.scatter(
                points[chosen, 0], points[chosen, 1], s=14, alpha=0.8, color=colours[name],
                marker=markers[(i // 10) % len(markers)], label=name,
            )
        axes.set_title(panel)
        axes.set_xticks([])
        axes.set_yticks([])
    handles, legend_labels = axes_list[-1].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="outside right center", fontsize=8, title="sentence label")
    figure.suptitle(title)
    figure.savefig(path)


def make_plots(output_dir, model, results, log_history, predictions, embeddings, seed=0):
    """Draw every plot that the inputs allow into `<output_dir>/plots/`; returns `{name: (relative path, caption)}`.

    `predictions`: `{split: [{"gold_label", "predicted_label", ...}]}`; `embeddings`:
    `{"split", "texts", "labels", "before" (or None), "after"}`.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: the model card has no plots (pip install matplotlib)")
        return {}
    folder = Path(output_dir) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plots = {}

    def attempt(name, caption, draw):
        path = folder / f"{name}.png"
        try:
            if draw(path) is False:
                return
        except Exception as error:  # a plot must never fail the run
            logger.warning(f"plot {name} not drawn: {type(error).__name__}: {error}")
            return
        plots[name] = (f"{PLOTS_DIR}/{name}.png", caption)

    config = model.config
    split = next((s for s in ("test", "validation") if predictions and predictions.get(s)), None)
    if split is not None:
        records = [r for r in predictions[split] if r.get("gold_label") is not None]
        if records:
            attempt(
                "confusion_matrix",
                f"Confusion matrix of the sentence head on the {split} split (colour: fraction of the gold row; "
                "numbers: examples).",
                lambda path: plot_confusion_matrix(
                    path, [r["gold_label"] for r in records], [r["predicted_label"] for r in records],
                    config.sentence_labels, split,
                ),
            )
    entity_types = sorted({tag[2:] for tag in config.token_labels if tag != "O"})
    if entity_types and any(f"{prefix}_token_f1" in results for prefix in SPLIT_PREFIXES.values()):
        attempt(
            "entity_f1",
            "F1 of the token head per entity type (seqeval, entity level).",
            lambda path: plot_entity_f1(path, results, entity_types),
        )
    if any("loss" in log for log in log_history or []):
        attempt(
            "training_loss",
            "Training curves: the combined loss and each task's loss, on the training batches and on the "
            "validation split.",
            lambda path: plot_losses(path, log_history),
        )
    if any(key.startswith("eval_") for log in log_history or [] for key in log):
        attempt(
            "validation_metrics",
            "Validation metrics at each evaluation during training.",
            lambda path: plot_dev_metrics(path, log_history) > 0 or False,
        )
    if embeddings and embeddings.get("after") is not None and len(embeddings["after"]) >= 3:
        stages = [("before training", embeddings.get("before")), ("after training", embeddings["after"])]
        stages = [(stage, np.asarray(vectors)) for stage, vectors in stages if vectors is not None]
        count, where = len(embeddings["after"]), embeddings["split"]

        def draw_pca(path):
            maps = []
            for stage, vectors in stages:
                points, explained = pca_2d(vectors)
                maps.append((f"{stage} (PCA, {explained:.0%} of the variance)", points))
            plot_embedding_map(path, maps, embeddings["labels"], f"Sentence embeddings of {count} {where} sentences")

        attempt(
            "embeddings_pca",
            f"Sentence embeddings of the {where} sentences projected with PCA, coloured by their gold sentence label, "
            "before and after training.",
            draw_pca,
        )
        if count >= 5:
            attempt(
                "embeddings_tsne",
                f"The same {where} embeddings mapped with t-SNE (cosine neighbourhoods kept, distances between "
                "clusters not meaningful), before and after training.",
                lambda path: plot_embedding_map(
                    path,
                    [(f"{stage} (t-SNE)", tsne_2d(vectors, seed)) for stage, vectors in stages],
                    embeddings["labels"],
                    f"Sentence embeddings of {count} {where} sentences",
                ),
            )
    return plots


# ---------------------------------------------------------------------------------------------------- tables


def _parameter_counts(model):
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


def architecture_table(model):
    config, encoder = model.config, model.config.encoder_config
    counts = _parameter_counts(model)
    layers = next((getattr(encoder, n) for n in ("num_hidden_layers", "n_layer", "num_layers") if hasattr(encoder, n)), None)
    base = config.encoder_name_or_path or "–"
    separator = getattr(config, "sentence_label_separator", None)
    rows = [
        ("Encoder", f"{encoder.model_type} from `{base}`: {layers} layers, hidden size {config.hidden_size}"),
        ("Parameters", f"{counts['total']:,} ({counts['encoder']:,} encoder, {counts['heads']:,} heads)"),
        ("Sentence embedding", f"{config.pooling_mode} pooling of the last hidden states"
         + (", L2-normalised" if config.normalize_embeddings else "") + f", {config.hidden_size} dimensions"),
        ("Sentence head", f"dropout {config.head_dropout} + linear {config.hidden_size} → "
         + (f"{len(config.sentence_labels)} labels" if separator is None else
            f"{len(model.sentence_head.classifier.weight)} label parts; a label's logit is the sum of its parts' plus "
            f"a bias of its own (labels split on `{separator}`, {len(config.sentence_labels)} labels)")
         + ", on the pooled (not normalised) vector"),
        ("Token head", f"dropout {config.head_dropout} + linear {config.hidden_size} → "
         f"{len(config.token_labels)} BIO tags, on every token; a word's tag is read at its first sub-token"
         + (", the sentence's tags decoded together as the best valid BIO sequence (`token_decoding: bio_viterbi`)"
            if getattr(config, "token_decoding", "argmax") == "bio_viterbi" else "")),
        ("Loss", f"{config.sentence_loss_weight} × sentence cross-entropy + {config.token_loss_weight} × token "
         "cross-entropy, each over the labelled items of the batch"),
        ("Maximum input", f"{config.max_seq_length} tokens (longer inputs are truncated)"),
    ]
    return markdown_table(["", ""], rows)


def label_tables(model, raw):
    sentence, tags, entities = label_counts(raw["train"] if raw is not None and "train" in raw else None)
    config = model.config
    sentence_rows = [(i, f"`{label}`", sentence.get(label, 0)) for i, label in enumerate(config.sentence_labels)]
    tag_rows = [(i, f"`{tag}`", tags.get(tag, 0)) for i, tag in enumerate(config.token_labels)]
    types = sorted({tag[2:] for tag in config.token_labels if tag != "O"})
    entity_rows = [(f"`{name}`", entities.get(name, 0)) for name in types]
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


def _policy_summary(model, args):
    """Sentences describing the freezing / learning-rate policy from the training arguments that exist (the
    project's transfer-learning options when present; one learning rate for everything otherwise)."""
    lr, scheduler = args.learning_rate, getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    lines = []
    freeze = getattr(args, "freeze", None)
    if freeze is not None:
        frozen = freeze if isinstance(freeze, str) else ", ".join(map(str, freeze))
        lines.append("Frozen for the whole run: " + ("nothing." if frozen in ("", "none") else f"`{frozen}`."))
    layers = getattr(args, "freeze_encoder_layers", 0) or 0
    if layers:
        lines.append(f"The encoder's embeddings and its lowest {layers} layers stay frozen.")
    schedule = getattr(args, "unfreezing", None)
    if schedule and schedule != "none":
        unit = getattr(args, "unfreeze_unit", "epochs")
        warmup, every = getattr(args, "unfreeze_warmup", 0), getattr(args, "unfreeze_every", 1)
        then = (
            f"then one more encoder layer thaws every {_format(every)} {unit}, top-down"
            if schedule == "gradual"
            else "then the whole encoder thaws"
        )
        lines.append(f"Unfreezing schedule `{schedule}`: the heads train alone for {_format(warmup)} {unit}, {then}.")
    if hasattr(args, "head_learning_rate") or hasattr(args, "encoder_learning_rate"):
        head = getattr(args, "head_learning_rate", None) or lr
        encoder = getattr(args, "encoder_learning_rate", None) or lr
        decay = getattr(args, "layerwise_lr_decay", 1.0) or 1.0
        lines.append(
            f"Peak learning rates: heads {_format(head)}, encoder (top layer) {_format(encoder)}"
            + (f", each lower layer × {_format(decay)}" if decay != 1 else ", every encoder layer alike")
            + f"; `{scheduler}` schedule."
        )
    else:
        lines.append(f"One peak learning rate for every parameter: {_format(lr)}, `{scheduler}` schedule.")
    weighting = getattr(args, "loss_weighting", None)
    if weighting == "uncertainty":
        lines.append("Task losses weighted by learned uncertainty (one log-variance per task).")
    elif weighting is not None:
        lines.append(
            f"Task losses weighted statically: sentence × {_format(model.config.sentence_loss_weight)}, token × "
            f"{_format(model.config.token_loss_weight)}."
        )
    smoothing = getattr(args, "label_smoothing_factor", 0.0) or 0.0
    if smoothing > 0:
        lines.append(f"Both tasks' cross-entropy label-smoothed with ε = {_format(smoothing)} (the logged losses are not).")
    ema_decay = getattr(args, "ema_decay", None)
    if ema_decay is not None:
        lines.append(
            f"Weights published: an exponential moving average of the trained weights (decay {_format(ema_decay)}), "
            "which was also what evaluation saw and the best checkpoint was chosen on."
        )
    sampling = getattr(args, "task_sampling", None)
    if sampling and sampling != "none":
        temperature = getattr(args, "task_sampling_temperature", None)
        lines.append(
            f"Training examples drawn source by source with `{sampling}` sampling"
            + (f" (T = {_format(temperature)})" if sampling == "temperature" and temperature else "")
            + "."
        )
    return lines


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


def policy_section(model, training_args):
    """The freezing / learning-rate policy in words, the project's extra training options as a table, and the
    trainable parameters at the end of training."""
    lines = [f"- {line}" for line in _policy_summary(model, training_args)]
    extras = _extra_training_fields(training_args)
    if extras:
        lines += ["", "Options of this run beyond `transformers.TrainingArguments`:", ""]
        lines.append(markdown_table(["option", "value"], [(f"`{name}`", value) for name, value in extras]))
    counts = _parameter_counts(model)
    lines += [
        "",
        f"Trainable parameters at the end of training: {counts['trainable']:,} of {counts['total']:,} (encoder "
        f"{counts['encoder_trainable']:,} of {counts['encoder']:,}, heads {counts['heads_trainable']:,} of "
        f"{counts['heads']:,}).",
    ]
    return "\n".join(lines)


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


def limitations(model, results, raw):
    items = [
        "The label sets are closed: the sentence head only ever answers one of the labels listed above, and the "
        "token head only knows these entity types.",
        f"Inputs longer than {model.config.max_seq_length} tokens are truncated; words past that point get no tag "
        "(a warning says how many).",
        "Strings are split into words by a regular expression (runs of word characters, punctuation on its own); "
        "pass pre-split words (a list of words to `predict`, a tuple to the pipeline) for other conventions.",
        "The sentence embedding is the encoder's pooled output; fine-tuning for the two heads moves it away from "
        "the original sentence-transformers space (see the embedding maps), so check similarity tasks before "
        "relying on it for retrieval.",
        "Scores are softmax probabilities of an uncalibrated classifier, not calibrated confidences.",
    ]
    sizes = {split: len(raw[split]) for split in ("train", "validation", "test") if raw is not None and split in raw}
    if sizes:
        items.append(
            "Trained on " + ", ".join(f"{n:,} {split}" for split, n in sizes.items()) + " examples; with small "
            "evaluation splits the figures above carry a wide margin of error."
        )
    for prefix, split in (("eval", "validation"), ("test", "test")):
        unseen = results.get(f"{prefix}_examples_with_unseen_sentence_label") or 0
        unseen_tags = results.get(f"{prefix}_words_with_unseen_tag") or 0
        if unseen or unseen_tags:
            items.append(
                f"The {split} split has {unseen} examples with a sentence label and {unseen_tags} words with a tag "
                "never seen in training; they count as errors."
            )
    items.append(
        "The encoder's pre-training data and its biases carry over; the model was not evaluated outside the data "
        "named above."
    )
    return "\n".join(f"- {item}" for item in items)


# ---------------------------------------------------------------------------------------------------- the card


def write_model_card(
    output_dir,
    model,
    training_args,
    *,
    data_args=None,
    model_args=None,
    raw=None,
    results=None,
    log_history=None,
    predictions=None,
    embeddings_before=None,
    model_id=None,
    template=None,
    license="apache-2.0",
):
    """Fill the template and write `<output_dir>/README.md` and `<output_dir>/plots/*.png`; returns the card's path.

    Args:
        output_dir: the trained model folder (holding `all_results.json` unless `results` is given).
        model: the trained `MultiTaskModel` (its config names the labels; the "after" embeddings come from it).
        training_args, data_args, model_args: the run's argument dataclasses (`model_args` is accepted for
            symmetry with `train_mtl.py`; what it sets is in `model.config`).
        raw: the raw `DatasetDict` (training counts, example sentence, split sizes).
        results: the metrics; default: `<output_dir>/all_results.json`.
        log_history: `trainer.state.log_history` (training log table and curves).
        predictions: `{split: records}` as `predictions_to_records` returns them (confusion matrix).
        embeddings_before: `(split, texts, labels, vectors)` computed before training (`embedding_sample`).
        model_id: what the usage snippet loads (the Hub id when the model is pushed; default: `output_dir`).
        template: a card template other than `model_card.md`.
    """
    output_dir = Path(output_dir)
    if results is None:
        path = output_dir / "all_results.json"
        results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    model_id = str(model_id or output_dir)
    model_name = model_id.rstrip("/").split("/")[-1]
    seed = getattr(training_args, "seed", 0)

    embeddings = None
    if embeddings_before is not None:
        split, texts, labels, before = embeddings_before
        embeddings = {"split": split, "texts": texts, "labels": labels, "before": before}
    else:
        sample = embedding_sample(raw, seed=seed)
        if sample is not None:
            embeddings = {"split": sample[0], "texts": sample[1], "labels": sample[2], "before": None}
    if embeddings is not None:
        embeddings["after"] = model.encode(embeddings["texts"]) if embeddings["texts"] else None
    plots = make_plots(output_dir, model, results, log_history, predictions, embeddings, seed=seed)

    example = _example_text(raw)
    example_output = None
    try:
        example_output = json.dumps(model.predict([example])[0], indent=2, ensure_ascii=False)
    except Exception as error:  # the card is still useful without it
        logger.warning(f"example prediction failed: {error}")
    sentence_table, tag_table, entity_table, n_sentence, n_entities = label_tables(model, raw)
    evaluation, per_entity = evaluation_tables(results)
    _, _, data_description = _dataset_identity(data_args)
    split_sizes = {split: len(raw[split]) for split in ("train", "validation", "test") if raw is not None and split in raw}

    card_data = card_metadata(model, results, data_args, model_name, license=license)
    card = ModelCard.from_template(
        card_data,
        template_path=str(find_template(template)),
        model_name=model_name,
        model_id=model_id,
        model_id_literal=json.dumps(model_id),
        base_model=model.config.encoder_name_or_path,
        base_model_is_hub=hub_base_model(model.config.encoder_name_or_path) is not None,
        architecture_table=architecture_table(model),
        sentence_labels=model.config.sentence_labels,
        entity_types=sorted({tag[2:] for tag in model.config.token_labels if tag != "O"}),
        sentence_label_table=sentence_table,
        tag_table=tag_table,
        entity_table=entity_table,
        training_examples=n_sentence,
        training_entities=n_entities,
        example_literal=json.dumps(example, ensure_ascii=False),
        example_output=example_output,
        data_description=data_description,
        split_sizes=", ".join(f"{split}: {n:,}" for split, n in split_sizes.items()) or "not recorded",
        evaluation_table=evaluation,
        entity_evaluation_table=per_entity,
        plots=plots,
        hyperparameter_table=hyperparameter_table(model, training_args, data_args),
        policy=policy_section(model, training_args),
        log_table=log_table(log_history),
        versions_table=markdown_table(["package", "version"], _versions()),
        limitations=limitations(model, results, raw),
        hidden_size=model.config.hidden_size,
    )
    path = output_dir / "README.md"
    card.save(path)
    logger.info(f"model card written to {path} ({len(plots)} plots)")
    return path


def read_card_metadata(path):
    """The YAML front matter of a card as a dict (for tests and tools)."""
    return ModelCard.load(path).data.to_dict()


__all__ = [
    "embedding_sample",
    "find_template",
    "label_counts",
    "make_plots",
    "markdown_table",
    "model_index_results",
    "read_card_metadata",
    "write_model_card",
]
