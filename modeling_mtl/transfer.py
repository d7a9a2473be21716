"""Transfer-learning controls used by `MultiTaskTrainer`: what is frozen, when it thaws, at which learning rate each
part trains, how the two task losses are weighted, and how mixed data sources are sampled.

Everything here is training-only state: the model's weights and config are untouched, so a model trained under any
regime saves and loads exactly like one trained without these options.

- `TransferPlan`: the freezing preset (`freeze`), the frozen lower layers (`freeze_encoder_layers`), the unfreezing
  schedule (`unfreezing`: gradual, or linear probe then fine-tune) and the optimizer parameter groups with
  discriminative learning rates (`head_learning_rate`, `encoder_learning_rate`, `layerwise_lr_decay`).
- `UnfreezingCallback`: applies the schedule at the start of every optimizer step (and on resume).
- `UncertaintyWeighting`: learned task weights (Kendall, Gal and Cipolla, 2018).
- `TaskSampler`: draws data sources with probability proportional to size^(1/T).
- `find_encoder_layers`: the transformer block list of BERT-family, DistilBERT, GPT-2/GPT-Neo, Llama-style encoders.
"""

import logging
import math
import re
from collections.abc import Sequence

import torch
from torch import nn
from transformers import TrainerCallback

from .schema_mtl import TASKS

logger = logging.getLogger(__name__)

FREEZE_PRESETS = ("none", "encoder", "all", *(task.head_module for task in TASKS))
UNFREEZING_SCHEDULES = ("none", "gradual", "linear_probe")
UNFREEZE_UNITS = ("steps", "epochs")
LOSS_WEIGHTINGS = ("static", "uncertainty")
TASK_SAMPLINGS = ("none", "proportional", "temperature", "uniform")
TOKEN_LOSS_NORMALIZATIONS = ("batch", "dataset_mean")
# The string options with a fixed set of values (`freeze`, a combination of presets, is read by `parse_freeze`).
OPTION_CHOICES = {
    "unfreezing": UNFREEZING_SCHEDULES,
    "unfreeze_unit": UNFREEZE_UNITS,
    "loss_weighting": LOSS_WEIGHTINGS,
    "task_sampling": TASK_SAMPLINGS,
    "token_loss_normalization": TOKEN_LOSS_NORMALIZATIONS,
}

# Where encoders keep their list of transformer blocks, relative to `model.encoder` (first match wins):
# BERT / RoBERTa / MiniLM / ELECTRA, DistilBERT, GPT-2 / GPT-Neo / GPT-J / BLOOM / Falcon, Llama / Mistral /
# Qwen / GPT-NeoX / OPT-style decoders, T5-style blocks. Other encoders: the longest list of same-type blocks.
LAYER_LIST_PATHS = (
    "encoder.layer",
    "transformer.layer",
    "encoder.layers",
    "transformer.h",
    "h",
    "layers",
    "layer",
    "decoder.layers",
    "model.layers",
    "blocks",
    "block",
)
_EMBEDDING_NAME = re.compile(r"^(embed.*|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings)$")


def parse_freeze(value) -> tuple[str, ...]:
    """`"encoder"`, `"encoder,sentence_head"` (a combination) -> the preset names; unknown names are refused."""
    if value is None:
        return ()
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    unknown = [name for name in names if name not in FREEZE_PRESETS]
    if unknown or not names:
        raise ValueError(
            f"freeze={value!r}: {', '.join(map(repr, unknown)) or 'empty'} is not a freezing preset; choose one of "
            f"{', '.join(FREEZE_PRESETS)} (or a comma-separated combination such as 'encoder,sentence_head')"
        )
    if len(names) > 1 and ("none" in names or "all" in names):
        raise ValueError(f"freeze={value!r}: 'none' and 'all' cannot be combined with other presets")
    return tuple(dict.fromkeys(name for name in names if name != "none"))


def check_option(key, value, where=None) -> None:
    """Refuse a value of a choice option (`OPTION_CHOICES`) or of `freeze`; other keys pass. `where` (a file, "the
    command line") is named in the message."""
    source = f" (from {where})" if where else ""
    if key == "freeze":
        try:
            parse_freeze(value)
        except ValueError as error:
            raise ValueError(f"argument 'freeze'{source}: {error}" if where else str(error)) from None
    elif key in OPTION_CHOICES and value not in OPTION_CHOICES[key]:
        raise ValueError(f"argument {key!r}{source} is {value!r}, expected one of: {', '.join(OPTION_CHOICES[key])}")


