"""MultiTaskTrainer: `transformers.Trainer` with the combined sentence + token loss and per-task logging.

- The loss of each task is summed over its labelled items and divided by the number of labelled items in the whole
  accumulated (and, across processes, gathered) batch, so gradient accumulation and DDP give the same update as one
  big batch, even when the tasks have different numbers of labels per batch.
- `sentence_loss` and `token_loss` are logged next to `loss`, for training and evaluation, averaged over the
  labelled items of every process.
- Evaluation keeps only what the model's `token_decoding` needs (`preprocess_logits_for_metrics`): argmax ids, or
  the token log-probabilities for BIO-constrained decoding, never the raw logits of both heads.
- Transfer learning (options of `MultiTaskTrainingArguments`, see `modeling_mtl/transfer.py`): freezing presets and
  frozen lower layers, gradual unfreezing or linear probe then fine-tune, discriminative learning rates (heads,
  encoder, layer-wise decay) as optimizer parameter groups, uncertainty loss weighting (log-variances trained,
  logged, checkpointed and restored with the trainer, never saved in the model) and temperature task sampling.
  A frozen head's loss is computed and logged but left out of the optimised loss.
- `label_smoothing_factor` (a standard `TrainingArguments` field, which `Trainer` applies only to a `labels` input)
  smooths both tasks' optimised cross-entropy; the logged task losses and the evaluation loss stay unsmoothed, so they
  remain comparable between runs.
- `ema_decay` evaluates, checkpoints and saves an exponential moving average of the weights
  (`modeling_mtl/weight_averaging.py`); the weights being trained are checkpointed beside it for resuming.
"""

import json
import logging
import math
import os

import datasets
import safetensors.torch
import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_pt_utils import BatchRebalanceSampler, get_length_grouped_indices
from transformers.trainer_optimizer import is_optimizer_factory

from .metrics import TaskLossTotals, preprocess_logits_for_metrics
from .publishing_mtl import TRAINING_WEIGHTS_NAME
from .schema_mtl import TASKS, TOKEN
from .transfer import TaskSampler, TransferPlan, UncertaintyWeighting, UnfreezingCallback
from .weight_averaging import WeightAverage, averaged_parameters

logger = logging.getLogger(__name__)

LOSS_WEIGHTING_NAME = "loss_weighting.json"  # in each checkpoint folder, next to optimizer.pt
TRAINING_ARGS_JSON = "training_args.json"  # instead of Trainer's pickled TRAINING_ARGS_NAME (training_args.bin)


class NothingToTrainError(ValueError):
    """`train()` was asked for, but every parameter is frozen (`freeze: all`): use the model for evaluation,
    prediction and embeddings only."""


class _ClearGradients(TrainerCallback):
    def __init__(self, module):
        self.module = module

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.module.zero_grad(set_to_none=True)


class _UpdateWeightAverage(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.weight_average is not None:
            self.trainer.weight_average.update(state.global_step)


class LengthGroupedEpochSampler(torch.utils.data.Sampler):
    """Training order with batches of similar lengths (less padding: ATIS batches of 32 go from 47% padding tokens to
    5%): transformers' `get_length_grouped_indices` (shuffle, sort by length within mega-batches of 50 batches, the
    longest batch first), drawn from a generator seeded by (`seed`, epoch) rather than torch's global one. So an
    epoch's order is the same after `--resume_from_checkpoint`, and under DDP every process draws the same order, of
    which accelerate hands each its own batches (`batch_size` is the global batch). `mega_batch_batches` sets how
    many batches are sorted together: fewer keep more of the random mix of lengths in a batch, and pad more."""

    def __init__(self, lengths, batch_size: int, seed: int = 0, mega_batch_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_batches = mega_batch_batches
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=self.mega_batch_batches,
                                               generator=generator))


class MultiTaskTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("preprocess_logits_for_metrics", self._preprocess_logits_for_metrics)
        super().__init__(*args, **kwargs)
        # Each task's loss since the last log / during an evaluation.
        self._task_totals = {"train": TaskLossTotals(), "eval": TaskLossTotals()}
        self._tokens_per_sentence = None  # token_loss_normalization: dataset_mean
        self.transfer = TransferPlan(self.model, self.args)
        self.loss_weighting = None
        if getattr(self.args, "loss_weighting", "static") == "uncertainty" and self.transfer.trained_tasks:
            self.loss_weighting = UncertaintyWeighting(self.transfer.trained_tasks).to(self.args.device)
            # Trainer clears the model's gradients after each optimizer step; these live outside the model.
            self.add_callback(_ClearGradients(self.loss_weighting))
        # The model computes every task's loss (label-smoothed in training when asked); the trainer combines the task
        # sums itself only when a frozen head's loss must be left out or the weights are learned, and otherwise uses
        # the model's own (statically weighted) loss as it is.
        self.label_smoothing = float(self.args.label_smoothing_factor or 0.0)
        self._combine_losses = bool(self.transfer.frozen_tasks) or self.loss_weighting is not None
        if self.transfer.groups:
            if self.args.world_size > 1 and self.args.ddp_find_unused_parameters is False:
                raise ValueError(
                    f"unfreezing={self.transfer.unfreezing!r} under DDP needs ddp_find_unused_parameters true (or "
                    "unset): the encoder layers that are still frozen take no part in the backward pass"
                )
            self.add_callback(UnfreezingCallback(self.transfer))
        # Built when training starts (from the weights it starts with); None outside train().
        self.weight_average = None
        self.ema_decay = getattr(self.args, "ema_decay", None)
        if self.ema_decay is not None:
            if self.model_init is not None:
                raise ValueError("ema_decay needs a fixed model: it cannot follow a model that model_init rebuilds")
            self.add_callback(_UpdateWeightAverage(self))

    # ------------------------------------------------------------------ training set-up

    def train(self, *args, **kwargs):
        if not self.transfer.has_trainable():
            raise NothingToTrainError(
                f"freeze={getattr(self.args, 'freeze', None)!r}: no parameter is trainable, so there is nothing to "
                "train. A fully frozen model is a feature extractor: run trainer.evaluate() / trainer.predict(), or "
                "model.encode() / model.predict(); to train, choose freeze: none, encoder, sentence_head or token_head."
            )
        if self.ema_decay is None:
            return super().train(*args, **kwargs)
        self.weight_average = WeightAverage(self.model, self.ema_decay)
        try:
            output = super().train(*args, **kwargs)
            # With load_best_model_at_end the model now holds the best checkpoint's model file: an average already.
            if not (self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None):
                self.weight_average.copy_to_model()
        finally:
            self.weight_average = None
        return output

    def evaluate(self, *args, **kwargs):
        """During training with `ema_decay`, evaluate the weight average (so it also picks the best checkpoint)."""
        if self.weight_average is None:
            return super().evaluate(*args, **kwargs)
        with self.weight_average.in_model():
            return super().evaluate(*args, **kwargs)

    def create_optimizer(self, model=None):
        """Parameter groups from the transfer plan (heads, encoder or encoder layers with their learning rates, each
        split into decay / no-decay), plus the uncertainty log-variances (no weight decay). Statically frozen
        parameters are in no group; parameters of the unfreezing schedule are, and get no gradient (so no update and
        no weight decay) while frozen."""
        if self.optimizer is not None:
            return super().create_optimizer(model)
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
        optimizer_kwargs = dict(optimizer_kwargs)
        custom = self.loss_weighting is not None or self.transfer.needs_parameter_groups()
        if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
            if custom:
                raise ValueError(
                    f"optim={self.args.optim!r} builds its own parameter groups, which cannot carry the transfer "
                    "options (discriminative learning rates, unfreezing, uncertainty weighting); use adamw_torch"
                )
            return super().create_optimizer(model)
        groups = self.transfer.parameter_groups(self.get_decay_parameter_names(self.model), self.args.weight_decay)
        if self.loss_weighting is not None:
            uncertainty_lr = getattr(self.args, "uncertainty_learning_rate", None)
            groups.append(
                {
                    "params": [self.loss_weighting.log_variances],
                    "lr": self.transfer.head_lr if uncertainty_lr is None else uncertainty_lr,
                    "weight_decay": 0.0,
                    "name": "loss_weighting",
                }
            )
        for group in groups:
            logger.info(
                f"optimizer group {group['name']}: {sum(p.numel() for p in group['params']):,} parameters, "
                f"lr {group['lr']:.3g}, weight decay {group['weight_decay']:g}"
            )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        """With `task_sampling`, draw sources with probability proportional to size^(1/T) (`TaskSampler`); with
        `train_sampling_strategy: group_by_length`, batches of similar lengths (`LengthGroupedEpochSampler`); with
        `batch_rebalance`, transformers' `BatchRebalanceSampler` seeded by this run's seed (its own default is a fixed
        42): each optimizer step takes a random batch and cuts it into its micro-batches by length, so the update is
        that of the random batch (the loss is normalised over the accumulated batch) and the micro-batches pad less."""
        mode = getattr(self.args, "task_sampling", "none")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        strategy = self.args.train_sampling_strategy
        if mode == "none" and strategy in ("group_by_length", "batch_rebalance"):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            world_size, accumulation = max(1, self.args.world_size), self.args.gradient_accumulation_steps
            global_batch = self.args.train_batch_size * accumulation * world_size
            if strategy == "batch_rebalance":
                return BatchRebalanceSampler(
                    lengths, global_batch, dp_size=world_size, grad_accum=accumulation, seed=seed,
                    rank=self.args.process_index if world_size > 1 else 0, drop_last=self.args.dataloader_drop_last,
                )
            return LengthGroupedEpochSampler(
                lengths, global_batch, seed=seed, mega_batch_batches=getattr(self.args, "length_grouping_batches", 50)
            )
        if mode == "none":
            return super()._get_train_sampler(train_dataset)
        # The dataset handed in has lost its raw columns (`source` included); the rows are the same.
        full = self.train_dataset
        if not isinstance(full, datasets.Dataset) or "source" not in full.column_names:
            raise ValueError(
                f"task_sampling={mode!r} needs a training dataset with a `source` column (train_mtl.py's encoded "
                "data has one)"
            )
        sources = list(full["source"])
        if train_dataset is not None and len(train_dataset) != len(sources):
            raise ValueError("task_sampling: the training dataset changed length after its `source` column was read")
        temperature = {"proportional": 1.0, "temperature": self.args.task_sampling_temperature, "uniform": math.inf}
        sampler = TaskSampler(sources, temperature=temperature[mode], seed=seed)
        logger.info(
            f"task_sampling={mode} (T={sampler.temperature:g}): "
            + ", ".join(
                f"{source} {size:,} examples -> p={sampler.probabilities[source]:.3f}"
                for source, size in sampler.sizes.items()
            )
        )
        return sampler

    def get_train_dataloader(self):
        dataloader = super().get_train_dataloader()
        shard = getattr(dataloader, "batch_sampler", None)
        batch_sampler = getattr(shard, "batch_sampler", None)
        if isinstance(batch_sampler, BatchRebalanceSampler) and not hasattr(shard, "set_epoch"):
            # Under DDP accelerate wraps the batch sampler in a BatchSamplerShard, which passes `set_epoch` on to a
            # sampler but not to a batch sampler: without this every epoch would draw the first epoch's batches.
            shard.set_epoch = batch_sampler.set_epoch
        return dataloader

    def _get_eval_sampler(self, eval_dataset):
        """The data set's own order, always: `compute_metrics` and the prediction files read the predictions in that
        order (Trainer would shuffle evaluation by length under `group_by_length`)."""
        if eval_dataset is None or self.args.world_size > 1:
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)

    # ------------------------------------------------------------------ checkpoints (training-only state)

    def _save(self, output_dir=None, state_dict=None):
        """The model as Trainer saves it, with the training arguments as JSON (tokens redacted) in place of the
        pickle `training_args.bin`, which nothing here reads back: a saved run holds no pickle beside its model."""
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
            if os.path.exists(pickled):
                os.remove(pickled)
            with open(os.path.join(output_dir, TRAINING_ARGS_JSON), "w", encoding="utf-8") as handle:
                handle.write(self.args.to_json_string())

    def _save_checkpoint(self, model, trial):
        """With `ema_decay`, a checkpoint's model file is the weight average; `_save_optimizer_and_scheduler` writes
        the weights being trained next to the optimizer state."""
        if self.weight_average is None:
            return super()._save_checkpoint(model, trial)
        with self.weight_average.in_model():
            return super()._save_checkpoint(model, trial)

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        if self.weight_average is not None and self.args.should_save:
            path = os.path.join(output_dir, TRAINING_WEIGHTS_NAME)
            safetensors.torch.save_file(self.weight_average.training_weights(), path + ".tmp")
            os.replace(path + ".tmp", path)
        if self.loss_weighting is not None and self.args.should_save:
            state = {
                "tasks": list(self.loss_weighting.tasks),
                "log_variances": self.loss_weighting.log_variances.detach().cpu().tolist(),
            }
            with open(os.path.join(output_dir, LOSS_WEIGHTING_NAME), "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_training_weights(checkpoint)
        if checkpoint is None or self.loss_weighting is None:
            return
        path = os.path.join(checkpoint, LOSS_WEIGHTING_NAME)
        if not os.path.isfile(path):
            logger.warning(f"{path} not found: the uncertainty log-variances start again from 0")
            return
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        if tuple(state["tasks"]) != self.loss_weighting.tasks:
            raise ValueError(
                f"{path} holds log-variances for tasks {state['tasks']}, this run weights "
                f"{list(self.loss_weighting.tasks)}"
            )
        with torch.no_grad():
            self.loss_weighting.log_variances.copy_(torch.tensor(state["log_variances"], dtype=torch.float32))
        logger.info(f"uncertainty log-variances restored from {path}: {self.loss_weighting.log_values()}")

    def _load_training_weights(self, checkpoint):
        """A checkpoint written with `ema_decay` holds the average as its model file (now loaded in the model) and
        the weights being trained in TRAINING_WEIGHTS_NAME: the average restarts from the former, training continues
        from the latter (also when this run averages no more)."""
        path = os.path.join(checkpoint, TRAINING_WEIGHTS_NAME)
        if self.weight_average is not None:
            self.weight_average.restart_from_model()
        if not os.path.isfile(path):
            if self.weight_average is not None:
                logger.warning(f"{path} not found (a checkpoint written without ema_decay): the weight average "
                               "restarts from the checkpoint's weights")
            return
        weights = safetensors.torch.load_file(path)
        parameters = averaged_parameters(self.model)
        if set(weights) != set(parameters):
            missing, unexpected = sorted(set(parameters) - set(weights)), sorted(set(weights) - set(parameters))
            raise ValueError(
                f"{path} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        with torch.no_grad():
            for name, parameter in parameters.items():
                if weights[name].shape != parameter.shape:
                    raise ValueError(
                        f"{path}: {name} has shape {tuple(weights[name].shape)}, the model's {tuple(parameter.shape)}"
                    )
                parameter.copy_(weights[name])
        logger.info(f"training weights restored from {path}")

    # ------------------------------------------------------------------ loss

    def _mean_tokens_per_sentence(self):
        """The training set's mean labelled tokens per sentence that has any (for `token_loss_normalization:
        dataset_mean`), counted once."""
        if self._tokens_per_sentence is None:
            dataset = self.train_dataset
            if not isinstance(dataset, datasets.Dataset) or TOKEN.label_key not in dataset.column_names:
                raise ValueError(
                    "token_loss_normalization=dataset_mean needs an encoded training dataset with a "
                    f"{TOKEN.label_key!r} column (train_mtl.py's has one)"
                )
            counts = [sum(label != -100 for label in labels) for labels in dataset[TOKEN.label_key]]
            labelled = [count for count in counts if count > 0]
            self._tokens_per_sentence = sum(labelled) / max(len(labelled), 1)
            logger.info(f"token_loss_normalization=dataset_mean: {self._tokens_per_sentence:.2f} labelled tokens a "
                        "sentence in the training set")
        return self._tokens_per_sentence

    def _normalizes_tokens_by_dataset_mean(self):
        return getattr(self.args, "token_loss_normalization", "batch") == "dataset_mean"

    def _count_items(self, batch, task):
        """A task's loss denominator for one micro-batch: its labelled items, or with `token_loss_normalization:
        dataset_mean` the token task's labelled sentences times the training set's mean labelled tokens a sentence."""
        labelled = batch[task.label_key] != -100
        if task is TOKEN and self._normalizes_tokens_by_dataset_mean():
            return labelled.any(dim=-1).sum() * self._mean_tokens_per_sentence()
        return labelled.sum()

    def _get_num_items_in_batch(self, batch_samples, device):
        present = [task for task in TASKS if batch_samples and task.label_key in batch_samples[0]]
        if not present:
            return None
        # Whole numbers, except under dataset_mean (sentences times a mean).
        counts = torch.tensor(
            [float(sum(self._count_items(batch, task) for batch in batch_samples)) if task in present else 0.0
             for task in TASKS],
            dtype=torch.float32 if self._normalizes_tokens_by_dataset_mean() else torch.long,
            device=device,
        )
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts).reshape(-1, len(TASKS)).sum(0)
        return {task.name: counts[index] for index, task in enumerate(TASKS) if task in present}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and (self.transfer.static_frozen or self.transfer.groups):
            self.transfer.set_frozen_modules_eval()
        if model.training and self.label_smoothing > 0:
            inputs = {**inputs, "label_smoothing": self.label_smoothing}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            self._task_totals["train"].add(outputs)
            if self._combine_losses:
                loss = self._combined_loss(inputs, outputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _combined_loss(self, inputs, outputs, num_items_in_batch):
        """The optimised loss of the trained tasks, from the model's per-task summed losses (`outputs.loss_sums`,
        label-smoothed when `label_smoothing_factor` > 0) over the accumulated (and gathered) batch's labelled items,
        times each task's static weight, and with uncertainty weighting `exp(-s) * that + s / 2 * (this micro-batch's
        share of the task's items)`."""
        tasks = {task.name: task for task in TASKS}
        loss_sums, label_counts = outputs.loss_sums or {}, outputs.label_counts or {}
        terms = []
        for task in self.transfer.trained_tasks:
            if task not in loss_sums:
                terms.append(outputs[tasks[task].logits_field].sum() * 0.0)  # keeps the head in the graph, as DDP expects
                continue
            total = loss_sums[task]
            count = label_counts[task].to(total.device, total.dtype)
            mean = total / count.clamp(min=1)
            normaliser = num_items_in_batch.get(task) if isinstance(num_items_in_batch, dict) else None
            if normaliser is None:
                fraction = (count > 0).to(mean.dtype)
            else:
                fraction = count / torch.as_tensor(normaliser, device=mean.device).clamp(min=1).to(mean.dtype)
            term = getattr(self.model.config, tasks[task].loss_weight_key) * (mean if normaliser is None else mean * fraction)
            if self.loss_weighting is not None:
                term = self.loss_weighting.weighted(task, term, fraction)
            terms.append(term)
        loss = sum(terms)
        # The scaling Trainer.compute_loss applies to the model's loss (the gradient average over processes).
        args = self.args
        if args.average_tokens_across_devices and self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size() if args.n_gpu <= 1 else args.n_gpu)
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.loss_weighting is not None and self.args.world_size > 1 and self.accelerator.sync_gradients:
            # The log-variances live outside the DDP model: average their gradients as DDP averages the model's.
            parameter = self.loss_weighting.log_variances
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            torch.distributed.all_reduce(parameter.grad, op=torch.distributed.ReduceOp.SUM)
            parameter.grad /= self.args.world_size
        return loss

    def _task_loss_logs(self, phase, prefix=""):
        """Mean loss per task over all processes since the last call; resets the totals."""
        reduce = None
        if self.args.world_size > 1:
            reduce = lambda totals: self.accelerator.reduce(totals.to(self.args.device), reduction="sum").cpu()  # noqa: E731
        return self._task_totals[phase].take(prefix, reduce)

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:  # a training log: every process gets here, so the reduction is safe
            logs = {**logs, **self._task_loss_logs("train")}
            if self.loss_weighting is not None:
                logs.update(self.loss_weighting.log_values())
            if self.transfer.groups:
                logs["encoder_groups_unfrozen"] = self.transfer.unfrozen_groups
            if self.optimizer is not None and self.transfer.discriminative():
                encoder_group = next(
                    (g for g in self.optimizer.param_groups if str(g.get("name", "")).startswith("encoder")), None
                )
                if encoder_group is not None:
                    logs["encoder_learning_rate"] = encoder_group["lr"]
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ evaluation

    def _preprocess_logits_for_metrics(self, logits, labels):
        token_decoding = getattr(self.model.config, "token_decoding", "argmax")
        return preprocess_logits_for_metrics(logits, labels, token_decoding)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = tuple(inputs.get(key) for key in self.label_names)
        has_labels = any(label is not None for label in labels)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if has_labels and outputs.loss is not None else None
        self._task_totals["eval"].add(outputs)
        if prediction_loss_only:
            return loss, None, None
        logits = tuple(getattr(outputs, task.logits_field).detach() for task in TASKS)
        return loss, logits, (labels if has_labels else None)

    def evaluation_loop(self, *args, metric_key_prefix="eval", **kwargs):
        self._task_totals["eval"].reset()
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        output.metrics.update(self._task_loss_logs("eval", prefix=f"{metric_key_prefix}_"))
        return output
