"""Transfer learning: freezing presets, frozen lower layers, unfreezing schedules, discriminative learning rates,
uncertainty weighting, temperature task sampling, their run-file options, and DDP."""

import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, DistilBertConfig, GPT2Config, GPTNeoConfig, LlamaConfig, TrainerCallback

from conftest import REPO
from modeling_mtl.modeling_mtl import build_encoder
from modeling_mtl.trainer import LOSS_WEIGHTING_NAME, NothingToTrainError
from modeling_mtl.training_args import parse_arguments
from modeling_mtl.transfer import EncoderStructure, TaskSampler, find_encoder_layers, source_probabilities
from test_trainer import EXAMPLES, dataset, deterministic_model, trainer_for

STEP = dict(per_device_train_batch_size=4, lr_scheduler_type="constant", warmup_ratio=0.0)


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def optimizer_parameter_ids(trainer):
    return {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}


# ------------------------------------------------------------------ freezing presets


@pytest.mark.parametrize(
    "options, frozen_prefixes",
    [
        ({"freeze": "encoder"}, ["encoder."]),
        ({"freeze": "sentence_head"}, ["sentence_head."]),
        ({"freeze": "token_head"}, ["token_head."]),
        ({"freeze": "encoder,sentence_head"}, ["encoder.", "sentence_head."]),
        ({"freeze_encoder_layers": 1}, ["encoder.embeddings.", "encoder.encoder.layer.0."]),
    ],
    ids=["encoder", "sentence_head", "token_head", "encoder+sentence_head", "lower_layers"],
)
def test_frozen_parameters_stay_bit_identical_and_the_others_train(make_tiny_model, tokenizer, tmp_path, options,
                                                                   frozen_prefixes):
    model = make_tiny_model()
    before = snapshot(model)
    trainer = trainer_for(model, tokenizer, dataset(tokenizer), tmp_path, max_steps=3, weight_decay=0.1,
                          learning_rate=1e-2, **STEP, **options)
    trainer.train()
    in_optimizer = optimizer_parameter_ids(trainer)
    for name, parameter in model.named_parameters():
        frozen = any(name.startswith(prefix) for prefix in frozen_prefixes)
        if frozen:
            assert torch.equal(parameter, before[name]), f"{name} moved"
            assert not parameter.requires_grad and id(parameter) not in in_optimizer, name
        else:
            assert not torch.equal(parameter, before[name]), f"{name} did not train"
            assert id(parameter) in in_optimizer, name
    # The frozen head's loss is still computed and logged.
    assert all({"sentence_loss", "token_loss"} <= set(log) for log in trainer.state.log_history if "loss" in log)


def test_a_frozen_heads_loss_moves_nothing(make_tiny_model, tokenizer, tmp_path):
    """freeze: sentence_head optimises the token task only: the same update as training without sentence labels."""
    updated = []
    for options, examples in (
        ({"freeze": "sentence_head"}, EXAMPLES),
        ({}, [(text, None, tags) for text, _, tags in EXAMPLES]),
    ):
        model = deterministic_model(make_tiny_model)
        trainer = trainer_for(model, tokenizer, dataset(tokenizer, examples), tmp_path, per_device_train_batch_size=8,
                              max_steps=1, optim="sgd", learning_rate=1.0, lr_scheduler_type="constant",
                              warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0, **options)
        trainer.train()
        updated.append(snapshot(model))
    for name, value in updated[0].items():
        if not name.startswith("sentence_head."):
            assert torch.allclose(value, updated[1][name], atol=1e-6), name
    # With sentence labels only, nothing moves at all, yet the sentence loss is logged.
    model = deterministic_model(make_tiny_model)
    before = snapshot(model)
    sentence_only = dataset(tokenizer, [(text, label, None) for text, label, _ in EXAMPLES if label])
    trainer = trainer_for(model, tokenizer, sentence_only, tmp_path, max_steps=2, weight_decay=0.0,
                          freeze="sentence_head", **STEP)
    trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all("sentence_loss" in log for log in trainer.state.log_history if "loss" in log)


