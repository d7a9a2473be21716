"""Weight averaging (`ema_decay`): the average follows the documented formula, training itself is unchanged,
evaluation / checkpoints / the final model are the average, and a resumed run continues exactly."""

import safetensors.torch
import pytest
import torch
from transformers import TrainerCallback

from modeling_mtl.model_card import ModelCardInputs, write_model_card
from modeling_mtl.training_args import MultiTaskTrainingArguments, parse_arguments
from modeling_mtl.weight_averaging import TRAINING_WEIGHTS_NAME, WeightAverage
from test_trainer import dataset, deterministic_model, trainer_for

DECAY = 0.8
COMMON = dict(per_device_train_batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, lr_scheduler_type="constant")


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def expected_average(trajectory, decay):
    """The documented formula, step by step: trajectory[0] are the starting weights, trajectory[t + 1] the weights
    after optimizer step t."""
    average = {name: value.clone() for name, value in trajectory[0].items()}
    for step, weights in enumerate(trajectory[1:]):
        d = min(decay, (1 + step) / (10 + step))
        average = {name: d * average[name] + (1 - d) * weights[name] for name in average}
    return average


def assert_close(left, right, atol=1e-6):
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name], right[name], atol=atol), name


class RecordWeights(TrainerCallback):
    def __init__(self, model):
        self.model, self.trajectory = model, [parameters(model)]

    def on_step_end(self, args, state, control, **kwargs):
        self.trajectory.append(parameters(self.model))


def test_the_average_follows_the_formula_and_swaps_in_and_out_exactly():
    layer = torch.nn.Linear(3, 2)
    average = WeightAverage(layer, decay=0.9)
    trajectory = [parameters(layer)]
    for step in range(30):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        trajectory.append(parameters(layer))
        average.update(step)
    expected = expected_average(trajectory, 0.9)
    assert average.decay_at(0) == pytest.approx(0.1) and average.decay_at(1000) == 0.9
    assert_close(average.average, expected)
    with average.in_model():
        assert_close(parameters(layer), expected)
        assert_close(average.training_weights(), trajectory[-1])
        with pytest.raises(RuntimeError, match="swapped"):
            average.update(30)
    assert torch.equal(layer.weight, trajectory[-1]["weight"]) and torch.equal(layer.bias, trajectory[-1]["bias"])
    assert_close(average.training_weights(), trajectory[-1])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        WeightAverage(layer, decay=1.0)


def test_training_is_unchanged_and_the_final_model_is_the_average(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    plain = deterministic_model(make_tiny_model)
    trainer_for(plain, tokenizer, train, tmp_path, max_steps=6, **COMMON).train()

    model = deterministic_model(make_tiny_model)
    trainer = trainer_for(model, tokenizer, train, tmp_path, max_steps=6, ema_decay=DECAY, **COMMON)
    recorder = RecordWeights(model)
    trainer.add_callback(recorder)
    trainer.train()
    assert len(recorder.trajectory) == 7
    assert_close(recorder.trajectory[-1], parameters(plain))  # the weights trained are those of a plain run
    final = parameters(model)
    assert_close(final, expected_average(recorder.trajectory, DECAY))
    assert any(not torch.allclose(final[name], recorder.trajectory[-1][name]) for name in final)
    assert trainer.weight_average is None  # training over: evaluate() sees the model as it is


def test_evaluation_and_checkpoints_hold_the_average_and_resuming_is_exact(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    steps = dict(eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2, save_total_limit=None)

    def run(output, **overrides):
        model = deterministic_model(make_tiny_model)
        trainer = trainer_for(model, tokenizer, train, tmp_path, output_dir=str(tmp_path / output), max_steps=6,
                              eval_dataset=train, ema_decay=DECAY, **COMMON, **steps, **overrides)
        recorder = RecordWeights(model)
        trainer.add_callback(recorder)
        return trainer, recorder

    straight, recorder = run("straight")
    straight.train()
    checkpoint = tmp_path / "straight" / "checkpoint-4"
    saved_average = safetensors.torch.load_file(checkpoint / "model.safetensors")
    saved_training = safetensors.torch.load_file(checkpoint / TRAINING_WEIGHTS_NAME)
    assert_close(saved_training, recorder.trajectory[4])
    expected_at_4 = expected_average(recorder.trajectory[:5], DECAY)
    for name, value in saved_average.items():
        assert torch.allclose(value, expected_at_4[name], atol=1e-6), name
    # The evaluation logged at step 6 saw the final average, i.e. the model train() leaves behind.
    logged = [log for log in straight.state.log_history if log.get("step") == 6 and "eval_loss" in log][0]
    assert straight.evaluate()["eval_loss"] == pytest.approx(logged["eval_loss"], abs=1e-6)

    resumed, _ = run("resumed")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert_close(parameters(resumed.model), parameters(straight.model), atol=1e-5)


def test_load_best_model_at_end_keeps_the_best_checkpoints_average(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    model = deterministic_model(make_tiny_model)
    trainer = trainer_for(model, tokenizer, train, tmp_path, max_steps=6, ema_decay=DECAY, eval_strategy="steps",
                          eval_steps=2, save_strategy="steps", save_steps=2, load_best_model_at_end=True,
                          metric_for_best_model="loss", greater_is_better=False, eval_dataset=train,
                          **COMMON)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    saved = safetensors.torch.load_file(f"{best}/model.safetensors")
    current = dict(model.state_dict())
    for name, value in saved.items():
        assert torch.equal(value, current[name]), name


def test_ema_decay_is_checked_and_described_in_the_model_card(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        MultiTaskTrainingArguments(output_dir=str(tmp_path), ema_decay=1.5, report_to="none")
    _, _, args = parse_arguments(["--output_dir", str(tmp_path), "--ema_decay", "0.99", "--report_to", "none"])
    assert args.ema_decay == 0.99
    cards = {}
    for name, run_args in (("ema", args), ("plain", MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none"))):
        card = write_model_card(ModelCardInputs(tmp_path / name, tiny_model, run_args)).read_text(encoding="utf-8")
        cards[name] = [line for line in card.splitlines() if "moving average" in line]
    assert len(cards["ema"]) == 1 and "0.99" in cards["ema"][0]
    assert not cards["plain"]