def check_transfer_arguments(args) -> None:
    """Refuse inconsistent transfer-learning options with a message naming them (called by the arguments class)."""
    for key in (*OPTION_CHOICES, "freeze"):
        check_option(key, getattr(args, key))
    freeze = parse_freeze(args.freeze)
    if all(task.head_module in freeze for task in TASKS):
        raise ValueError(
            f"freeze={args.freeze!r} freezes both heads, which leaves no task loss to train anything; use freeze: all "
            "for a feature extractor"
        )
    if args.freeze_encoder_layers < 0:
        raise ValueError(f"freeze_encoder_layers={args.freeze_encoder_layers}: give a number of layers >= 0")
    if args.freeze_encoder_layers and ("encoder" in freeze or "all" in freeze):
        raise ValueError(
            f"freeze={args.freeze!r} already freezes the whole encoder: freeze_encoder_layers="
            f"{args.freeze_encoder_layers} has no effect; drop one of them"
        )
    if args.unfreezing != "none" and ("encoder" in freeze or "all" in freeze):
        raise ValueError(
            f"unfreezing={args.unfreezing!r} thaws the encoder during training, but freeze={args.freeze!r} keeps it "
            "frozen for the whole run; use freeze: none (the schedule itself starts with the encoder frozen)"
        )
    if args.unfreeze_warmup < 0 or args.unfreeze_every <= 0:
        raise ValueError(
            f"unfreeze_warmup={args.unfreeze_warmup} must be >= 0 and unfreeze_every={args.unfreeze_every} > 0"
        )
    if args.unfreezing == "linear_probe" and args.unfreeze_warmup <= 0:
        raise ValueError(
            "unfreezing='linear_probe' trains the heads alone for `unfreeze_warmup` steps/epochs before fine-tuning "
            "everything: give unfreeze_warmup > 0"
        )
    if not 0 < args.layerwise_lr_decay <= 1:
        raise ValueError(f"layerwise_lr_decay={args.layerwise_lr_decay}: give a factor in (0, 1] (1 = no decay)")
    for key in ("head_learning_rate", "encoder_learning_rate", "uncertainty_learning_rate"):
        value = getattr(args, key)
        if value is not None and value < 0:
            raise ValueError(f"{key}={value}: a learning rate must be >= 0")
    if args.task_sampling_temperature <= 0:
        raise ValueError(f"task_sampling_temperature={args.task_sampling_temperature}: give a temperature > 0")
    if args.task_sampling != "none" and args.train_sampling_strategy not in ("random", "sequential"):
        raise ValueError(
            f"task_sampling={args.task_sampling!r} replaces the train sampler, which "
            f"train_sampling_strategy={args.train_sampling_strategy!r} also sets; use one of them"
        )


# ---------------------------------------------------------------------------------------------- encoder structure


def _resolve(module, path):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def find_encoder_layers(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """The path (relative to `encoder`) and the list of its transformer blocks, bottom-up."""
    for path in LAYER_LIST_PATHS:
        module = _resolve(encoder, path)
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return path, module
    best = None
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(block) for block in module}) == 1:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise ValueError(
            f"cannot find the transformer layers of {type(encoder).__name__} (looked for "
            f"{', '.join(LAYER_LIST_PATHS)} and any list of same-type blocks); layer-wise options "
            "(freeze_encoder_layers, unfreezing, layerwise_lr_decay) need them"
        )
    return best


class EncoderStructure:
    """The encoder's parameters split into embeddings (below the blocks), blocks (bottom-up) and the rest (above the
    blocks: a final norm, a pooler). Names are the model's own (`encoder.encoder.layer.0.attention...`)."""

    def __init__(self, model: nn.Module):
        encoder = model.encoder
        self.layer_path, self.layers = find_encoder_layers(encoder)
        self.layer_params = [[] for _ in self.layers]
        self.embedding_params, self.top_params = [], []
        layer_index = {f"{self.layer_path}.{index}.": index for index in range(len(self.layers))}
        for name, _ in encoder.named_parameters():
            full = f"encoder.{name}"
            index = next((i for prefix, i in layer_index.items() if name.startswith(prefix)), None)
            if index is not None:
                self.layer_params[index].append(full)
                continue
            parts = name.split(".")[:-1]
            owner = encoder.get_submodule(".".join(parts)) if parts else encoder
            if isinstance(owner, nn.Embedding) or any(_EMBEDDING_NAME.match(part) for part in parts):
                self.embedding_params.append(full)
            else:
                self.top_params.append(full)
        self.embedding_modules = [
            module
            for name, module in encoder.named_children()
            if _EMBEDDING_NAME.match(name) or isinstance(module, nn.Embedding)
        ]

    @property
    def num_layers(self):
        return len(self.layers)

    def layer_of(self, name):
        """Index of the block that holds parameter `name`, `-1` for embeddings, `None` above the blocks."""
        for index, names in enumerate(self.layer_params):
            if name in names:
                return index
        return -1 if name in self.embedding_params else None


