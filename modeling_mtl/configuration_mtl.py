"""Configuration of the multi-task sentence transformer.

This file is copied into every saved model folder and loaded with `trust_remote_code=True`, so it imports
nothing but `transformers`, the standard library and its sibling `schema_mtl.py`.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .schema_mtl import MODEL_TYPE, POOLING_MODES, REJECT_SCORES, TOKEN_DECODINGS  # noqa: F401 (re-exported)

# Decoder-only encoder families. Only their last token has seen the whole input, so `from_encoder` gives them
# `pooling_mode="last"`. Unlisted types count as decoder-only when they have a causal-LM head, no masked-LM head and
# no `is_decoder` switch (encoder-decoder and BERT-style configs carry one).
CAUSAL_MODEL_TYPES = frozenset(
    "bloom falcon gemma gemma2 gemma3_text gpt2 gpt_bigcode gpt_neo gpt_neox gptj llama mistral mixtral opt phi phi3 "
    "qwen2 qwen2_moe qwen3 qwen3_moe smollm3".split()
)

# Encoders whose position ids start after the padding index (RoBERTa's scheme) can use only
# max_position_embeddings - pad_token_id - 1 positions.
POSITIONS_AFTER_PADDING_MODEL_TYPES = frozenset(
    "camembert data2vec-text longformer mpnet roberta roberta-prelayernorm xlm-roberta xlm-roberta-xl xmod".split()
)


def is_causal_encoder(encoder_config) -> bool:
    """Whether `encoder_config` describes a decoder-only (causal attention) model."""
    if getattr(encoder_config, "is_decoder", False):
        return True
    model_type = getattr(encoder_config, "model_type", None)
    if model_type in CAUSAL_MODEL_TYPES:
        return True
    return (
        not hasattr(encoder_config, "is_decoder")
        and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def encoder_max_positions(encoder_config) -> int | None:
    """The longest input, in tokens, the encoder's position embeddings allow (None when unbounded or unknown)."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:  # XLNet reports -1: relative positions, no limit
        return None
    if getattr(encoder_config, "model_type", None) in POSITIONS_AFTER_PADDING_MODEL_TYPES:
        positions -= (getattr(encoder_config, "pad_token_id", None) or 0) + 1
    return positions

# Written into every config so that a saved folder maps the Auto classes onto the copied code files.
AUTO_MAP = {
    "AutoConfig": "configuration_mtl.MultiTaskConfig",
    "AutoModel": "modeling_mtl.MultiTaskModel",
    "AutoModelForSequenceClassification": "modeling_mtl.MultiTaskForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_mtl.MultiTaskForTokenClassification",
}

# `pipeline(model=folder, trust_remote_code=True)` reads the task and the pipeline class from here.
CUSTOM_PIPELINES = {
    "multitask": {"impl": "pipeline_mtl.MultiTaskPipeline", "pt": ["AutoModel"], "type": "text", "default": {}}
}


def _check_labels(name: str, labels) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ValueError(f"`{name}` must be a list of label strings, got {type(labels).__name__}: {labels!r}")
    if len(labels) == 0:
        raise ValueError(f"`{name}` is empty: give at least one label")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"`{name}`[{index}] is {label!r}: every label must be a non-empty string")
    seen = set()
    duplicates = sorted({label for label in labels if label in seen or seen.add(label)})
    if duplicates:
        raise ValueError(f"`{name}` has duplicate labels: {duplicates}")
    return list(labels)


def _check_separator(separator, labels: list[str]) -> None:
    if separator is None:
        return
    if not isinstance(separator, str) or not separator.strip():
        raise ValueError(f"`sentence_label_separator` must be a non-blank string or None, got {separator!r}")
    for index, label in enumerate(labels):
        if not all(label.split(separator)):
            raise ValueError(
                f"`sentence_labels`[{index}] is {label!r}: split on {separator!r} it has an empty part"
            )


def _check_bio(labels: list[str]) -> None:
    if "O" not in labels:
        raise ValueError(f"`token_labels` must contain the outside tag 'O', got {labels}")
    for index, label in enumerate(labels):
        if label != "O" and not (label[:2] in ("B-", "I-") and len(label) > 2):
            raise ValueError(
                f"`token_labels`[{index}] is {label!r}: token labels must be BIO tags ('O', 'B-TYPE' or 'I-TYPE')"
            )


