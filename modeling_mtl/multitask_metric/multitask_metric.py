# Copyright the modeling_mtl authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Joint sentence-classification and BIO token-classification metric, as a local `evaluate` module.

Load it offline with `evaluate.load("/absolute/path/to/multitask_metric")`. This script is copied into the
`evaluate` cache when loaded, so it must stay self-contained: it imports only the standard library, numpy,
datasets, evaluate and seqeval.
"""

from collections import Counter

import datasets
import evaluate
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

_CITATION = """\
@inproceedings{ramshaw-marcus-1995-text,
    title = "Text Chunking using Transformation-Based Learning",
    author = "Ramshaw, Lance and Marcus, Mitch",
    booktitle = "Third Workshop on Very Large Corpora",
    year = "1995",
    url = "https://www.aclweb.org/anthology/W95-0107",
}
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  note={Software available from https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018},
}
@article{chen2019bert,
  title={{BERT} for Joint Intent Classification and Slot Filling},
  author={Chen, Qian and Zhuo, Zhu and Wang, Wen},
  journal={arXiv preprint arXiv:1902.10909},
  year={2019},
}
"""

_DESCRIPTION = """\
Evaluates a multi-task model that gives every example one sentence label (e.g. an intent or a topic) and one
BIO tag per word (e.g. slots or named entities), as in joint intent detection and slot filling.

Each prediction and each reference is a dict `{"label": str, "tags": list[str]}`. A reference may lack either
part: its label is then `""` and/or its tags `[]`, and it only counts towards the metrics of the part it has.

- Sentence metrics (examples with a reference label): accuracy, and F1 macro-averaged over every class found in
  the references or the predictions of those examples.
- Token metrics (examples with reference tags): entity-level precision, recall and F1 (micro-averaged over entity
  types) computed by seqeval in its default, conlleval-compatible mode on IOB2 tags, and word-level tag accuracy.
  When neither the references nor the predictions hold an entity, seqeval's precision, recall and F1 are 0.0.
- Exact match (examples with both references): the sentence label and every word tag are right, the
  "sentence accuracy" of JointBERT (Chen et al., 2019).

A metric that no example can be computed over is left out of the result (it is neither 0.0 nor NaN), so
sentence-only data give no `token_*` keys and token-only data give no `sentence_*` keys.

Reference labels never seen in training (which the model can never predict) stay in the data and count as errors;
pass the training label sets as `sentence_labels` / `token_labels` to have them counted as well.
"""

_KWARGS_DESCRIPTION = """
Computes sentence-classification, token-classification (BIO) and joint exact-match scores.
Args:
    predictions: list of dicts, one per example, `{"label": str, "tags": list[str]}`: the predicted sentence
        label and one predicted BIO tag per word.
    references: list of dicts, one per example, `{"label": str, "tags": list[str]}`: the gold sentence label and
        one gold BIO tag per word (IOB2, e.g. `["B-PER", "I-PER", "O"]`). Use `""` (the empty string) as label
        for an example without a gold sentence label, and `[]` as tags for an example without gold word tags.
        Where the reference has tags, the predicted tags must have the same length (a ValueError naming the
        example index is raised otherwise); where it has none, the predicted tags are ignored, and so is the
        predicted label of an example without a gold label.
    per_entity: bool, default False. Also report precision, recall, F1 and support for each entity type.
    sentence_labels: optional list of the sentence labels seen in training. When given, the result counts the
        examples whose gold label is not among them (`sentence_unseen_examples`).
    token_labels: optional list of the word tags seen in training (e.g. `["O", "B-PER", "I-PER"]`). When given,
        the result counts the gold word tags that are not among them (`token_unseen_words`).
Returns:
    A dict; a key is left out when no example can be computed over it.
    sentence_accuracy: fraction of examples with a gold label whose predicted label is right, in [0, 1].
    sentence_f1_macro: F1 averaged over the classes in the gold or predicted labels of those examples, in [0, 1].
    token_precision, token_recall, token_f1: entity-level micro-averaged scores (seqeval, default mode), in [0, 1].
    token_accuracy: fraction of gold-tagged words whose predicted tag is right, in [0, 1].
    token_<TYPE>_precision, token_<TYPE>_recall, token_<TYPE>_f1, token_<TYPE>_support: per entity type, only
        with `per_entity=True` (support: the number of gold entities of that type).
    exact_match: fraction of examples with both a gold label and gold tags where the label and all tags are right.
    num_sentence_examples, num_token_examples, num_exact_match_examples: how many examples each group of
        metrics is computed over (always present, possibly 0).
    sentence_unseen_examples: examples whose gold label is not in `sentence_labels` (only when that is given).
    token_unseen_words: gold word tags not in `token_labels` (only when that is given).