# ---------------------------------------------------------------------------------------------- the plan


class TransferPlan:
    """The transfer-learning options of `args` applied to `model`: static freezing at construction, the unfreezing
    schedule through `update`, optimizer parameter groups through `parameter_groups`."""

    def __init__(self, model: nn.Module, args):
        self.model = model
        self.freeze = parse_freeze(getattr(args, "freeze", "none"))
        self.freeze_layers = int(getattr(args, "freeze_encoder_layers", 0) or 0)
        self.unfreezing = getattr(args, "unfreezing", "none")
        self.unfreeze_warmup = float(getattr(args, "unfreeze_warmup", 0.0))
        self.unfreeze_every = float(getattr(args, "unfreeze_every", 1.0))
        self.unfreeze_unit = getattr(args, "unfreeze_unit", "epochs")
        self.layer_decay = float(getattr(args, "layerwise_lr_decay", 1.0))
        base_lr = args.learning_rate
        head_lr, encoder_lr = getattr(args, "head_learning_rate", None), getattr(args, "encoder_learning_rate", None)
        self.head_lr = base_lr if head_lr is None else head_lr
        self.encoder_lr = base_lr if encoder_lr is None else encoder_lr

        names = [name for name, _ in model.named_parameters()]
        self.parameters = dict(model.named_parameters())
        needs_layers = self.freeze_layers > 0 or self.unfreezing != "none" or self.layer_decay != 1.0
        self.structure = EncoderStructure(model) if needs_layers else None
        if self.structure is not None and self.freeze_layers > self.structure.num_layers:
            raise ValueError(
                f"freeze_encoder_layers={self.freeze_layers}, but the encoder has {self.structure.num_layers} layers "
                f"({self.structure.layer_path})"
            )

        # Parameters frozen before the trainer was built (requires_grad False) stay frozen, as Trainer leaves them.
        static = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
        if "all" in self.freeze:
            static.update(names)
        if "encoder" in self.freeze:
            static.update(name for name in names if name.startswith("encoder."))
        frozen = [task for task in TASKS if "all" in self.freeze or task.head_module in self.freeze]
        self.frozen_tasks = tuple(task.name for task in frozen)
        for task in frozen:
            static.update(name for name in names if name.startswith(f"{task.head_module}."))
        if self.freeze_layers:
            static.update(self.structure.embedding_params)
            for index in range(self.freeze_layers):
                static.update(self.structure.layer_params[index])
        self.static_frozen = static

        # Groups that thaw one after the other, top-down; what lies below `freeze_encoder_layers` never thaws.
        self.groups = []
        if self.unfreezing != "none":
            structure = self.structure
            top = structure.num_layers - 1
            groups = [structure.top_params + structure.layer_params[top]]
            groups += [structure.layer_params[index] for index in range(top - 1, self.freeze_layers - 1, -1)]
            if self.freeze_layers == 0:
                groups.append(structure.embedding_params)
            groups = [[name for name in group if name not in static] for group in groups]
            groups = [group for group in groups if group]
            self.groups = [sum(groups, [])] if self.unfreezing == "linear_probe" and groups else groups
        self.unfrozen_groups = len(self.groups)  # until the schedule starts (on_train_begin)

        for name, parameter in model.named_parameters():
            if name in static:
                parameter.requires_grad_(False)
        self._eval_candidates = [model.encoder, *(getattr(model, task.head_module) for task in TASKS)]
        if self.structure is not None:
            self._eval_candidates += [*self.structure.embedding_modules, *self.structure.layers]
        if self.static_frozen:
            logger.info(
                f"freeze={','.join(self.freeze) or 'none'}, freeze_encoder_layers={self.freeze_layers}: "
                f"{sum(self.parameters[n].numel() for n in static):,} parameters frozen, "
                f"{self.num_trainable(final=True):,} trainable"
            )

    # ----------------------------------------------------------------- trainable parameters

    def optimizer_parameter_names(self):
        """Every parameter that trains at some point of the run (scheduled ones included), in model order."""
        return [name for name in self.parameters if name not in self.static_frozen]

    def num_trainable(self, final=False):
        """Parameters trainable now (or, with `final`, once the schedule has thawed everything it will)."""
        if final:
            return sum(self.parameters[name].numel() for name in self.optimizer_parameter_names())
        return sum(p.numel() for p in self.parameters.values() if p.requires_grad)

    def has_trainable(self):
        return bool(self.optimizer_parameter_names())

    @property
    def trained_tasks(self):
        return tuple(task.name for task in TASKS if task.name not in self.frozen_tasks)

    # ----------------------------------------------------------------- schedule

    def groups_unfrozen_at(self, progress: float) -> int:
        """How many groups (top-down) train at `progress` (optimizer steps done, or epochs done)."""
        if not self.groups:
            return 0
        if progress + 1e-9 < self.unfreeze_warmup:
            return 0
        if self.unfreezing == "linear_probe":
            return len(self.groups)
        thawed = 1 + math.floor((progress - self.unfreeze_warmup) / self.unfreeze_every + 1e-9)
        return min(len(self.groups), thawed)

    def progress(self, state) -> float:
        if self.unfreeze_unit == "steps":
            return float(state.global_step)
        return float(state.epoch or 0.0)

    def set_unfrozen_groups(self, count: int, where: str = "") -> bool:
        """Let the top `count` groups train and freeze the others; returns whether anything changed."""
        if count == self.unfrozen_groups:
            return False
        for index, group in enumerate(self.groups):
            for name in group:
                self.parameters[name].requires_grad_(index < count)
        self.unfrozen_groups = count
        logger.info(
            f"{where}{count} of {len(self.groups)} encoder group(s) unfrozen ({self.describe_unfrozen()}): "
            f"{self.num_trainable():,} trainable parameters"
        )
        return True

    def describe_unfrozen(self):
        if self.unfreezing == "linear_probe":
            return "encoder" if self.unfrozen_groups else "heads only"
        if self.unfrozen_groups == 0:
            return "heads only"
        structure = self.structure
        lowest = structure.num_layers - min(self.unfrozen_groups, structure.num_layers - self.freeze_layers)
        thawed = f"layers {lowest}-{structure.num_layers - 1}"
        if self.freeze_layers == 0 and self.unfrozen_groups > structure.num_layers:
            thawed += " and the embeddings"
        return thawed

    def update(self, state, where=None) -> None:
        if self.groups:
            progress = self.progress(state)
            self.set_unfrozen_groups(
                self.groups_unfrozen_at(progress), where or f"step {state.global_step} ({self.unfreeze_unit} "
                f"progress {progress:g}): "
            )

    def set_frozen_modules_eval(self) -> None:
        """Modules with no trainable parameter run in eval mode (no dropout): a frozen part is a fixed feature
        extractor, so the heads train on the same features they will see at inference."""
        for module in self._eval_candidates:
            parameters = list(module.parameters())
            if parameters and not any(p.requires_grad for p in parameters):
                module.eval()

    # ----------------------------------------------------------------- optimizer

    def discriminative(self):
        """Whether the encoder trains at another learning rate than the heads (or layer by layer)."""
        return self.head_lr != self.encoder_lr or self.layer_decay != 1.0

    def needs_parameter_groups(self):
        """Whether the optimizer must be built from these groups (rather than any optimizer's own grouping)."""
        return self.discriminative() or bool(self.groups)

    def _group_of(self, name):
        """(group name, learning rate) of a trainable parameter."""
        if not name.startswith("encoder."):
            return "heads", self.head_lr
        if self.layer_decay == 1.0 or self.structure is None:
            return "encoder", self.encoder_lr
        structure = self.structure
        top = structure.num_layers - 1
        layer = structure.layer_of(name)
        if layer is None:
            return "encoder.top", self.encoder_lr
        if layer == -1:
            return "encoder.embeddings", self.encoder_lr * self.layer_decay**structure.num_layers
        return f"encoder.layer.{layer}", self.encoder_lr * self.layer_decay ** (top - layer)

    def parameter_groups(self, decay_parameter_names, weight_decay):
        """Optimizer parameter groups: heads first, then encoder groups top-down; each split into a weight-decay and
        a no-decay group (biases, norms). Statically frozen parameters are in none of them."""
        decay_names = set(decay_parameter_names)
        groups = {}
        for name in self.optimizer_parameter_names():
            group, lr = self._group_of(name)
            decays = name in decay_names and weight_decay > 0
            key = (group, decays)
            if key not in groups:
                groups[key] = {
                    "params": [],
                    "lr": lr,
                    "weight_decay": weight_decay if decays else 0.0,
                    "name": group if decays or weight_decay == 0 else f"{group}.no_decay",
                }
            groups[key]["params"].append(self.parameters[name])
        return [groups[key] for key in sorted(groups, key=lambda key: (self._group_rank(key[0]), not key[1]))]

    def _group_rank(self, group):
        """Heads first (Trainer logs the first group's learning rate), then the encoder top-down."""
        if group == "heads":
            return 0
        if group in ("encoder", "encoder.top"):
            return 1
        if group == "encoder.embeddings":
            return 2 + self.structure.num_layers
        return 2 + self.structure.num_layers - 1 - int(group.rsplit(".", 1)[1])


