"""Multi-task sentence transformer: one shared encoder pass gives sentence embeddings, sentence-classification
logits and token (BIO) classification logits.

This file is copied into every saved model folder and loaded with `trust_remote_code=True`, so it imports
nothing but `torch`, `transformers` and the standard library, and it makes no network call of its own (only
`push_to_hub`, when called, talks to the Hub, through transformers' client).

    model = MultiTaskModel.from_encoder("sentence-transformers/all-MiniLM-L6-v2",
                                        sentence_labels=["travel", "other"], token_labels=["O", "B-LOC", "I-LOC"])
    model.encode(["A sentence."])            # embeddings, as SentenceTransformer.encode
    model.predict(["Fly me to Paris"])       # [{"label", "score", "entities": [...]}]
    model.push_to_hub("me/my-model")         # the whole folder (and its model card) in one commit
"""

import collections.abc
import copy
import functools
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput, SequenceClassifierOutput, TokenClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import cached_file
from transformers.utils.logging import tqdm

from .configuration_mtl import MultiTaskConfig, encoder_max_positions, is_causal_encoder

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

# Hub ids that have a local stand-in (id -> callable returning a folder or None). Empty in a saved model folder;
# the installed package registers the copy of all-MiniLM-L6-v2 shipped on PyPI here, for offline use.
ENCODER_RESOLVERS = {}

# How `predict` and the `multitask` pipeline turn sub-token predictions into word tags (see `predict`).
AGGREGATION_STRATEGIES = ("first", "average", "max", "none")


@functools.lru_cache(maxsize=1)
def _word_pattern():
    """A word is a run of word characters and combining marks (optionally joined by ' - . : / inside, and with a
    leading @ or # as in tweets), or any single other visible character (punctuation, emoji, symbols) with the marks
    that follow it. Zero-width and control characters belong to no word.

    `re` has no class for combining marks (Unicode category M*: vowel signs, accents, variation selectors), so it is
    built from `unicodedata` on first use; every mark lies in U+0300..U+1FFFF or U+E0000..U+E0FFF.
    """
    marks = [
        chr(code)
        for block in (range(0x300, 0x20000), range(0xE0000, 0xE1000))
        for code in block
        if unicodedata.category(chr(code)).startswith("M")
    ]
    mark = "[" + re.escape("".join(marks)) + "]"
    word = rf"(?:\w|{mark})"
    return re.compile(
        rf"[@#]?\w{word}*(?:['’\-.:/]\w{word}*)*|[^\s\u200b-\u200f\u2060\ufeff\x00-\x1f\x7f]{mark}*"
    )


def split_words(text):
    """Split `text` into words with character offsets: a list of `(word, start, end)`, `text[start:end] == word`."""
    return [(m.group(), m.start(), m.end()) for m in _word_pattern().finditer(text)]


def join_words(words):
    """Join pre-split words with single spaces; returns the text and each word's `(start, end)` offsets."""
    offsets, position = [], 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), offsets


def bio_to_entities(text, tags, scores, offsets):
    """Group word-level BIO tags into entities with character offsets into `text`.

    An `I-X` that does not continue an entity of type X starts a new one (seqeval's lenient reading).
    Each entity's score is the mean of its words' scores.
    """
    entities, current = [], None
    for tag, score, (start, end) in zip(tags, scores, offsets):
        prefix, _, entity_type = tag.partition("-")
        if prefix == "I" and current is not None and current["entity_group"] == entity_type:
            current["end"] = end
            current["scores"].append(score)
            continue
        if current is not None:
            entities.append(current)
            current = None
        if prefix in ("B", "I"):
            current = {"entity_group": entity_type, "start": start, "end": end, "scores": [score]}
    if current is not None:
        entities.append(current)
    return [
        {
            "entity_group": entity["entity_group"],
            "score": sum(entity["scores"]) / len(entity["scores"]),
            "word": text[entity["start"] : entity["end"]],
            "start": entity["start"],
            "end": entity["end"],
        }
        for entity in entities
    ]


# Additive score of a forbidden tag transition; finite so that sums stay comparable.
_FORBIDDEN = -1e9


