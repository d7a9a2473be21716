"""Train a multi-task sentence transformer (sentence classification + BIO token classification on one encoder).

    accelerate launch train_mtl.py                                  # configuration/demo.yaml, no network needed
    accelerate launch train_mtl.py configuration/atis.yaml --num_train_epochs 3
    python train_mtl.py configuration/demo.yaml --output_dir outputs/demo --learning_rate 1e-4

The same script runs under plain `python`, `accelerate launch` (one CPU, several processes, GPUs) and `torchrun`.
It evaluates on the validation split during training (best checkpoint kept), then on test when there is one, and
leaves in `output_dir`: the model (weights, tokenizer, code files: loads with `AutoModel.from_pretrained(output_dir,
trust_remote_code=True)`), `all_results.json` (`train_*`, `eval_*`, `test_*`), `test_predictions.jsonl`, and the
model card `README.md` with its plots in `plots/`. Resume an interrupted run with `--resume_from_checkpoint latest`.

`--push_to_hub` (with `--hub_model_id`, `--hub_private_repo`, `--hub_token`) publishes the folder at the end in ONE
commit (model, code files, card and plots; no checkpoint, no training_args.bin); Trainer itself never pushes.
"""

import json
import logging
import os
import re
import sys

import datasets
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, set_seed

from modeling_mtl import MultiTaskModel
from modeling_mtl.calibration import (
    calibration_figures,
    class_centroids,
    collect_logits,
    fit_temperature,
    reliability_bins,
    threshold_for_recall,
)
from modeling_mtl.data import MultiTaskCollator, build_label_maps, encode_dataset_dict, length_order, load_sources
from modeling_mtl.hub import create_repo, push_folder, take_push_settings
from modeling_mtl.inspect_data import format_summary, summarize
from modeling_mtl.metrics import build_compute_metrics, predictions_to_records
from modeling_mtl.model_card import ModelCardInputs, embedding_sample, write_model_card
from modeling_mtl.trainer import MultiTaskTrainer
from modeling_mtl.training_args import ARGUMENT_CLASSES, parse_arguments

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configuration", "demo.yaml")
logger = logging.getLogger("train_mtl")


def load_data(data_args, seed):
    """Raw splits and the label maps of the training split. A data set with one kind of label only still gets a
    head for the other kind (a lone "O" tag, or one placeholder class) whose loss is never computed."""
    sources = data_args.data_sources()
    raw = load_sources(sources)
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples),
                         ("test", data_args.max_eval_samples)):
        if limit is not None and split in raw:
            # Shuffled first, so that a subset of several sources still holds each of them.
            raw[split] = raw[split].shuffle(seed=seed).select(range(min(limit, len(raw[split]))))
    # The span conversion reports its problems as it loads; this is the rest of what `inspect-data` prints.
    logger.info("Data:\n" + format_summary(summarize(raw, sources, {})))
    sentence_labels, token_labels = build_label_maps(raw["train"])
    return raw, sentence_labels or ["LABEL_0"], token_labels or ["O"]


