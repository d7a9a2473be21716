"""Rasa NLU training data: Rasa 2/3 YAML (`nlu:` items) and Rasa 1.x Markdown (`## intent:` sections).

What is read
------------
YAML (`*.yml`, `*.yaml`)::

    version: "3.1"
    nlu:
    - intent: book_flight
      examples: |
        - fly from [Boston](city) to [Denver]{"entity": "city", "role": "to"}
        - book a flight
    - intent: greet
      examples:
      - text: hi there
        metadata: {sentiment: happy}

Markdown (`*.md`, Rasa 1.x)::

    ## intent:book_flight
    - fly from [Boston](city) <!-- a comment -->

Each example becomes one `SpanRecord`: its text is the example with the entity markup removed
(`fly from [Boston](city)` -> `fly from Boston`), each entity a `Span` with Python str offsets into that text and
`text=` the entity's text, the sentence label is the intent, and `where` is "<file name>, line <n>", the line of
the example in the file (in an `examples: |` block, the example's own line; in the list form, the line of its
`text:`; in a YAML scalar of another style, the line where the scalar starts). An example without entities has
no spans.

Inline entity markup: `[text](entity)`, `[text](entity:synonym)`, `[text]{"entity": e, "role": r, "group": g,
"value": synonym}` and the list form `[text][{"entity": ...}, {"entity": ...}]` (several annotations of one text;
`spans.records_to_columns` then treats them as overlapping spans). A synonym value maps the text to a
canonical value at Rasa's lookup time; it does not change the text, so the span keeps the text as written and the
synonym is counted ("synonym_value_ignored", only when the value differs from the text).

Label convention (reversible; `label_of` and `parse_label`)
------------------------------------------------------------
    entity                      -> "entity"
    entity, role                -> "role.entity"          (ATIS's slot names: role fromloc, entity city_name ->
                                                           "fromloc.city_name")
    entity, group               -> "entity@group"
    entity, role and group      -> "role.entity@group"

So an ATIS tag `B-fromloc.city_name` exports as `{"entity": "city_name", "role": "fromloc"}` and reads back as
the same tag. Entity names and roles may not hold "@", roles may not hold ".", and groups may not hold "@" or
"."; names that are empty (or whitespace only) are refused. An entity name written with one "." and no role,
`[Denver](toloc.city_name)`, is accepted and is the same label as entity `city_name` with role `toloc` (that is
what `parse_label` gives back); an entity name with a "." *and* a role, or with two "."s, would be ambiguous and
is refused.

What is refused and what is counted
-----------------------------------
Refused (ValueError naming the file, the line and the example): unclosed `[`, a `[` inside an entity's text,
`](` without `)`, an empty entity text or entity name, `(entity:)` with an empty synonym, bad JSON after `]{` or
`][`, a JSON annotation that is not an object with a non-empty string "entity", an entity name, role or group
that breaks the label convention, an empty intent name, a line in an examples block or intent section that is
not a "- " item, an intent item without `examples`, an `nlu:` item that is none of intent, synonym, regex,
lookup, an unknown `## type:` Markdown header, invalid YAML, a YAML file without a top-level `nlu:`.

Counted in the `ConversionReport` (one note per occurrence):

- "synonym_ignored", "regex_ignored", "lookup_ignored": one note per `synonym:` / `regex:` / `lookup:` item or
  Markdown section (they feed Rasa's entity extractors, not these heads).
- "synonym_value_ignored": an inline synonym value (`(city:New York)`, `"value"`) that differs from the text.
- "section_ignored": a top-level YAML key other than `version` and `nlu` (`responses:`, `stories:`, ...).
- "item_key_ignored": a key of an `nlu:` item other than its kind, `examples` and `metadata`;
  "entity_key_ignored": a key of a JSON annotation other than entity, role, group and value.
- "brackets_kept_as_text": `[text]` not followed by `(`, `{` or `[` (Rasa reads it as plain text, and so does
  this reader, keeping the brackets).

Metadata (per intent or per example) is not used. Markdown comments `<!-- ... -->` are removed (their lines
still count). A lone "-" or an example that is only whitespace reaches `records_to_columns`, which skips it as
"empty_text". YAML scalars are read as written (an intent `yes` is the string "yes", as in Rasa's YAML 1.2).

Writing (`write`)
-----------------
Rasa 3 YAML: `version: "3.1"`, then `nlu:` with one `- intent:` item per intent (in the order the intents first
occur; with `keep_order=True`, one item per run of consecutive records of one intent, so that reading back gives
the records in their order) and its examples in an `examples: |` block, each span written `[text](entity)`, or
`[text]{"entity": e, "role": r, "group": g}` when its label (`parse_label`) has a role or a group or the entity
name holds characters the short form cannot (whitespace, `(`, `)`, `:`, brackets, braces). Spans are Python str
offsets. Refused (ValueError naming the record): a record without a sentence label (every example belongs to an
intent), a text holding `[` (it would open markup) or a line break, tab aside a character YAML cannot hold, a `]`
inside a span, empty or overlapping spans, and labels `parse_label` refuses. An example is read back with its
leading and trailing whitespace stripped (its words and tags do not change).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

from ..spans import ConversionReport, Span, SpanRecord
from .common import read_text

NAME = "rasa"
SUFFIXES = (".yml", ".yaml", ".md")

ROLE_SEPARATOR = "."
GROUP_SEPARATOR = "@"

_ITEM_KINDS = ("intent", "synonym", "regex", "lookup")
_ENTITY_KEYS = ("entity", "role", "group", "value")
_NULL_TAG = "tag:yaml.org,2002:null"

_YAML_NLU = re.compile(r"^nlu[ \t]*:[ \t]*(#.*)?\r?$|^nlu[ \t]*:[ \t]*\[[ \t]*\]", re.MULTILINE)
_YAML_ITEM = re.compile(r"^[ \t]*-[ \t]+(intent|synonym|regex|lookup)[ \t]*:", re.MULTILINE)
_MD_INTENT = re.compile(r"^##[ \t]*intent[ \t]*:", re.MULTILINE)
_MD_HEADER = re.compile(r"^##\s*(?:(\w+)\s*:(.*))?")
_MD_ITEM = re.compile(r"^\s*[-*+](?:\s+(.*)|\s*)$")
_MD_COMMENT = re.compile(r"<!--[\s\S]*?--!*>")


# --------------------------------------------------------------------------------------------------------------
# Labels


def _check_name(value: object, what: str, forbidden: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the {what} is {value!r}; it must be a non-empty string")
    bad = [char for char in forbidden if char in value]
    if bad:
        raise ValueError(
            f"the {what} {value!r} holds {' and '.join(repr(char) for char in bad)}, which the label convention "
            f"(role{ROLE_SEPARATOR}entity{GROUP_SEPARATOR}group) keeps for itself; rename it"
        )
    return value


def label_of(entity: str, role: str | None = None, group: str | None = None) -> str:
    """The span label of a Rasa entity with its optional role and group: "role.entity@group" (see the module
    docstring). An entity written "role.entity" without a role is that same label; anything that would not parse
    back (`parse_label`) is a ValueError."""
    if role is None and isinstance(entity, str) and entity.count(ROLE_SEPARATOR) == 1:
        role, entity = entity.split(ROLE_SEPARATOR)
        if not role.strip() or not entity.strip():
            raise ValueError(f"the entity name {role + ROLE_SEPARATOR + entity!r} has an empty part around "
                             f"{ROLE_SEPARATOR!r}; it would read as role{ROLE_SEPARATOR}entity")
    entity = _check_name(entity, "entity name", ROLE_SEPARATOR + GROUP_SEPARATOR)
    label = entity
    if role is not None:
        label = _check_name(role, "role", ROLE_SEPARATOR + GROUP_SEPARATOR) + ROLE_SEPARATOR + label
    if group is not None:
        label += GROUP_SEPARATOR + _check_name(group, "group", ROLE_SEPARATOR + GROUP_SEPARATOR)
    return label


def parse_label(label: str) -> tuple[str, str | None, str | None]:
    """`(entity, role, group)` of a label made by `label_of` (role and group None when absent), for writing
    predictions back as Rasa annotations: `label_of(*parse_label(label)) == label` for every valid label."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"the label is {label!r}; it must be a non-empty string")
    head, has_group, group = label.partition(GROUP_SEPARATOR)
    parts = head.split(ROLE_SEPARATOR)
    if len(parts) > 2:
        raise ValueError(f"the label {label!r} holds more than one {ROLE_SEPARATOR!r}; expected role.entity@group")
    role, entity = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    result = (entity, role, group if has_group else None)
    label_of(*result)  # validates every part
    return result


