"""Exponential moving average (EMA) of the weights: `MultiTaskTrainer`'s `ema_decay` option.

The optimiser trains the model's weights as usual; after every optimizer step t (counted from 0) an average follows:

    average = d_t * average + (1 - d_t) * weights,    d_t = min(ema_decay, (1 + t) / (10 + t))

The ramp in d_t keeps the early, fast-moving weights from dominating the average of a short run. Evaluation during
training, the checkpoints' model files (and so the best-checkpoint choice and `load_best_model_at_end`) and the final
model are the average. The weights being trained go in each checkpoint as `training_weights.safetensors`, training
state like optimizer.pt, so a resumed run continues both the training weights and their average exactly.
"""

import contextlib

import torch

from .publishing_mtl import TRAINING_WEIGHTS_NAME  # noqa: F401 (the checkpoint file this module's state goes in)


def check_ema_decay(decay: float) -> None:
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay={decay}: give a decay strictly between 0 and 1 (e.g. 0.99), or null for none")


def averaged_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters that are averaged and checkpointed as training weights: every floating-point one, by name."""
    return {name: parameter for name, parameter in model.named_parameters() if parameter.dtype.is_floating_point}


class WeightAverage:
    """An EMA of a model's floating-point parameters, kept beside the model and swapped into it on demand."""

    def __init__(self, model: torch.nn.Module, decay: float):
        check_ema_decay(decay)
        self.decay = decay
        self.parameters = averaged_parameters(model)
        self.average = {name: parameter.detach().clone() for name, parameter in self.parameters.items()}
        self.swapped_in = False  # True while the model holds the average and `self.average` the training weights

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int):
        """Move the average towards the current weights; `step` counts the optimizer steps before this one."""
        if self.swapped_in:
            raise RuntimeError("the weight average cannot be updated while it is swapped into the model")
        weight = 1.0 - self.decay_at(step)
        for name, parameter in self.parameters.items():
            self.average[name].lerp_(parameter.detach(), weight)

    @torch.no_grad()
    def _swap(self):
        for name, parameter in self.parameters.items():
            training = parameter.detach().clone()
            parameter.copy_(self.average[name])
            self.average[name].copy_(training)
        self.swapped_in = not self.swapped_in

    @contextlib.contextmanager
    def in_model(self):
        """Within the block the model holds the average; afterwards its training weights again."""
        if self.swapped_in:
            yield
            return
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def copy_to_model(self):
        """Leave the average in the model for good (the end of training)."""
        if not self.swapped_in:
            for name, parameter in self.parameters.items():
                parameter.copy_(self.average[name])

    def training_weights(self) -> dict[str, torch.Tensor]:
        """The weights being trained, wherever they are at the moment (for a checkpoint)."""
        source = self.average if self.swapped_in else self.parameters
        return {name: tensor.detach().contiguous() for name, tensor in source.items()}

    @torch.no_grad()
    def restart_from_model(self):
        """Take the model's current weights as the average (on resume: the checkpoint's model file holds it)."""
        for name, parameter in self.parameters.items():
            self.average[name].copy_(parameter)