Examples:
    >>> metric = evaluate.load("/path/to/modeling_mtl/multitask_metric")
    >>> predictions = [{"label": "greet", "tags": ["B-PER", "I-PER", "O"]}, {"label": "bye", "tags": ["O"]}]
    >>> references = [{"label": "greet", "tags": ["B-PER", "I-PER", "O"]}, {"label": "greet", "tags": []}]
    >>> results = metric.compute(predictions=predictions, references=references)
    >>> results["sentence_accuracy"], results["token_f1"], results["exact_match"]
    (0.5, 1.0, 1.0)
"""

_EXAMPLE_FEATURE = {"label": datasets.Value("string"), "tags": datasets.Sequence(datasets.Value("string"))}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultitaskMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _EXAMPLE_FEATURE, "references": _EXAMPLE_FEATURE}),
            codebase_urls=["https://github.com/chakki-works/seqeval"],
            reference_urls=["https://github.com/chakki-works/seqeval", "https://arxiv.org/abs/1902.10909"],
        )

    def _compute(self, predictions, references, per_entity=False, sentence_labels=None, token_labels=None):
        if len(predictions) != len(references):
            raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references.")
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if ref["tags"] and len(pred["tags"]) != len(ref["tags"]):
                raise ValueError(
                    f"Example {i}: {len(pred['tags'])} predicted tags for {len(ref['tags'])} reference tags; "
                    "an example with reference tags needs exactly one predicted tag per word."
                )

        sentence = [(p["label"], r["label"]) for p, r in zip(predictions, references) if r["label"] != ""]
        token = [(list(p["tags"]), list(r["tags"])) for p, r in zip(predictions, references) if r["tags"]]
        joint = [(p, r) for p, r in zip(predictions, references) if r["label"] != "" and r["tags"]]

        results = {}
        if sentence:
            results.update(_sentence_scores(sentence, sentence_labels))
        if token:
            results.update(_token_scores(token, token_labels, per_entity))
        if joint:
            right = sum(p["label"] == r["label"] and list(p["tags"]) == list(r["tags"]) for p, r in joint)
            results["exact_match"] = right / len(joint)
        results["num_sentence_examples"] = len(sentence)
        results["num_token_examples"] = len(token)
        results["num_exact_match_examples"] = len(joint)
        return results


def _sentence_scores(pairs, seen_labels):
    """Accuracy, macro F1 and (with `seen_labels`) the unseen count of `(predicted, gold)` label pairs."""
    right = sum(pred == gold for pred, gold in pairs)
    true_positive, predicted, gold = Counter(), Counter(), Counter()
    for p, g in pairs:
        predicted[p] += 1
        gold[g] += 1
        true_positive[p] += p == g
    classes = set(predicted) | set(gold)
    # F1 of a class = 2 TP / (2 TP + FP + FN) = 2 TP / (#predicted + #gold), never 0 / 0 for a class present.
    f1s = [2 * true_positive[c] / (predicted[c] + gold[c]) for c in classes]
    scores = {"sentence_accuracy": right / len(pairs), "sentence_f1_macro": sum(f1s) / len(f1s)}
    if seen_labels is not None:
        seen = set(seen_labels)
        scores["sentence_unseen_examples"] = sum(g not in seen for _, g in pairs)
    return scores


def _token_scores(pairs, seen_tags, per_entity):
    """Entity-level P/R/F1 (seqeval, default mode), word accuracy and unseen count of `(predicted, gold)` tag lists."""
    y_pred = [p for p, _ in pairs]
    y_true = [g for _, g in pairs]
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    words = [(p, g) for pred, gold in pairs for p, g in zip(pred, gold)]
    scores = {
        "token_precision": float(precision),
        "token_recall": float(recall),
        "token_f1": float(f1),
        "token_accuracy": sum(p == g for p, g in words) / len(words),
    }
    if per_entity:
        # seqeval reports the types in sorted order of the types found in either side.
        types = sorted({t for t, _, _ in get_entities(y_true)} | {t for t, _, _ in get_entities(y_pred)})
        precisions, recalls, f1s, supports = precision_recall_fscore_support(
            y_true, y_pred, average=None, zero_division=0
        )
        for name, p, r, f, s in zip(types, precisions, recalls, f1s, supports):
            scores[f"token_{name}_precision"] = float(p)
            scores[f"token_{name}_recall"] = float(r)
            scores[f"token_{name}_f1"] = float(f)
            scores[f"token_{name}_support"] = int(s)
    if seen_tags is not None:
        seen = set(seen_tags)
        scores["token_unseen_words"] = sum(g not in seen for _, g in words)
    return scores
