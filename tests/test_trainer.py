"""MultiTaskTrainer: exact gradient accumulation with two tasks, per-task loss logging, small evaluation outputs."""

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from conftest import SENTENCE_LABELS, TOKEN_LABELS
from modeling_mtl.data import MultiTaskCollator, encode_dataset_dict, padding_share
from modeling_mtl.metrics import build_compute_metrics
from modeling_mtl.trainer import MultiTaskTrainer
from modeling_mtl.training_args import MultiTaskTrainingArguments

EXAMPLES = [  # both tasks, sentence only, tokens only: batches hold different numbers of labels per task
    ("fly to paris tomorrow", "travel", ["O", "O", "B-LOC", "O"]),
    ("new laptops from apple", "technology", None),
    ("john smith lives in new york", None, ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
    ("hello there", "other", ["O", "O"]),
    ("trains to rome", "travel", ["O", "O", "B-LOC"]),
    ("a phone with a big screen", "technology", ["O", "O", "O", "O", "O", "O"]),
    ("mary flew to berlin", None, ["B-PER", "O", "O", "B-LOC"]),
    ("nothing much", "other", None),
]


def dataset(tokenizer, examples=EXAMPLES):
    raw = Dataset.from_dict(
        {
            "text": [text for text, _, _ in examples],
            "words": [text.split() for text, _, _ in examples],
            "tags": [tags for _, _, tags in examples],
            "sentence_label": [label for _, label, _ in examples],
            "source": ["test"] * len(examples),
        }
    )
    encoded, _ = encode_dataset_dict(DatasetDict(train=raw), tokenizer, SENTENCE_LABELS, TOKEN_LABELS, 64)
    return encoded["train"]


def trainer_for(model, tokenizer, train, tmp_path, eval_dataset=None, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=7,
    )
    settings.update(overrides)
    return MultiTaskTrainer(
        model=model,
        args=MultiTaskTrainingArguments(**settings),
        train_dataset=train,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=MultiTaskCollator(tokenizer),
    )


def deterministic_model(make_tiny_model):
    model = make_tiny_model(head_dropout=0.0)
    model.config.encoder_config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def weights_after_one_sgd_step(make_tiny_model, tokenizer, train, tmp_path, shapes, **options):
    """The weights of a deterministic tiny model after one plain SGD step (learning rate 1, no clipping, no decay) at
    each (batch size, accumulation steps) of `shapes`, `options` added to the training arguments."""
    updated = []
    for batch_size, accumulation in shapes:
        model = deterministic_model(make_tiny_model)
        trainer_for(
            model, tokenizer, train, tmp_path, per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=1.0,
            lr_scheduler_type="constant", warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0, **options,
        ).train()
        updated.append({name: p.detach().clone() for name, p in model.named_parameters()})
    return updated


def test_gradient_accumulation_equals_one_big_batch(make_tiny_model, tokenizer, tmp_path):
    updated = weights_after_one_sgd_step(make_tiny_model, tokenizer, dataset(tokenizer), tmp_path,
                                         ((8, 1), (4, 2), (2, 4)))
    initial = dict(deterministic_model(make_tiny_model).named_parameters())
    assert any(not torch.equal(updated[0][name], initial[name]) for name in initial)  # the step did move weights
    for other in updated[1:]:
        for name, value in updated[0].items():
            assert torch.allclose(value, other[name], atol=1e-5), name


def test_task_losses_are_logged_for_training_and_evaluation(tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    trainer = trainer_for(tiny_model, tokenizer, train, tmp_path, per_device_train_batch_size=4, max_steps=4)
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(train_logs) == 4
    assert all({"sentence_loss", "token_loss"} <= set(log) for log in train_logs)

    metrics = trainer.evaluate(train)
    assert {"eval_loss", "eval_sentence_loss", "eval_token_loss"} <= set(metrics)
    # Sentence-only evaluation data: no token loss is reported (rather than a meaningless 0).
    sentence_only = dataset(tokenizer, [(text, label, None) for text, label, _ in EXAMPLES if label])
    metrics = trainer.evaluate(sentence_only, metric_key_prefix="sst")
    assert "sst_sentence_loss" in metrics and "sst_token_loss" not in metrics


def test_predictions_are_argmax_ids_and_metrics_use_the_gold_strings(tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    trainer = trainer_for(tiny_model, tokenizer, train, tmp_path, per_device_eval_batch_size=3)
    trainer.compute_metrics = build_compute_metrics(train, SENTENCE_LABELS, TOKEN_LABELS)
    output = trainer.predict(train)
    sentence_ids, token_ids = output.predictions
    assert sentence_ids.shape == (len(EXAMPLES),) and np.issubdtype(sentence_ids.dtype, np.integer)
    assert token_ids.ndim == 2 and token_ids.shape[0] == len(EXAMPLES)
    with torch.no_grad():
        batch = MultiTaskCollator(tokenizer)([train[i] for i in range(3)])
        logits = tiny_model(**batch).sentence_logits
    assert sentence_ids[:3].tolist() == logits.argmax(-1).tolist()
    assert output.metrics["test_num_sentence_examples"] == 6 and output.metrics["test_num_token_examples"] == 6
    assert 0.0 <= output.metrics["test_exact_match"] <= 1.0


def test_label_smoothing_is_applied_to_both_tasks_and_keeps_accumulation_exact(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    batch = MultiTaskCollator(tokenizer)([train[i] for i in range(len(EXAMPLES))])
    model = deterministic_model(make_tiny_model)
    model.train()
    trainer = trainer_for(model, tokenizer, train, tmp_path, label_smoothing_factor=0.2)
    smoothed = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        outputs = model(**batch)
    expected = 0.0
    for logits, labels, weight in (
        (outputs.sentence_logits, batch["sentence_labels"], model.config.sentence_loss_weight),
        (outputs.token_logits, batch["token_labels"], model.config.token_loss_weight),
    ):
        flat = labels.reshape(-1)
        expected += weight * torch.nn.functional.cross_entropy(
            logits.reshape(flat.shape[0], -1), flat, ignore_index=-100, label_smoothing=0.2
        )
    assert float(smoothed.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(smoothed.detach()) != pytest.approx(float(outputs.loss), rel=1e-3)  # the smoothing did change the loss
    # The logged task losses stay the plain cross-entropy, comparable with unsmoothed runs.
    assert trainer._task_totals["train"].totals[0] / trainer._task_totals["train"].totals[1] == pytest.approx(
        float(outputs.sentence_loss), rel=1e-5
    )

    updated = weights_after_one_sgd_step(make_tiny_model, tokenizer, train, tmp_path, ((8, 1), (2, 4)),
                                         label_smoothing_factor=0.2)
    for name, value in updated[0].items():
        assert torch.allclose(value, updated[1][name], atol=1e-5), name


# ---------------------------------------------------------------------------------------------------------------
# Length-grouped batches (train_sampling_strategy: group_by_length)

GROUPED_TEXTS = [" ".join(f"w{word}" for word in range(1 + index % 11)) + f" x{index}" for index in range(400)]


def order_padding_share(lengths, order, batch_size):
    """The padding share of the batches of `batch_size` drawn in `order`."""
    starts = range(0, len(order), batch_size)
    return padding_share([lengths[i] for i in order[start:start + batch_size]] for start in starts)


def test_length_grouped_sampler_draws_every_example_once_per_epoch_seeded_by_epoch():
    from modeling_mtl.trainer import LengthGroupedEpochSampler

    lengths = [3 + (index * 7) % 23 for index in range(200)]
    sampler = LengthGroupedEpochSampler(lengths, batch_size=4, seed=5)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert all(sorted(order) == list(range(200)) for order in orders)  # each example exactly once an epoch
    assert orders[0] == orders[2] != orders[1]  # the same order for the same (seed, epoch), not the global RNG
    torch.manual_seed(0)
    again = LengthGroupedEpochSampler(lengths, batch_size=4, seed=5)
    assert list(again) == orders[0]
    shuffled = torch.randperm(200, generator=torch.Generator().manual_seed(5)).tolist()
    assert order_padding_share(lengths, orders[0], 4) < order_padding_share(lengths, shuffled, 4) / 3
    # Fewer batches sorted together: more of the random mix of lengths, and padding between the two.
    mild = LengthGroupedEpochSampler(lengths, batch_size=4, seed=5, mega_batch_batches=4)
    assert sorted(mild) == list(range(200))
    grouped, mixed, random = (order_padding_share(lengths, order, 4) for order in (orders[0], list(mild), shuffled))
    assert grouped < mixed < random


def test_group_by_length_trains_on_grouped_batches_and_evaluates_in_order(tiny_model, tokenizer, tmp_path):
    from modeling_mtl.trainer import LengthGroupedEpochSampler

    examples = [(text, "travel", ["O"] * len(text.split())) for text in GROUPED_TEXTS[:40]]
    train = dataset(tokenizer, examples)
    trainer = trainer_for(tiny_model, tokenizer, train, tmp_path, per_device_train_batch_size=4,
                          gradient_accumulation_steps=2, train_sampling_strategy="group_by_length")
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedEpochSampler) and sampler.batch_size == 8 and sampler.seed == 7
    assert sampler.lengths == [len(ids) for ids in train["input_ids"]]
    # Evaluation keeps the data set's order (the metrics read predictions in it), whatever the training order.
    assert isinstance(trainer._get_eval_sampler(train), torch.utils.data.SequentialSampler)
    with pytest.raises(ValueError, match="task_sampling='proportional' replaces the train sampler, which "
                       "train_sampling_strategy='group_by_length' also sets"):
        trainer_for(tiny_model, tokenizer, train, tmp_path, train_sampling_strategy="group_by_length",
                    task_sampling="proportional")


def test_batch_rebalance_cuts_random_batches_into_micro_batches_by_length(tiny_model, tokenizer, tmp_path):
    """Each optimizer step's examples are a random draw (the update of a random batch), cut by length into the
    accumulated micro-batches, which pad less; every example once an epoch; the order follows (seed, epoch)."""
    from transformers.trainer_pt_utils import BatchRebalanceSampler

    examples = [(text, "travel", ["O"] * len(text.split())) for text in GROUPED_TEXTS[:80]]
    train = dataset(tokenizer, examples)
    lengths = [len(ids) for ids in train["input_ids"]]
    args = dict(per_device_train_batch_size=4, gradient_accumulation_steps=4, train_sampling_strategy="batch_rebalance")
    trainer = trainer_for(tiny_model, tokenizer, train, tmp_path, **args)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, BatchRebalanceSampler) and sampler.seed == 7 and sampler.effective_batch_size == 16
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] == epochs[2] != epochs[1]
    steps = [sum(epochs[0][step:step + 4], []) for step in range(0, len(epochs[0]), 4)]
    assert sorted(sum(steps, [])) == list(range(80))  # every example once an epoch
    # A step holds the examples of a random batch: those of the seeded permutation, in other micro-batches.
    permutation = torch.randperm(80, generator=torch.Generator().manual_seed(7)).tolist()
    assert [sorted(step) for step in steps] == [sorted(permutation[start:start + 16]) for start in range(0, 80, 16)]
    padding = padding_share([lengths[i] for i in batch] for batch in epochs[0])
    assert padding < order_padding_share(lengths, permutation, 16) / 2
    assert trainer_for(tiny_model, tokenizer, train, tmp_path, seed=8, **args)._get_train_sampler().seed == 8


def test_batch_rebalance_resumes_bit_identically_mid_epoch(make_tiny_model, tokenizer, tmp_path):
    examples = [(text, "travel", ["O"] * len(text.split())) for text in GROUPED_TEXTS[:40]]
    train = dataset(tokenizer, examples)
    common = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, train_sampling_strategy="batch_rebalance",
                  max_steps=14, learning_rate=1e-3)  # 10 steps an epoch: the checkpoint at 6 is mid-epoch

    def run(output, **overrides):
        return trainer_for(deterministic_model(make_tiny_model), tokenizer, train, tmp_path,
                           output_dir=str(tmp_path / output), **{**common, **overrides})

    straight = run("straight")
    straight.train()
    run("resumed", save_strategy="steps", save_steps=6, save_total_limit=None).train()
    resumed = run("resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-6"))
    assert resumed.state.global_step == 14
    reference = dict(straight.model.named_parameters())
    for name, parameter in resumed.model.named_parameters():
        assert torch.equal(parameter, reference[name]), name