# --------------------------------------------------------------------------------------------------------------
# Inline entity markup


def _json_at(raw: str, index: int, where: str):
    try:
        return json.JSONDecoder().raw_decode(raw, index)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{where}: bad JSON in the entity annotation at column {index + 1} ({error.msg}, column "
            f"{error.pos + 1}) in the example {raw!r}"
        ) from None


def _annotation(obj: object, entity_text: str, raw: str, where: str, report: ConversionReport) -> str:
    """The label of one JSON annotation `{"entity", "role", "group", "value"}`."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: the annotation of {entity_text!r} is {obj!r}, not a JSON object with an "
                         f"\"entity\", in the example {raw!r}")
    if "entity" not in obj:
        raise ValueError(f"{where}: the annotation {json.dumps(obj)} of {entity_text!r} has no \"entity\" in the "
                         f"example {raw!r}")
    parts = {}
    for key in ("role", "group"):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        parts[key] = value
    for key in sorted(set(obj) - set(_ENTITY_KEYS)):
        report.add("entity_key_ignored", where, f"key {key!r} of the annotation of {entity_text!r} ignored")
    value = obj.get("value")
    if value is not None and value != entity_text:
        report.add("synonym_value_ignored", where,
                   f"{entity_text!r} has the synonym value {value!r}; the span keeps the text as written")
    return _label(obj["entity"], parts["role"], parts["group"], entity_text, raw, where)


def _label(entity, role, group, entity_text: str, raw: str, where: str) -> str:
    try:
        return label_of(entity, role, group)
    except ValueError as error:
        raise ValueError(f"{where}: entity {entity_text!r}: {error}, in the example {raw!r}") from None


def _parse_example(raw: str, where: str, report: ConversionReport) -> tuple[str, list[Span]]:
    """The plain text of one example line (markup removed) and its spans (Python offsets into the plain text)."""
    plain: list[str] = []
    length = 0
    spans: list[Span] = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char != "[":
            plain.append(char)
            length += 1
            index += 1
            continue
        close = raw.find("]", index + 1)
        if close == -1:
            raise ValueError(f"{where}: unclosed '[' at column {index + 1} in the example {raw!r}")
        entity_text = raw[index + 1 : close]
        if "[" in entity_text:
            raise ValueError(f"{where}: '[' inside the brackets opened at column {index + 1} (nested or unclosed "
                             f"'[') in the example {raw!r}")
        after = raw[close + 1 : close + 2]
        if after not in ("(", "{", "["):
            report.add("brackets_kept_as_text", where,
                       f"[{entity_text}] is not followed by (entity) or {{...}}: kept as plain text")
            plain.append(raw[index : close + 1])
            length += close + 1 - index
            index = close + 1
            continue
        if not entity_text:
            raise ValueError(f"{where}: empty entity text '[]' at column {index + 1} in the example {raw!r}")
        if after == "(":
            end = raw.find(")", close + 2)
            if end == -1:
                raise ValueError(f"{where}: '](' without ')' after {entity_text!r} at column {close + 1} in the "
                                 f"example {raw!r}")
            entity, has_value, value = raw[close + 2 : end].partition(":")
            if has_value and not value.strip():
                raise ValueError(f"{where}: empty synonym value in '({raw[close + 2 : end]})' in the example {raw!r}")
            if has_value and value != entity_text:
                report.add("synonym_value_ignored", where,
                           f"{entity_text!r} has the synonym value {value!r}; the span keeps the text as written")
            labels = [_label(entity, None, None, entity_text, raw, where)]
            index = end + 1
        else:
            obj, index = _json_at(raw, close + 1, where)
            if after == "[":
                if not isinstance(obj, list) or not obj:
                    raise ValueError(f"{where}: the annotations of {entity_text!r} are {obj!r}, not a non-empty "
                                     f"JSON list of objects, in the example {raw!r}")
                labels = [_annotation(one, entity_text, raw, where, report) for one in obj]
            else:
                labels = [_annotation(obj, entity_text, raw, where, report)]
        for label in labels:
            spans.append(Span(start=length, end=length + len(entity_text), label=label, text=entity_text))
        plain.append(entity_text)
        length += len(entity_text)
    return "".join(plain), spans


def _record(raw: str, intent: str, where: str, report: ConversionReport) -> SpanRecord:
    text, spans = _parse_example(raw, where, report)
    return SpanRecord(text=text, spans=spans, sentence_label=intent, where=where)


def _item_text(line: str) -> str | None:
    """The example of a "- example" line (None when the line is not an item)."""
    match = _MD_ITEM.match(line)
    return None if match is None else (match.group(1) or "").strip()


# --------------------------------------------------------------------------------------------------------------
# Detection


def _is_markdown(path: Path) -> bool:
    return Path(path).suffix.lower() == ".md"


def detect(path: Path) -> bool:
    """A Rasa YAML file (a top-level `nlu:` with `- intent:`/`synonym:`/`regex:`/`lookup:` items) or, for `*.md`,
    a Rasa 1.x Markdown file (a `## intent:` header); a look at the text, not a full parse."""
    try:
        text = read_text(Path(path))
    except (OSError, ValueError):
        return False
    if _is_markdown(path):
        return _MD_INTENT.search(text) is not None
    match = _YAML_NLU.search(text)
    return match is not None and (match.group(0).rstrip().endswith("]") or
                                  _YAML_ITEM.search(text, match.end()) is not None)


# --------------------------------------------------------------------------------------------------------------
# YAML


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ValueError(f"{where}: expected a mapping (key: value), got {_kind(node)}")
    out = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ValueError(f"{where}, line {_line(key)}: a mapping key must be a plain name")
        out[key.value] = (key, value)
    return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "nothing" if node.tag == _NULL_TAG and not node.value else f"the value {node.value!r}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _scalar_lines(node: yaml.ScalarNode) -> list[tuple[int, str]]:
    """`(file line, line)` for each line of a scalar: exact for a literal block (`|`), whose content starts on the
    line after the indicator; otherwise every line is given the line where the scalar starts."""
    lines = node.value.split("\n")
    if node.style == "|":
        return [(node.start_mark.line + 2 + offset, line) for offset, line in enumerate(lines)]
    return [(_line(node), line) for line in lines]


def _read_yaml(path: Path, report: ConversionReport) -> list[SpanRecord]:
    name = path.name
    try:
        root = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{path}{line}: not valid YAML ({problem})") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise ValueError(f"{path}: not Rasa NLU data: expected a mapping with a top-level 'nlu:' list")
    top = _mapping(root, name)
    if "nlu" not in top:
        raise ValueError(f"{path}: not Rasa NLU data: no top-level 'nlu:' (keys: {sorted(top)})")
    for key, (key_node, _) in top.items():
        if key not in ("version", "nlu"):
            report.add("section_ignored", f"{name}, line {_line(key_node)}",
                       f"top-level {key!r} ignored (not NLU training data)")
    nlu = top["nlu"][1]
    if _is_null(nlu):
        return []
    if not isinstance(nlu, yaml.SequenceNode):
        raise ValueError(f"{name}, line {_line(nlu)}: 'nlu:' must be a list of items, got {_kind(nlu)}")
    records = []
    for item in nlu.value:
        where = f"{name}, line {_line(item)}"
        keys = _mapping(item, where)
        kinds = [kind for kind in _ITEM_KINDS if kind in keys]
        if len(kinds) != 1:
            raise ValueError(f"{where}: an nlu item must have exactly one of {', '.join(_ITEM_KINDS)}; it has "
                             f"{sorted(keys)}")
        kind = kinds[0]
        value = keys[kind][1]
        if kind != "intent":
            shown = value.value if isinstance(value, yaml.ScalarNode) else ""
            report.add(f"{kind}_ignored", where, f"{kind} {shown!r} ignored (not used by the intent and entity heads)")
            continue
        for key, (key_node, _) in keys.items():
            if key not in (kind, "examples", "metadata"):
                report.add("item_key_ignored", f"{name}, line {_line(key_node)}", f"key {key!r} of the intent ignored")
        if not isinstance(value, yaml.ScalarNode) or _is_null(value) or not value.value.strip():
            raise ValueError(f"{where}: empty intent name ({_kind(value)}); every intent needs a name")
        intent = value.value.strip()
        if "examples" not in keys:
            raise ValueError(f"{where}: intent {intent!r} has no 'examples'")
        records.extend(_yaml_examples(keys["examples"][1], intent, name, report))
    return records


def _yaml_examples(node: yaml.Node, intent: str, name: str, report: ConversionReport) -> list[SpanRecord]:
    records = []
    if _is_null(node):
        return records
    if isinstance(node, yaml.ScalarNode):
        for number, line in _scalar_lines(node):
            if not line.strip():
                continue
            raw = line.strip()
            example = raw[1:].strip() if raw == "-" or raw.startswith(("- ", "-\t")) else None
            where = f"{name}, line {number}"
            if example is None:
                raise ValueError(f"{where}: the examples of intent {intent!r} are '- ' items, one a line; got {raw!r}")
            records.append(_record(example, intent, where, report))
        return records
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"{name}, line {_line(node)}: the examples of intent {intent!r} must be a '|' block of "
                         f"'- ' lines or a list of 'text:' items, got {_kind(node)}")
    for element in node.value:
        where = f"{name}, line {_line(element)}"
        if isinstance(element, yaml.MappingNode):
            keys = _mapping(element, where)
            if "text" not in keys or not isinstance(keys["text"][1], yaml.ScalarNode) or _is_null(keys["text"][1]):
                raise ValueError(f"{where}: an example of intent {intent!r} needs a 'text:'")
            text_node = keys["text"][1]
            for key, (key_node, _) in keys.items():
                if key not in ("text", "metadata"):
                    report.add("item_key_ignored", f"{name}, line {_line(key_node)}",
                               f"key {key!r} of an example ignored")
        elif isinstance(element, yaml.ScalarNode) and not _is_null(element):
            text_node = element
        else:
            raise ValueError(f"{where}: an example of intent {intent!r} must be a 'text:' item, got {_kind(element)}")
        number = _line(text_node) + (1 if text_node.style == "|" else 0)
        records.append(_record(text_node.value.strip(), intent, f"{name}, line {number}", report))
    return records


# --------------------------------------------------------------------------------------------------------------
# Markdown (Rasa 1.x)


def _read_markdown(path: Path, report: ConversionReport) -> list[SpanRecord]:
    name = path.name
    text = _MD_COMMENT.sub(lambda match: "\n" * match.group(0).count("\n"), read_text(path))
    records = []
    section: tuple[str, str] | None = None
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        where = f"{name}, line {number}"
        if line.startswith("##"):
            match = _MD_HEADER.match(line)
            kind = (match.group(1) or "").lower()
            if kind not in _ITEM_KINDS:
                raise ValueError(f"{where}: unknown section header {line!r}; expected '## intent:<name>', "
                                 "'## synonym:<value>', '## regex:<name>' or '## lookup:<name>'")
            value = match.group(2).strip()
            if kind == "intent" and not value:
                raise ValueError(f"{where}: empty intent name in {line!r}; every intent needs a name")
            if kind != "intent":
                report.add(f"{kind}_ignored", where,
                           f"{kind} {value!r} ignored (not used by the intent and entity heads)")
            section = (kind, value)
            continue
        if not line.strip() or (section is not None and section[0] != "intent"):
            continue
        example = _item_text(line)
        if section is None:
            if example is not None:
                raise ValueError(f"{where}: example {line.strip()!r} before any '## intent:' header")
            continue
        if example is None:
            raise ValueError(f"{where}: the examples of intent {section[1]!r} are '- ' items, one a line; got "
                             f"{line.strip()!r}")
        records.append(_record(example, section[1], where, report))
    return records


def read(path: Path, report: ConversionReport) -> list[SpanRecord]:
    """The examples of a Rasa NLU file (Markdown for `*.md`, YAML otherwise) as span records; see the module
    docstring."""
    path = Path(path)
    return _read_markdown(path, report) if _is_markdown(path) else _read_yaml(path, report)


# --------------------------------------------------------------------------------------------------------------
# Writing

_SHORT_ENTITY = re.compile(r"[^\s():\[\]{}]+")
_UNWRITABLE = re.compile("[^\t\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029]")


def _entity_markup(entity_text: str, label: str) -> str:
    """`[text](entity)`, or `[text]{"entity": ..., "role": ..., "group": ...}` (see the module docstring)."""
    entity, role, group = parse_label(label)
    if role is None and group is None and _SHORT_ENTITY.fullmatch(entity):
        return f"[{entity_text}]({entity})"
    annotation = {"entity": entity, **({"role": role} if role is not None else {}),
                  **({"group": group} if group is not None else {})}
    return f"[{entity_text}]{json.dumps(annotation, ensure_ascii=False)}"


def example_markup(record: SpanRecord) -> str:
    """The record's text with its spans as inline entity markup; a ValueError naming the record for what the
    markup cannot hold (see the module docstring)."""
    text, where = record.text, record.where
    bad = _UNWRITABLE.search(text) or re.search(r"\[", text)
    if bad:
        raise ValueError(f"{where}: the text holds {bad.group()!r} at character {bad.start()}, which a Rasa example "
                         f"line cannot hold ('[' opens entity markup; line breaks end the example): {text!r}")
    pieces, position = [], 0
    for span in sorted(record.spans, key=lambda span: (span.start, span.end)):
        shown = f"span {span.start}-{span.end} ({span.label})"
        if not position <= span.start < span.end <= len(text):
            problem = "is empty" if span.start == span.end else (
                "overlaps the span before it" if span.start < position else "does not fit the text")
            raise ValueError(f"{where}: {shown} {problem}; Rasa markup holds non-empty, non-overlapping spans of "
                             f"Python str offsets, in {text!r}")
        entity_text = text[span.start : span.end]
        if "]" in entity_text:
            raise ValueError(f"{where}: {shown} {entity_text!r} holds ']', which would close its markup early")
        try:
            markup = _entity_markup(entity_text, span.label)
        except ValueError as error:
            raise ValueError(f"{where}: {shown}: {error}") from None
        pieces += [text[position : span.start], markup]
        position = span.end
    return "".join(pieces + [text[position:]])


def _yaml_scalar(value: str) -> str:
    """`value` as a YAML scalar: plain when YAML reads it back as the same string, else double-quoted."""
    try:
        plain = yaml.safe_load(f"key: {value}") == {"key": value}
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value, ensure_ascii=False)


def _intent_items(records: Sequence[SpanRecord], keep_order: bool) -> list[tuple[str, list[str]]]:
    """`(intent, example lines)` items: one per intent, or with `keep_order` one per run of one intent."""
    items: list[tuple[str, list[str]]] = []
    by_intent: dict[str, list[str]] = {}
    for record in records:
        intent = record.sentence_label
        if intent is None or not intent.strip():
            raise ValueError(f"{record.where}: no sentence label; every Rasa example belongs to an intent")
        line = example_markup(record)
        if keep_order:
            if not items or items[-1][0] != intent:
                items.append((intent, []))
            items[-1][1].append(line)
        elif intent in by_intent:
            by_intent[intent].append(line)
        else:
            by_intent[intent] = [line]
            items.append((intent, by_intent[intent]))
    return items


def write(records: Sequence[SpanRecord], stream: TextIO, *, keep_order: bool = False) -> None:
    """Write the records as Rasa 3 NLU YAML (see the module docstring)."""
    items = _intent_items(records, keep_order)
    lines = ['version: "3.1"', "nlu:" if items else "nlu: []"]
    for intent, examples in items:
        lines += [f"- intent: {_yaml_scalar(intent)}", "  examples: |"]
        lines += [f"    - {example}" for example in examples]
    stream.write("\n".join(lines) + "\n")