def calibrate(model, encoded, collator, training_args):
    """Fit the sentence head's temperature on the validation split (`config.sentence_temperature`, unless
    `calibrate: false`) and set `config.reject_threshold` (a score, or "auto": chosen on validation) on
    `reject_score` (for centroid_cosine, the class centroids of the training embeddings go to
    `config.sentence_centroids`); returns the
    calibration figures per metric prefix ("eval", "test") for all_results.json, and the reliability bins of the
    test split (else validation) before and after, for the model card. Every process computes the same figures (the
    whole splits, deterministic), so the saved config is the same whichever process writes it."""
    threshold = training_args.reject_threshold
    centroids = threshold is not None and training_args.reject_score == "centroid_cosine"
    splits = ("validation", "test", "train") if centroids else ("validation", "test")
    logits = {split: collect_logits(model, encoded[split], collator, training_args.per_device_eval_batch_size,
                                    tokens=split != "train")  # the centroids need only the sentence embeddings
              for split in splits if split in encoded}
    dev = logits["validation"]
    temperature = fit_temperature(dev["sentence_logits"], dev["sentence_labels"]) if training_args.calibrate else 1.0
    # The token head's temperature is measured, not applied: it would change bio_viterbi's choice of sequence.
    token_temperature = fit_temperature(dev["token_logits"], dev["token_labels"])
    model.config.sentence_temperature = temperature
    if centroids:
        train = logits.pop("train")
        model.config.sentence_centroids = [
            [round(value, 6) for value in row]
            for row in class_centroids(train["sentence_embedding"], train["sentence_labels"],
                                       len(model.config.sentence_labels)).tolist()
        ]
        model.config.reject_score = "centroid_cosine"

    def in_scope_scores(split_logits):  # what predict compares with the threshold, from the config just set
        probs = (split_logits["sentence_logits"] / temperature).softmax(-1)
        return model.in_scope_scores(probs, split_logits["sentence_embedding"])

    if threshold == "auto":
        in_scope = dev["sentence_labels"] >= 0
        threshold = threshold_for_recall(in_scope_scores(dev)[in_scope], training_args.reject_target_recall)
    model.config.reject_threshold = threshold
    figures = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split not in logits:
            continue
        split_figures = {"sentence_temperature": temperature}
        sentence = calibration_figures(logits[split]["sentence_logits"], logits[split]["sentence_labels"], temperature)
        split_figures.update({f"sentence_{key}": value for key, value in sentence.items() if key != "temperature"})
        token = calibration_figures(logits[split]["token_logits"], logits[split]["token_labels"], token_temperature)
        if token:
            split_figures.update(token_ece=token["ece"], token_nll=token["nll"],
                                 token_temperature_measured=token_temperature,
                                 token_ece_at_measured_temperature=token["ece_calibrated"])
        if threshold is not None:
            rejected = in_scope_scores(logits[split]) < threshold
            split_figures.update(reject_threshold=threshold, rejected_share=float(rejected.double().mean()))
        figures[prefix] = {f"{prefix}_{key}": value for key, value in split_figures.items()}
    logger.info(f"calibration: sentence temperature {temperature:.3f}, " + ", ".join(
        f"{key} {value:.4f}" for key, value in figures.get("eval", {}).items() if "ece" in key or "rejected" in key))
    split = "test" if "test" in logits else "validation"
    sentence_logits, labels = logits[split]["sentence_logits"], logits[split]["sentence_labels"]
    labelled = labels >= 0
    reliability = {"split": split, **{stage: reliability_bins((sentence_logits[labelled] / scale).softmax(-1),
                                                              labels[labelled])
                                      for stage, scale in (("before", 1.0), ("after", temperature))}}
    return figures, reliability


def sorted_by_length(split):
    """`split` in order of tokenised length, and for each example of `split` its position in the sorted copy."""
    order = length_order(split)
    positions = [0] * len(order)
    for position, index in enumerate(order):
        positions[index] = position
    return split.select(order).flatten_indices(), positions


def complete_checkpoint(folder):
    """Whether `folder` holds a checkpoint whose save finished: Trainer writes trainer_state.json last, so a save
    killed part-way leaves it absent or cut short."""
    try:
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError):
        return False
    return True


