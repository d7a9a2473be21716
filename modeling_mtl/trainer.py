"""MultiTaskTrainer: `transformers.Trainer` with the combined sentence + token loss and per-task logging.

- The loss of each task is summed over its labelled items and divided by the number of labelled items in the whole
  accumulated (and, across processes, gathered) batch, so gradient accumulation and DDP give the same update as one
  big batch, even when the tasks have different numbers of labels per batch.
- `sentence_loss` and `token_loss` are logged next to `loss`, for training and evaluation, averaged over the
  labelled items of every process.
- Evaluation keeps only argmax predictions (`preprocess_logits_for_metrics`), so its memory stays small.
"""

import torch
from transformers import Trainer

from .metrics import preprocess_logits_for_metrics

TASKS = ("sentence", "token")
LABEL_KEYS = {"sentence": "sentence_labels", "token": "token_labels"}


class MultiTaskTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("preprocess_logits_for_metrics", preprocess_logits_for_metrics)
        super().__init__(*args, **kwargs)
        # [sentence loss sum, sentence count, token loss sum, token count] since the last log / during an evaluation.
        self._task_totals = {"train": torch.zeros(4, dtype=torch.float64), "eval": torch.zeros(4, dtype=torch.float64)}

    # ------------------------------------------------------------------ loss

    def _get_num_items_in_batch(self, batch_samples, device):
        present = [task for task in TASKS if batch_samples and LABEL_KEYS[task] in batch_samples[0]]
        if not present:
            return None
        counts = torch.stack(
            [
                sum((batch[LABEL_KEYS[task]] != -100).sum() for batch in batch_samples)
                if task in present
                else torch.tensor(0)
                for task in TASKS
            ]
        ).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts).reshape(-1, len(TASKS)).sum(0)
        return {task: counts[index] for index, task in enumerate(TASKS) if task in present}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            self._add_task_losses("train", inputs, outputs)
        return (loss, outputs) if return_outputs else loss

    def _add_task_losses(self, phase, inputs, outputs):
        totals = self._task_totals[phase]
        for index, task in enumerate(TASKS):
            labels, task_loss = inputs.get(LABEL_KEYS[task]), outputs[f"{task}_loss"]
            if labels is None or task_loss is None:
                continue
            count = int((labels != -100).sum())
            totals[2 * index] += float(task_loss.detach()) * count
            totals[2 * index + 1] += count

    def _task_loss_logs(self, phase, prefix=""):
        """Mean loss per task over all processes since the last call; resets the totals."""
        totals = self._task_totals[phase]
        if self.args.world_size > 1:
            totals = self.accelerator.reduce(totals.to(self.args.device), reduction="sum").cpu()
        self._task_totals[phase] = torch.zeros_like(self._task_totals[phase])
        return {
            f"{prefix}{task}_loss": round(float(totals[2 * index] / totals[2 * index + 1]), 4)
            for index, task in enumerate(TASKS)
            if totals[2 * index + 1] > 0
        }

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:  # a training log: every process gets here, so the reduction is safe
            logs = {**logs, **self._task_loss_logs("train")}
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ evaluation

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = tuple(inputs.get(key) for key in self.label_names)
        has_labels = any(label is not None for label in labels)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if has_labels and outputs.loss is not None else None
        self._add_task_losses("eval", inputs, outputs)
        if prediction_loss_only:
            return loss, None, None
        logits = (outputs.sentence_logits.detach(), outputs.token_logits.detach())
        return loss, logits, (labels if has_labels else None)

    def evaluation_loop(self, *args, metric_key_prefix="eval", **kwargs):
        self._task_totals["eval"].zero_()
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        output.metrics.update(self._task_loss_logs("eval", prefix=f"{metric_key_prefix}_"))
        return output