GROUPED_DDP_SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer
from modeling_mtl import MultiTaskModel
from modeling_mtl.data import MultiTaskCollator, encode_dataset_dict
from modeling_mtl.trainer import MultiTaskTrainer
from modeling_mtl.training_args import MultiTaskTrainingArguments

encoder, output, texts, strategy = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
model = MultiTaskModel.from_encoder(encoder, sentence_labels=["a", "b"], token_labels=["O", "B-X", "I-X"])
raw = Dataset.from_dict({{"text": texts, "words": [t.split() for t in texts], "sentence_label": ["a", "b"] * (len(texts) // 2),
                         "tags": [["O"] * len(t.split()) for t in texts], "source": ["s"] * len(texts)}})
encoded, _ = encode_dataset_dict(DatasetDict(train=raw), model.tokenizer, ["a", "b"], ["O", "B-X", "I-X"], 64)
accumulation = 2 if strategy == "batch_rebalance" else 1
args = MultiTaskTrainingArguments(output_dir=output, per_device_train_batch_size=4, max_steps=4, seed=3,
                                  gradient_accumulation_steps=accumulation,
                                  train_sampling_strategy=strategy, eval_strategy="no", save_strategy="no",
                                  load_best_model_at_end=False, report_to="none", logging_steps=1)
trainer = MultiTaskTrainer(model=model, args=args, train_dataset=encoded["train"],
                           data_collator=MultiTaskCollator(model.tokenizer))
loader = trainer.get_train_dataloader()
epochs = []
for epoch in (0, 1):
    loader.set_epoch(epoch)
    epochs.append([[[int(i) for i, m in zip(row, mask) if m] for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
                   for batch in loader])
trainer.train()
weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
with open(os.path.join(output, f"rank{{args.process_index}}.json"), "w") as handle:
    json.dump({{"world_size": args.world_size, "epochs": epochs, "weights": weights[:2000].tolist()}}, handle)
"""


@pytest.mark.parametrize("strategy", ["group_by_length", "batch_rebalance"])
def test_length_grouped_batches_under_two_process_ddp(strategy, tiny_encoder_dir, tmp_path):
    """Both ranks draw the same order and take their own batches of it: together every example exactly once an
    epoch, none on both ranks, another order the next epoch; the weights stay identical. group_by_length: batches
    of similar lengths; batch_rebalance: micro-batches cut from a random batch by length."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    output = tmp_path / "ddp"
    output.mkdir()
    script = tmp_path / "grouped_ddp.py"
    script.write_text(GROUPED_DDP_SCRIPT.format(repo=str(REPO)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configuration" / "accelerate_ddp_cpu.yaml"), str(script), tiny_encoder_dir, str(output),
               json.dumps(GROUPED_TEXTS), strategy]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((output / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["world_size"] == 2
    assert ranks[0]["weights"] == ranks[1]["weights"]
    for epoch in (0, 1):
        seen = [tuple(row) for rank in ranks for batch in rank["epochs"][epoch] for row in batch]
        assert len(seen) == len(set(seen)) == len(GROUPED_TEXTS)  # every example once, on one rank only
        batches = [[len(row) for row in batch] for batch in ranks[0]["epochs"][epoch] + ranks[1]["epochs"][epoch]]
        padding = padding_share(batches)
        lengths = [length for batch in batches for length in batch]
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(epoch)).tolist()
        assert padding < order_padding_share(lengths, order, 4) / (3 if strategy == "group_by_length" else 1.5)
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]


# ---------------------------------------------------------------------------------------------------------------
# token_loss_normalization: dataset_mean


def test_dataset_mean_token_normalization_weighs_every_labelled_token_alike(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    model = deterministic_model(make_tiny_model)
    model.config.token_loss_weight = 2.0
    model.train()
    trainer = trainer_for(model, tokenizer, train, tmp_path, token_loss_normalization="dataset_mean")
    labelled = [sum(label != -100 for label in labels) for labels in train["token_labels"]]
    mean = sum(labelled) / sum(count > 0 for count in labelled)
    assert mean != int(mean)  # so a count of tokens could not pass for it

    batch = MultiTaskCollator(tokenizer)([train[i] for i in (0, 1, 2)])  # tokens labelled in examples 0 and 2
    counts = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    assert float(counts["token"]) == pytest.approx(2 * mean)
    assert int(counts["sentence"]) == 2
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=counts)
    with torch.no_grad():
        outputs = model(**batch)
    token_sum = torch.nn.functional.cross_entropy(
        outputs.token_logits.reshape(-1, outputs.token_logits.shape[-1]), batch["token_labels"].reshape(-1),
        ignore_index=-100, reduction="sum",
    )
    expected = outputs.sentence_loss + 2.0 * token_sum / (2 * mean)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    # With the default, the same batch's token loss is the mean over its labelled tokens.
    default = trainer_for(model, tokenizer, train, tmp_path)
    counts = default._get_num_items_in_batch([batch], torch.device("cpu"))
    assert int(counts["token"]) == labelled[0] + labelled[2]
    assert float(default.compute_loss(model, dict(batch), num_items_in_batch=counts).detach()) == pytest.approx(
        float(outputs.sentence_loss + 2.0 * outputs.token_loss), rel=1e-5
    )


def test_dataset_mean_token_normalization_keeps_accumulation_exact(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    updated = weights_after_one_sgd_step(make_tiny_model, tokenizer, train, tmp_path, ((8, 1), (2, 4)),
                                         token_loss_normalization="dataset_mean")
    for name, value in updated[0].items():
        assert torch.allclose(value, updated[1][name], atol=1e-5), name


def test_unknown_token_loss_normalization_is_refused(tmp_path):
    with pytest.raises(ValueError, match="token_loss_normalization.*'tokens'.*batch, dataset_mean"):
        MultiTaskTrainingArguments(output_dir=str(tmp_path), token_loss_normalization="tokens")