def resolve_checkpoint(training_args):
    """The checkpoint to resume from: `resume_from_checkpoint` as given, or for "latest" the newest complete
    checkpoint-N in output_dir (one that a killed save left incomplete is skipped, with a warning)."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint not in ("latest", "last", "auto"):
        return checkpoint
    output_dir = training_args.output_dir
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    steps = sorted((int(name.split("-")[1]) for name in names if re.fullmatch(r"checkpoint-\d+", name)), reverse=True)
    for step in steps:
        folder = os.path.join(output_dir, f"checkpoint-{step}")
        if complete_checkpoint(folder):
            return folder
        logger.warning(f"{folder} is incomplete (no readable trainer_state.json: its save was interrupted); skipped")
    logger.warning(f"no complete checkpoint in {output_dir}: starting from scratch")
    return None


def main(argv=None, trainer_class=MultiTaskTrainer):
    """Train, calibrate, evaluate and save the run that `argv` (run file and overrides) describes; returns the
    trainer. `trainer_class`: the MultiTaskTrainer (sub)class to build, e.g. a benchmark's that measures the run."""
    argv = sys.argv[1:] if argv is None else argv
    if any(argument in ("-h", "--help") for argument in argv):
        HfArgumentParser(ARGUMENT_CLASSES).print_help()
        return None
    model_args, data_args, training_args = parse_arguments(argv, default_config=DEFAULT_CONFIG)
    # Trainer must not push at every save: the run pushes once, at the end (the token leaves training_args here).
    push_settings = take_push_settings(training_args)

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"world size {training_args.world_size}, process {training_args.process_index}, device {training_args.device}")
    set_seed(training_args.seed)

    raw, sentence_labels, token_labels = load_data(data_args, training_args.seed)
    logger.info(f"{len(sentence_labels)} sentence labels, {len(token_labels)} token labels (from the training split)")
    model = MultiTaskModel.from_encoder(
        model_args.encoder,
        sentence_labels=sentence_labels,
        token_labels=token_labels,
        **model_args.config_overrides(),
    )
    tokenizer = model.tokenizer
    # The dev sentences' embeddings before any training, for the model card's embedding maps.
    embeddings_before = None
    if training_args.process_index == 0:
        sample = embedding_sample(raw, seed=training_args.seed)
        if sample is not None:
            embeddings_before = (*sample, model.encode(sample[1]))
    with training_args.main_process_first(desc="tokenisation"):
        encoded, stats = encode_dataset_dict(
            raw,
            tokenizer,
            sentence_labels,
            token_labels,
            max_length=model.config.max_seq_length,
            label_all_tokens=data_args.label_all_tokens,
        )

    # Evaluation and prediction run over the splits in order of length (they pad far less so); the records written
    # at the end are put back in the data set's order.
    positions = {}
    for split in ("validation", "test"):
        if split in encoded:
            encoded[split], positions[split] = sorted_by_length(encoded[split])
    validation = encoded.get("validation")
    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    if validation is None:
        if training_args.reject_threshold == "auto":
            raise ValueError("reject_threshold: auto is chosen on the validation split, and this run has none")
        logger.warning("no validation split: training without evaluation or best-checkpoint selection")
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=validation,
        data_collator=MultiTaskCollator(tokenizer),
        compute_metrics=(
            build_compute_metrics(validation, sentence_labels, token_labels, data_args.per_entity_metrics)
            if validation is not None
            else None
        ),
        callbacks=callbacks,
    )

    train_result = trainer.train(resume_from_checkpoint=resolve_checkpoint(training_args))
    if validation is not None:
        calibration, reliability = calibrate(trainer.model, encoded, trainer.data_collator, training_args)
    else:
        calibration, reliability = {}, None
        trainer.model.config.reject_threshold = training_args.reject_threshold
    trainer.save_model(training_args.output_dir)
    metrics = dict(train_result.metrics, train_samples=len(encoded["train"]), train_world_size=training_args.world_size)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    predictions = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split not in encoded:
            continue
        trainer.compute_metrics = build_compute_metrics(
            encoded[split], sentence_labels, token_labels, data_args.per_entity_metrics
        )
        output = trainer.predict(encoded[split], metric_key_prefix=prefix)
        metrics = dict(output.metrics)
        metrics[f"{prefix}_samples"] = len(encoded[split])
        unseen = stats[split]["unseen"]
        metrics[f"{prefix}_examples_with_unseen_sentence_label"] = unseen["examples_with_unseen_sentence_label"]
        metrics[f"{prefix}_words_with_unseen_tag"] = unseen["words_with_unseen_tag"]
        metrics[f"{prefix}_truncated_examples"] = stats[split]["truncated_examples"]
        metrics.update(calibration.get(prefix, {}))
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        if not trainer.is_world_process_zero():
            continue
        records = predictions_to_records(encoded[split], output.predictions, sentence_labels, token_labels)
        predictions[split] = [records[position] for position in positions[split]]
        if split == "test":
            path = os.path.join(training_args.output_dir, "test_predictions.jsonl")
            with open(path, "w", encoding="utf-8") as handle:
                for record in predictions[split]:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            logger.info(f"test predictions written to {path}")

    if trainer.is_world_process_zero():
        repo_id = create_repo(push_settings) if push_settings is not None else None
        write_model_card(
            ModelCardInputs(
                training_args.output_dir,
                trainer.model,
                training_args,
                data_args=data_args,
                raw=raw,
                log_history=trainer.state.log_history,
                predictions=predictions,
                embeddings_before=embeddings_before,
                reliability=reliability,
                model_id=repo_id,
            )
        )
        if push_settings is not None:
            push_folder(training_args.output_dir, push_settings)
    return trainer


if __name__ == "__main__":
    main()
