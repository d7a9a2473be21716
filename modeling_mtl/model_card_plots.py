"""The plots of the model card: PNG files in `<output_dir>/plots/`, drawn with matplotlib's object API (no pyplot, no
global backend); the t-SNE map needs scikit-learn. A plot that cannot be drawn is left out with a warning, never
failing the run. Their captions are text of the card template (`model_card_template.md`).
"""

import logging
from pathlib import Path

import numpy as np

from .schema_mtl import TASKS

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
SPLIT_PREFIXES = {"validation": "eval", "test": "test"}  # split -> prefix of its metrics in all_results.json


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


def plot_reliability(path, reliability):
    """Reliability diagram: accuracy against mean confidence per bin of the top sentence score, before and after the
    temperature; bar width is the bin, the diagonal perfect calibration."""
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for stage, style in (("before", "o-"), ("after", "s-")):
        bins = [row for row in reliability.get(stage) or [] if row["count"]]
        if bins:
            label = "raw scores" if stage == "before" else "calibrated scores"
            axes.plot([row["confidence"] for row in bins], [row["accuracy"] for row in bins], style, label=label)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("confidence (top sentence score, mean of the bin)")
    axes.set_ylabel("accuracy in the bin")
    axes.set_title(f"Sentence head calibration ({reliability['split']} split, 15 bins)")
    axes.legend(loc="upper left")
    figure.savefig(path)


def _series(log_history, key):
    points = [(log["step"], log[key]) for log in log_history if key in log and "step" in log]
    return [p[0] for p in points], [p[1] for p in points]


def plot_losses(path, log_history):
    figure = _figure(7, 4.2)
    axes = figure.add_subplot()
    curves = [("", "C0", "combined (weighted sum)")]
    curves += [(task.metric_prefix, f"C{i}", task.name) for i, task in enumerate(TASKS, 1)]
    for task, colour, label in curves:
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


def make_plots(output_dir, model, results, log_history, predictions, embeddings, seed=0, reliability=None):
    """Draw every plot that the inputs allow into `<output_dir>/plots/`; returns `{name: {"path": relative path,
    "split": the split it shows, or None}}` (what the template's captions need).

    `predictions`: `{split: [{"gold_label", "predicted_label", ...}]}`; `embeddings`:
    `{"split", "texts", "labels", "before" (or None), "after"}`; `reliability`: `{"split", "before", "after"}` bins.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: the model card has no plots (pip install matplotlib)")
        return {}
    folder = Path(output_dir) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plots = {}

    def attempt(name, draw, split=None):
        path = folder / f"{name}.png"
        try:
            if draw(path) is False:
                return
        except Exception as error:  # a plot must never fail the run
            logger.warning(f"plot {name} not drawn: {type(error).__name__}: {error}")
            return
        plots[name] = {"path": f"{PLOTS_DIR}/{name}.png", "split": split}

    config = model.config
    split = next((s for s in ("test", "validation") if predictions and predictions.get(s)), None)
    if split is not None:
        records = [r for r in predictions[split] if r.get("gold_label") is not None]
        if records:
            attempt(
                "confusion_matrix",
                lambda path: plot_confusion_matrix(
                    path, [r["gold_label"] for r in records], [r["predicted_label"] for r in records],
                    config.sentence_labels, split,
                ),
                split,
            )
    entity_types = sorted({tag[2:] for tag in config.token_labels if tag != "O"})
    if entity_types and any(f"{prefix}_token_f1" in results for prefix in SPLIT_PREFIXES.values()):
        attempt("entity_f1", lambda path: plot_entity_f1(path, results, entity_types))
    if reliability and reliability.get("before"):
        attempt("reliability", lambda path: plot_reliability(path, reliability), reliability["split"])
    if any("loss" in log for log in log_history or []):
        attempt("training_loss", lambda path: plot_losses(path, log_history))
    if any(key.startswith("eval_") for log in log_history or [] for key in log):
        attempt("validation_metrics", lambda path: plot_dev_metrics(path, log_history) > 0 or False)
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

        attempt("embeddings_pca", draw_pca, where)
        if count >= 5:
            attempt(
                "embeddings_tsne",
                lambda path: plot_embedding_map(
                    path,
                    [(f"{stage} (t-SNE)", tsne_2d(vectors, seed)) for stage, vectors in stages],
                    embeddings["labels"],
                    f"Sentence embeddings of {count} {where} sentences",
                ),
                where,
            )
    return plots


__all__ = [
    "PLOTS_DIR",
    "SPLIT_PREFIXES",
    "make_plots",
    "pca_2d",
    "plot_confusion_matrix",
    "plot_dev_metrics",
    "plot_embedding_map",
    "plot_entity_f1",
    "plot_losses",
    "tsne_2d",
]
