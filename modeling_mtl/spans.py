"""Character-span annotations (Label Studio, Doccano, Prodigy, Rasa exports) to the package's word-level BIO tags.

Annotation tools give a text and entity spans as character offsets. Training needs words and one IOB2 tag per word,
and the words must be the ones `predict` will see on the same text. So the words are always exactly
`decoding_mtl.split_words(text)`: a converted example's `words` equal what `predict` returns for its text, and
each entity's word offsets are the offsets `predict` reports.

Use: a reader turns each exported task into a `SpanRecord` (text, `Span`s, sentence label, and `where`, a
"<file>, <record>" location such as "train.json, task 12" that every message starts with), then

    report = ConversionReport()
    columns = records_to_columns(records, report, edge_policy="expand", overlap_policy="refuse")
    logger.info(report.summary())

`columns` holds the canonical columns of `data_formats` readers (`text`, `words`, `tags`, `sentence_label`; a
missing sentence label is None). A record without spans gets all-"O" tags: a text with no entity is a valid NER
example. `to_words_and_tags` converts one record.

What is checked, and what happens (every change is counted in the report under the kind in quotes; refused
problems raise `SpanError`, whose message names `where`, the offsets and the span's text):

- Offsets must be integers, 0 <= start <= end <= len(text) (else refused). When a span carries its own `text`,
  `record.text[start:end]` must equal it. If it does not, a known shift is looked for that makes *every* span of
  the record that carries text match, and is applied to all the record's spans: offsets counted in UTF-16 code
  units, as browser tools do (an emoji or other astral character counts 2), "repaired_utf16_offsets"; offsets
  counted on the text with "\\r\\n" turned into "\\n", or the reverse, "repaired_crlf_offsets"; a leading
  byte-order mark counted although the text has none, or not counted although it has one,
  "repaired_bom_offsets" (combinations are tried too, fewest repairs first; each span whose offsets change is
  counted under every repair of the shift). If no shift proves itself, or the spans fit different shifts, refused.
  Spans without `text` are taken as given (in a record whose other spans prove a shift, that shift is applied).
- An empty span (start == end) is skipped, "empty_span"; a span that covers no word (only whitespace, zero-width
  or control characters) is skipped, "whitespace_span".
- Span edges and words. The span covers every splitter word it touches. Edges in whitespace (or invisible
  characters) between words are fine: the span shrinks to its words, "trimmed_whitespace". An edge *inside* a
  splitter word (`Boston` in `Boston's`, `e` before its combining accent, `York` in `York-based`) is handled by
  `edge_policy`: "expand" grows the span to the whole word, "expanded_to_word"; "refuse" raises. Words are never
  split at a span edge: `predict` would not split them, so the model would be trained on words it never sees.
  (Edges at punctuation such as `Boston` in `Boston.` are already word boundaries of the splitter.)
- Overlaps are judged on the words the spans cover. The same words with the same label twice is counted once,
  "duplicate_span". Otherwise two spans sharing a word (overlapping or nested) are handled by `overlap_policy`:
  "refuse" raises naming both spans; "keep_longest" keeps the span whose whole words cover more characters (on a
  tie, the one listed first) and drops the other, "dropped_overlapping_span".
- Labels: an empty or whitespace-only label, or one that is not a string, is refused. Tags must match
  `O|[BI]-\\S+`, so leading and trailing whitespace is stripped, "label_whitespace_stripped", and each inner space
  becomes "_", "label_spaces_replaced" ("from loc" -> tags `B-from_loc`). To keep that reversible, a label with
  spaces that also holds "_", or with whitespace other than plain spaces inside, is refused, and so is a tag
  label reached from two different labels; `ConversionReport.labels` maps each tag label back to the label as
  annotated.
- A record whose text has no word at all is skipped, "empty_text". A record without spans is kept, all "O", and
  counted as "no_spans" (for information: it is not an error).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .decoding_mtl import split_words

__all__ = [
    "EDGE_POLICIES",
    "OVERLAP_POLICIES",
    "ConversionReport",
    "Span",
    "SpanError",
    "SpanRecord",
    "records_to_columns",
    "to_words_and_tags",
]

EDGE_POLICIES = ("expand", "refuse")
"""What to do with a span edge inside a word: grow the span to whole words, or raise `SpanError`."""

OVERLAP_POLICIES = ("refuse", "keep_longest")
"""What to do with spans sharing a word: raise `SpanError`, or keep the longer span and drop the other."""

_BOM = "\ufeff"


class SpanError(ValueError):
    """A span or record that cannot be converted; the message names where, the offsets and the span's text."""


