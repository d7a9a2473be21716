"""Data loading, label maps, tokenisation and collation for the multi-task model.

Every source is loaded into one canonical schema (a `datasets.DatasetDict` with splits `train`, `validation`,
`test`), with one row per example:

- `text` (`str`): the original text (`" ".join(words)` for pre-tokenised sources),
- `words` (`list[str]`): the words the token labels refer to (`split_words(text)` for raw-text sources),
- `tags` (`list[str] | None`): one BIO tag per word, or None when the source has no token labels,
- `sentence_label` (`str | None`): the sentence label, or None when the source has no sentence labels,
- `source` (`str`): the short name of the source the example comes from.

Sources are described by `DataSource` and loaded with `load_source` / `load_sources`: local folders in any format
of `formats.FORMATS` (JointBERT, CoNLL, SST-2, CSV, JSON Lines, annotation-tool exports; one module each in
`modeling_mtl/formats/`, see `formats.detect_format`), or Hugging Face Hub datasets. Label maps come from the
training split only (`build_label_maps`); labels that only occur in validation/test are counted and reported
(`count_unseen_labels`), never dropped. `encode_dataset_dict` tokenises with word alignment and
`MultiTaskCollator` pads batches for both heads.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict

# The readers and the schema are this module's API too (`from modeling_mtl.data import load_jointbert, FEATURES`).
from .data_formats import TABULAR_FORMATS, load_conll, load_jointbert, load_sst2, load_tabular
from .formats import FORMATS, SPAN_FORMATS, detect_format, detect_span_format, load_folder
from .formats.columns import standardize_dataset_dict
from .formats.common import FEATURES, SPLITS, folder_name, normalize_split_name
from .spans import EDGE_POLICIES, OVERLAP_POLICIES, ConversionReport

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label id ignored by the losses and the metrics (PyTorch's `CrossEntropyLoss` default)."""

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
"""Encoder inputs padded by `MultiTaskCollator` (`token_type_ids` only when the tokenizer produces them)."""


