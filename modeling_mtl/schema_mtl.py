"""The facts every part of the multi-task model shares: its tasks, its option choices, its model type.

This file is copied into every saved model folder (the configuration imports it) and imports only the standard
library, so the command line can read it without loading torch or transformers.

A task is one head with its labels, its loss and its metrics. Everything that loops over tasks (the forward pass, the
trainer's loss totals, freezing, metrics, the model card, the ONNX outputs, the CLI's evaluation) reads `TASKS`;
adding a head starts with a row here.
"""

import re
from dataclasses import dataclass

MODEL_TYPE = "multitask-sentence-transformer"


@dataclass(frozen=True)
class Task:
    """One head of the model and the names it goes by.

    name: the task's short name (`"sentence"`, `"token"`), also the key of `num_items_in_batch`.
    label_key: the batch key (and forward argument) holding its labels, -100 where unlabelled.
    labels_field: the `MultiTaskConfig` field listing its labels.
    head_module: the model attribute holding the head (what freezing names).
    loss_weight_key: the `MultiTaskConfig` field with its static loss weight.
    logits_field: the `MultiTaskModelOutput` field with its logits (also the ONNX output name).
    loss_field: the `MultiTaskModelOutput` field with its mean loss over the batch.
    metric_prefix: the prefix of its metrics (`sentence_accuracy`, `token_f1`) and logged losses.
    """

    name: str
    label_key: str
    labels_field: str
    head_module: str
    loss_weight_key: str
    logits_field: str
    loss_field: str
    metric_prefix: str


SENTENCE = Task(
    name="sentence",
    label_key="sentence_labels",
    labels_field="sentence_labels",
    head_module="sentence_head",
    loss_weight_key="sentence_loss_weight",
    logits_field="sentence_logits",
    loss_field="sentence_loss",
    metric_prefix="sentence_",
)
TOKEN = Task(
    name="token",
    label_key="token_labels",
    labels_field="token_labels",
    head_module="token_head",
    loss_weight_key="token_loss_weight",
    logits_field="token_logits",
    loss_field="token_loss",
    metric_prefix="token_",
)
TASKS = (SENTENCE, TOKEN)
TASK_NAMES = tuple(task.name for task in TASKS)

# Option choices, each written once.
POOLING_MODES = ("mean", "cls", "max", "last")
TOKEN_DECODINGS = ("argmax", "bio_viterbi")
# What `reject_threshold` compares (configuration_mtl.MultiTaskConfig.reject_score).
REJECT_SCORES = ("softmax", "centroid_cosine")
# How `predict` and the `multitask` pipeline turn sub-token predictions into word tags.
AGGREGATION_STRATEGIES = ("first", "average", "max", "none")

# A Hugging Face Hub repository id ("name" or "owner/name"), as opposed to a local path.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")
