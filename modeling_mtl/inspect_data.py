"""What a run would train on, before any training: `python -m modeling_mtl inspect-data <run file or folder>`.

    python -m modeling_mtl inspect-data configuration/atis.yaml
    python -m modeling_mtl inspect-data ../shared/data/atis --json

For each source: the format detected, and what its span conversion changed or skipped (`spans.ConversionReport`);
for the data the run trains on: the examples per split, the sentence-label and entity-type counts per split, labels
and entity types met only in validation/test (scored as errors), texts longer than the encoder's `max_seq_length`
(truncated), and texts found in more than one split. Loading refuses bad data exactly as training does (same
loaders), so a data set `inspect-data` accepts is one training accepts. `train_mtl.py` logs the same summary at start
(without the truncation count, which the encoding step reports there).
"""

from __future__ import annotations

import os
from collections import Counter

from datasets import DatasetDict

from .data import DataSource, load_sources
from .formats import detect_format
from .spans import ConversionReport

SPLIT_ORDER = ("train", "validation", "test")


def source_format(source: DataSource) -> str:
    """The format `load_source` reads `source` in."""
    if source.dataset_name is not None:
        return f"hub data set {source.dataset_name}"
    return source.data_format or detect_format(source.data_dir)


def _entities(rows_tags) -> Counter:
    """Entity counts by type over word tag lists (a B- opens one; an I- not after its type opens one too)."""
    counts: Counter = Counter()
    for tags in rows_tags:
        previous = "O"
        for tag in tags or []:
            if tag.startswith("B-") or (tag.startswith("I-") and previous[2:] != tag[2:]):
                counts[tag[2:]] += 1
            previous = tag
    return counts


def count_truncated(texts_words, tokenizer, max_length: int) -> tuple[int, int | None]:
    """How many word lists encode to more than `max_length` tokens (special tokens included), and the first's
    index (or None)."""
    truncated, first = 0, None
    for start in range(0, len(texts_words), 512):
        chunk = texts_words[start : start + 512]
        lengths = [len(ids) for ids in tokenizer(chunk, is_split_into_words=True, truncation=False)["input_ids"]]
        for offset, length in enumerate(lengths):
            if length > max_length:
                truncated += 1
                first = start + offset if first is None else first
    return truncated, first


def summarize(raw: DatasetDict, sources, reports: dict[str, ConversionReport], tokenizer=None,
              max_length: int | None = None) -> dict:
    """The summary as a dict (what `--json` prints); see the module docstring."""
    splits = [split for split in SPLIT_ORDER if split in raw]
    summary = {
        "sources": [
            {"name": source.name, "format": source_format(source),
             "conversion": dict(reports[source.name].counts) if source.name in reports else None,
             "records": reports[source.name].records if source.name in reports else None}
            for source in sources
        ],
        "splits": {},
    }
    for split in splits:
        data = raw[split]
        labels = Counter(label for label in data["sentence_label"] if label is not None)
        summary["splits"][split] = {
            "examples": len(data),
            "by_source": dict(Counter(data["source"])),
            "sentence_labels": dict(labels.most_common()),
            "entity_types": dict(_entities(data["tags"]).most_common()),
        }
    train = summary["splits"].get("train", {"sentence_labels": {}, "entity_types": {}})
    summary["unseen_in_train"] = {
        split: {
            "sentence_labels": sorted(set(summary["splits"][split]["sentence_labels"]) - set(train["sentence_labels"])),
            "entity_types": sorted(set(summary["splits"][split]["entity_types"]) - set(train["entity_types"])),
        }
        for split in splits if split != "train"
    }
    texts = {split: set(" ".join(words) for words in raw[split]["words"]) for split in splits}
    summary["duplicates_across_splits"] = {
        f"{a}/{b}": len(texts[a] & texts[b]) for i, a in enumerate(splits) for b in splits[i + 1 :]
    }
    if tokenizer is not None and max_length is not None:
        summary["max_seq_length"] = max_length
        summary["truncated"] = {}
        for split in splits:
            count, first = count_truncated(list(raw[split]["words"]), tokenizer, max_length)
            summary["truncated"][split] = {"examples": count, "first_index": first}
    return summary


