"""Multi-task sentence transformer: one shared encoder pass gives sentence embeddings, sentence-classification
logits and token (BIO) classification logits.

This file holds the network (pooling, heads, the forward pass and its loss) and how a model is built, loaded and
saved. Its siblings hold the rest: `inference_mtl.py` the inference API (`encode`, `predict`), `decoding_mtl.py`
words and BIO decoding, `publishing_mtl.py` the saved files and the Hub push, `schema_mtl.py` the task table. All of
them are copied into every saved model folder and loaded with `trust_remote_code=True`, so they import nothing but
`torch`, `transformers` and the standard library, and make no network call of their own (only `push_to_hub`, when
called, talks to the Hub, through transformers' client).

It is a little over 600 lines because the network and how it is built, loaded and saved are methods of one
`PreTrainedModel` class, as in transformers' own modeling files; see docs/architecture.md for the rooms.

    model = MultiTaskModel.from_encoder("sentence-transformers/all-MiniLM-L6-v2",
                                        sentence_labels=["travel", "other"], token_labels=["O", "B-LOC", "I-LOC"])
    model.encode(["A sentence."])            # embeddings, as SentenceTransformer.encode
    model.predict(["Fly me to Paris"])       # [{"label", "score", "entities": [...]}]
    model.push_to_hub("me/my-model")         # the whole folder (and its model card) in one commit
"""

import copy
import functools
import inspect
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput, SequenceClassifierOutput, TokenClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import cached_file

from .configuration_mtl import MultiTaskConfig, encoder_max_positions, is_causal_encoder
from .inference_mtl import MultiTaskInference
from .publishing_mtl import (
    copy_model_card,
    finish_tokenizer_config,
    move_into_place,
    remove_unpublished,
    sentence_transformers_settings,
    write_minimal_model_card,
    write_sentence_transformers_files,
)
from .schema_mtl import SENTENCE, TASKS, TOKEN

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

# Hub ids that have a local stand-in (id -> callable returning a folder or None). Empty in a saved model folder;
# the installed package registers the copy of all-MiniLM-L6-v2 shipped on PyPI here, for offline use.
ENCODER_RESOLVERS = {}