class UnfreezingCallback(TrainerCallback):
    """Applies a `TransferPlan`'s unfreezing schedule before every optimizer step and at the start of training
    (which, when resuming, restores the stage the checkpoint had reached)."""

    def __init__(self, plan: TransferPlan):
        self.plan = plan

    def on_train_begin(self, args, state, control, **kwargs):
        self.plan.update(state, where=f"start of training at step {state.global_step}: ")

    def on_step_begin(self, args, state, control, **kwargs):
        self.plan.update(state)


# ---------------------------------------------------------------------------------------------- loss weighting


class UncertaintyWeighting(nn.Module):
    """Homoscedastic-uncertainty task weighting (Kendall, Gal and Cipolla, CVPR 2018), classification form:

        L = sum_t exp(-s_t) * L_t + s_t / 2,      s_t = log sigma_t^2, learned, starting at 0 (weight 1).

    The optimum weight of a task is exp(-s_t) = 1 / (2 L_t): a task whose loss is large (noisy or hard) is damped.
    Lives in the trainer, never in the saved model."""

    def __init__(self, tasks: Sequence[str]):
        super().__init__()
        self.tasks = tuple(tasks)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))

    def weighted(self, task, loss, fraction):
        """`exp(-s) * loss + s / 2 * fraction`; `fraction` is this micro-batch's share of the task's labelled items
        in the optimizer step, so the regulariser counts once per step whatever the accumulation or world size."""
        log_variance = self.log_variances[self.tasks.index(task)]
        return torch.exp(-log_variance) * loss + 0.5 * log_variance * fraction

    def log_values(self):
        values = self.log_variances.detach().cpu().tolist()
        logs = {}
        for task, value in zip(self.tasks, values):
            logs[f"{task}_log_variance"] = round(value, 6)
            logs[f"{task}_uncertainty_weight"] = round(math.exp(-value), 6)
        return logs