@dataclass
class DataSource:
    """Where one data source comes from and how to read it.

    Give exactly one of `data_dir` (a local folder) and `dataset_name` (a Hugging Face Hub dataset id).

    Args:
        data_dir: Local folder in one of `FORMATS` (word formats and annotation-tool exports).
        data_format: Format of `data_dir`; None detects it (`detect_format`).
        dataset_name: Hub dataset id, loaded with `datasets.load_dataset(dataset_name, dataset_config_name)`.
        dataset_config_name: Hub dataset configuration.
        text_column: Column holding raw text, split into words with `split_words` (csv, jsonl and Hub sources;
            default "text" when `tokens_column` is not given).
        tokens_column: Column holding a list of words (jsonl and Hub sources), instead of `text_column`.
        sentence_label_column: Column holding the sentence label (csv, jsonl and Hub sources; default "label",
            used when the data has such a column).
        tags_column: Column holding one BIO tag per word of `tokens_column` (jsonl and Hub sources).
        name: Short source name written in the `source` column; defaults to the folder name, or to
            `dataset_name` (with `/dataset_config_name` when given).
        edge_policy: Annotation exports: a span edge inside a word grows the span to the word ("expand") or is
            refused ("refuse"); see `modeling_mtl.spans`.
        overlap_policy: Annotation exports: overlapping spans are refused ("refuse") or the longer kept
            ("keep_longest").
        validation_split_percentage: When the source has no validation split, this percentage of its training
            examples becomes one (stratified by sentence label, seeded by `split_seed`); 0 or None: none.
        test_split_percentage: The same for a missing test split.
        split_seed: Seed of those splits. Apart from the training seed, so that runs over several training seeds
            all see the same validation and test examples.
    """

    data_dir: str | None = None
    data_format: str | None = None
    dataset_name: str | None = None
    dataset_config_name: str | None = None
    text_column: str | None = None
    tokens_column: str | None = None
    sentence_label_column: str | None = None
    tags_column: str | None = None
    name: str | None = None
    edge_policy: str = "expand"
    overlap_policy: str = "refuse"
    validation_split_percentage: float | None = 10.0
    test_split_percentage: float | None = 10.0
    split_seed: int = 42

    def __post_init__(self):
        if (self.data_dir is None) == (self.dataset_name is None):
            raise ValueError(
                "A DataSource needs exactly one of data_dir (a local folder) and dataset_name (a Hub dataset id); "
                f"got data_dir={self.data_dir!r}, dataset_name={self.dataset_name!r}."
            )
        if self.data_format is not None:
            if self.data_dir is None:
                raise ValueError("data_format only applies to a data_dir source.")
            known = tuple(FORMATS)
            if self.data_format not in known:
                raise ValueError(f"Unknown data_format {self.data_format!r}; expected one of {', '.join(known)}.")
        for key, choices in (("edge_policy", EDGE_POLICIES), ("overlap_policy", OVERLAP_POLICIES)):
            if getattr(self, key) not in choices:
                raise ValueError(f"{key} is {getattr(self, key)!r}; expected one of {', '.join(choices)}.")
        for key in ("validation_split_percentage", "test_split_percentage"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 100:
                raise ValueError(f"{key} is {value!r}; expected a percentage in [0, 100).")
        if (self.validation_split_percentage or 0) + (self.test_split_percentage or 0) >= 100:
            raise ValueError("validation_split_percentage + test_split_percentage must leave training examples (< 100).")
        if self.dataset_config_name is not None and self.dataset_name is None:
            raise ValueError("dataset_config_name only applies to a dataset_name source.")
        if self.text_column is not None and self.tokens_column is not None:
            raise ValueError("Give text_column (raw text) or tokens_column (a list of words), not both.")
        if self.tags_column is not None and self.tokens_column is None:
            raise ValueError("tags_column needs tokens_column: word-level tags need the words they label.")
        if self.name is None:
            if self.data_dir is not None:
                self.name = folder_name(self.data_dir)
            elif self.dataset_config_name is not None:
                self.name = f"{self.dataset_name}/{self.dataset_config_name}"
            else:
                self.name = self.dataset_name

    @property
    def has_column_options(self) -> bool:
        """Whether any of the column options is set."""
        columns = (self.text_column, self.tokens_column, self.sentence_label_column, self.tags_column)
        return any(column is not None for column in columns)



# --------------------------------------------------------------------------------------------------------------
# Loading several sources


def load_source(source: DataSource, report: ConversionReport | None = None) -> DatasetDict:
    """Load one source into the canonical schema (splits among `SPLITS`).

    `report` receives the span conversion counts of an annotation-tool export (`modeling_mtl.spans`).
    """
    if source.dataset_name is not None:
        raw = datasets.load_dataset(source.dataset_name, source.dataset_config_name)
        return standardize_dataset_dict(raw, source)
    data_format = source.data_format or detect_format(source.data_dir)
    loaded = load_folder(source, data_format, report)
    logger.info(
        "Loaded %s (%s): %s", source.name, data_format, ", ".join(f"{s} {len(d)}" for s, d in loaded.items())
    )
    return carve_missing_splits(DatasetDict(loaded), source)


def _held_out_counts(group_sizes: Sequence[int], percentage: float, kept: Sequence[int]) -> list[int]:
    """How many examples of each group to hold out for `percentage` of all of them: largest remainder over the
    groups' exact shares, never taking a group's last example out of training (`kept`: what is left of each)."""
    total = sum(group_sizes)
    shares = [size * percentage / 100 for size in group_sizes]
    counts = [min(int(share), max(left - 1, 0)) for share, left in zip(shares, kept)]
    by_remainder = sorted(range(len(shares)), key=lambda g: (counts[g] - shares[g], g))
    for group in by_remainder:
        if sum(counts) >= round(total * percentage / 100):
            break
        if counts[group] < kept[group] - 1:
            counts[group] += 1
    return counts


def carve_missing_splits(loaded: DatasetDict, source: DataSource) -> DatasetDict:
    """Give a source without a validation (or test) split one, taken from its training examples.

    `source.validation_split_percentage` / `test_split_percentage` of the training examples, stratified by sentence
    label (each label keeps its share, and at least one example in training), seeded by `source.split_seed`. Each
    split keeps the file order. Splits the source has are never touched.
    """
    wanted = [
        (split, percentage)
        for split, percentage in (("validation", source.validation_split_percentage),
                                  ("test", source.test_split_percentage))
        if split not in loaded and percentage
    ]
    if not wanted or "train" not in loaded:
        return loaded
    train = loaded["train"]
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(train["sentence_label"]):
        groups.setdefault("" if label is None else label, []).append(index)
    rng = random.Random(source.split_seed)
    members = [rng.sample(groups[label], len(groups[label])) for label in sorted(groups)]
    kept = [len(indices) for indices in members]
    taken: dict[str, list[int]] = {}
    for split, percentage in wanted:
        counts = _held_out_counts([len(indices) for indices in members], percentage, kept)
        taken[split] = sorted(i for g, indices in enumerate(members)
                              for i in indices[len(indices) - kept[g]:][:counts[g]])
        kept = [left - count for left, count in zip(kept, counts)]
    held_out = {i for indices in taken.values() for i in indices}
    carved = {"train": train.select([i for i in range(len(train)) if i not in held_out])}
    for split, indices in taken.items():
        if not indices:
            logger.warning("%s: too few training examples (%d) to take a %s split from.", source.name, len(train), split)
            continue
        carved[split] = train.select(indices)
    logger.info(
        "%s: %s taken from its %d training examples (seed %d, stratified by sentence label)", source.name,
        ", ".join(f"{split} {len(carved[split])}" for split in taken if split in carved), len(train), source.split_seed,
    )
    return DatasetDict({split: carved.get(split, loaded.get(split)) for split in SPLITS
                        if split in carved or split in loaded})


def load_sources(sources: Sequence[DataSource], reports: dict[str, ConversionReport] | None = None) -> DatasetDict:
    """Load several sources and concatenate them split by split.

    Sources may cover different tasks (e.g. ATIS with both, SST-2 sentence-only, WNUT token-only); a split missing
    from some sources is fine. `reports`, when given, is filled with one `ConversionReport` per source name (the
    span conversion counts; empty for the formats that have no spans).

    Raises:
        ValueError: if no source is given, two sources share a name, or a source has no train split.
    """
    if not sources:
        raise ValueError("No data source given.")
    names = Counter(source.name for source in sources)
    duplicates = sorted(name for name, count in names.items() if count > 1)
    if duplicates:
        raise ValueError(f"Several sources are named {', '.join(map(repr, duplicates))}; give each a distinct name.")
    if reports is not None:
        reports.update({source.name: ConversionReport() for source in sources})
    loaded = [load_source(source, None if reports is None else reports[source.name]) for source in sources]
    for source, dataset_dict in zip(sources, loaded):
        if "train" not in dataset_dict:
            raise ValueError(
                f"Source {source.name!r} has no train split (it has: {', '.join(dataset_dict) or 'nothing'})."
            )
        for split, dataset in dataset_dict.items():
            if len(dataset) == 0:
                raise ValueError(f"Source {source.name!r}: the {split} split has no examples.")
    return DatasetDict(
        {
            split: datasets.concatenate_datasets([d[split] for d in loaded if split in d])
            for split in SPLITS
            if any(split in d for d in loaded)
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Label maps


def build_label_maps(train: Dataset) -> tuple[list[str], list[str]]:
    """Label lists (index = label id) from the training split.

    Returns:
        `(sentence_labels, token_labels)`: sentence labels sorted; token labels `"O"` first, then for each entity
        type (sorted) `B-<type>` and `I-<type>`, both always present so a B->I mapping never misses. A list is empty
        when the split has no label of that kind.
    """
    sentence_labels = sorted({label for label in train["sentence_label"] if label is not None})
    types: set[str] = set()
    has_tags = False
    for tags in train["tags"]:
        if tags is not None:
            has_tags = True
            types.update(tag[2:] for tag in tags if tag != "O")
    token_labels = ["O"] + [f"{prefix}-{t}" for t in sorted(types) for prefix in "BI"] if has_tags else []
    return sentence_labels, token_labels


def count_unseen_labels(
    dataset: Dataset, sentence_labels: Sequence[str], token_labels: Sequence[str]
) -> dict[str, Any]:
    """Count the labels of `dataset` missing from the label maps (they are kept, and score as errors).

    Returns:
        `{"examples_with_unseen_sentence_label": int, "unseen_sentence_labels": {label: examples},
        "words_with_unseen_tag": int, "unseen_tags": {tag: words}}`.
    """
    known_sentence, known_token = set(sentence_labels), set(token_labels)
    unseen_sentence = Counter(
        label for label in dataset["sentence_label"] if label is not None and label not in known_sentence
    )
    unseen_tags = Counter(tag for tags in dataset["tags"] if tags is not None for tag in tags if tag not in known_token)
    return {
        "examples_with_unseen_sentence_label": sum(unseen_sentence.values()),
        "unseen_sentence_labels": dict(sorted(unseen_sentence.items())),
        "words_with_unseen_tag": sum(unseen_tags.values()),
        "unseen_tags": dict(sorted(unseen_tags.items())),
    }


# --------------------------------------------------------------------------------------------------------------
# Tokenisation


def _inside_tag(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def tokenize_and_align(
    batch: Mapping[str, list],
    tokenizer,
    sentence_label2id: Mapping[str, int],
    token_label2id: Mapping[str, int],
    max_length: int | None,
    label_all_tokens: bool = False,
) -> dict[str, list]:
    """Tokenise a batch of canonical examples (for `Dataset.map(batched=True)`) and align the labels to tokens.

    Tokenises `words` with `is_split_into_words=True`, truncating to `max_length` (None: the tokenizer's
    `model_max_length`); needs a fast tokenizer (`word_ids()`).

    Returns:
        The tokenizer outputs (`input_ids`, `attention_mask`, and `token_type_ids` when it gives them) and
        - `sentence_labels`: the label id, IGNORE_INDEX when the example has no label or an unseen one;
        - `token_labels`: per token, the tag id on the first sub-token of each word, IGNORE_INDEX on special tokens,
          on the other sub-tokens (with `label_all_tokens`: their word's tag, `B-X` mapped to `I-X`), on every
          token of an example without tags and on the tokens of a word with an unseen tag;
        - `word_token_index`: per word, the position of its first kept sub-token, -1 when it has none (truncated
          away, or the tokenizer produced no sub-token for it);
        - `num_truncated_words`: how many words lost all their sub-tokens to truncation.
    """
    encoding = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=max_length)
    out = {key: encoding[key] for key in encoding.keys()}
    out.update(sentence_labels=[], token_labels=[], word_token_index=[], num_truncated_words=[])
    for i, (words, tags, label) in enumerate(zip(batch["words"], batch["tags"], batch["sentence_label"])):
        if tags is not None and len(tags) != len(words):
            raise ValueError(f"Example {i} of the batch has {len(tags)} tags for {len(words)} words.")
        word_ids = encoding.word_ids(i)
        first: dict[int, int] = {}
        for position, word in enumerate(word_ids):
            if word is not None and word not in first:
                first[word] = position

        token_labels = []
        for position, word in enumerate(word_ids):
            tag_id = None if word is None or tags is None else token_label2id.get(tags[word])
            if tag_id is None:
                token_labels.append(IGNORE_INDEX)
            elif position == first[word]:
                token_labels.append(tag_id)
            elif label_all_tokens:
                token_labels.append(token_label2id.get(_inside_tag(tags[word]), tag_id))
            else:
                token_labels.append(IGNORE_INDEX)

        overflow_words = {w for o in encoding.encodings[i].overflowing for w in o.word_ids if w is not None}
        out["sentence_labels"].append(IGNORE_INDEX if label is None else sentence_label2id.get(label, IGNORE_INDEX))
        out["token_labels"].append(token_labels)
        out["word_token_index"].append([first.get(word, -1) for word in range(len(words))])
        out["num_truncated_words"].append(len(overflow_words - first.keys()))
    return out


def encode_dataset_dict(
    dataset_dict: DatasetDict,
    tokenizer,
    sentence_labels: Sequence[str],
    token_labels: Sequence[str],
    max_length: int | None,
    label_all_tokens: bool = False,
) -> tuple[DatasetDict, dict[str, dict[str, Any]]]:
    """Tokenise every split with `tokenize_and_align`, keeping the raw columns (the metrics' gold standard).

    Unseen labels and truncation are logged as warnings.

    Returns:
        `(encoded, stats)`; `stats[split]` holds `examples`, `truncated_examples` (examples that lost at least one
        word to truncation), `words_lost`, `words_without_token` (words the tokenizer gives no sub-token, e.g. a lone
        zero-width character; their tags cannot be learned) and `unseen` (the `count_unseen_labels` counts).

    Raises:
        ValueError: naming the split, when a split has no examples.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Word alignment needs a fast (Rust-backed) tokenizer, which provides word_ids().")
    fn_kwargs = {
        "tokenizer": tokenizer,
        "sentence_label2id": {label: i for i, label in enumerate(sentence_labels)},
        "token_label2id": {label: i for i, label in enumerate(token_labels)},
        "max_length": max_length,
        "label_all_tokens": label_all_tokens,
    }
    encoded, stats = {}, {}
    for split, dataset in dataset_dict.items():
        if len(dataset) == 0:
            raise ValueError(
                f"The {split} split has no examples (an empty file, or max_train_samples / max_eval_samples of 0)."
            )
        unseen = count_unseen_labels(dataset, sentence_labels, token_labels)
        if unseen["examples_with_unseen_sentence_label"] or unseen["words_with_unseen_tag"]:
            logger.warning(
                "%s: %d examples have a sentence label unseen in training %s and %d words a tag unseen in training "
                "%s; they are kept and count as errors.",
                split,
                unseen["examples_with_unseen_sentence_label"],
                unseen["unseen_sentence_labels"],
                unseen["words_with_unseen_tag"],
                unseen["unseen_tags"],
            )
        encoded[split] = dataset.map(tokenize_and_align, batched=True, fn_kwargs=fn_kwargs, desc=f"Tokenizing {split}")
        lost = encoded[split]["num_truncated_words"]
        # Words without any sub-token (e.g. a lone zero-width or variation-selector character): their tag cannot be
        # learned, and they are predicted "O".
        without_token = [
            sum(1 for index in positions if index == -1) - truncated
            for positions, truncated in zip(encoded[split]["word_token_index"], lost)
        ]
        stats[split] = {
            "examples": len(dataset),
            "truncated_examples": sum(1 for n in lost if n),
            "words_lost": sum(lost),
            "words_without_token": sum(without_token),
            "unseen": unseen,
        }
        if stats[split]["words_without_token"]:
            first = next(index for index, count in enumerate(without_token) if count)
            logger.warning(
                "%s: %d words produce no sub-token with this tokenizer (first in example %d: %s); their tags cannot "
                "be learned and they are predicted 'O'.",
                split,
                stats[split]["words_without_token"],
                first,
                ascii([w for w in dataset[first]["words"] if not tokenizer(w, add_special_tokens=False)["input_ids"]]),
            )
        if stats[split]["truncated_examples"]:
            logger.warning(
                "%s: %d examples were truncated to %s tokens, losing %d words (scored as missed).",
                split,
                stats[split]["truncated_examples"],
                max_length or tokenizer.model_max_length,
                stats[split]["words_lost"],
            )
    return DatasetDict(encoded), stats


def length_order(split: Dataset) -> list[int]:
    """The indices of an encoded split (`encode_dataset_dict`) from its shortest example to its longest (ties in
    data set order): batches drawn in this order pad far less than in the data set's."""
    lengths = [len(ids) for ids in split["input_ids"]]
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def padding_share(batches) -> float:
    """The share of padding among the tokens of `batches` (each a list of example lengths), every batch padded to
    its longest example."""
    batches = [list(batch) for batch in batches if len(batch)]
    padded = sum(max(batch) * len(batch) for batch in batches)
    return 1 - sum(map(sum, batches)) / padded if padded else 0.0


# --------------------------------------------------------------------------------------------------------------
# Collation


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


@dataclass
class MultiTaskCollator:
    """Pad encoded examples into a batch for both heads.

    Pads `input_ids`, `attention_mask` and `token_type_ids` (those present) with `tokenizer.pad`, pads
    `token_labels` with IGNORE_INDEX to the same length (on the tokenizer's padding side) and stacks
    `sentence_labels`. Each label tensor is emitted when any feature carries it; features without it are filled with
    IGNORE_INDEX, so every batch has the same keys. All other keys (`word_token_index`, raw columns, ...) are
    dropped. Features may hold python lists or tensors.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [{key: _as_list(f[key]) for key in MODEL_INPUT_KEYS if key in f} for f in features]
        batch = dict(
            self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        )
        length = batch["input_ids"].shape[1]
        if any("token_labels" in f for f in features):
            rows = []
            for f in features:
                labels = _as_list(f["token_labels"]) if "token_labels" in f else []
                padding = [IGNORE_INDEX] * (length - len(labels))
                rows.append(padding + labels if self.tokenizer.padding_side == "left" else labels + padding)
            batch["token_labels"] = torch.tensor(rows, dtype=torch.long)
        if any("sentence_labels" in f for f in features):
            batch["sentence_labels"] = torch.tensor(
                [int(f.get("sentence_labels", IGNORE_INDEX)) for f in features], dtype=torch.long
            )
        return batch


__all__ = [
    "FEATURES", "FORMATS", "IGNORE_INDEX", "MODEL_INPUT_KEYS", "SPAN_FORMATS", "SPLITS", "TABULAR_FORMATS",
    "DataSource", "MultiTaskCollator", "build_label_maps", "carve_missing_splits", "count_unseen_labels",
    "detect_format", "detect_span_format", "encode_dataset_dict", "folder_name", "length_order", "load_conll",
    "load_jointbert", "load_source", "load_sources", "load_sst2", "load_tabular", "normalize_split_name",
    "standardize_dataset_dict", "tokenize_and_align",
]