@functools.lru_cache(maxsize=8)
def _bio_structure(token_labels):
    """What BIO allows, for `token_labels` (a tuple): `(inside [n_tags] bool, begin [n_tags] long)`, where `inside[j]`
    marks an `I-x` tag, which may only follow `B-x` (at index `begin[j]`) or itself, and may not open a sequence;
    every other tag may follow anything (`begin[j] == j` for those, and for an `I-x` without a `B-x`)."""
    index = {tag: position for position, tag in enumerate(token_labels)}
    inside = [tag.startswith("I-") for tag in token_labels]
    begin = [index.get("B-" + tag[2:], j) if inside[j] else j for j, tag in enumerate(token_labels)]
    return torch.tensor(inside), torch.tensor(begin)


def bio_viterbi_batch(log_probs, token_labels):
    """The most likely BIO-valid tag ids (a list per sequence) for a list of per-word tag log-probabilities
    `[n_words, n_tags]` (lengths may differ), whose columns are `token_labels` (a tuple).

    One dynamic program for the whole batch. Each step is O(n_tags), not O(n_tags^2): a tag other than `I-x` takes
    the best previous tag whatever it is, and `I-x` the better of `B-x` and `I-x`."""
    results = [[] for _ in log_probs]
    rows = [row for row, sequence in enumerate(log_probs) if len(sequence)]
    if not rows:
        return results
    inside, begin = _bio_structure(token_labels)
    lengths = torch.tensor([len(log_probs[row]) for row in rows])
    padded = nn.utils.rnn.pad_sequence([log_probs[row].float().cpu() for row in rows], batch_first=True)
    batch, n_tags = len(rows), len(token_labels)
    itself = torch.arange(n_tags).expand(batch, n_tags)
    begin = begin.expand(batch, n_tags)
    score = padded[:, 0].masked_fill(inside, _FORBIDDEN)
    pointers = []
    for step in range(1, padded.shape[1]):
        best_any, any_previous = score.max(-1, keepdim=True)
        from_begin = score.gather(1, begin)
        stay = score >= from_begin
        previous = torch.where(inside, torch.where(stay, itself, begin), any_previous.expand(batch, n_tags))
        running = (step < lengths)[:, None]  # a finished sequence keeps its score and points at itself
        score = torch.where(running, score.gather(1, previous) + padded[:, step], score)
        pointers.append(torch.where(running, previous, itself))
    current = score.argmax(-1)
    path = [current]
    for previous in reversed(pointers):
        current = previous.gather(1, current[:, None])[:, 0]
        path.append(current)
    paths = torch.stack(path[::-1], 1).tolist()
    for row, path, length in zip(rows, paths, lengths.tolist()):
        results[row] = path[:length]
    return results


def bio_viterbi(log_probs, token_labels):
    """`bio_viterbi_batch` for one sequence `[n_words, n_tags]`: its tag ids, a list."""
    return bio_viterbi_batch([log_probs], token_labels)[0]


def _check_unicode(text, where):
    """A str with a lone surrogate (bytes decoded with errors="surrogateescape") cannot be tokenised."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where} is not valid Unicode: character {error.start} is a lone surrogate ({text[error.start]!r}); "
            "decode the bytes it came from with their real encoding (or errors='replace')"
        ) from None


def _check_texts(texts, allow_words):
    """Validate a batch of inputs (a list, tuple or other sequence, such as a `datasets` column) and return it as a
    list; name the offending index in every error."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, collections.abc.Sequence):
        raise TypeError(f"expected a list of texts, got {type(texts).__name__}")
    texts = list(texts)
    for index, item in enumerate(texts):
        if isinstance(item, str):
            _check_unicode(item, f"input {index}")
            continue
        if allow_words and isinstance(item, (list, tuple)):
            bad = [i for i, word in enumerate(item) if not isinstance(word, str) or not word or word.split() != [word]]
            if bad:
                raise ValueError(
                    f"input {index}: word {bad[0]} is {item[bad[0]]!r}; pre-split words must be non-empty "
                    "strings without whitespace"
                )
            for word in item:
                _check_unicode(word, f"input {index}")
            continue
        expected = "a string or a list of word strings" if allow_words else "a string"
        raise TypeError(f"input {index} is {type(item).__name__} ({item!r}); expected {expected}")
    return texts