# ---------------------------------------------------------------------------------------------- task sampling


def source_probabilities(sizes: dict, temperature: float) -> dict:
    """p(source) proportional to size^(1/T): T=1 proportional to size, T -> inf uniform over sources."""
    if math.isinf(temperature):
        weights = {source: 1.0 for source in sizes}
    else:
        weights = {source: float(size) ** (1.0 / temperature) for source, size in sizes.items()}
    total = sum(weights.values())
    return {source: weight / total for source, weight in weights.items()}


class TaskSampler(torch.utils.data.Sampler):
    """Training indices drawn source by source: each draw picks a source with `source_probabilities` and then the
    next example of that source's shuffled order (reshuffled whenever it runs out, so a small source repeats and a
    large one is sub-sampled). One epoch is `num_samples` draws (default: the data set's size).

    Deterministic in (`seed`, epoch): under DDP every process draws the same sequence and accelerate hands each
    process its own batches of it, so no example is drawn for two processes at once."""

    def __init__(self, sources: Sequence[str], temperature: float = 1.0, seed: int = 0, num_samples: int | None = None):
        self.sources = list(dict.fromkeys(sources))
        by_source = {source: [] for source in self.sources}
        for index, source in enumerate(sources):
            by_source[source].append(index)
        self.indices = [torch.tensor(by_source[source], dtype=torch.long) for source in self.sources]
        self.sizes = {source: len(by_source[source]) for source in self.sources}
        self.temperature = temperature
        self.probabilities = source_probabilities(self.sizes, temperature)
        self.num_samples = len(sources) if num_samples is None else int(num_samples)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        weights = torch.tensor([self.probabilities[source] for source in self.sources], dtype=torch.float64)
        choices = torch.multinomial(weights, self.num_samples, replacement=True, generator=generator).tolist()
        orders = [torch.randperm(len(indices), generator=generator) for indices in self.indices]
        cursors = [0] * len(self.sources)
        for choice in choices:
            if cursors[choice] == len(orders[choice]):
                orders[choice] = torch.randperm(len(self.indices[choice]), generator=generator)
                cursors[choice] = 0
            yield int(self.indices[choice][orders[choice][cursors[choice]]])
            cursors[choice] += 1