def _check_rejection(config) -> None:
    temperature = config.sentence_temperature
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(f"`sentence_temperature` must be a positive number, got {temperature!r}")
    if config.reject_score not in REJECT_SCORES:
        raise ValueError(f"`reject_score` is {config.reject_score!r}; choose one of {list(REJECT_SCORES)}")
    # A cosine similarity lies in [-1, 1], a probability in [0, 1].
    lowest = {"reject_threshold": -1 if config.reject_score == "centroid_cosine" else 0, "ambiguity_margin": 0}
    for name, low in lowest.items():
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= 1):
            raise ValueError(f"`{name}` must be a score in [{low}, 1] or None, got {value!r}")
    centroids = config.sentence_centroids
    if config.reject_score == "centroid_cosine" and centroids is None:
        raise ValueError("`reject_score` centroid_cosine needs `sentence_centroids` (one row per sentence label)")
    if centroids is not None:
        rows = len(config.sentence_labels)
        if (not isinstance(centroids, (list, tuple)) or len(centroids) != rows
                or any(not isinstance(row, (list, tuple)) or len(row) != len(centroids[0]) or not row for row in centroids)):
            raise ValueError(f"`sentence_centroids` must be {rows} rows (one per sentence label) of equal length")
    if not isinstance(config.out_of_scope_label, str) or not config.out_of_scope_label.strip():
        raise ValueError(f"`out_of_scope_label` must be a non-empty string, got {config.out_of_scope_label!r}")


class MultiTaskConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MultiTaskModel`]: a shared transformer encoder, a pooled sentence embedding, a sentence
    classification head and a token (BIO) classification head.

    Args:
        encoder_config (`dict` or `PreTrainedConfig`, *optional*):
            The encoder's own configuration (any model `AutoModel` can build: BERT-style encoders and decoder-only
            models such as GPT-2 or GPT-Neo), nested in `config.json`.
        sentence_labels (`list[str]`, *optional*):
            Names of the sentence classes, in head order. `id2label` / `label2id` mirror them so the standard
            text-classification pipeline reads them.
        token_labels (`list[str]`, *optional*):
            BIO tags of the token head, in head order; must contain `"O"`.
        pooling_mode (`str`, *optional*, defaults to `"mean"`):
            How token states become the sentence embedding: `"mean"` (masked mean), `"cls"` (first token),
            `"max"` (masked max) or `"last"` (last non-padding token, the choice for causal decoders;
            `MultiTaskModel.from_encoder` picks it for them).
        normalize_embeddings (`bool`, *optional*, defaults to `True`):
            Whether `sentence_embedding` is L2-normalised. The sentence head always reads the raw pooled vector.
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied before both heads.
        sentence_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the sentence loss in the combined loss.
        token_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the token loss in the combined loss.
        token_decoding (`str`, *optional*, defaults to `"argmax"`):
            How word tags are read from the token head: `"argmax"` (each word's most likely tag, what the standard
            token-classification pipeline does; can give invalid sequences such as `O I-x`) or `"bio_viterbi"` (the
            most likely tag sequence in which `I-x` only follows `B-x` or `I-x`). Used by `predict`, the
            `multitask` pipeline and evaluation.
        sentence_label_separator (`str`, *optional*):
            When set (e.g. `"#"` for ATIS's `atis_flight#atis_airfare`), a sentence label is read as the parts this
            string separates, and the sentence head scores each distinct part: a label's logit is the sum of its
            parts' scores plus a bias of its own. A combined label, rare in training, then shares what its parts
            learn from their own examples. The labels, and what the model outputs, stay the same.
        max_seq_length (`int`, *optional*, defaults to 256):
            Longest input in tokens; longer inputs are truncated (with a warning).
        encoder_name_or_path (`str`, *optional*):
            Hub id or folder the encoder weights came from (the model card's `base_model`).
        sentence_temperature (`float`, *optional*, defaults to 1.0):
            The sentence scores of `predict`, the `multitask` pipeline and the ONNX runtime are
            `softmax(sentence_logits / sentence_temperature)`. `train_mtl.py` fits it on the validation split so
            that the scores are calibrated (`calibration.fit_temperature`); the logits `forward` returns, the
            training loss and the predicted labels do not change.
        reject_threshold (`float`, *optional*):
            When set, a text whose best sentence score (after the temperature) is below it is answered
            `out_of_scope_label`; its entities are still returned.
        ambiguity_margin (`float`, *optional*):
            When set, a text whose two best sentence scores are closer than this is answered `out_of_scope_label`.
        reject_score (`str`, *optional*, defaults to `"softmax"`):
            What `reject_threshold` compares: `"softmax"` (the best sentence score, after the temperature) or
            `"centroid_cosine"` (the largest cosine similarity of the sentence embedding to a class centroid of the
            training embeddings, `sentence_centroids`; in [-1, 1]). The predicted label and its score are the
            same either way.
        sentence_centroids (`list[list[float]]`, *optional*):
            One L2-normalised mean sentence embedding per sentence label (the training split's), for
            `reject_score="centroid_cosine"`.
        out_of_scope_label (`str`, *optional*, defaults to `"out_of_scope"`):
            The label of a rejected text (it may be one of `sentence_labels`, for data that trains it as a class).
    """

    model_type = MODEL_TYPE
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder_config: dict | PreTrainedConfig | None = None
    sentence_labels: list[str] | None = None
    token_labels: list[str] | None = None
    pooling_mode: str = "mean"
    normalize_embeddings: bool = True
    head_dropout: float = 0.1
    sentence_loss_weight: float = 1.0
    token_loss_weight: float = 1.0
    token_decoding: str = "argmax"
    sentence_label_separator: str | None = None
    max_seq_length: int = 256
    encoder_name_or_path: str | None = None
    sentence_temperature: float = 1.0
    reject_threshold: float | None = None
    ambiguity_margin: float | None = None
    reject_score: str = "softmax"
    sentence_centroids: list[list[float]] | None = None
    out_of_scope_label: str = "out_of_scope"
    auto_map: dict | None = None
    custom_pipelines: dict | None = None

    def __post_init__(self, **kwargs):
        # id2label/label2id are derived from `sentence_labels`; a saved config carries them for the pipelines.
        kwargs.pop("num_labels", None)
        self.id2label = None
        self.label2id = None
        super().__post_init__(**kwargs)
        self.sentence_labels = _check_labels(
            "sentence_labels", self.sentence_labels if self.sentence_labels is not None else ["LABEL_0", "LABEL_1"]
        )
        self.token_labels = _check_labels("token_labels", self.token_labels if self.token_labels is not None else ["O"])
        _check_bio(self.token_labels)
        if self.pooling_mode not in POOLING_MODES:
            raise ValueError(f"`pooling_mode` is {self.pooling_mode!r}; choose one of {list(POOLING_MODES)}")
        if not 0.0 <= float(self.head_dropout) < 1.0:
            raise ValueError(f"`head_dropout` must be in [0, 1), got {self.head_dropout}")
        _check_separator(self.sentence_label_separator, self.sentence_labels)
        if self.token_decoding not in TOKEN_DECODINGS:
            raise ValueError(f"`token_decoding` is {self.token_decoding!r}; choose one of {list(TOKEN_DECODINGS)}")
        for name in ("sentence_loss_weight", "token_loss_weight"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        _check_rejection(self)
        if int(self.max_seq_length) < 2:
            raise ValueError(f"`max_seq_length` must be at least 2, got {self.max_seq_length}")
        encoder_positions = getattr(self.encoder_config, "max_position_embeddings", None)
        usable_positions = encoder_max_positions(self.encoder_config)
        if usable_positions is not None and self.max_seq_length > usable_positions:
            reserved = (
                f", less {encoder_positions - usable_positions} reserved up to the padding index"
                if usable_positions != encoder_positions
                else ""
            )
            raise ValueError(
                f"`max_seq_length` ({self.max_seq_length}) exceeds the encoder's max_position_embeddings "
                f"({encoder_positions}{reserved})"
            )
        self.id2label = dict(enumerate(self.sentence_labels))
        self.label2id = {label: index for index, label in self.id2label.items()}
        self.auto_map = {**AUTO_MAP, **(self.auto_map or {})}
        self.custom_pipelines = {**CUSTOM_PIPELINES, **(self.custom_pipelines or {})}

    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size

    @property
    def sentence_id2label(self) -> dict[int, str]:
        return dict(enumerate(self.sentence_labels))

    @property
    def sentence_label2id(self) -> dict[str, int]:
        return {label: index for index, label in enumerate(self.sentence_labels)}

    @property
    def token_id2label(self) -> dict[int, str]:
        return dict(enumerate(self.token_labels))

    @property
    def token_label2id(self) -> dict[str, int]:
        return {label: index for index, label in enumerate(self.token_labels)}


__all__ = ["MultiTaskConfig", "TOKEN_DECODINGS", "encoder_max_positions", "is_causal_encoder"]