@dataclass(frozen=True)
class Span:
    """An annotated entity: `text[start:end]` of its record (Python str indices, `end` exclusive)."""

    start: int
    end: int
    label: str
    text: str | None = None
    """The span's own text when the export carries it (Label Studio's `value.text`); used to check the offsets."""


@dataclass
class SpanRecord:
    """One annotated text: its spans, its sentence label (None if none) and where it comes from."""

    text: str
    spans: list[Span]
    sentence_label: str | None
    where: str
    """"<file>, <record>", e.g. "train.json, task 12": starts every message; the part before ", " is the file."""


class ConversionReport:
    """Counts of every problem kind, per file, plus the first few messages of each kind.

    `counts` maps kind -> count over all files, `by_file` maps file -> kind -> count (the file is the part of
    `where` before the first ", "), `examples` maps kind -> the first `max_examples` messages. `records` and
    `spans` count the records converted and the entity spans tagged; `labels` maps each tag label to the label as
    annotated (they differ when spaces were replaced).
    """

    def __init__(self, max_examples: int = 3) -> None:
        self.max_examples = max_examples
        self.counts: Counter[str] = Counter()
        self.by_file: dict[str, Counter[str]] = {}
        self.examples: dict[str, list[str]] = {}
        self.records = 0
        self.spans = 0
        self.labels: dict[str, str] = {}

    def add(self, kind: str, where: str, message: str) -> None:
        """Count one problem of `kind` at `where` (keeping the message if it is among the first of its kind)."""
        self.counts[kind] += 1
        self.by_file.setdefault(where.split(", ", 1)[0], Counter())[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < self.max_examples:
            examples.append(f"{where}: {message}")

    def merge(self, other: ConversionReport) -> None:
        """Add `other`'s counts, examples, record and span totals and labels to this report."""
        for tag_label, label in other.labels.items():
            self._check_label(tag_label, label, "merging reports")
        self.counts.update(other.counts)
        for file, counts in other.by_file.items():
            self.by_file.setdefault(file, Counter()).update(counts)
        for kind, messages in other.examples.items():
            examples = self.examples.setdefault(kind, [])
            examples.extend(messages[: max(0, self.max_examples - len(examples))])
        self.records += other.records
        self.spans += other.spans

    def summary(self) -> str:
        """One readable multi-line text: the totals, then each kind's count with its first messages, then the
        counts per file when there are several files."""
        head = f"Span conversion: {self.records} records, {self.spans} entity spans"
        if not self.counts:
            return head + "; no problems."
        lines = [head + ":"]
        for kind, count in self.counts.most_common():
            lines.append(f"  {kind}: {count}")
            lines.extend(f"    {message}" for message in self.examples.get(kind, []))
            if count > len(self.examples.get(kind, [])):
                lines.append(f"    ... {count - len(self.examples.get(kind, []))} more")
        if len(self.by_file) > 1:
            lines.append("  per file:")
            for file, counts in sorted(self.by_file.items()):
                lines.append(f"    {file}: " + ", ".join(f"{kind} {n}" for kind, n in counts.most_common()))
        return "\n".join(lines)

    def _check_label(self, tag_label: str, label: str, where: str) -> None:
        known = self.labels.setdefault(tag_label, label)
        if known != label:
            raise SpanError(
                f"{where}: labels {known!r} and {label!r} would both become tags '*-{tag_label}'; rename one of them."
            )


# --------------------------------------------------------------------------------------------------------------
# Offsets: the views of the text a tool may have counted on


@dataclass(frozen=True)
class _OffsetView:
    """How a tool may have counted: `units` "utf16" or "code_points", `newlines` "as_is", "crlf_to_lf" (the tool
    saw "\\n" where the text has "\\r\\n") or "lf_to_crlf", `bom` "as_is", "without" (the tool did not see the
    text's leading BOM) or "with" (the tool saw a BOM the text lacks)."""

    units: str = "code_points"
    newlines: str = "as_is"
    bom: str = "as_is"

    def repairs(self) -> list[str]:
        return [
            kind
            for kind, changed in (
                ("repaired_utf16_offsets", self.units != "code_points"),
                ("repaired_crlf_offsets", self.newlines != "as_is"),
                ("repaired_bom_offsets", self.bom != "as_is"),
            )
            if changed
        ]

    def describe(self) -> str:
        parts = {
            "utf16": "UTF-16 code units",
            "crlf_to_lf": 'the text with "\\r\\n" as "\\n"',
            "lf_to_crlf": 'the text with "\\n" as "\\r\\n"',
            "without": "the text without its byte-order mark",
            "with": "the text with a byte-order mark",
        }
        return ", ".join(parts[value] for value in (self.units, self.newlines, self.bom) if value in parts)


class _ToolText:
    """The text as one `_OffsetView` sees it: `orig[u]` is the Python index of tool offset `u` (None inside a
    surrogate pair), `chars[u]` the character starting there."""

    def __init__(self, text: str, view: _OffsetView) -> None:
        elements = list(zip(text, range(len(text))))
        if view.bom == "without":
            elements = elements[1:]
        elif view.bom == "with":
            elements = [(_BOM, 0)] + elements
        if view.newlines == "crlf_to_lf":
            elements = [e for e in elements if not (e[0] == "\r" and text[e[1] + 1 : e[1] + 2] == "\n")]
        elif view.newlines == "lf_to_crlf":
            widened = []
            for char, position in elements:
                if char == "\n" and text[position - 1 : position] != "\r":
                    widened.append(("\r", position))
                widened.append((char, position))
            elements = widened
        self.orig: list[int | None] = []
        self.chars: list[str] = []
        for char, position in elements:
            self.orig.append(position)
            self.chars.append(char)
            if view.units == "utf16" and ord(char) > 0xFFFF:
                self.orig.append(None)
                self.chars.append("")
        self.orig.append(len(text))

    def to_python(self, start: int, end: int) -> tuple[int, int, str] | None:
        """Python indices and the tool's view of the text for tool offsets `start`-`end`, or None when they fall
        outside the text or inside a character."""
        if not 0 <= start <= end < len(self.orig) or self.orig[start] is None or self.orig[end] is None:
            return None
        return self.orig[start], self.orig[end], "".join(self.chars[start:end])


def _views(text: str) -> list[_OffsetView]:
    """Every view that changes something for `text`, fewest repairs first (the plain view first); among as many
    repairs, UTF-16 units (the most common cause) before newlines before a byte-order mark."""
    units = ["code_points"] + (["utf16"] if any(ord(char) > 0xFFFF for char in text) else [])
    newlines = ["as_is"]
    if "\r\n" in text:
        newlines.append("crlf_to_lf")
    if text.replace("\r\n", "").count("\n"):
        newlines.append("lf_to_crlf")
    boms = ["as_is", "without" if text.startswith(_BOM) else "with"]
    views = [_OffsetView(u, n, b) for u, n, b in itertools.product(units, newlines, boms)]
    return sorted(views, key=lambda view: (len(view.repairs()), view.bom != "as_is", view.newlines != "as_is"))


def _describe(span: Span, text: str) -> str:
    """"span 7-13 'Boston' (city)": the offsets as given, the span's own text (else the record's text there, when
    the offsets are valid), the label."""
    shown = span.text
    valid = all(isinstance(value, int) and not isinstance(value, bool) for value in (span.start, span.end))
    if shown is None and valid and 0 <= span.start <= span.end <= len(text):
        shown = text[span.start : span.end]
    return f"span {span.start}-{span.end}" + (f" {shown!r}" if shown is not None else "") + f" ({span.label})"


def _python_offsets(record: SpanRecord, spans: list[Span], report: ConversionReport) -> list[tuple[int, int]]:
    """Python `(start, end)` for each span: as given when they match their `text`, else through the first view
    that makes every span with text match (counted per repaired span); SpanError when none does."""
    text, where = record.text, record.where
    checked = [span for span in spans if span.text is not None]
    tools = [(view, _ToolText(text, view)) for view in _views(text)[: 1 if not checked else None]]

    def fits(tool: _ToolText, span: Span) -> bool:
        found = tool.to_python(span.start, span.end)
        return found is not None and span.text in (found[2], text[found[0] : found[1]])

    chosen = next(((view, tool) for view, tool in tools if all(fits(tool, span) for span in checked)), None)
    if chosen is None:
        plain = tools[0][1]
        first_fit = {}
        for span in checked:
            found = plain.to_python(span.start, span.end)
            if found is None and not any(fits(tool, span) for _, tool in tools):
                _refuse_bounds(record, span)
            fitting = next((view for view, tool in tools if fits(tool, span)), None)
            if fitting is None:
                there = text[found[0] : found[1]] if found is not None else ""
                raise SpanError(
                    f"{where}: span {span.start}-{span.end} ({span.label}) should be {span.text!r}, but the text "
                    f"there is {there!r}; no known offset shift (UTF-16 code units, CRLF/LF newlines, a "
                    "byte-order mark) makes it match."
                )
            first_fit[span] = fitting
        fitted = list(first_fit.items())
        one, one_view = fitted[0]
        other, other_view = next(item for item in fitted if item[1] != one_view)
        raise SpanError(
            f"{where}: the spans' offsets were counted in different ways: {_describe(one, text)} fits "
            f"{one_view.describe() or 'the text as given'}, {_describe(other, text)} fits "
            f"{other_view.describe() or 'the text as given'}; no one offset shift fits every span of the record."
        )
    view, tool = chosen
    offsets = []
    for span in spans:
        found = tool.to_python(span.start, span.end)
        if found is None:
            _refuse_bounds(record, span)
        start, end, _ = found
        if (start, end) != (span.start, span.end):
            for kind in view.repairs():
                report.add(
                    kind,
                    where,
                    f"{_describe(span, text)}: offsets counted on {view.describe()}; "
                    f"read as {start}-{end} {text[start:end]!r}",
                )
        offsets.append((start, end))
    return offsets


def _refuse_bounds(record: SpanRecord, span: Span) -> None:
    """Raise the SpanError for offsets that do not fit the text."""
    described = f"{record.where}: {_describe(span, record.text)}"
    if span.start < 0 or span.end < 0:
        raise SpanError(f"{described}: negative offset.")
    if span.end < span.start:
        raise SpanError(f"{described}: ends before it starts.")
    if span.end > len(record.text):
        raise SpanError(f"{described}: ends past the end of the text ({len(record.text)} characters).")
    raise SpanError(f"{described}: an offset falls inside a character (a UTF-16 surrogate pair).")


# --------------------------------------------------------------------------------------------------------------
# Labels, words, overlaps


def _tag_label(span: Span, text: str, where: str, report: ConversionReport) -> str:
    """The label as it appears in tags (`B-<tag label>`), checked and made whitespace-free (reversibly)."""
    label, described = span.label, _describe(span, text)
    if not isinstance(label, str) or not label.strip():
        raise SpanError(f"{where}: {described}: the label is {label!r}; every span needs a non-empty label.")
    stripped = label.strip()
    if stripped != label:
        report.add("label_whitespace_stripped", where, f"{described}: label {label!r} read as {stripped!r}")
    if stripped.split() != [stripped]:
        if any(char.isspace() and char != " " for char in stripped) or "_" in stripped:
            raise SpanError(
                f"{where}: {described}: label {stripped!r} holds whitespace other than single spaces, or both "
                "spaces and '_'; tags cannot hold whitespace and replacing it would not be reversible. Rename it."
            )
        replaced = stripped.replace(" ", "_")
        report.add("label_spaces_replaced", where, f"{described}: label {stripped!r} tagged as {replaced!r}")
        stripped = replaced
    report._check_label(stripped, label.strip(), f"{where}: {described}")
    return stripped


@dataclass
class _Entity:
    """A span placed on words: `shown` describes it as annotated, `start`-`end` are its whole words' offsets."""

    span: Span
    shown: str
    order: int
    label: str
    first_word: int
    last_word: int
    start: int
    end: int


def _check_policy(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} is {value!r}; choose one of {list(choices)}")


def to_words_and_tags(
    record: SpanRecord,
    report: ConversionReport,
    *,
    edge_policy: str = "expand",
    overlap_policy: str = "refuse",
) -> tuple[list[str], list[str]] | None:
    """The record's words (`split_words(record.text)`) and their IOB2 tags, or None when the text has no word
    (counted as "empty_text"). Problems are counted in `report` or raise `SpanError`; see the module docstring."""
    _check_policy("edge_policy", edge_policy, EDGE_POLICIES)
    _check_policy("overlap_policy", overlap_policy, OVERLAP_POLICIES)
    where, text = record.where, record.text
    if not isinstance(text, str):
        raise SpanError(f"{where}: the text is {type(text).__name__} ({text!r}), not a string.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SpanError(f"{where}: character {error.start} of the text is a lone surrogate ({text[error.start]!r}).")
    words = split_words(text)
    if not words:
        dropped = len(record.spans or ())
        report.add("empty_text", where, f"no word in the text {text!r}; record skipped" + (
            f" with its {dropped} span(s)" if dropped else ""
        ))
        return None

    if not isinstance(record.spans, (list, tuple)):
        raise SpanError(f"{where}: spans is {type(record.spans).__name__} ({record.spans!r}), not a list of Spans.")
    spans = list(record.spans)
    for span in spans:
        if not isinstance(span, Span):
            raise SpanError(f"{where}: expected Span objects, got {type(span).__name__} ({span!r}).")
        for name in ("start", "end"):
            value = getattr(span, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpanError(f"{where}: {_describe(span, text)}: {name} is {value!r}, not an integer offset.")
        if span.start < 0 or span.end < 0 or span.end < span.start:
            _refuse_bounds(record, span)
    labels = [_tag_label(span, text, where, report) for span in spans]
    offsets = _python_offsets(record, spans, report)

    starts = [start for _, start, _ in words]
    ends = [end for _, _, end in words]
    entities: list[_Entity] = []
    for order, (span, label, (start, end)) in enumerate(zip(spans, labels, offsets)):
        shown = f"span {span.start}-{span.end} {text[start:end]!r} ({span.label})"
        if start == end:
            report.add("empty_span", where, f"{shown}: empty span skipped")
            continue
        first, last = bisect.bisect_right(ends, start), bisect.bisect_left(starts, end) - 1
        if first > last:
            report.add("whitespace_span", where, f"{shown}: covers no word; skipped")
            continue
        word_start, word_end = starts[first], ends[last]
        inside = [
            (edge, words[index][0])
            for edge, index, is_inside in (("starts", first, start > word_start), ("ends", last, end < word_end))
            if is_inside
        ]
        if inside:
            detail = " and ".join(f"{edge} inside the word {word!r}" for edge, word in inside)
            if edge_policy == "refuse":
                raise SpanError(
                    f"{where}: {shown} {detail}; words are split as predict splits them "
                    f"(edge_policy='expand' grows the span to {word_start}-{word_end} {text[word_start:word_end]!r})."
                )
            report.add(
                "expanded_to_word", where, f"{shown} {detail}: grown to {word_start}-{word_end} "
                f"{text[word_start:word_end]!r}"
            )
        elif (word_start, word_end) != (start, end):
            report.add(
                "trimmed_whitespace", where, f"{shown}: read as {word_start}-{word_end} {text[word_start:word_end]!r}"
            )
        entities.append(_Entity(span, shown, order, label, first, last, word_start, word_end))

    entities = _resolve_overlaps(entities, where, overlap_policy, report)
    tags = ["O"] * len(words)
    for entity in entities:
        tags[entity.first_word] = "B-" + entity.label
        for index in range(entity.first_word + 1, entity.last_word + 1):
            tags[index] = "I-" + entity.label
    if not spans:
        report.add("no_spans", where, "no spans: every word tagged O")
    report.records += 1
    report.spans += len(entities)
    return [word for word, _, _ in words], tags


def _resolve_overlaps(
    entities: list[_Entity], where: str, overlap_policy: str, report: ConversionReport
) -> list[_Entity]:
    """Entities without duplicates or shared words, in text order (see the module docstring)."""

    def shown(entity: _Entity) -> str:
        return entity.shown

    unique: dict[tuple[int, int, str], _Entity] = {}
    for entity in entities:
        key = (entity.first_word, entity.last_word, entity.label)
        if key in unique:
            kept = unique[key]
            same = (kept.span.start, kept.span.end) == (entity.span.start, entity.span.end)
            report.add(
                "duplicate_span",
                where,
                f"{shown(entity)} " + ("repeats" if same else "covers the same words as") + f" {shown(kept)}; "
                "counted once",
            )
            continue
        unique[key] = entity
    entities = sorted(unique.values(), key=lambda e: (e.first_word, -e.last_word, e.order))

    if overlap_policy == "refuse":
        widest = None
        for entity in entities:
            if widest is not None and entity.first_word <= widest.last_word:
                relation = "is nested in" if entity.last_word <= widest.last_word else "overlaps"
                raise SpanError(
                    f"{where}: {shown(entity)} {relation} {shown(widest)}; BIO tags give each word one entity "
                    "(overlap_policy='keep_longest' keeps the longer span)."
                )
            if widest is None or entity.last_word > widest.last_word:
                widest = entity
        return entities

    kept: list[_Entity] = []
    for entity in sorted(entities, key=lambda e: (-(e.end - e.start), e.order)):
        clash = next((k for k in kept if entity.first_word <= k.last_word and k.first_word <= entity.last_word), None)
        if clash is None:
            kept.append(entity)
        else:
            report.add(
                "dropped_overlapping_span", where, f"{shown(entity)} dropped: it shares words with {shown(clash)}"
            )
    return sorted(kept, key=lambda e: e.first_word)


def records_to_columns(records: Iterable[SpanRecord], report: ConversionReport, **policies: str) -> dict[str, list]:
    """Canonical columns (`text`, `words`, `tags`, `sentence_label`) of the records that have words; `policies`
    are `to_words_and_tags`'s `edge_policy` and `overlap_policy`. A sentence label of None or "" (after stripping)
    is None."""
    unknown = set(policies) - {"edge_policy", "overlap_policy"}
    if unknown:
        raise TypeError(f"unknown policies {sorted(unknown)}; expected edge_policy and/or overlap_policy")
    columns: dict[str, list] = {"text": [], "words": [], "tags": [], "sentence_label": []}
    for record in records:
        label = record.sentence_label
        if label is not None and not isinstance(label, str):
            raise SpanError(f"{record.where}: the sentence label is {label!r}, not a string or None.")
        converted = to_words_and_tags(record, report, **policies)
        if converted is None:
            continue
        columns["text"].append(record.text)
        columns["words"].append(converted[0])
        columns["tags"].append(converted[1])
        columns["sentence_label"].append(None if label is None or not label.strip() else label.strip())
    return columns