def longest_first_batches(lengths, batch_size):
    """Input indices in batches of `batch_size`, longest input first: inputs of similar length share a batch, so
    dynamic padding stays small."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class MultiTaskModelOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Weighted sum of the task losses present in the batch, normalised by `num_items_in_batch` when given.
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
def _forward_parameters(encoder_class):
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


def _summed_cross_entropy(logits, labels, label_smoothing=0.0):
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


class MultiTaskModel(MultiTaskPreTrainedModel):
    """Shared encoder + pooled sentence embedding + sentence head + token head, in one forward pass."""

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
        encoder_outputs = self._run_encoder(
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

        loss = sentence_loss = token_loss = None
        task_losses = []
        for name, logits, labels, weight in (
            ("sentence", sentence_logits, sentence_labels, self.config.sentence_loss_weight),
            ("token", token_logits, token_labels, self.config.token_loss_weight),
        ):
            if labels is None:
                continue
            total, count = _summed_cross_entropy(logits, labels)
            mean = total / count.clamp(min=1)
            if name == "sentence":
                sentence_loss = mean
            else:
                token_loss = mean
            normaliser = num_items_in_batch.get(name) if isinstance(num_items_in_batch, dict) else None
            task_losses.append(weight * (mean if normaliser is None else total / max(normaliser, 1)))
        if task_losses:
            loss = sum(task_losses)

        return MultiTaskModelOutput(
            loss=loss,
            sentence_loss=sentence_loss,
            token_loss=token_loss,
            sentence_logits=sentence_logits,
            token_logits=token_logits,
            sentence_embedding=sentence_embedding,
            last_hidden_state=token_states,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )

    def _run_encoder(self, input_ids, attention_mask, token_type_ids=None, inputs_embeds=None, **flags):
        """One encoder pass, given only the inputs that suit this encoder family."""
        accepted = _forward_parameters(type(self.encoder))
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
        source = _resolve_encoder(str(encoder))
        encoder_config = AutoConfig.from_pretrained(source)
        tokenizer = _adapt_tokenizer(
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

        settings = {}
        if is_causal_encoder(encoder_model.config):
            settings["pooling_mode"] = "last"
        max_positions = encoder_max_positions(encoder_model.config)
        if max_positions is not None and max_positions < MultiTaskConfig.max_seq_length:
            settings["max_seq_length"] = max_positions
        settings.update(_sentence_transformers_settings(source))
        settings.update(config_overrides)
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
        tokenizer = _adapt_tokenizer(tokenizer, config.encoder_config.pad_token_id)
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
                _finish_tokenizer_config(os.path.join(staging, "tokenizer_config.json"), self.config.max_seq_length)
            _write_sentence_transformers_files(self.config, staging)
            _move_into_place(staging, save_directory)
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
            if not _copy_model_card(card_folder, folder):
                _write_minimal_model_card(self.config, folder, repo_id, tags)
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

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: set `model.tokenizer = AutoTokenizer.from_pretrained(...)`")
        return self.tokenizer

    def _tokenize(self, batch, **kwargs):
        tokenizer = self._require_tokenizer()
        encoding = tokenizer(
            batch, padding=True, truncation=True, max_length=self.config.max_seq_length, return_tensors="pt", **kwargs
        )
        mask = encoding["attention_mask"]
        if mask.shape[1] == 0 or not mask.any(1).all():
            # A tokenizer that adds no special token (GPT-2 style) gives an empty text no token at all: such a text
            # is read as one pad token, which the encoder and the pooling can handle.
            if mask.shape[1] == 0:
                for key in ("input_ids", "attention_mask", "token_type_ids"):
                    if key in encoding:
                        encoding[key] = torch.zeros(mask.shape[0], 1, dtype=torch.long)
                encoding["input_ids"].fill_(tokenizer.pad_token_id)
            column = -1 if tokenizer.padding_side == "left" else 0
            encoding["attention_mask"][~encoding["attention_mask"].any(1), column] = 1
        return encoding.to(self.device)

    # ------------------------------------------------------------------ inference

    @torch.inference_mode()
    def encode(
        self,
        sentences,
        batch_size=32,
        normalize_embeddings=None,
        show_progress_bar=None,
        convert_to_numpy=True,
        convert_to_tensor=False,
    ):
        """Sentence embeddings, as `SentenceTransformer.encode` computes them for the same encoder.

        `sentences` is a string (one vector back) or a list of strings (or another sequence, e.g. a `datasets`
        column). Texts are batched longest first, which
        keeps padding small; `normalize_embeddings=None` follows `config.normalize_embeddings`.
        """
        single = isinstance(sentences, str)
        texts = _check_texts([sentences] if single else sentences, allow_words=False)
        normalize = self.config.normalize_embeddings if normalize_embeddings is None else normalize_embeddings
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= 1000
        batches = longest_first_batches([len(text) for text in texts], batch_size)
        was_training = self.training
        self.eval()
        chunks = []
        for indices in tqdm(batches, desc="Batches", disable=not show_progress_bar):
            encoding = self._tokenize([texts[index].strip() for index in indices])
            self._warn_truncated(encoding, indices)
            states = self._run_encoder(**self.encoder_inputs(encoding)).last_hidden_state
            pooled = self.pooling(states, encoding["attention_mask"])
            chunks.append(F.normalize(pooled, p=2, dim=1) if normalize else pooled)
        self.train(was_training)
        hidden = self.config.hidden_size
        embeddings = torch.cat(chunks) if chunks else torch.empty(0, hidden, device=self.device)
        order = [index for indices in batches for index in indices]
        embeddings = embeddings[torch.tensor(sorted(range(len(order)), key=order.__getitem__), dtype=torch.long)]
        if single:
            embeddings = embeddings[0]
        if convert_to_tensor or not convert_to_numpy:
            return embeddings
        return embeddings.float().cpu().numpy()

    @torch.inference_mode()
    def predict(self, texts, batch_size=32, return_embeddings=False, aggregation_strategy="first"):
        """Sentence label and entities for each text, from one encoder pass.

        `texts` is a list (or another sequence, e.g. a `datasets` column) of strings (split into words by
        `split_words`) or of pre-split word lists (joined with single spaces, to which the offsets then refer). Each result is
        `{"label": str, "score": float, "entities": [{"entity_group", "score", "word", "start", "end"}]}` with
        `text[start:end] == word` (and `"embedding"` with `return_embeddings=True`). Words beyond
        `config.max_seq_length` tokens get no tag (a warning says how many).

        `aggregation_strategy` says how a word's tag comes from its sub-tokens, as in the token-classification
        pipeline: `"first"` (the first sub-token's prediction), `"average"` (the mean of the sub-tokens'
        probabilities), `"max"` (the sub-token with the most confident prediction), or `"none"` (as `"first"`,
        but `entities` lists every tagged word, `{"entity": "B-LOC", "score", "index", "word", "start", "end"}`,
        without grouping B-/I- words into entities).
        """
        texts = _check_texts(texts, allow_words=True)
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        prepared = [self.prepare_text(item) for item in texts]
        results = [None] * len(prepared)
        untagged_words = 0
        was_training = self.training
        self.eval()
        for indices in longest_first_batches([len(words) for _, words, _ in prepared], batch_size):
            encoding = self.tokenize_words([prepared[index][1] for index in indices])
            self._warn_truncated(encoding, indices)
            scores = self.score_batch(self.encoder_inputs(encoding))
            decoded = self.decode_words_batch(
                [
                    (scores["token_probs"][row], encoding.word_ids(row), len(prepared[index][1]))
                    for row, index in enumerate(indices)
                ],
                strategy,
            )
            for row, (index, (tags, tag_scores, untagged)) in enumerate(zip(indices, decoded)):
                text, _, offsets = prepared[index]
                results[index] = self.prediction_result(
                    text,
                    offsets,
                    tags,
                    tag_scores,
                    scores["sentence_probs"][row],
                    strategy,
                    embedding=scores["sentence_embedding"][row] if return_embeddings else None,
                )
                untagged_words += untagged
        self.train(was_training)
        if untagged_words:
            logger.warning(
                f"{untagged_words} words lie beyond max_seq_length={self.config.max_seq_length} tokens (or produce "
                "no sub-token) and were left untagged"
            )
        return results

    # The building blocks of `predict`, also used by the `multitask` pipeline (pipeline_mtl.py), which cannot import
    # this module and reaches them through the model.

    @staticmethod
    def check_aggregation_strategy(aggregation_strategy):
        """The strategy name, lower-cased (an `AggregationStrategy` enum member is accepted), or a ValueError."""
        name = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
        if name not in AGGREGATION_STRATEGIES:
            raise ValueError(
                f"aggregation_strategy is {aggregation_strategy!r}; choose one of {list(AGGREGATION_STRATEGIES)}"
            )
        return name

    @staticmethod
    def check_inputs(texts, allow_words=True):
        """Validate a batch of inputs (strings, or pre-split word lists when `allow_words`), naming the bad index;
        return them as a list."""
        return _check_texts(texts, allow_words=allow_words)

    @staticmethod
    def prepare_text(item):
        """`(text, words, offsets)` for a string (split with `split_words`) or a pre-split word list (joined with
        single spaces); `offsets[i]` is `(start, end)` of `words[i]` in `text`."""
        if isinstance(item, str):
            spans = split_words(item)
            return item, [word for word, _, _ in spans], [(start, end) for _, start, end in spans]
        text, offsets = join_words(list(item))
        return text, list(item), offsets

    def tokenize_words(self, word_lists, to_device=True):
        """Tokenise lists of words (`is_split_into_words=True`), padded and truncated to `config.max_seq_length`.
        A text without words still gets one sequence (its special tokens, or one pad token)."""
        encoding = self._tokenize(word_lists, is_split_into_words=True)
        return encoding if to_device else encoding.to("cpu")

    def encoder_inputs(self, encoding):
        """The tensors of a tokenizer encoding that the model takes (`input_ids`, `attention_mask`,
        `token_type_ids` when present)."""
        return {key: encoding[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoding}

    @torch.inference_mode()
    def score_batch(self, inputs):
        """Probabilities of both heads and the sentence embedding for a tokenised batch (on the CPU, float32):
        `{"sentence_probs": [batch, n_sentence_labels], "token_probs": [batch, seq, n_token_labels],
        "sentence_embedding": [batch, hidden]}`. Runs the multi-task forward even on the single-head views."""
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if type(self).forward is MultiTaskModel.forward:
            outputs = self(**inputs)  # through nn.Module.__call__, so hooks (device maps) apply
        else:
            outputs = MultiTaskModel.forward(self, **inputs)
        return {
            "sentence_probs": outputs.sentence_logits.float().softmax(-1).cpu(),
            "token_probs": outputs.token_logits.float().softmax(-1).cpu(),
            "sentence_embedding": outputs.sentence_embedding.float().cpu(),
        }

    def decode_words(self, token_probs, word_ids, num_words, aggregation_strategy="first"):
        """Word-level BIO tags and scores from one sequence's token probabilities.

        Each word's tag distribution is read from its sub-tokens (`aggregation_strategy`), then decoded as
        `config.token_decoding` says: per word (`"argmax"`) or as the best valid BIO sequence (`"bio_viterbi"`).

        Args:
            token_probs: `[seq, n_token_labels]` probabilities of one sequence.
            word_ids: the word index of each position (None for special and padding tokens), as
                `BatchEncoding.word_ids()` gives it for that sequence.
            num_words: how many words the text has; a word without a sub-token (truncated) is tagged `"O"`.
            aggregation_strategy: `"first"`, `"average"`, `"max"` or `"none"` (read as `"first"` here).

        Returns:
            `(tags, scores, untagged)`: one tag and its probability per word, and how many words had no sub-token.
        """
        return self.decode_words_batch([(token_probs, word_ids, num_words)], aggregation_strategy)[0]

    def decode_words_batch(self, sequences, aggregation_strategy="first"):
        """`decode_words` for several sequences at once, each `(token_probs, word_ids, num_words)`: a list of
        `(tags, scores, untagged)`. `bio_viterbi` decodes them in one batched pass."""
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        labels = self.config.token_labels
        tagged_words, word_probs = zip(*(self._word_probs(*sequence, strategy) for sequence in sequences))
        if self.config.token_decoding == "bio_viterbi":
            all_tag_ids = bio_viterbi_batch([probs.clamp_min(1e-30).log() for probs in word_probs], tuple(labels))
            all_best = [probs[range(len(ids)), ids].tolist() for probs, ids in zip(word_probs, all_tag_ids)]
        else:
            all_best, all_tag_ids = zip(*((values.tolist() for values in probs.max(-1)) for probs in word_probs))
        decoded = []
        for (_, _, num_words), tagged, tag_ids, best in zip(sequences, tagged_words, all_tag_ids, all_best):
            tags, scores = ["O"] * num_words, [0.0] * num_words
            for word, tag_id, score in zip(tagged, tag_ids, best):
                tags[word], scores[word] = labels[tag_id], score
            decoded.append((tags, scores, num_words - len(tagged)))
        return decoded

    def _word_probs(self, token_probs, word_ids, num_words, strategy):
        """`(tagged, word_probs)`: the words that have a sub-token, and each one's tag distribution
        `[len(tagged), n_token_labels]` read from its sub-tokens as `strategy` says."""
        positions = [[] for _ in range(num_words)]
        for position, word_id in enumerate(word_ids):
            if word_id is not None and word_id < num_words:
                positions[word_id].append(position)
        tagged = [word for word, word_positions in enumerate(positions) if word_positions]
        token_probs = token_probs.float().cpu()
        if not tagged:
            return tagged, token_probs.new_zeros(0, len(self.config.token_labels))
        if strategy in ("first", "none"):
            # One gather for all words: per-word tensor indexing made decoding ~6x slower.
            return tagged, token_probs[[positions[word][0] for word in tagged]]
        if strategy == "average":
            return tagged, torch.stack([token_probs[positions[word]].mean(0) for word in tagged])
        # "max": the sub-token with the most confident prediction
        candidates = [token_probs[positions[word]] for word in tagged]
        return tagged, torch.stack([probs[probs.max(-1).values.argmax()] for probs in candidates])

    def decode_prediction(
        self,
        text,
        words,
        offsets,
        sentence_probs,
        token_probs,
        word_ids,
        aggregation_strategy="first",
        embedding=None,
    ):
        """One `predict` result from one sequence's probabilities (see `score_batch` and `decode_words`); returns
        `(result, untagged_words)`."""
        strategy = self.check_aggregation_strategy(aggregation_strategy)
        tags, scores, untagged = self.decode_words(token_probs, word_ids, len(words), strategy)
        return self.prediction_result(text, offsets, tags, scores, sentence_probs, strategy, embedding), untagged

    def prediction_result(self, text, offsets, tags, scores, sentence_probs, aggregation_strategy, embedding=None):
        """One `predict` result from a text's decoded word tags and scores and its sentence probabilities."""
        if aggregation_strategy == "none":
            entities = [
                {
                    "entity": tag,
                    "score": score,
                    "index": index,
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
                for index, (tag, score, (start, end)) in enumerate(zip(tags, scores, offsets))
                if tag != "O"
            ]
        else:
            entities = bio_to_entities(text, tags, scores, offsets)
        score, label_id = sentence_probs.float().max(-1)
        result = {"label": self.config.sentence_labels[int(label_id)], "score": float(score), "entities": entities}
        if embedding is not None:
            result["embedding"] = embedding.float().cpu().tolist()
        return result

    def _warn_truncated(self, encoding, indices):
        truncated = [index for row, index in enumerate(indices) if encoding.encodings[row].overflowing]
        if truncated:
            logger.warning(
                f"inputs {truncated} are longer than max_seq_length={self.config.max_seq_length} tokens and were "
                "truncated"
            )


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


def _adapt_tokenizer(tokenizer, pad_token_id=None):
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


def _resolve_encoder(name):
    if os.path.isdir(name) or name not in ENCODER_RESOLVERS:
        return name
    return ENCODER_RESOLVERS[name](name) or name


def _read_json(source, filename):
    path = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _sentence_transformers_settings(source):
    """Pooling mode, normalisation and max length of a sentence-transformers folder ({} for a plain encoder)."""
    modules = _read_json(source, "modules.json")
    if not modules:
        return {}
    settings = {"normalize_embeddings": any(m["type"].endswith(".Normalize") for m in modules)}
    for module in modules:
        if module["type"].endswith(".Pooling"):
            pooling = _read_json(source, f"{module['path']}/config.json") or {}
            for key, mode in (
                ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_lasttoken", "last"),
            ):
                if pooling.get(key):
                    settings["pooling_mode"] = mode
                    break
    bert_config = _read_json(source, "sentence_bert_config.json") or {}
    if bert_config.get("max_seq_length"):
        settings["max_seq_length"] = int(bert_config["max_seq_length"])
    return settings


def _finish_tokenizer_config(tokenizer_config_path, max_seq_length):
    """Drop what transformers records about how the tokenizer was loaded (`is_local`, `local_files_only`: a published
    folder should not carry that), and set `model_max_length` to the model's `max_seq_length`, where the standard
    pipelines then truncate (`truncation=True`) as `predict` and `encode` do."""
    if not os.path.exists(tokenizer_config_path):
        return
    with open(tokenizer_config_path, encoding="utf-8") as handle:
        settings = json.load(handle)
    for key in ("is_local", "local_files_only", "name_or_path"):
        settings.pop(key, None)
    settings["model_max_length"] = max_seq_length
    with open(tokenizer_config_path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


_SENTENCE_TRANSFORMERS_POOLING = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "last": "pooling_mode_lasttoken",
}


def _write_sentence_transformers_files(config, folder):
    """modules.json and the pooling config, so `SentenceTransformer(folder, trust_remote_code=True)` loads the same
    embeddings from the same weights (its Transformer module reads this model's `last_hidden_state`)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if config.normalize_embeddings:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": config.hidden_size}
    pooling.update({key: mode == config.pooling_mode for mode, key in _SENTENCE_TRANSFORMERS_POOLING.items()})
    pooling["pooling_mode_mean_sqrt_len_tokens"] = False
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": config.max_seq_length, "do_lower_case": False},
        "1_Pooling/config.json": pooling,
    }
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")


# Relative links of a model card: markdown links and images, and HTML src/href attributes.
_CARD_LINK = re.compile(r"""(?:\]\(|(?:src|href)=["'])([^)"'\s#?]+)""")

# A Hub repository id ("name" or "owner/name"), as opposed to a local path.
_HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def hub_base_model(name):
    """`name` when it reads as a Hub model id (the card's `base_model`), None for a local folder."""
    if not name or os.path.isabs(name) or os.path.exists(name) or name.startswith(".") or not _HUB_ID.match(name):
        return None
    return name


def _copy_model_card(source, folder):
    """Copy `source/README.md` into `folder` with the files it links to (one folder level deep at most, never out of
    `source`, never over a model file) and `all_results.json`. Returns whether there was a card."""
    if not source or not os.path.isfile(os.path.join(source, "README.md")):
        return False
    shutil.copyfile(os.path.join(source, "README.md"), os.path.join(folder, "README.md"))
    with open(os.path.join(source, "README.md"), encoding="utf-8") as handle:
        names = {match.group(1) for match in _CARD_LINK.finditer(handle.read())}
    for name in sorted(names | {"all_results.json"}):
        relative = os.path.normpath(name)
        if "://" in name or os.path.isabs(relative) or relative.startswith("..") or relative.count(os.sep) > 1:
            continue
        path, destination = os.path.join(source, relative), os.path.join(folder, relative)
        if os.path.isfile(path) and not os.path.exists(destination):
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copyfile(path, destination)
    return True


def _write_minimal_model_card(config, folder, repo_id, tags=None):
    """A README.md with the Hub metadata and a usage snippet, for a model pushed without a card of its own."""
    all_tags = ["custom_code", "multi-task", "sentence-transformers", "text-classification", "token-classification"]
    all_tags += [tag for tag in tags or [] if tag not in all_tags]
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification", "tags:"]
    lines += [f"- {json.dumps(tag)}" for tag in all_tags]
    base_model = hub_base_model(config.encoder_name_or_path)
    if base_model:
        lines.append(f"base_model: {json.dumps(base_model)}")
    lines += [
        "---",
        "",
        "# Multi-task sentence transformer",
        "",
        "One shared encoder gives a sentence embedding, a sentence label "
        f"({', '.join(config.sentence_labels)}) and BIO entities "
        f"({', '.join(sorted({tag[2:] for tag in config.token_labels if tag != 'O'})) or 'none'}) in one pass.",
        "",
        "```python",
        "from transformers import AutoModel, pipeline",
        "",
        f"model = AutoModel.from_pretrained({json.dumps(repo_id)}, trust_remote_code=True)",
        'model.predict(["A sentence to label."])',
        'model.encode(["A sentence to embed."])',
        f"pipe = pipeline(model={json.dumps(repo_id)}, trust_remote_code=True)",
        "```",
        "",
    ]
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


def _move_into_place(staging, target):
    """Move a fully written folder to `target`. A new target is one atomic rename; an existing one loses its
    config.json first and gets it back last, so a crash in between leaves a folder that refuses to load."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    config_path = os.path.join(target, "config.json")
    if os.path.exists(config_path):
        os.remove(config_path)
    names = sorted(os.listdir(staging), key=lambda name: name == "config.json")
    for name in names:
        source, destination = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(destination) and not os.path.islink(destination):
            shutil.rmtree(destination)
        os.replace(source, destination)


# Imported (last, it reads nothing from here at import time) so that saving copies it with the model code.
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
    "split_words",
    "bio_to_entities",
    "bio_viterbi",
]
