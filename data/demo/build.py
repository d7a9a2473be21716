#!/usr/bin/env python3
"""Build the demo data set from ``source.txt`` (standard library only).

``source.txt`` is the editable truth: one example per line,
``<topic>\\t<sentence>``, where each entity is written inline as
``[surface words](TYPE)``.  Lines starting with ``#`` and blank lines are
ignored.

This script parses it and writes the JointBERT layout next to itself::

    train/seq.in   dev/seq.in   test/seq.in    space-separated words
    train/seq.out  dev/seq.out  test/seq.out   one IOB2 tag per word
    train/label    dev/label    test/label     the topic of the sentence

Words are obtained by applying ``WORD_RE`` to the plain (markup-removed)
sentence, which splits on whitespace and separates leading/trailing
punctuation into words of its own.  Every entity must start and end on a
word boundary of that split.  Any problem (unknown topic or type, malformed
markup, misaligned entity, duplicate sentence) stops the build with the
source line number.

The split is stratified by topic and uses a fixed seed, so re-running the
script always produces byte-identical files: 70% train, 15% dev, 15% test.

Usage::

    python data/demo/build.py
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source.txt"

TOPICS = ("travel", "technology", "politics", "sports", "other")
TYPES = ("PERSON", "LOC", "ORG", "DATE")
SPLITS = (("train", 0.70), ("dev", 0.15), ("test", 0.15))
SEED = 20240611

# Word splitting rule shared with the project (do not change without
# rebuilding): a word is an optional @/# plus word characters joined by
# apostrophes, hyphens, dots, colons or slashes; anything else that is not
# whitespace is a word of its own.
WORD_RE = re.compile(r"[@#]?\w+(?:['’\-.:/]\w+)*|\S")
# A well-formed entity: [non-empty text without brackets](TYPE).
ENTITY_RE = re.compile(r"\[([^\[\]()]*)\]\(([^()\[\]]*)\)")


class SourceError(ValueError):
    """A problem in source.txt, reported with its line number."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"{SOURCE.name}:{lineno}: {message}")


def parse_markup(text: str, lineno: int) -> tuple[str, list[tuple[int, int, str]]]:
    """Remove the entity markup from ``text``.

    Returns the plain text and the character spans ``(start, end, TYPE)`` of
    the entities in it.
    """
    plain: list[str] = []
    spans: list[tuple[int, int, str]] = []
    length = 0
    pos = 0
    for match in ENTITY_RE.finditer(text):
        before = text[pos:match.start()]
        surface, etype = match.group(1), match.group(2)
        if etype not in TYPES:
            raise SourceError(lineno, f"unknown entity type {etype!r} (expected one of {', '.join(TYPES)})")
        if not surface.strip():
            raise SourceError(lineno, f"empty entity in {match.group(0)!r}")
        if surface != surface.strip():
            raise SourceError(lineno, f"entity {surface!r} has leading or trailing spaces")
        plain.append(before)
        length += len(before)
        spans.append((length, length + len(surface), etype))
        plain.append(surface)
        length += len(surface)
        pos = match.end()
    plain.append(text[pos:])
    result = "".join(plain)
    for char in "[]":
        if char in result:
            raise SourceError(lineno, f"malformed markup: stray {char!r} in {text!r}")
    return result, spans


def to_words_and_tags(plain: str, spans: list[tuple[int, int, str]], lineno: int) -> tuple[list[str], list[str]]:
    """Split ``plain`` into words and give each word an IOB2 tag."""
    matches = list(WORD_RE.finditer(plain))
    words = [m.group(0) for m in matches]
    tags = ["O"] * len(words)
    starts = {m.start(): i for i, m in enumerate(matches)}
    ends = {m.end(): i for i, m in enumerate(matches)}
    for start, end, etype in spans:
        surface = plain[start:end]
        if start not in starts or end not in ends:
            raise SourceError(
                lineno,
                f"entity {surface!r} ({etype}) does not fall on word boundaries; "
                f"words are {words!r}",
            )
        first, last = starts[start], ends[end]
        tags[first] = f"B-{etype}"
        for i in range(first + 1, last + 1):
            tags[i] = f"I-{etype}"
    return words, tags