def _counts(counts: dict, limit: int = 12) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{key} {value}" for key, value in items[:limit])
    return (shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")) or "none"


def format_summary(summary: dict, reports: dict[str, ConversionReport] | None = None) -> str:
    """The summary as readable text."""
    lines = []
    for source in summary["sources"]:
        lines.append(f"Source {source['name']}: {source['format']}")
        if reports and source["name"] in reports and reports[source["name"]].records:
            lines.extend("  " + line for line in reports[source["name"]].summary().splitlines())
    for split, info in summary["splits"].items():
        lines.append(f"{split}: {info['examples']} examples")
        lines.append(f"  sentence labels ({len(info['sentence_labels'])}): {_counts(info['sentence_labels'])}")
        lines.append(f"  entity types ({len(info['entity_types'])}): {_counts(info['entity_types'])}")
    for split, unseen in summary["unseen_in_train"].items():
        for kind in ("sentence_labels", "entity_types"):
            if unseen[kind]:
                lines.append(f"only in {split}, not in train ({kind.replace('_', ' ')}, scored as errors): "
                             + ", ".join(unseen[kind]))
    if "truncated" in summary:
        truncated = {split: info for split, info in summary["truncated"].items() if info["examples"]}
        lines.append(f"texts longer than max_seq_length {summary['max_seq_length']} tokens (truncated): " + (
            "; ".join(f"{split} {info['examples']} (first: example {info['first_index']})"
                      for split, info in truncated.items()) or "none"))
    duplicates = {pair: count for pair, count in summary["duplicates_across_splits"].items() if count}
    lines.append("texts in more than one split: " + (_counts(duplicates) if duplicates else "none"))
    return "\n".join(lines)


def load_run_data(target: str):
    """(model_args, data_args) of a run file, or of a data folder with default arguments."""
    from .training_args import DataArguments, ModelArguments, parse_arguments

    if os.path.isdir(target):
        return ModelArguments(), DataArguments(data_dir=target)
    if not os.path.isfile(target):
        raise FileNotFoundError(f"{target}: neither a run file nor a data folder")
    model_args, data_args, _ = parse_arguments([target])
    return model_args, data_args


def _tokenizer_and_length(model_args):
    """The encoder's tokenizer as training adapts it (pre-split words of a byte-level BPE get their word-start
    space) and the max_seq_length training would use, by `from_encoder`'s rules, without loading weights."""
    from transformers import AutoConfig, AutoTokenizer

    from .configuration_mtl import MultiTaskConfig
    from .modeling_mtl import adapt_tokenizer, encoder_settings, resolve_encoder

    source = resolve_encoder(model_args.encoder)
    encoder_config = AutoConfig.from_pretrained(source)
    tokenizer = adapt_tokenizer(AutoTokenizer.from_pretrained(source), encoder_config.pad_token_id)
    settings = {**encoder_settings(encoder_config, source), **model_args.config_overrides()}
    return tokenizer, int(settings.get("max_seq_length", MultiTaskConfig.max_seq_length))


def inspect_data(target: str, with_tokenizer: bool = True) -> tuple[dict, str]:
    """Load what `target` (run file or data folder) would train on; returns (summary dict, summary text).
    Raises what training raises on bad data (ValueError / FileNotFoundError naming file and line)."""
    model_args, data_args = load_run_data(target)
    sources = data_args.data_sources()
    reports: dict[str, ConversionReport] = {}
    raw = load_sources(sources, reports=reports)
    tokenizer, length = _tokenizer_and_length(model_args) if with_tokenizer else (None, None)
    summary = summarize(raw, sources, reports, tokenizer, length)
    return summary, format_summary(summary, reports)


__all__ = ["format_summary", "inspect_data", "source_format", "summarize"]
