"""Open-intent detection on ATIS (or any JointBERT folder): how well does each score tell in-scope utterances from
out-of-scope ones, and what does rejecting cost the known classes?

    python benchmarks/open_intent.py                                   # ratios 0.25 0.5 0.75, seeds 42 43 44
    python benchmarks/open_intent.py --ratios 0.75 --seeds 42 --num_train_epochs 4   # a quicker look

The protocol of the open-intent literature (Shu et al. 2017; Lin & Xu 2019; Zhang et al. 2021): per seed, a random
25% / 50% / 75% of the intent classes of the training split are known; the training and validation utterances of the
other classes are removed (so no choice is made on them), and at test they are the out-of-scope utterances. Each
(ratio, seed) is one `train_mtl.py` run of the run file on the filtered folder (the sentence temperature is fitted on
the known-only validation split, as every run does). Then, per score (higher = more in scope):

- `msp`: the maximum softmax probability, calibrated (Hendrycks & Gimpel 2017);
- `energy`: logsumexp of the logits (the negative energy, Liu et al. 2020);
- `mahalanobis`: minus the smallest Mahalanobis distance of the pooled embedding to a class mean of the training
  embeddings, one covariance shared by the classes (Lee et al. 2018);
- `cosine`: the largest cosine similarity of the sentence embedding to a class centroid of the training embeddings.

The threshold of each is chosen on validation (known classes only) to keep 95% of its utterances; test reports
AUROC, FPR at 95% TPR (threshold keeping 95% of the in-scope test utterances), accuracy on the known classes
without and with rejection (a rejected in-scope utterance counts as wrong), out-of-scope recall and precision, and
macro F1 over the known classes plus "open". Means over the seeds go to benchmarks/results/open_intent.json with the
per-run figures and the command.
"""

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score  # noqa: E402

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.calibration import threshold_for_recall  # noqa: E402
from modeling_mtl.data import DataSource, load_source  # noqa: E402
from modeling_mtl.decoding_mtl import longest_first_batches  # noqa: E402

METHODS = ("msp", "energy", "mahalanobis", "cosine")
OPEN = "<open>"
SPLIT_FOLDERS = {"train": "train", "validation": "dev", "test": "test"}


