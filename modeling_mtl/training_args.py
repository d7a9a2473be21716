"""Arguments of a training run: model, data and training dataclasses, read from YAML/JSON plus `--key value` overrides.

    model_args, data_args, training_args = parse_arguments(["configuration/demo.yaml", "--num_train_epochs", "1"])
"""

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from .data import DataSource
from .modeling_mtl import DEFAULT_ENCODER
from .schema_mtl import POOLING_MODES, REJECT_SCORES, TOKEN_DECODINGS
from .transfer import (
    FREEZE_PRESETS,
    LOSS_WEIGHTINGS,
    TASK_SAMPLINGS,
    UNFREEZE_UNITS,
    UNFREEZING_SCHEDULES,
    check_option,
    check_transfer_arguments,
)
from .weight_averaging import check_ema_decay


@dataclass
class ModelArguments:
    """Which encoder to start from and how the multi-task model around it is shaped."""

    encoder: str = field(
        default=DEFAULT_ENCODER,
        metadata={"help": "Hub id or local folder of the pretrained encoder (any AutoModel-compatible encoder)."},
    )
    pooling_mode: str | None = field(
        default=None,
        metadata={"help": f"{' | '.join(POOLING_MODES)}; default: the encoder's sentence-transformers setting."},
    )
    normalize_embeddings: bool | None = field(
        default=None, metadata={"help": "L2-normalise sentence embeddings; default: the encoder's setting."}
    )
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Longest input in tokens; default: the encoder's setting (256 for MiniLM)."}
    )
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout before both heads."})
    sentence_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the sentence loss."})
    token_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the token loss."})
    token_decoding: str | None = field(
        default="bio_viterbi",
        metadata={
            "help": f"{' | '.join(TOKEN_DECODINGS)}: how word tags are read from the token head in evaluation (and so the "
            "checkpoint choice), predict and the multitask pipeline. bio_viterbi: the best tag sequence in which I-x "
            "only follows B-x or I-x (better dev scores on ATIS and WNUT-17, see README); argmax: each word's most "
            "likely tag, as the standard token-classification pipeline and MultiTaskConfig's default."
        },
    )

    sentence_label_separator: str | None = field(
        default=None,
        metadata={
            "help": "Read sentence labels as parts joined by this string (e.g. '#' for ATIS's atis_flight#atis_airfare; "
            "quote it in YAML, where a bare # starts a comment): the sentence head scores each part, and a label's "
            "logit is the sum of its parts' scores plus its own bias, so a rare combined label shares what its parts "
            "learn."
        },
    )
    ambiguity_margin: float | None = field(
        default=None,
        metadata={"help": "Answer out_of_scope_label when the two best sentence scores are closer than this."},
    )
    out_of_scope_label: str | None = field(
        default=None, metadata={"help": "The label of a rejected text (default: out_of_scope)."}
    )

    def config_overrides(self) -> dict:
        """The MultiTaskConfig fields set here: every field but `encoder` (None means: keep the encoder's own setting)."""
        names = [item.name for item in dataclasses.fields(self) if item.name != "encoder"]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    """Where the data comes from. One source with the flat fields, or several with `sources` (a list of dicts with
    the same keys), e.g. ATIS (both tasks) mixed with SST-2 (sentence labels only)."""

    data_dir: str | None = field(default=None, metadata={"help": "Local folder (relative to the working directory)."})
    data_format: str | None = field(
        default=None, metadata={"help": "jointbert | conll | sst2 | csv | jsonl | label-studio | doccano | prodigy | rasa; default: detected."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Hub data set id (datasets.load_dataset)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub data set configuration."})
    text_column: str | None = field(default=None, metadata={"help": "Column holding raw text."})
    tokens_column: str | None = field(default=None, metadata={"help": "Column holding pre-split words."})
    sentence_label_column: str | None = field(default=None, metadata={"help": "Column holding the sentence label."})
    tags_column: str | None = field(default=None, metadata={"help": "Column holding word-level BIO tags."})
    edge_policy: str = field(
        default="expand",
        metadata={"help": "Annotation exports: a span edge inside a word: expand (to the word) | refuse."},
    )
    overlap_policy: str = field(
        default="refuse", metadata={"help": "Annotation exports: overlapping spans: refuse | keep_longest."}
    )
    validation_split_percentage: float | None = field(
        default=10.0,
        metadata={"help": "A source without a validation split gets this percentage of its training examples as one "
                  "(stratified by sentence label, seeded by split_seed); 0: none."},
    )
    test_split_percentage: float | None = field(
        default=10.0, metadata={"help": "The same for a source without a test split; 0: none."}
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of those splits (not the training seed: every training seed sees the same ones)."}
    )
    sources: list[dict] | None = field(default=None, metadata={"help": "Several sources, each a dict of the above."})
    label_all_tokens: bool = field(
        default=False, metadata={"help": "Label every sub-token (B- becomes I- after the first) instead of the first."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation/test examples."})
    per_entity_metrics: bool = field(default=True, metadata={"help": "Report P/R/F1 per entity type."})

    def data_sources(self) -> list[DataSource]:
        source_fields = {f.name for f in dataclasses.fields(DataSource)}
        if self.sources:
            if self.data_dir or self.dataset_name:
                raise ValueError("give either `sources` or `data_dir`/`dataset_name`, not both")
            sources = []
            for index, spec in enumerate(self.sources):
                unknown = sorted(set(spec) - source_fields)
                if unknown:
                    raise ValueError(f"sources[{index}] has unknown keys {unknown}; known keys: {sorted(source_fields)}")
                sources.append(DataSource(**spec))
            return sources
        return [DataSource(**{name: getattr(self, name) for name in source_fields if hasattr(self, name)})]


@dataclass
class MultiTaskTrainingArguments(TrainingArguments):
    """`transformers.TrainingArguments` with defaults suited to multi-task fine-tuning, plus early stopping."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints and the final model go."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to write a checkpoint."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one always is)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the checkpoint best on validation."})
    metric_for_best_model: str | None = field(
        default="loss", metadata={"help": "Validation metric that picks the best checkpoint, e.g. exact_match."}
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps of linear warm-up."})
    logging_steps: float = field(default=20, metadata={"help": "Log every N optimiser steps."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["sentence_labels", "token_labels"], metadata={"help": "Label inputs of the model."}
    )
    length_grouping_batches: int = field(
        default=50,
        metadata={"help": "Under train_sampling_strategy: group_by_length, how many batches are sorted by length "
                  "together: fewer keep more of a random mix of lengths in each batch (and pad more)."},
    )
    token_loss_normalization: str = field(
        default="batch",
        metadata={"help": "What the summed token loss of a training batch is divided by. batch: its labelled tokens "
                  "(a per-token mean within each batch). dataset_mean: its sentences times the training set's mean "
                  "labelled tokens per sentence, so every labelled token weighs the same whatever the lengths in its "
                  "batch (under length-grouped batches a batch mean weighs tokens of short sentences more)."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without improvement of metric_for_best_model."}
    )

    # Transfer learning (modeling_mtl/transfer.py; README "Transfer learning").
    freeze: str = field(
        default="none",
        metadata={
            "help": f"What stays frozen for the whole run: {' | '.join(FREEZE_PRESETS)}, or a comma-separated "
            "combination (encoder,sentence_head). A frozen head keeps its weights; its loss is logged, not optimised. "
            "'all' is a feature extractor: evaluation and prediction only."
        },
    )
    freeze_encoder_layers: int = field(
        default=0, metadata={"help": "Freeze the encoder's embeddings and its lowest N transformer layers."}
    )
    unfreezing: str = field(
        default="none",
        metadata={
            "help": f"{' | '.join(UNFREEZING_SCHEDULES)}. gradual: the encoder starts frozen; after unfreeze_warmup "
            "the top layer thaws, then one more layer (top-down, the embeddings last) every unfreeze_every. "
            "linear_probe: heads alone for unfreeze_warmup, then the whole encoder at once."
        },
    )
    unfreeze_warmup: float = field(
        default=0.0, metadata={"help": "Steps or epochs (unfreeze_unit) the heads train alone before thawing."}
    )
    unfreeze_every: float = field(
        default=1.0, metadata={"help": "gradual: steps or epochs between two layers thawing."}
    )
    unfreeze_unit: str = field(
        default="epochs", metadata={"help": f"Unit of unfreeze_warmup / unfreeze_every: {' | '.join(UNFREEZE_UNITS)}."}
    )
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the heads (default: learning_rate)."}
    )
    encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the encoder's top layer (default: learning_rate)."}
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={"help": "Each encoder layer below the top trains at this factor of the one above (embeddings last)."},
    )
    loss_weighting: str = field(
        default="static",
        metadata={
            "help": f"{' | '.join(LOSS_WEIGHTINGS)}. static: sentence_loss_weight / token_loss_weight. uncertainty: "
            "learned log-variances s_t, loss = sum exp(-s_t) * L_t + s_t / 2 (Kendall et al. 2018)."
        },
    )
    uncertainty_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the log-variances (default: the heads' learning rate)."}
    )
    task_sampling: str = field(
        default="none",
        metadata={
            "help": f"{' | '.join(TASK_SAMPLINGS)}: draw training examples source by source with p ~ size^(1/T) "
            "(proportional: T=1, temperature: task_sampling_temperature, uniform: T=inf); none: plain shuffling."
        },
    )
    task_sampling_temperature: float = field(
        default=2.0, metadata={"help": "T of task_sampling: temperature (1 = proportional, larger = flatter)."}
    )

    calibrate: bool = field(
        default=True,
        metadata={
            "help": "After training, fit the sentence head's temperature on the validation split (NLL; Guo et al. "
            "2017) and save it in the config, so predict's scores are calibrated; ECE and NLL before and after, on "
            "validation and test, go to all_results.json and the model card."
        },
    )
    reject_threshold: float | str | None = field(
        default=None,
        metadata={
            "help": "Answer out_of_scope_label when the text's reject_score is below this: a score, or 'auto' (chosen "
            "on validation to keep reject_target_recall of its texts); null: never reject."
        },
    )
    reject_target_recall: float = field(
        default=0.95, metadata={"help": "reject_threshold: auto keeps this share of the validation texts."}
    )
    reject_score: str = field(
        default="centroid_cosine",
        metadata={
            "help": f"{' | '.join(REJECT_SCORES)}: what reject_threshold compares. centroid_cosine (the default: best "
            "out-of-scope detection of benchmarks/open_intent.py): the largest cosine similarity of the sentence "
            "embedding to a class centroid of the training embeddings (stored in the config; a threshold in [-1, 1]); "
            "softmax: the best calibrated sentence score."
        },
    )
    demo_space: str | None = field(
        default=None,
        metadata={"help": "A Hugging Face Space that demonstrates this model (`python -m modeling_mtl space ... --push "
                  "ID`); the model card links it."},
    )

    ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "Keep an exponential moving average of the weights with this decay (e.g. 0.99; null: none) and "
            "use it for evaluation, checkpoint choice and the saved model; the decay ramps up as (1+t)/(10+t) over "
            "the first steps. Checkpoints keep the weights being trained too, so resuming is exact."
        },
    )

    def __post_init__(self):
        if self.ema_decay is not None:
            check_ema_decay(self.ema_decay)
        if self.length_grouping_batches < 1:
            raise ValueError(f"length_grouping_batches is {self.length_grouping_batches}; give a number of batches >= 1")
        if self.reject_score not in REJECT_SCORES:
            raise ValueError(f"reject_score is {self.reject_score!r}; choose one of {list(REJECT_SCORES)}")
        low = -1 if self.reject_score == "centroid_cosine" else 0  # a cosine similarity, or a probability
        threshold = self.reject_threshold
        if isinstance(threshold, str) and threshold != "auto":
            try:
                threshold = self.reject_threshold = float(threshold)  # from a --reject_threshold override
            except ValueError:
                raise ValueError(f"reject_threshold is {threshold!r}; give a score in [{low}, 1], 'auto' or null") from None
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            threshold = self.reject_threshold = float(threshold)
            if not low <= threshold <= 1:
                raise ValueError(f"reject_threshold is {threshold}; give a score in [{low}, 1], 'auto' or null")
        if not 0 < self.reject_target_recall <= 1:
            raise ValueError(f"reject_target_recall is {self.reject_target_recall}; give a share in (0, 1]")
        # Without an accelerator, run as a CPU job: this is what makes several processes (accelerate's multi-GPU
        # launcher, torchrun) form a real DDP group over gloo, and what lets bf16 autocast run on the CPU.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        check_transfer_arguments(self)
        super().__post_init__()


ARGUMENT_CLASSES = (ModelArguments, DataArguments, MultiTaskTrainingArguments)


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false are booleans, so `save_strategy: no` stays the string "no"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.2 floats also include exponent forms without a dot (`1e-3`, `5e-5`), which YAML 1.1 reads as strings.
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _load_yaml(text):
    return yaml.load(text, Loader=_Yaml12Loader)


def _matches(value, annotation) -> bool:
    """Whether a YAML value fits a dataclass field annotation (loosely: int for float, any dict for dict)."""
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        if issubclass(annotation, str) or annotation.__module__ != "builtins":  # enums and str-like options
            return isinstance(value, (str, annotation))
        return isinstance(value, annotation)
    return True


# Keys whose natural value is "#": a bare `key: #` is YAML for "no value" plus a comment, never what was meant.
HASH_VALUED_KEYS = ("sentence_label_separator",)


def _check_bare_hashes(path: Path, text: str, values: dict):
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r"(\w+):\s+#", line)
        if match and match.group(1) in HASH_VALUED_KEYS and values.get(match.group(1), "") is None:
            raise ValueError(
                f"{path}, line {number}: `{line.strip()}` gives {match.group(1)} no value (YAML reads # after a space "
                f"as a comment); write {match.group(1)}: '#' (quoted), or null for none"
            )


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"run configuration {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if path.suffix == ".json" else _load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, got {type(values).__name__}")
    if path.suffix != ".json":
        _check_bare_hashes(path, text, values)
    return values


def _parse_overrides(arguments: list[str]) -> dict:
    """`--key value` pairs (and bare `--flag` for true); values are read as YAML scalars/lists."""
    overrides, index = {}, 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--") or len(argument) == 2:
            raise ValueError(f"unexpected command-line argument {argument!r}; overrides look like --key value")
        key, has_value, value = argument[2:].partition("=")
        if not has_value:
            if index + 1 < len(arguments) and not arguments[index + 1].startswith("--"):
                value, index = arguments[index + 1], index + 1
            else:
                value = "true"
        parsed = _load_yaml(value) if value != "" else ""
        if parsed is None and value.strip() not in ("null", "Null", "NULL", "~"):
            parsed = value  # YAML reads "#" (e.g. --sentence_label_separator '#') as a comment: keep the text
        overrides[key.replace("-", "_")] = parsed
        index += 1
    return overrides


def parse_arguments(argv: list[str], default_config: str | None = None):
    """Model, data and training arguments from an optional config file (first argument, .yaml/.yml/.json) and
    `--key value` overrides. Unknown keys and values of the wrong type are refused, naming the key and the file."""
    argv = list(argv)
    config_path = None
    if argv and not argv[0].startswith("--"):
        config_path = Path(argv.pop(0))
    elif default_config is not None:
        config_path = Path(default_config)
    values = _read_config_file(config_path) if config_path is not None else {}
    origin = {key: str(config_path) for key in values}
    overrides = _parse_overrides(argv)
    values.update(overrides)
    origin.update({key: "the command line" for key in overrides})

    fields = {}
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if item.init:
                fields.setdefault(item.name, hints[item.name])
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = ", ".join(f"{key!r} (from {origin[key]})" for key in unknown)
        raise ValueError(f"unknown argument(s) {where}; see `python train_mtl.py --help` for the accepted keys")
    for key, value in values.items():
        if not _matches(value, fields[key]):
            raise ValueError(
                f"argument {key!r} (from {origin[key]}) is {value!r} ({type(value).__name__}), expected {fields[key]}"
            )
        check_option(key, value, origin[key])
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    return parser.parse_dict(values)
