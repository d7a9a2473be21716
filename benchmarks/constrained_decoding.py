"""What BIO-constrained decoding of the token head would change, measured on trained ATIS models (not yet a feature).

    python benchmarks/constrained_decoding.py --models outputs/atis outputs/explore_ls/seed42

The model's word tags are the argmax at each word's first sub-token, as in training's evaluation and `predict`.
That can produce invalid BIO sequences (`I-x` after `O` or after another type). Here the same first-sub-token
log-probabilities are decoded instead with Viterbi under the BIO constraints (no `I-x` at the start, `I-x` only after
`B-x` or `I-x`), and both decodings are scored on dev and test: seqeval slot F1 and exact match (intent and all tags
right, the intent being the model's argmax in both cases). The argmax columns reproduce the training run's figures,
which checks the scoring. Results: benchmarks/results/constrained_decoding.json.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from seqeval.metrics import f1_score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.data import DataSource, load_sources  # noqa: E402

IMPOSSIBLE = -1e9


def bio_constraints(labels):
    """`(allowed [prev, next], may_start [tag])` boolean tensors for BIO tags."""
    size = len(labels)
    allowed = torch.ones(size, size, dtype=torch.bool)
    may_start = torch.ones(size, dtype=torch.bool)
    for j, tag in enumerate(labels):
        if tag.startswith("I-"):
            may_start[j] = False
            for i, previous in enumerate(labels):
                allowed[i, j] = previous[:2] in ("B-", "I-") and previous[2:] == tag[2:]
    return allowed, may_start


def viterbi(log_probs, allowed, may_start):
    """The best tag path of `log_probs` [words, tags] that obeys the constraints."""
    transitions = torch.where(allowed, 0.0, IMPOSSIBLE)
    score = log_probs[0].masked_fill(~may_start, IMPOSSIBLE)
    pointers = []
    for step in range(1, len(log_probs)):
        best, index = (score[:, None] + transitions).max(0)
        pointers.append(index)
        score = best + log_probs[step]
    path = [int(score.argmax())]
    for index in reversed(pointers):
        path.append(int(index[path[-1]]))
    return path[::-1]


def score_split(model, dataset, batch_size=64):
    labels = model.config.token_labels
    allowed, may_start = bio_constraints(labels)
    gold, argmax_tags, viterbi_tags = [], [], []
    exact = {"argmax": 0, "viterbi": 0}
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start : start + batch_size]
            encoding = model.tokenize_words(rows["words"])
            outputs = model(**model.encoder_inputs(encoding))
            log_probs = outputs.token_logits.float().log_softmax(-1)
            intents = outputs.sentence_logits.argmax(-1).tolist()
            for row, words in enumerate(rows["words"]):
                first = {}
                for position, word in enumerate(encoding.word_ids(row)):
                    if word is not None and word not in first:
                        first[word] = position
                word_log_probs = log_probs[row, [first[word] for word in range(len(words))]]
                by_argmax = [labels[i] for i in word_log_probs.argmax(-1).tolist()]
                by_viterbi = [labels[i] for i in viterbi(word_log_probs, allowed, may_start)]
                tags = rows["tags"][row]
                gold.append(tags)
                argmax_tags.append(by_argmax)
                viterbi_tags.append(by_viterbi)
                intent_right = model.config.sentence_labels[intents[row]] == rows["sentence_label"][row]
                exact["argmax"] += intent_right and by_argmax == tags
                exact["viterbi"] += intent_right and by_viterbi == tags
    return {
        name: {"slot_f1": round(100 * f1_score(gold, predicted), 2), "exact_match": round(100 * exact[name] / len(gold), 2)}
        for name, predicted in (("argmax", argmax_tags), ("viterbi", viterbi_tags))
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[str(REPO / "outputs" / "atis")])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "atis"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "constrained_decoding.json"))
    args = parser.parse_args(argv)
    raw = load_sources([DataSource(data_dir=args.data_dir)])
    results = {}
    for folder in args.models:
        model = MultiTaskModel.from_pretrained(folder).eval()
        results[folder] = {split: score_split(model, raw[split]) for split in ("validation", "test")}
        print(folder, json.dumps(results[folder]), flush=True)
    record = {"command": "python benchmarks/constrained_decoding.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "results": results}
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