def read_source() -> list[dict]:
    """Parse source.txt into a list of examples (in file order)."""
    examples = []
    seen: dict[str, int] = {}
    with SOURCE.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.count("\t") != 1:
                raise SourceError(lineno, "expected exactly one tab: <topic>\\t<sentence>")
            topic, text = line.split("\t")
            if topic not in TOPICS:
                raise SourceError(lineno, f"unknown topic {topic!r} (expected one of {', '.join(TOPICS)})")
            if text != text.strip() or not text:
                raise SourceError(lineno, "sentence is empty or has leading/trailing spaces")
            plain, spans = parse_markup(text, lineno)
            words, tags = to_words_and_tags(plain, spans, lineno)
            key = " ".join(words).lower()
            if key in seen:
                raise SourceError(lineno, f"duplicate of line {seen[key]}")
            seen[key] = lineno
            examples.append({"topic": topic, "words": words, "tags": tags, "line": lineno})
    return examples


def split(examples: list[dict]) -> dict[str, list[dict]]:
    """Deterministic 70/15/15 split, stratified by topic."""
    rng = random.Random(SEED)
    parts: dict[str, list[dict]] = {name: [] for name, _ in SPLITS}
    for topic in TOPICS:
        group = [ex for ex in examples if ex["topic"] == topic]
        rng.shuffle(group)
        n_dev = round(len(group) * SPLITS[1][1])
        n_test = round(len(group) * SPLITS[2][1])
        n_train = len(group) - n_dev - n_test
        parts["train"].extend(group[:n_train])
        parts["dev"].extend(group[n_train:n_train + n_dev])
        parts["test"].extend(group[n_train + n_dev:])
    for name in parts:  # mix the topics inside each split
        rng.shuffle(parts[name])
    return parts


def write(parts: dict[str, list[dict]]) -> None:
    for name, items in parts.items():
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        files = {
            "seq.in": [" ".join(ex["words"]) for ex in items],
            "seq.out": [" ".join(ex["tags"]) for ex in items],
            "label": [ex["topic"] for ex in items],
        }
        for filename, lines in files.items():
            with (folder / filename).open("w", encoding="utf-8", newline="\n") as handle:
                handle.write("\n".join(lines) + "\n")


def report(parts: dict[str, list[dict]]) -> str:
    """Counts per split, topic and entity type, as a plain-text table."""
    columns = [name for name, _ in SPLITS] + ["total"]
    rows: list[tuple[str, list[int]]] = []

    def add(label: str, counter_of) -> None:
        values = [counter_of(parts[name]) for name, _ in SPLITS]
        rows.append((label, values + [sum(values)]))

    add("sentences", len)
    add("words", lambda items: sum(len(ex["words"]) for ex in items))
    for topic in TOPICS:
        add(f"topic {topic}", lambda items, t=topic: sum(ex["topic"] == t for ex in items))
    add("entities", lambda items: sum(tag.startswith("B-") for ex in items for tag in ex["tags"]))
    for etype in TYPES:
        add(f"entity {etype}", lambda items, e=etype: sum(tag == f"B-{e}" for ex in items for tag in ex["tags"]))
    add("sentences w/o entity", lambda items: sum(all(t == "O" for t in ex["tags"]) for ex in items))

    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}" + "".join(f"{c:>8}" for c in columns)]
    for label, values in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{v:>8}" for v in values))

    per_topic = Counter()
    for items in parts.values():
        for ex in items:
            for tag in ex["tags"]:
                if tag.startswith("B-"):
                    per_topic[ex["topic"], tag[2:]] += 1
    lines.append("")
    lines.append("entities by topic" + " " * max(0, width - 17) + "".join(f"{t:>8}" for t in TYPES))
    for topic in TOPICS:
        lines.append(f"{topic:<{max(width, 17)}}" + "".join(f"{per_topic[topic, t]:>8}" for t in TYPES))
    return "\n".join(lines)


def main() -> int:
    try:
        examples = read_source()
    except SourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    parts = split(examples)
    write(parts)
    print(report(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
