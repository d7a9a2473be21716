"""Calibration of a trained ATIS model, and what it answers for empty text, other languages and noise.

    python benchmarks/atis_confidence.py                     # the ATIS model of benchmarks/atis_span_roundtrip.py
    python benchmarks/atis_confidence.py --model outputs/atis --output /tmp/atis_confidence.json

1. Calibration, as train_mtl.py does it after training (`train_mtl.calibrate`): the sentence head's temperature fitted
   by NLL on the validation split, expected calibration error (15 bins) and NLL before and after on validation and
   test, the token head's ECE (and at its own fitted temperature, which is measured, not applied), and the
   `reject_threshold: auto` (keeps 95% of the validation texts), for each `reject_score`: `softmax` (the calibrated
   best score) and `centroid_cosine` (the default: the sentence embedding's largest cosine similarity to a class
   centroid of the training embeddings).
2. Inputs outside ATIS (`STRANGE_INPUTS`: empty and blank text, ATIS-like requests in eight other languages and
   scripts, unrelated English, and noise: random letters, digits, punctuation, emoji, word salad): for each score,
   the label, its calibrated score (and centroid similarity) and whether `predict` rejects it at that threshold. The
   share rejected per group is the figure; the same inputs through a model with rejection are checked in
   tests/test_inference.py.
JSON goes to `--output`.
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO))

from modeling_mtl import MultiTaskModel  # noqa: E402
from modeling_mtl.data import DataSource, MultiTaskCollator, encode_dataset_dict, load_source  # noqa: E402

TRAINED_ATIS = REPO / "outputs" / "atis_span_roundtrip" / "run_jointbert (original)"
SHARED = REPO.parent / "shared" / "data"


def noise(seed=0):
    generator = random.Random(seed)
    letters = "".join(generator.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(40))
    return [
        " ".join(letters[i : i + 5] for i in range(0, 40, 5)),
        " ".join(str(generator.randint(0, 99999)) for _ in range(6)),
        "?!.,;:-_()[]{}<>@#$%^&*",
        "😀 😂 🚀 ✈️ 🎉 🙈",
        "asdf jkl; qwer uiop zxcv",
        "purple monday the of seventeen banana quickly airport refrigerator",
    ]


STRANGE_INPUTS = {
    "empty": ["", "   ", "\n"],
    "other languages": [
        "zeige mir flüge von boston nach denver am montag",              # German
        "montrez-moi les vols de boston à denver lundi",                # French
        "muéstrame vuelos de boston a denver el lunes",                 # Spanish
        "покажи рейсы из бостона в денвер в понедельник",               # Russian
        "أرني الرحلات من بوسطن إلى دنفر يوم الاثنين",                   # Arabic
        "星期一从波士顿飞往丹佛的航班",                                    # Chinese
        "月曜日のボストンからデンバーへのフライトを見せて",                 # Japanese
        "सोमवार को बोस्टन से डेनवर की उड़ानें दिखाओ",                      # Hindi
    ],
    "unrelated English": [
        "what is the capital of australia",
        "please play some jazz music",
        "how do i bake sourdough bread",
        "tell me a joke about cats",
    ],
    "noise": noise(),
}


def calibration(model, model_dir, reject_score="centroid_cosine"):
    """Calibrate `model` and set its auto threshold on `reject_score` as training does; its figures."""
    import train_mtl

    raw = load_source(DataSource(data_dir=str(SHARED / "atis")))
    config = model.config
    encoded, _ = encode_dataset_dict(raw, model.tokenizer, config.sentence_labels, config.token_labels,
                                     max_length=config.max_seq_length)
    settings = argparse.Namespace(calibrate=True, reject_threshold="auto", reject_target_recall=0.95,
                                  reject_score=reject_score, per_device_eval_batch_size=128)
    figures, _ = train_mtl.calibrate(model, encoded, MultiTaskCollator(model.tokenizer), settings)
    return {key: value for split in figures.values() for key, value in split.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TRAINED_ATIS))
    parser.add_argument("--output", default=str(BENCHMARKS / "results" / "atis_confidence.json"))
    args = parser.parse_args()
    report = {"command": "python benchmarks/atis_confidence.py " + " ".join(sys.argv[1:]), "model": args.model}
    for reject_score in ("softmax", "centroid_cosine"):
        model = MultiTaskModel.from_pretrained(args.model).eval()
        figures = calibration(model, args.model, reject_score)  # sets the temperature and the auto threshold
        print(reject_score, json.dumps(figures, indent=2))
        strange = {}
        for group, texts in STRANGE_INPUTS.items():
            results = model.predict(texts)
            strange[group] = {
                "rejected_share": sum("rejected_label" in r for r in results) / len(texts),
                "max_score_of_an_accepted_text": max((r["score"] for r in results if "rejected_label" not in r),
                                                     default=None),
                "texts": [{"text": t, "label": r["label"], "best_label": r.get("rejected_label", r["label"]),
                           "score": round(r["score"], 4), "rejected": "rejected_label" in r,
                           **({"centroid_similarity": round(r["centroid_similarity"], 4)}
                              if "centroid_similarity" in r else {})}
                          for t, r in zip(texts, results)],
            }
            print(reject_score, group, strange[group]["rejected_share"])
        report[reject_score] = {"calibration": figures, "reject_threshold": model.config.reject_threshold,
                                "sentence_temperature": model.config.sentence_temperature, "strange_inputs": strange}
    Path(args.output).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