@dataclass
class MultiTaskModelOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Weighted sum of the task losses present in the batch, normalised by `num_items_in_batch` when given.
    loss_sums (`dict[str, torch.FloatTensor]`, *optional*):
        Per task (`schema_mtl.TASKS` names) with labels in the batch: its cross-entropy summed over the labelled items
        (label-smoothed when `label_smoothing` was given), what `loss` is made of.
    label_counts (`dict[str, torch.LongTensor]`, *optional*):
        Per task with labels in the batch: how many labelled items (examples or tokens) the batch holds.
    sentence_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Mean cross-entropy of the sentence head over the labelled examples of this batch.
    token_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Mean cross-entropy of the token head over the labelled tokens of this batch.
    sentence_logits (`torch.FloatTensor` of shape `(batch_size, num_sentence_labels)`):
        Scores of the sentence head (before softmax).
    token_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_token_labels)`):
        Scores of the token head (before softmax).
    sentence_embedding (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Pooled sentence embedding, L2-normalised when `config.normalize_embeddings`.
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
        The encoder's token embeddings.
    """

    loss: torch.FloatTensor | None = None
    loss_sums: dict[str, torch.FloatTensor] | None = None
    label_counts: dict[str, torch.LongTensor] | None = None
    sentence_loss: torch.FloatTensor | None = None
    token_loss: torch.FloatTensor | None = None
    sentence_logits: torch.FloatTensor | None = None
    token_logits: torch.FloatTensor | None = None
    sentence_embedding: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def build_encoder(encoder_config):
    """The bare encoder for `encoder_config`, without the pooler layer some families add (its weights would be unused)."""
    model_class = MODEL_MAPPING[type(encoder_config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return model_class(encoder_config, add_pooling_layer=False)
    return model_class(encoder_config)


@functools.cache
def forward_parameters(encoder_class):
    """The inputs an encoder class's forward names (read once per class); a catch-all `**kwargs` does not count."""
    parameters = inspect.signature(encoder_class.forward).parameters.values()
    return frozenset(p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


class Pooling(nn.Module):
    """Token states to one vector per sequence, ignoring padding."""

    def __init__(self, config):
        super().__init__()
        self.mode = config.pooling_mode

    def forward(self, token_states, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
        if self.mode == "mean":
            # Same arithmetic as sentence-transformers' Pooling, so embeddings match it bit for bit.
            return (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.mode == "max":
            return token_states.masked_fill(mask == 0, torch.finfo(token_states.dtype).min).max(1).values
        if self.mode == "cls":
            return token_states[:, 0]
        # "last": the last non-padding position, whichever side the padding is on.
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (positions * attention_mask).argmax(1)
        return token_states[torch.arange(token_states.shape[0], device=token_states.device), last]


def sentence_label_parts(config):
    """`(parts, membership)` for `config.sentence_label_separator`: the distinct label parts in order of first
    appearance, and for each sentence label a 0/1 row saying which parts it is made of. `None` without a separator."""
    separator = config.sentence_label_separator
    if separator is None:
        return None
    split = [label.split(separator) for label in config.sentence_labels]
    parts = list(dict.fromkeys(part for label_parts in split for part in label_parts))
    return parts, [[float(part in label_parts) for part in parts] for label_parts in split]


class SentenceHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        composition = sentence_label_parts(config)
        if composition is None:
            self.classifier = nn.Linear(config.hidden_size, len(config.sentence_labels))
            self.membership = None
            self.register_parameter("label_bias", None)
        else:
            parts, self.membership = composition
            self.classifier = nn.Linear(config.hidden_size, len(parts))
            self.label_bias = nn.Parameter(torch.zeros(len(config.sentence_labels)))

    def forward(self, pooled):
        logits = self.classifier(self.dropout(pooled))
        if self.membership is None:
            return logits
        # A plain list, not a buffer: rebuilt from the config, never saved, never left on the meta device.
        membership = torch.tensor(self.membership, dtype=logits.dtype, device=logits.device)
        return logits @ membership.T + self.label_bias


class TokenHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, len(config.token_labels))

    def forward(self, token_states):
        return self.classifier(self.dropout(token_states))


def summed_cross_entropy(logits, labels, label_smoothing=0.0):
    """Summed cross-entropy over labels != -100 and their count. With no label the sum is a 0 that still
    depends on every head parameter, so distributed gradient reduction sees the same graph on every rank."""
    labels = labels.to(logits.device).reshape(-1)
    total = F.cross_entropy(
        logits.reshape(labels.shape[0], -1).float(),
        labels,
        ignore_index=-100,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return total, (labels != -100).sum()


class MultiTaskPreTrainedModel(PreTrainedModel):
    config_class = MultiTaskConfig
    config: MultiTaskConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["SentenceHead", "TokenHead"]
    # forward() normalises the loss by `num_items_in_batch`, so Trainer must not rescale it again.
    accepts_loss_kwargs = True

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            std = getattr(self.config.encoder_config, "initializer_range", 0.02)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, SentenceHead) and module.label_bias is not None:
            nn.init.zeros_(module.label_bias)


class MultiTaskModel(MultiTaskPreTrainedModel, MultiTaskInference):
    """Shared encoder + pooled sentence embedding + sentence head + token head, in one forward pass; `encode`,
    `predict` and their building blocks come from `MultiTaskInference` (inference_mtl.py)."""

    def __init__(self, config: MultiTaskConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.encoder_config)
        self.pooling = Pooling(config)
        self.sentence_head = SentenceHead(config)
        self.token_head = TokenHead(config)
        self.causal_encoder = is_causal_encoder(config.encoder_config)
        # Not a module: set by from_encoder / from_pretrained, saved by save_pretrained.
        self.tokenizer = None
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        sentence_labels=None,
        token_labels=None,
        num_items_in_batch=None,
        label_smoothing=0.0,
        inputs_embeds=None,
        output_hidden_states=None,
        output_attentions=None,
        **kwargs,
    ) -> MultiTaskModelOutput:
        r"""
        sentence_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Sentence class ids; -100 marks an example without a sentence label.
        token_labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            BIO tag ids per token; -100 marks tokens (and whole examples) without a tag.
        num_items_in_batch (`dict`, *optional*):
            `{"sentence": n, "token": m}`: labelled examples and tokens in the whole (accumulated, all-process)
            batch. When given, each task's summed loss is divided by it, which keeps gradient accumulation exact.
        label_smoothing (`float`, *optional*, defaults to 0):
            Label smoothing of the cross-entropy in `loss` and `loss_sums` (training); `sentence_loss` and
            `token_loss` stay plain, so logged losses compare between runs.
        """
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        max_positions = encoder_max_positions(self.config.encoder_config)
        if max_positions is not None and reference.shape[1] > max_positions:
            raise ValueError(
                f"the input is {reference.shape[1]} tokens long but the encoder has {max_positions} positions: "
                f"truncate it (tokenizer(..., truncation=True, max_length={self.config.max_seq_length}), or "
                "truncation=True in a pipeline call)"
            )
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        encoder_outputs = self.run_encoder(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        token_states = encoder_outputs.last_hidden_state
        pooled = self.pooling(token_states, attention_mask)
        sentence_logits = self.sentence_head(pooled)
        token_logits = self.token_head(token_states)
        sentence_embedding = F.normalize(pooled, p=2, dim=1) if self.config.normalize_embeddings else pooled

        logits = {SENTENCE.name: sentence_logits, TOKEN.name: token_logits}
        labels = {SENTENCE.name: sentence_labels, TOKEN.name: token_labels}
        loss_sums, label_counts, means, weighted = {}, {}, {}, []
        for task in TASKS:
            if labels[task.name] is None:
                continue
            total, count = summed_cross_entropy(logits[task.name], labels[task.name])
            means[task.name] = total / count.clamp(min=1)
            if label_smoothing:
                total = summed_cross_entropy(logits[task.name], labels[task.name], label_smoothing)[0]
            loss_sums[task.name], label_counts[task.name] = total, count
            normaliser = num_items_in_batch.get(task.name) if isinstance(num_items_in_batch, dict) else None
            normalised = total / count.clamp(min=1) if normaliser is None else total / max(normaliser, 1)
            weighted.append(getattr(self.config, task.loss_weight_key) * normalised)

        return MultiTaskModelOutput(
            loss=sum(weighted) if weighted else None,
            loss_sums=loss_sums or None,
            label_counts=label_counts or None,
            sentence_loss=means.get(SENTENCE.name),
            token_loss=means.get(TOKEN.name),
            sentence_logits=sentence_logits,
            token_logits=token_logits,
            sentence_embedding=sentence_embedding,
            last_hidden_state=token_states,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )

    def run_encoder(self, input_ids, attention_mask, token_type_ids=None, inputs_embeds=None, **flags):
        """One encoder pass, given only the inputs that suit this encoder family."""
        accepted = forward_parameters(type(self.encoder))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        # DistilBERT has no segment embedding, and a GPT-style decoder would add the ids' *token* embeddings.
        if token_type_ids is not None and "token_type_ids" in accepted and not self.causal_encoder:
            inputs["token_type_ids"] = token_type_ids
        if "use_cache" in accepted:  # decoders would otherwise build a key/value cache that nothing reads
            inputs["use_cache"] = False
        if self.causal_encoder and "position_ids" in accepted:
            # Count positions from the first real token, so a left-padded text is encoded as it is alone.
            inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.encoder(**inputs, return_dict=True, **flags)

    # ------------------------------------------------------------------ building, saving and loading

    @classmethod
    def from_encoder(
        cls, encoder=DEFAULT_ENCODER, sentence_labels=None, token_labels=None, tokenizer=None, **config_overrides
    ):
        """A new model whose encoder weights are loaded exactly from `encoder` (Hub id or local folder) and whose
        heads are fresh. Pooling, normalisation and maximum length are read from a sentence-transformers folder
        when present; `config_overrides` (any `MultiTaskConfig` field) win over them.

        Any encoder `AutoModel` builds works: BERT-style encoders (BERT, MiniLM, DistilBERT, RoBERTa, ...) and
        decoder-only models (GPT-2, GPT-Neo, GPT-NeoX, Llama, Qwen2, Mistral, ...). Pooling: `"mean"` suits
        bidirectional encoders (and is the default for them); under causal attention only the last token has seen
        the whole text, so decoder-only encoders default to `"last"`. Pass `pooling_mode=` to choose otherwise.

        The tokenizer (loaded from `encoder`, or `tokenizer`, copied if it must change) is made fit for the task: one
        without a pad token (GPT-2 style) pads with its end-of-text token (else its BOS or unknown token; only when
        it has none of those is a pad token added and the embeddings resized), and `encoder_config.pad_token_id`
        follows it. A byte-level BPE tokenizer (GPT-2, RoBERTa) gets `add_prefix_space=True`, so pre-split words
        (`is_split_into_words=True`, used for word labels) tokenise as they do inside running text.
        """
        source = resolve_encoder(str(encoder))
        encoder_config = AutoConfig.from_pretrained(source)
        tokenizer = adapt_tokenizer(
            tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(source), encoder_config.pad_token_id
        )
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            logger.warning(f"the tokenizer of {encoder} has no pad, end or unknown token: added '<pad>' to it")
        vocab_size = getattr(encoder_config, "vocab_size", None)
        pad_in_vocabulary = vocab_size is None or tokenizer.pad_token_id < vocab_size
        if pad_in_vocabulary and encoder_config.pad_token_id != tokenizer.pad_token_id:
            if encoder_config.pad_token_id is not None:
                logger.warning(
                    f"the encoder config's pad_token_id ({encoder_config.pad_token_id}) differs from its tokenizer's "
                    f"({tokenizer.pad_token_id}); using the tokenizer's"
                )
            # Set before the encoder is built: RoBERTa-style embeddings count positions from the padding index.
            encoder_config.pad_token_id = tokenizer.pad_token_id
        encoder_class = MODEL_MAPPING[type(encoder_config)]
        encoder_model = encoder_class.from_pretrained(source, config=encoder_config)
        if "add_pooling_layer" in inspect.signature(encoder_class.__init__).parameters:
            encoder_model.pooler = None  # as build_encoder makes it: the pooler's weights are never used
        if not pad_in_vocabulary:
            encoder_model.resize_token_embeddings(len(tokenizer))
            encoder_model.config.pad_token_id = tokenizer.pad_token_id

        settings = {**encoder_settings(encoder_model.config, source), **config_overrides}
        config = MultiTaskConfig(
            encoder_config=encoder_model.config,
            encoder_name_or_path=str(encoder),
            sentence_labels=sentence_labels,
            token_labels=token_labels,
            **settings,
        )
        model = cls(config)
        model.encoder = encoder_model
        model.tokenizer = tokenizer
        return model.train(False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a saved multi-task model (local folder or Hub id) with its tokenizer.

        Weights load from safetensors only (never a pickle). A folder that is not a complete multi-task model is
        refused with an error that names the file and the problem: no or another model's `config.json`, a damaged
        `model.safetensors`, weights missing or of the wrong shape (`ignore_mismatched_sizes=True` re-initialises
        the latter, as in transformers). `output_loading_info=True` returns `(model, loading_info)`.
        """
        source = os.fspath(pretrained_model_name_or_path)
        hub_kwargs = {
            key: kwargs[key]
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if key in kwargs
        }
        if not isinstance(kwargs.get("config"), PretrainedConfig):
            cls._check_config_file(source, hub_kwargs)
        kwargs.setdefault("use_safetensors", True)
        return_info = kwargs.pop("output_loading_info", False)
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        try:
            model, info = super().from_pretrained(
                source, *model_args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        except Exception as error:
            # safetensors' own error (SafetensorError) names neither the file nor the folder.
            if type(error).__module__.split(".")[0] != "safetensors":
                raise
            raise OSError(
                f"{os.path.join(source, hub_kwargs.get('subfolder', ''), 'model.safetensors')} is damaged and cannot "
                f"be read ({error}): save or download the model again"
            ) from error
        cls._check_loading_info(source, info, allow_mismatch)
        model.tokenizer = cls._load_tokenizer(source, model.config, hub_kwargs)
        return (model, info) if return_info else model

    @classmethod
    def _check_config_file(cls, source, hub_kwargs):
        """Refuse a source without config.json, or whose config.json is another model's, before transformers reads
        it (it would build a default config, or fail deep inside on the other model's fields)."""
        try:
            path = cached_file(source, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        except OSError:
            return  # not reachable here: transformers raises its own error
        if path is None:
            raise OSError(
                f"{source} has no config.json: it is not a saved model folder (or its saving was interrupted: "
                "config.json is written last)"
            )
        try:
            with open(path, encoding="utf-8") as handle:
                model_type = json.load(handle).get("model_type")
        except (ValueError, AttributeError):
            return  # not JSON (or not an object): transformers names the file
        if model_type != cls.config_class.model_type:
            raise ValueError(
                f"{path} has model_type {model_type!r}, not {cls.config_class.model_type!r}: it is not a multi-task "
                f"model. Load it with AutoModel, or build a multi-task model on it with "
                f"MultiTaskModel.from_encoder({source!r}, ...)"
            )

    @staticmethod
    def _check_loading_info(source, info, allow_mismatch):
        """A weight missing from the file (or of the wrong shape) would silently stay at its random initial value."""
        problems = [f"{key} is missing" for key in info.get("missing_keys", [])]
        if not allow_mismatch:
            for key, *shapes in info.get("mismatched_keys", []):
                found, expected = (list(shape) for shape in shapes[:2])
                problems.append(f"{key} has shape {found} in the file, the model expects {expected}")
        if problems:
            raise ValueError(
                f"the weights in {source} do not fit this model's config: {'; '.join(sorted(problems))}. The folder "
                "is damaged or its config.json belongs to other weights"
            )

    @staticmethod
    def _load_tokenizer(source, config, hub_kwargs):
        try:
            # The encoder's config tells AutoTokenizer the tokenizer family without re-reading our custom config.
            tokenizer = AutoTokenizer.from_pretrained(source, config=config.encoder_config, **hub_kwargs)
        except (OSError, ValueError) as error:
            logger.warning(f"No tokenizer loaded from {source} ({error}); set model.tokenizer.")
            return None
        # A tokenizer saved with a from_encoder model already has its pad token and prefix space; a folder put
        # together otherwise may lack them.
        tokenizer = adapt_tokenizer(tokenizer, config.encoder_config.pad_token_id)
        if tokenizer.pad_token is None:
            logger.warning(f"the tokenizer in {source} has no pad token: it cannot pad batches")
        return tokenizer

    def save_pretrained(self, save_directory, **kwargs):
        """Write weights (safetensors), config, tokenizer and code files. The folder is written aside and moved into
        place, `config.json` last, so an interrupted save never leaves a folder that loads half-written."""
        save_directory = os.path.abspath(os.fspath(save_directory))
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(save_directory)}.saving-", dir=parent)
        try:
            super().save_pretrained(staging, **kwargs)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(staging)
                finish_tokenizer_config(os.path.join(staging, "tokenizer_config.json"), self.config.max_seq_length)
            write_sentence_transformers_files(self.config, staging)
            move_into_place(staging, save_directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def push_to_hub(
        self,
        repo_id,
        *,
        commit_message=None,
        commit_description=None,
        private=None,
        token=None,
        revision=None,
        create_pr=False,
        max_shard_size="50GB",
        tags=None,
        card_folder=None,
    ):
        """Upload the complete model folder to the Hub in ONE commit; returns the commit info.

        The commit holds what `save_pretrained` writes (safetensors weights, config, tokenizer, the code files that
        `trust_remote_code=True` loads, the sentence-transformers files) and the model card: the `README.md` of
        `card_folder` (default: the local folder this model was loaded from) with the files it links to (its plots)
        and `all_results.json`. Without a card there, a minimal one with the Hub metadata is written (`tags` are
        added to it). `private` applies when the repository is created; `token` defaults to the logged-in token
        (`hf auth login` or `HF_TOKEN`) and is written nowhere.
        """
        from transformers.utils.hub import hf_api  # transformers' shared HfApi client

        repo_id = hf_api().create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        if card_folder is None and isinstance(self.name_or_path, str) and os.path.isdir(self.name_or_path):
            card_folder = self.name_or_path
        with tempfile.TemporaryDirectory() as temporary:
            folder = os.path.join(temporary, "model")
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            if not copy_model_card(card_folder, folder):
                write_minimal_model_card(self.config, folder, repo_id, tags)
            remove_unpublished(folder)  # the rule the training run's push follows too
            # One create_commit with every file of the folder and of its first-level subfolders.
            return self._upload_modified_files(
                folder,
                repo_id,
                files_timestamps={},
                commit_message=commit_message or "Upload multi-task model",
                token=token,
                create_pr=create_pr,
                revision=revision,
                commit_description=commit_description,
            )

    @torch.inference_mode()
    def logits_batch(self, inputs):
        """Logits of both heads and the sentence embedding for a tokenised batch (on the CPU, float32), for
        `score_batch`: `{"sentence_logits": [batch, n_sentence_labels], "token_logits": [batch, seq,
        n_token_labels], "sentence_embedding": [batch, hidden]}`. Runs the multi-task forward even on the single-head
        views."""
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if type(self).forward is MultiTaskModel.forward:
            outputs = self(**inputs)  # through nn.Module.__call__, so hooks (device maps) apply
        else:
            outputs = MultiTaskModel.forward(self, **inputs)
        return {
            "sentence_logits": outputs.sentence_logits.float().cpu(),
            "token_logits": outputs.token_logits.float().cpu(),
            "sentence_embedding": outputs.sentence_embedding.float().cpu(),
        }

    @torch.inference_mode()
    def embed_batch(self, inputs, normalize):
        """The pooled sentence embeddings of a tokenised batch (L2-normalised when `normalize`), for `encode`."""
        states = self.run_encoder(**inputs).last_hidden_state
        pooled = self.pooling(states, inputs["attention_mask"])
        return F.normalize(pooled, p=2, dim=1) if normalize else pooled


class MultiTaskForSequenceClassification(MultiTaskModel):
    """The sentence head of a multi-task checkpoint, as the standard text-classification pipeline expects it."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        outputs = super().forward(input_ids, attention_mask, token_type_ids, sentence_labels=labels, **kwargs)
        return SequenceClassifierOutput(loss=outputs.sentence_loss, logits=outputs.sentence_logits)


class MultiTaskForTokenClassification(MultiTaskModel):
    """The token head of a multi-task checkpoint, as the standard token-classification pipeline expects it:
    `config.id2label` holds the BIO tags here."""

    def __init__(self, config):
        super().__init__(config)
        self.config.id2label = self.config.token_id2label
        self.config.label2id = self.config.token_label2id

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        outputs = super().forward(input_ids, attention_mask, token_type_ids, token_labels=labels, **kwargs)
        return TokenClassifierOutput(loss=outputs.token_loss, logits=outputs.token_logits)


def _byte_level_parts(component):
    """The ByteLevel steps (and RobertaProcessing) of a `tokenizers` pre-tokenizer or post-processor, through
    Sequences; these are live views, so setting an attribute on one changes the tokenizer."""
    if type(component).__name__ != "Sequence":
        return [component] if type(component).__name__ in ("ByteLevel", "RobertaProcessing") else []
    parts, index = [], 0
    while True:
        try:
            step = component[index]
        except IndexError:
            return parts
        parts.extend(_byte_level_parts(step))
        index += 1


def adapt_tokenizer(tokenizer, pad_token_id=None):
    """`tokenizer`, or a changed copy, fit for this model:

    - without a pad token (GPT-2 style) it pads with the token `pad_token_id` names, else its end-of-text, BOS or
      unknown token (the vocabulary stays as it is; still None if it has none of these);
    - a byte-level BPE tokenizer (GPT-2, RoBERTa) marks a word start by a leading space, which pre-split words
      (`is_split_into_words=True`) lack unless it adds one: it gets `add_prefix_space=True`, kept in the saved
      tokenizer files so every reload (pipelines included) tokenises words the same way.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    no_prefix = backend is not None and any(
        not part.add_prefix_space for part in _byte_level_parts(backend.pre_tokenizer)
    )
    if tokenizer.pad_token is not None and not no_prefix:
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    if tokenizer.pad_token is None:
        named = None
        if pad_token_id is not None and 0 <= pad_token_id < len(tokenizer):
            named = tokenizer.convert_ids_to_tokens(pad_token_id)
        for candidate in (named, tokenizer.eos_token, tokenizer.bos_token, tokenizer.unk_token):
            if candidate is not None:
                tokenizer.pad_token = candidate
                break
    if no_prefix:
        backend = tokenizer.backend_tokenizer
        for part in _byte_level_parts(backend.pre_tokenizer) + _byte_level_parts(backend.post_processor):
            part.add_prefix_space = True
        tokenizer.add_prefix_space = True
        tokenizer.init_kwargs["add_prefix_space"] = True  # written to tokenizer_config.json
    return tokenizer


def resolve_encoder(name):
    if os.path.isdir(name) or name not in ENCODER_RESOLVERS:
        return name
    return ENCODER_RESOLVERS[name](name) or name


def encoder_settings(encoder_config, source):
    """The MultiTaskConfig fields an encoder implies before a run's own settings: last-token pooling for a
    decoder-only model, `max_seq_length` within its position embeddings, then what a sentence-transformers folder
    says (pooling, normalisation, max length). `from_encoder` and `inspect-data` both read lengths from here."""
    settings = {}
    if is_causal_encoder(encoder_config):
        settings["pooling_mode"] = "last"
    max_positions = encoder_max_positions(encoder_config)
    if max_positions is not None and max_positions < MultiTaskConfig.max_seq_length:
        settings["max_seq_length"] = max_positions
    settings.update(sentence_transformers_settings(functools.partial(read_json, source)))
    return settings


def read_json(source, filename):
    path = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# Imported (last, they read nothing from here at import time) so that saving copies them with the model code:
# the pipeline, and Inference Endpoints' custom handler (a folder's `handler.py`).
from .handler import EndpointHandler  # noqa: E402,F401
from .pipeline_mtl import MultiTaskPipeline  # noqa: E402,F401

MultiTaskConfig.register_for_auto_class()
MultiTaskModel.register_for_auto_class("AutoModel")
MultiTaskForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
MultiTaskForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = [
    "MultiTaskModel",
    "MultiTaskForSequenceClassification",
    "MultiTaskForTokenClassification",
    "MultiTaskModelOutput",
    "MultiTaskPreTrainedModel",
]