def write_jointbert(rows, folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seq.in").write_text("".join(" ".join(row["words"]) + "\n" for row in rows), encoding="utf-8")
    (folder / "seq.out").write_text("".join(" ".join(row["tags"]) + "\n" for row in rows), encoding="utf-8")
    (folder / "label").write_text("".join(row["sentence_label"] + "\n" for row in rows), encoding="utf-8")


def known_classes(train_labels, ratio, seed):
    classes = sorted(set(train_labels))
    return sorted(random.Random(seed).sample(classes, max(1, round(ratio * len(classes)))))


def make_folder(data, known, folder):
    """Train and validation with the known classes only; test whole."""
    for split, name in SPLIT_FOLDERS.items():
        rows = [row for row in data[split] if split == "test" or row["sentence_label"] in known]
        write_jointbert(rows, folder / name)
    return {split: sum(1 for row in data[split] if row["sentence_label"] in known) for split in SPLIT_FOLDERS}


@torch.no_grad()
def model_outputs(model, word_lists, batch_size=128):
    """Sentence logits, pooled (un-normalised) vectors and their L2-normalised sentence embeddings, in input order."""
    logits, pooled = [None] * len(word_lists), [None] * len(word_lists)
    model.eval()
    for indices in longest_first_batches([len(words) for words in word_lists], batch_size):
        encoding = model.tokenize_words([word_lists[index] for index in indices])
        inputs = model.encoder_inputs(encoding)
        # One encoder pass: the head reads the pooled vector, as the model's forward does.
        vector = model.pooling(model.run_encoder(**inputs).last_hidden_state, inputs["attention_mask"])
        head_logits = model.sentence_head(vector)
        for row, index in enumerate(indices):
            logits[index], pooled[index] = head_logits[row].float(), vector[row].float()
    pooled = torch.stack(pooled)
    return torch.stack(logits), pooled, torch.nn.functional.normalize(pooled, dim=-1)


class EmbeddingScores:
    """Class means (pooled vectors) with a shared covariance, and class centroids (normalised sentence embeddings), of
    the training split."""

    def __init__(self, pooled, embeddings, labels):
        classes = sorted(set(labels))
        index = torch.tensor([classes.index(label) for label in labels])
        self.means = torch.stack([pooled[index == c].mean(0) for c in range(len(classes))])
        centred = pooled - self.means[index]
        covariance = centred.T @ centred / len(pooled)
        shrink = 1e-3 * covariance.diagonal().mean()  # keeps the inverse stable with few examples per dimension
        self.precision = torch.linalg.inv(covariance + shrink * torch.eye(covariance.shape[0]))
        self.centroids = torch.nn.functional.normalize(
            torch.stack([embeddings[index == c].mean(0) for c in range(len(classes))]), dim=-1)

    def mahalanobis(self, pooled):
        difference = pooled[:, None, :] - self.means[None]
        distances = torch.einsum("ncd,de,nce->nc", difference, self.precision, difference)
        return -distances.min(-1).values

    def cosine(self, embeddings):
        return (embeddings @ self.centroids.T).max(-1).values


def scores_of(model, outputs, embedding_scores):
    logits, pooled, embeddings = outputs
    temperature = model.config.sentence_temperature
    return {
        "msp": (logits / temperature).softmax(-1).max(-1).values,
        "energy": torch.logsumexp(logits, dim=-1),
        "mahalanobis": embedding_scores.mahalanobis(pooled),
        "cosine": embedding_scores.cosine(embeddings),
    }


def open_set_figures(scores, threshold, predicted, gold, known):
    in_scope = np.array([label in known for label in gold])
    scores = scores.numpy()
    accepted = scores >= threshold
    tpr_threshold = threshold_for_recall(scores[in_scope], 0.95)
    final = [label if keep else OPEN for label, keep in zip(predicted, accepted)]
    truth = [label if scope else OPEN for label, scope in zip(gold, in_scope)]
    rejected_oos = int(((~accepted) & (~in_scope)).sum())
    return {
        "auroc": float(roc_auc_score(in_scope, scores)),
        "fpr_at_95_tpr": float((scores[~in_scope] >= tpr_threshold).mean()),
        "known_accuracy": float(np.mean([f == g for f, g, s in zip(final, gold, in_scope) if s])),
        "oos_recall": rejected_oos / max(int((~in_scope).sum()), 1),
        "oos_precision": rejected_oos / max(int((~accepted).sum()), 1),
        "macro_f1": float(f1_score(truth, final, labels=sorted(known) + [OPEN], average="macro", zero_division=0)),
    }


def evaluate_run(output_dir, data, known):
    model = MultiTaskModel.from_pretrained(output_dir)
    train = [row for row in data["train"] if row["sentence_label"] in known]
    dev = [row for row in data["validation"] if row["sentence_label"] in known]
    test = list(data["test"])
    train_outputs = model_outputs(model, [row["words"] for row in train])
    embedding_scores = EmbeddingScores(train_outputs[1], train_outputs[2], [row["sentence_label"] for row in train])
    dev_scores = scores_of(model, model_outputs(model, [row["words"] for row in dev]), embedding_scores)
    test_outputs = model_outputs(model, [row["words"] for row in test])
    test_scores = scores_of(model, test_outputs, embedding_scores)
    labels = model.config.sentence_labels
    predicted = [labels[int(index)] for index in test_outputs[0].argmax(-1)]
    gold = [row["sentence_label"] for row in test]
    in_scope = [label in known for label in gold]
    figures = {"known_accuracy_without_rejection": float(np.mean(
        [p == g for p, g, s in zip(predicted, gold, in_scope) if s])), "test_in_scope": sum(in_scope),
        "test_out_of_scope": len(gold) - sum(in_scope), "sentence_temperature": model.config.sentence_temperature}
    for method in METHODS:
        threshold = threshold_for_recall(dev_scores[method], 0.95)
        figures[method] = {"dev_threshold": threshold,
                           **open_set_figures(test_scores[method], threshold, predicted, gold, set(known))}
    return figures


def summarize(runs):
    summary = {}
    for ratio in sorted({run["ratio"] for run in runs}):
        chosen = [run for run in runs if run["ratio"] == ratio]
        row = {"seeds": [run["seed"] for run in chosen], "known_accuracy_without_rejection": round(100 * statistics.mean(
            run["figures"]["known_accuracy_without_rejection"] for run in chosen), 2)}
        for method in METHODS:
            row[method] = {key: round(100 * statistics.mean(run["figures"][method][key] for run in chosen), 2)
                           for key in ("auroc", "fpr_at_95_tpr", "known_accuracy", "oos_recall", "oos_precision",
                                       "macro_f1")}
        summary[str(ratio)] = row
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--config", default=str(REPO / "configuration" / "atis.yaml"))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--output_root", default=str(REPO / "outputs" / "open_intent"))
    parser.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "open_intent.json"))
    parser.add_argument("--table", action="store_true", help="print the table of --result (no training)")
    args, overrides = parser.parse_known_args()
    if args.table:
        record = json.loads(Path(args.result).read_text())
        record["summary"] = summarize(record["runs"])
        return print_table(record)
    from train_mtl import main as train

    data = load_source(DataSource(data_dir=args.data_dir))
    classes = sorted(set(data["train"]["sentence_label"]))
    runs = []
    # Seeds outer: a run stopped early still has every ratio at the first seed(s).
    for seed in args.seeds:
        for ratio in args.ratios:
            known = known_classes(data["train"]["sentence_label"], ratio, seed)
            root = Path(args.output_root) / f"ratio{ratio}_seed{seed}"
            counts = make_folder(data, known, root / "data")
            start = time.perf_counter()
            train([args.config, "--data_dir", str(root / "data"), "--seed", str(seed), "--output_dir",
                   str(root / "model"), "--save_total_limit", "1", *overrides])
            figures = evaluate_run(root / "model", data, known)
            results = json.loads((root / "model" / "all_results.json").read_text())
            figures["calibration"] = {key: value for key, value in results.items()
                                      if any(part in key for part in ("_ece", "_nll", "temperature"))}
            runs.append({"ratio": ratio, "seed": seed, "known": known, "known_examples": counts,
                         "minutes": round((time.perf_counter() - start) / 60, 1), "figures": figures})
            print(json.dumps(runs[-1]["figures"]))
            record = {"command": "python benchmarks/open_intent.py " + shlex.join(sys.argv[1:]), "config": args.config,
                      "overrides": overrides, "classes": len(classes), "runs": runs, "summary": summarize(runs)}
            Path(args.result).write_text(json.dumps(record, indent=2) + "\n")  # after every run
    print_table(record)


def print_table(record):
    print("\n| known | method | AUROC | FPR@95TPR | known acc. (no rejection) | known acc. | OOS recall | OOS precision "
          "| macro F1 (known + open) |\n|---|---|---|---|---|---|---|---|---|")
    for ratio, row in record["summary"].items():
        for method in METHODS:
            figures = row[method]
            print(f"| {float(ratio):.0%} | {method} | {figures['auroc']:.2f} | {figures['fpr_at_95_tpr']:.2f} | "
                  f"{row['known_accuracy_without_rejection']:.2f} | {figures['known_accuracy']:.2f} | "
                  f"{figures['oos_recall']:.2f} | {figures['oos_precision']:.2f} | {figures['macro_f1']:.2f} |")


if __name__ == "__main__":
    main()