def test_freeze_all_refuses_to_train_and_still_evaluates(tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    trainer = trainer_for(tiny_model, tokenizer, train, tmp_path, freeze="all", max_steps=2)
    assert not any(p.requires_grad for p in tiny_model.parameters())
    with pytest.raises(NothingToTrainError, match="freeze='all': no parameter is trainable, so there is nothing to"):
        trainer.train()
    assert trainer.state.global_step == 0
    metrics = trainer.evaluate(train)
    assert {"eval_loss", "eval_sentence_loss", "eval_token_loss"} <= set(metrics)
    assert trainer.predict(train).predictions[0].shape == (len(EXAMPLES),)
    assert tiny_model.encode(["fly to paris"]).shape == (1, 32)


# ------------------------------------------------------------------ learning rates and schedules


def test_optimizer_groups_carry_the_configured_learning_rates(make_tiny_model, tokenizer, tmp_path):
    model = make_tiny_model()
    trainer = trainer_for(model, tokenizer, dataset(tokenizer), tmp_path, max_steps=2, learning_rate=5e-5,
                          head_learning_rate=1e-3, encoder_learning_rate=1e-4, layerwise_lr_decay=0.5,
                          weight_decay=0.01, loss_weighting="uncertainty", uncertainty_learning_rate=0.05,
                          freeze="token_head", **STEP)
    groups = {group["name"]: group for group in trainer.create_optimizer().param_groups}
    expected = {
        "heads": 1e-3,
        "encoder.layer.1": 1e-4,  # the top layer
        "encoder.layer.0": 5e-5,
        "encoder.embeddings": 2.5e-5,
        "loss_weighting": 0.05,
    }
    for name, lr in expected.items():
        assert groups[name]["lr"] == pytest.approx(lr), name
        if name != "loss_weighting":
            assert groups[name]["weight_decay"] == 0.01 and groups[f"{name}.no_decay"]["lr"] == pytest.approx(lr)
            assert groups[f"{name}.no_decay"]["weight_decay"] == 0.0
    assert groups["loss_weighting"]["weight_decay"] == 0.0
    assert groups["loss_weighting"]["params"] == [trainer.loss_weighting.log_variances]
    assert list(groups)[0] == "heads"  # Trainer logs the first group's learning rate
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = {names[id(p)] for g in groups.values() for p in g["params"] if id(p) in names}
    assert grouped == {n for n in names.values() if not n.startswith("token_head.")}  # frozen: in no group
    assert {names[id(p)] for p in groups["heads"]["params"]} == {"sentence_head.classifier.weight"}

    trainer.optimizer = None
    trainer.train()  # the ratios survive the scheduler
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs[-1]["learning_rate"] == pytest.approx(1e-3) and logs[-1]["encoder_learning_rate"] == pytest.approx(1e-4)


class RecordSteps(TrainerCallback):
    """Which parameters require grad, and which moved, at every optimizer step."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.before = snapshot(self.model)
        self.trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}

    def on_optimizer_step(self, args, state, control, **kwargs):
        moved = {n for n, p in self.model.named_parameters() if not torch.equal(p, self.before[n])}
        self.steps.append((self.trainable, moved))


def layer_state(names):
    """Which encoder parts train: 'E' embeddings, '0', '1' layers, 'H' heads."""
    parts = set()
    for name in names:
        if name.startswith("encoder.embeddings."):
            parts.add("E")
        elif name.startswith("encoder.encoder.layer."):
            parts.add(name.split(".")[3])
        else:
            parts.add("H")
    return "".join(sorted(parts))


@pytest.mark.parametrize(
    "options, expected",
    [
        # Warm-up of 2 steps (heads alone), then one more group every 2 steps, top-down: layer 1, layer 0, embeddings.
        ({"unfreezing": "gradual", "unfreeze_unit": "steps", "unfreeze_warmup": 2, "unfreeze_every": 2, "max_steps": 8},
         ["H", "H", "1H", "1H", "01H", "01H", "01EH", "01EH"]),
        # Down to freeze_encoder_layers: layer 0 and the embeddings never thaw.
        ({"unfreezing": "gradual", "unfreeze_unit": "steps", "unfreeze_warmup": 1, "unfreeze_every": 1,
          "freeze_encoder_layers": 1, "max_steps": 4}, ["H", "1H", "1H", "1H"]),
        # Linear probe for one epoch (2 steps of 4 examples), then everything.
        ({"unfreezing": "linear_probe", "unfreeze_warmup": 1, "num_train_epochs": 2}, ["H", "H", "01EH", "01EH"]),
    ],
    ids=["gradual", "gradual_to_layer_1", "linear_probe_then_finetune"],
)
def test_unfreezing_flips_requires_grad_at_the_configured_steps(make_tiny_model, tokenizer, tmp_path, options,
                                                                expected):
    model = make_tiny_model()
    initial = snapshot(model)
    trainer = trainer_for(model, tokenizer, dataset(tokenizer), tmp_path, learning_rate=1e-2, weight_decay=0.1,
                          **STEP, **options)
    recorder = RecordSteps(model)
    trainer.add_callback(recorder)
    trainer.train()
    assert [layer_state(trainable) for trainable, _ in recorder.steps] == expected
    for trainable, moved in recorder.steps:
        assert moved <= trainable  # a frozen parameter never moves, not even by weight decay
        assert moved == trainable  # and a trainable one always does
    if options.get("freeze_encoder_layers"):
        assert all(torch.equal(p, initial[n]) for n, p in model.named_parameters() if layer_state([n]) in "0E")
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert "encoder_groups_unfrozen" in logs[0]


# ------------------------------------------------------------------ uncertainty weighting


@pytest.mark.parametrize("options", [{"loss_weighting": "uncertainty"}, {"freeze": "sentence_head"}],
                         ids=["uncertainty", "frozen_head"])
def test_trainer_combined_loss_keeps_gradient_accumulation_exact(make_tiny_model, tokenizer, tmp_path, options):
    train = dataset(tokenizer)
    updated = []
    for batch_size, accumulation in ((8, 1), (4, 2), (2, 4)):
        model = deterministic_model(make_tiny_model)
        trainer = trainer_for(
            model, tokenizer, train, tmp_path, per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=1.0,
            lr_scheduler_type="constant", warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0, **options,
        )
        trainer.train()
        state = snapshot(model)
        if trainer.loss_weighting is not None:
            state["log_variances"] = trainer.loss_weighting.log_variances.detach().clone()
        updated.append(state)
    assert not torch.equal(updated[0]["token_head.classifier.weight"],
                           deterministic_model(make_tiny_model).token_head.classifier.weight)
    if "log_variances" in updated[0]:
        assert updated[0]["log_variances"].abs().min() > 0
    for other in updated[1:]:
        for name, value in updated[0].items():
            assert torch.allclose(value, other[name], atol=1e-5), name


def test_uncertainty_weights_are_logged_and_restored_on_resume(make_tiny_model, tokenizer, tmp_path):
    train = dataset(tokenizer)
    common = dict(loss_weighting="uncertainty", uncertainty_learning_rate=0.1, learning_rate=1e-3, **STEP)

    def run(output, **overrides):
        model = deterministic_model(make_tiny_model)
        return trainer_for(model, tokenizer, train, tmp_path, output_dir=str(tmp_path / output),
                           **{**common, **overrides})

    straight = run("straight", max_steps=6)
    straight.train()
    logs = [log for log in straight.state.log_history if "loss" in log]
    assert {"sentence_log_variance", "token_log_variance", "sentence_uncertainty_weight"} <= set(logs[0])
    assert logs[-1]["token_log_variance"] != logs[0]["token_log_variance"]
    assert logs[-1]["token_uncertainty_weight"] == pytest.approx(math.exp(-logs[-1]["token_log_variance"]), rel=1e-5)

    first = run("resumed", max_steps=6, save_strategy="steps", save_steps=4)
    first.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-4"
    saved = json.loads((checkpoint / LOSS_WEIGHTING_NAME).read_text())
    assert saved["tasks"] == ["sentence", "token"]
    step4 = [log for log in first.state.log_history if log.get("step") == 4 and "loss" in log][0]
    assert saved["log_variances"][1] == pytest.approx(step4["token_log_variance"], abs=1e-6)
    assert "log_variances" not in json.dumps(first.model.config.to_dict())  # not part of the saved model

    resumed = run("resumed", max_steps=6)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert torch.allclose(resumed.loss_weighting.log_variances, straight.loss_weighting.log_variances, atol=1e-6)
    for name, parameter in resumed.model.named_parameters():
        assert torch.allclose(parameter, dict(straight.model.named_parameters())[name], atol=1e-6), name


# ------------------------------------------------------------------ task sampling


def test_task_sampler_proportions_match_the_temperature_formula():
    sources = ["big"] * 900 + ["mid"] * 90 + ["small"] * 10
    for temperature in (1.0, 2.0, 5.0, math.inf):
        sampler = TaskSampler(sources, temperature=temperature, seed=3, num_samples=40_000)
        weights = {s: (1.0 if math.isinf(temperature) else n ** (1 / temperature)) for s, n in
                   (("big", 900), ("mid", 90), ("small", 10))}
        expected = {s: w / sum(weights.values()) for s, w in weights.items()}
        assert sampler.probabilities == pytest.approx(expected)
        drawn = [sources[index] for index in sampler]
        for source, probability in expected.items():
            assert drawn.count(source) / len(drawn) == pytest.approx(probability, abs=0.01), (temperature, source)
    assert source_probabilities({"a": 100, "b": 1}, 1.0) == pytest.approx({"a": 100 / 101, "b": 1 / 101})

    # A small source is walked through in a shuffled order before any example repeats; epochs differ; seeds repeat.
    sampler = TaskSampler(sources, temperature=math.inf, seed=3)
    first = list(sampler)
    small = [index for index in first if sources[index] == "small"]
    assert sorted(small[:10]) == list(range(990, 1000))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and len(first) == len(sources)


def test_the_trainer_samples_sources_by_temperature(make_tiny_model, tokenizer, tmp_path):
    examples = EXAMPLES * 6 + [("a phone", "technology", None)] * 2
    train = dataset(tokenizer, examples)
    train = train.remove_columns("source").add_column("source", ["big"] * 48 + ["small"] * 2)
    trainer = trainer_for(make_tiny_model(), tokenizer, train, tmp_path, task_sampling="temperature",
                          task_sampling_temperature=2.0, num_train_epochs=1, **STEP)
    loader = trainer.get_train_dataloader()
    sampler = loader.batch_sampler.sampler
    assert isinstance(sampler, TaskSampler)
    assert sampler.probabilities["small"] == pytest.approx(math.sqrt(2) / (math.sqrt(2) + math.sqrt(48)))
    trainer.train()
    assert trainer.state.global_step == math.ceil(len(train) / 4)

    no_source = dataset(tokenizer).remove_columns("source")
    trainer = trainer_for(make_tiny_model(), tokenizer, no_source, tmp_path, task_sampling="proportional", max_steps=1)
    with pytest.raises(ValueError, match="needs a training dataset with a `source` column"):
        trainer.train()


# ------------------------------------------------------------------ encoder structure


@pytest.mark.parametrize(
    "config, path, embeddings, top",
    [
        (BertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, vocab_size=50),
         "encoder.layer", "embeddings.word_embeddings.weight", None),
        (DistilBertConfig(dim=16, n_layers=3, n_heads=2, hidden_dim=32, vocab_size=50),
         "transformer.layer", "embeddings.word_embeddings.weight", None),
        (GPT2Config(n_embd=16, n_layer=3, n_head=2, vocab_size=50), "h", "wte.weight", "ln_f.weight"),
        (GPTNeoConfig(hidden_size=16, num_layers=3, num_heads=2, attention_types=[[["global"], 3]], vocab_size=50),
         "h", "wpe.weight", "ln_f.weight"),
        (LlamaConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, vocab_size=50),
         "layers", "embed_tokens.weight", "norm.weight"),
    ],
    ids=["bert", "distilbert", "gpt2", "gpt_neo", "llama"],
)
def test_encoder_layers_are_found_for_bert_and_gpt_style_encoders(config, path, embeddings, top):
    encoder = build_encoder(config)  # as the model builds it (no pooler)
    found_path, layers = find_encoder_layers(encoder)
    assert found_path == path and len(layers) == 3

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

    structure = EncoderStructure(Holder())
    assert f"encoder.{embeddings}" in structure.embedding_params
    for index, names in enumerate(structure.layer_params):
        assert names and all(f".{path}.{index}." in f".{name}" for name in names)
    assert (f"encoder.{top}" in structure.top_params) if top else not structure.top_params
    counted = len(structure.embedding_params) + len(structure.top_params) + sum(map(len, structure.layer_params))
    assert counted == len(list(encoder.named_parameters()))


# ------------------------------------------------------------------ run files


def test_run_file_options_parse_and_bad_values_are_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "freeze: token_head\nfreeze_encoder_layers: 2\nunfreezing: gradual\nunfreeze_warmup: 0.5\n"
        "unfreeze_every: 0.25\n"
        "unfreeze_unit: epochs\nhead_learning_rate: 1e-3\nencoder_learning_rate: 2.0e-5\nlayerwise_lr_decay: 0.9\n"
        "loss_weighting: uncertainty\nuncertainty_learning_rate: 0.01\ntask_sampling: temperature\n"
        "task_sampling_temperature: 3\n"
    )
    _, _, args = parse_arguments([str(path)])
    assert (args.freeze, args.freeze_encoder_layers, args.unfreezing, args.unfreeze_warmup, args.unfreeze_every) == (
        "token_head", 2, "gradual", 0.5, 0.25)
    assert (args.head_learning_rate, args.encoder_learning_rate, args.layerwise_lr_decay) == (1e-3, 2e-5, 0.9)
    assert (args.loss_weighting, args.uncertainty_learning_rate, args.task_sampling) == ("uncertainty", 0.01,
                                                                                          "temperature")
    assert args.task_sampling_temperature == 3.0

    for run_file in ("atis_frozen_encoder", "atis_gradual_unfreezing", "atis_probe_then_finetune"):
        _, _, args = parse_arguments([str(REPO / "configuration" / f"{run_file}.yaml")])
        assert args.freeze == "encoder" or args.unfreezing != "none"

    bad = tmp_path / "bad.yaml"
    bad.write_text("freeze: backbone\n")
    with pytest.raises(ValueError, match=rf"argument 'freeze' \(from {bad}\): freeze='backbone': 'backbone' is "
                                         "not a freezing preset; choose one of none, encoder, all, sentence_head"):
        parse_arguments([str(bad)])
    for argv, message in [
        (["--loss_weighting", "learned"], "argument 'loss_weighting' (from the command line) is 'learned', expected "
                                          "one of: static, uncertainty"),
        (["--task_sampling", "temp"], "expected one of: none, proportional, temperature, uniform"),
        (["--freeze", "encoder", "--freeze_encoder_layers", "2"], "already freezes the whole encoder"),
        (["--freeze", "all,token_head"], "'none' and 'all' cannot be combined"),
        (["--freeze", "sentence_head,token_head"], "freezes both heads, which leaves no task loss"),
        (["--unfreezing", "linear_probe"], "give unfreeze_warmup > 0"),
        (["--layerwise_lr_decay", "1.5"], "give a factor in (0, 1]"),
        (["--task_sampling", "uniform", "--train_sampling_strategy", "group_by_length"], "use one of them"),
    ]:
        with pytest.raises(ValueError) as error:
            parse_arguments(argv)
        assert message in str(error.value), argv


def test_more_frozen_layers_than_the_encoder_has_is_refused(tiny_model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"freeze_encoder_layers=5, but the encoder has 2 layers \(encoder.layer\)"):
        trainer_for(tiny_model, tokenizer, dataset(tokenizer), tmp_path, freeze_encoder_layers=5)


# ------------------------------------------------------------------ DDP

DDP_SCRIPT = """
import hashlib, json, os, sys
sys.path.insert(0, {repo!r})
import torch
from modeling_mtl import MultiTaskModel
from modeling_mtl.data import MultiTaskCollator, encode_dataset_dict
from modeling_mtl.trainer import MultiTaskTrainer
from modeling_mtl.training_args import parse_arguments
from train_mtl import load_data

# train_mtl.main's set-up, from the same run file, without its reporting.
model_args, data_args, args = parse_arguments(sys.argv[1:])
raw, sentence_labels, token_labels = load_data(data_args, args.seed)
model = MultiTaskModel.from_encoder(model_args.encoder, sentence_labels=sentence_labels, token_labels=token_labels,
                                    **model_args.config_overrides())
encoded, _ = encode_dataset_dict(raw, model.tokenizer, sentence_labels, token_labels, model.config.max_seq_length)
trainer = MultiTaskTrainer(model=model, args=args, train_dataset=encoded["train"],
                           data_collator=MultiTaskCollator(model.tokenizer))
trainer.train()
trainer.save_state()
digest = lambda tensors: hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in tensors)).hexdigest()
params = dict(trainer.model.named_parameters())
result = {{
    "all": digest(params.values()),
    "frozen": digest(p for n, p in params.items() if n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0."))),
    "log_variances": trainer.loss_weighting.log_variances.tolist(),
    "sampler": type(trainer._get_train_sampler()).__name__,
    "world_size": args.world_size,
}}
with open(os.path.join(args.output_dir, f"rank{{args.process_index}}.json"), "w") as handle:
    json.dump(result, handle)
"""


def test_two_process_ddp_with_unfreezing_sampling_and_uncertainty(tiny_encoder_dir, tmp_path):
    """Layers that thaw mid-run, learned loss weights and the task sampler keep the two processes identical."""
    sentences, entities = tmp_path / "reviews", tmp_path / "entities"
    sentences.mkdir()
    entities.mkdir()
    rows = [("what a great movie", "positive"), ("an awful waste of time", "negative")] * 20
    (sentences / "train.jsonl").write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in rows))
    (entities / "train.conll").write_text("\n".join(["john\tB-PER\nlives\tO\nin\tO\nparis\tB-LOC\n"] * 6))
    output = tmp_path / "ddp"
    config = tmp_path / "ddp.yaml"
    config.write_text(json.dumps({
        "encoder": tiny_encoder_dir, "sources": [{"data_dir": str(sentences)}, {"data_dir": str(entities)}],
        "output_dir": str(output), "max_steps": 6, "per_device_train_batch_size": 2, "eval_strategy": "no",
        "save_strategy": "no", "load_best_model_at_end": False, "logging_steps": 1, "max_seq_length": 32,
        "unfreezing": "gradual", "unfreeze_unit": "steps", "unfreeze_warmup": 2, "unfreeze_every": 2,
        "freeze_encoder_layers": 1, "head_learning_rate": 1e-2, "encoder_learning_rate": 1e-3,
        "loss_weighting": "uncertainty", "uncertainty_learning_rate": 0.1, "task_sampling": "temperature",
    }))
    script = tmp_path / "run_ddp.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configuration" / "accelerate_ddp_cpu.yaml"), str(script), str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((output / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["sampler"] == "TaskSampler"
    assert ranks[0] == ranks[1]  # same weights, same log-variances on both processes
    assert ranks[0]["log_variances"] != [0.0, 0.0]

    from transformers import AutoModel

    initial = AutoModel.from_pretrained(tiny_encoder_dir).named_parameters()
    expected = hashlib.sha256(b"".join(
        p.detach().numpy().tobytes() for n, p in initial if n.startswith(("embeddings.", "encoder.layer.0.")))
    ).hexdigest()
    assert ranks[0]["frozen"] == expected, "the embeddings or layer 0 moved"
    state = json.loads((output / "trainer_state.json").read_text())
    logs = [log for log in state["log_history"] if "loss" in log]
    assert [log["encoder_groups_unfrozen"] for log in logs] == [0, 0, 1, 1, 1, 1]
