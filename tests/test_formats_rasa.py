"""Rasa NLU training data (modeling_mtl/formats/rasa.py): YAML 2/3 and Markdown 1.x files written by each test."""

import json

import pytest

from modeling_mtl.formats import rasa
from modeling_mtl.spans import ConversionReport, Span, SpanError, records_to_columns

NLU_YAML = """\
version: "3.1"
nlu:
- intent: book_flight
  examples: |
    - fly from [Boston]{"entity": "city_name", "role": "fromloc"} to [Denver](toloc.city_name)
    - book a flight

    - 😀 fly to [NYC](city:New York) now
    - from [Paris]{"entity": "city", "group": "1", "value": "Paris"} to [Rome]{"entity": "city", "role": "to", "group": "2"}
- intent: greet
  metadata:
    sentiment: neutral
  examples:
  - text: |
      hi [Anna]{"entity": "person", "value": "Ann"}
    metadata:
      sentiment: happy
  - text: hello there
- synonym: New York
  examples: |
    - NYC
    - the big apple
- regex: zipcode
  examples: |
    - [0-9]{5}
- lookup: city
  examples: |
    - Boston
responses:
  utter_greet:
  - text: hi
"""

NLU_MARKDOWN = """\
# my bot's data
## intent:check_balance
- what is my balance <!-- no entity -->
- how much is on my [savings account](source_account:savings)
* in [yen]{"entity": "currency", "role": "target"} please

## synonym:savings
- pink pig

## regex:zipcode
- [0-9]{5}

## lookup:currencies
path/to/currencies.txt

## intent: greet
<!-- a comment
over two lines -->
- hey [Bob](name)
"""


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def convert(path):
    report = ConversionReport()
    records = rasa.read(path, report)
    return records, records_to_columns(records, report), report


def test_yaml_records_texts_spans_lines_and_report(tmp_path):
    records, columns, report = convert(write(tmp_path, "nlu.yml", NLU_YAML))
    assert [(r.where, r.sentence_label, r.text) for r in records] == [
        ("nlu.yml, line 5", "book_flight", "fly from Boston to Denver"),
        ("nlu.yml, line 6", "book_flight", "book a flight"),
        ("nlu.yml, line 8", "book_flight", "😀 fly to NYC now"),
        ("nlu.yml, line 9", "book_flight", "from Paris to Rome"),
        ("nlu.yml, line 15", "greet", "hi Anna"),  # a `text: |` block: the line of its content
        ("nlu.yml, line 18", "greet", "hello there"),
    ]
    assert records[0].spans == [Span(9, 15, "fromloc.city_name", text="Boston"),
                                Span(19, 25, "toloc.city_name", text="Denver")]
    assert records[1].spans == []
    assert records[2].spans == [Span(9, 12, "city", text="NYC")]  # Python offsets after the emoji
    assert records[3].spans == [Span(5, 10, "city@1", text="Paris"), Span(14, 18, "to.city@2", text="Rome")]
    assert records[4].spans == [Span(3, 7, "person", text="Anna")]  # synonym value: the text stays

    assert columns["tags"] == [
        ["O", "O", "B-fromloc.city_name", "O", "B-toloc.city_name"],
        ["O", "O", "O"],
        ["O", "O", "O", "B-city", "O"],
        ["O", "B-city@1", "O", "B-to.city@2"],
        ["O", "B-person"],
        ["O", "O"],
    ]
    assert columns["sentence_label"] == ["book_flight"] * 4 + ["greet"] * 2
    # One note per ignored item; synonym values that differ from the text; "Paris" -> "Paris" is no synonym.
    assert report.counts == {
        "synonym_ignored": 1, "regex_ignored": 1, "lookup_ignored": 1, "section_ignored": 1,
        "synonym_value_ignored": 2, "no_spans": 2,
    }
    assert report.by_file == {"nlu.yml": report.counts}
    assert report.examples["synonym_ignored"] == [
        "nlu.yml, line 19: synonym 'New York' ignored (not used by the intent and entity heads)"
    ]
    assert report.examples["section_ignored"][0].startswith("nlu.yml, line 29: top-level 'responses'")


def test_end_to_end_atis_style_roles(tmp_path):
    path = write(tmp_path, "train.yaml", 'nlu:\n- intent: flight\n  examples: |\n'
                 '    - fly from [Boston]{"entity": "city_name", "role": "fromloc"} to [Denver](toloc.city_name)\n'
                 '    - [San Jose]{"entity": "city_name", "role": "fromloc"} to [New York City](toloc.city_name)\n')
    _, columns, _ = convert(path)
    assert columns["words"] == [["fly", "from", "Boston", "to", "Denver"],
                                ["San", "Jose", "to", "New", "York", "City"]]
    assert columns["tags"] == [
        ["O", "O", "B-fromloc.city_name", "O", "B-toloc.city_name"],
        ["B-fromloc.city_name", "I-fromloc.city_name", "O", "B-toloc.city_name", "I-toloc.city_name",
         "I-toloc.city_name"],
    ]


def test_list_of_annotations_gives_one_span_each(tmp_path):
    path = write(tmp_path, "nlu.yml", 'nlu:\n- intent: a\n  examples: |\n'
                 '    - go to [Berlin][{"entity": "city"}, {"entity": "location", "role": "to"}]\n')
    records = rasa.read(path, ConversionReport())
    assert records[0].text == "go to Berlin"
    assert records[0].spans == [Span(6, 12, "city", text="Berlin"), Span(6, 12, "to.location", text="Berlin")]
    # BIO gives a word one entity: the overlap policy of spans.records_to_columns decides.
    with pytest.raises(SpanError, match="nested in"):
        records_to_columns(records, ConversionReport())
    columns = records_to_columns(records, ConversionReport(), overlap_policy="keep_longest")
    assert columns["tags"] == [["O", "O", "B-city"]]


def test_markdown_1x(tmp_path):
    records, columns, report = convert(write(tmp_path, "nlu.md", NLU_MARKDOWN))
    assert [(r.where, r.sentence_label, r.text) for r in records] == [
        ("nlu.md, line 3", "check_balance", "what is my balance"),
        ("nlu.md, line 4", "check_balance", "how much is on my savings account"),
        ("nlu.md, line 5", "check_balance", "in yen please"),
        ("nlu.md, line 19", "greet", "hey Bob"),
    ]
    assert columns["tags"] == [
        ["O"] * 4,
        ["O", "O", "O", "O", "O", "B-source_account", "I-source_account"],
        ["O", "B-target.currency", "O"],
        ["O", "B-name"],
    ]
    assert report.counts == {"synonym_ignored": 1, "regex_ignored": 1, "lookup_ignored": 1,
                             "synonym_value_ignored": 1, "no_spans": 1}
    assert report.examples["lookup_ignored"][0].startswith("nlu.md, line 13: lookup 'currencies'")


def test_brackets_without_markup_stay_text(tmp_path):
    records, _, report = convert(write(tmp_path, "nlu.yml", "nlu:\n- intent: a\n  examples: |\n"
                                       "    - press [enter] then [go](action)\n"))
    assert records[0].text == "press [enter] then go"
    assert records[0].spans == [Span(19, 21, "action", text="go")]
    assert report.counts == {"brackets_kept_as_text": 1}


def test_detect(tmp_path):
    assert rasa.detect(write(tmp_path, "nlu.yml", NLU_YAML))
    assert rasa.detect(write(tmp_path, "nlu.md", NLU_MARKDOWN))
    assert rasa.detect(write(tmp_path, "only_synonyms.yml", "nlu:\n  - synonym: x\n    examples: |\n      - y\n"))
    assert not rasa.detect(write(tmp_path, "config.yml", "encoder: x\nepochs: 3\nnlu_weight: 1\n"))
    assert not rasa.detect(write(tmp_path, "domain.yml", "version: '3.1'\nintents:\n- greet\n"))
    assert not rasa.detect(write(tmp_path, "README.md", "# Data\n## Intents\n- greet\n"))
    assert not rasa.detect(write(tmp_path, "data.json", json.dumps({"nlu": [{"intent": "a", "examples": "- x"}]})))
    assert not rasa.detect(tmp_path / "missing.yml")


@pytest.mark.parametrize(
    "example, message",
    [
        ("fly to [Boston(city)", "unclosed '[' at column 8"),
        ("fly to [Boston](city", "'](' without ')'"),
        ('fly to [Boston]{"entity": city}', "bad JSON"),
        ('fly to [Boston]{"role": "to"}', 'has no "entity"'),
        ("fly to [](city)", "empty entity text"),
        ("fly to [Boston]()", "entity name is ''"),
        ("fly to [Boston](city:)", "empty synonym value"),
        ("fly to [Boston](a@b)", "'@'"),
        ("fly to [Boston](a.b.c)", "'.'"),
        ('fly to [Boston]{"entity": "city.name", "role": "to"}', "'.'"),
        ('fly to [Boston]{"entity": "city", "role": "to.loc"}', "role 'to.loc'"),
        ("fly to [the [Boston](city)", "nested or unclosed"),
    ],
)
def test_malformed_markup_names_file_line_and_example(tmp_path, example, message):
    path = write(tmp_path, "bad.yml", f"nlu:\n- intent: a\n  examples: |\n    - fine\n    - {example}\n")
    with pytest.raises(ValueError, match="bad.yml, line 5") as error:
        rasa.read(path, ConversionReport())
    assert message in str(error.value)
    assert repr(example) in str(error.value)


def test_malformed_markdown_names_line(tmp_path):
    path = write(tmp_path, "bad.md", "## intent:a\n- ok\n- [x](\n")
    with pytest.raises(ValueError, match=r"bad.md, line 3: '\]\(' without '\)'"):
        rasa.read(path, ConversionReport())


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.yml", "nlu:\n- intent: ''\n  examples: |\n    - hi\n", "empty.yml, line 2: empty intent name"),
        ("null.yml", "nlu:\n- intent:\n  examples: |\n    - hi\n", "null.yml, line 2: empty intent name"),
        ("noex.yml", "nlu:\n- intent: a\n", "has no 'examples'"),
        ("noitem.yml", "nlu:\n- intent: a\n  examples: |\n    - hi\n    hello\n", "noitem.yml, line 5"),
        ("kind.yml", "nlu:\n- story: a\n", "exactly one of intent"),
        ("nonlu.yml", "encoder: x\n", "no top-level 'nlu:'"),
        ("broken.yml", "nlu:\n- intent: a\n  examples: [\n", "not valid YAML"),
        ("empty.md", "## intent:\n- hi\n", "empty.md, line 1: empty intent name"),
        ("header.md", "## intent:a\n- hi\n## Notes\n", "header.md, line 3: unknown section header"),
        ("orphan.md", "- hi\n## intent:a\n", "orphan.md, line 1: example '- hi' before any"),
        ("text.md", "## intent:a\n- hi\nhello\n", "text.md, line 3"),
    ],
)
def test_structure_errors(tmp_path, name, content, message):
    with pytest.raises(ValueError) as error:
        rasa.read(write(tmp_path, name, content), ConversionReport())
    assert message in str(error.value)


def test_yaml_scalars_are_read_as_written(tmp_path):
    records, _, _ = convert(write(tmp_path, "nlu.yml", "nlu:\n- intent: yes\n  examples: |\n    - yes please\n"))
    assert records[0].sentence_label == "yes"


@pytest.mark.parametrize(
    "parts, label",
    [
        (("city",), "city"),
        (("city_name", "fromloc"), "fromloc.city_name"),
        (("city", None, "1"), "city@1"),
        (("city", "to", "2"), "to.city@2"),
        (("New York", "from loc"), "from loc.New York"),
    ],
)
def test_label_of_and_parse_label_round_trip(parts, label):
    assert rasa.label_of(*parts) == label
    full = tuple(parts) + (None,) * (3 - len(parts))
    assert rasa.parse_label(label) == full
    assert rasa.label_of(*rasa.parse_label(label)) == label


def test_entity_with_one_dot_is_the_role_form():
    assert rasa.label_of("toloc.city_name") == "toloc.city_name"
    assert rasa.parse_label("toloc.city_name") == ("city_name", "toloc", None)


@pytest.mark.parametrize(
    "args",
    [("a@b",), ("a.b", "r"), ("a.b.c",), ("city", "to.x"), ("city", "r@"), ("city", None, "1.2"), ("",),
     ("city", ""), ("city", None, ""), (".city",), ("city.",)],
)
def test_label_of_refuses_ambiguous_names(args):
    with pytest.raises(ValueError):
        rasa.label_of(*args)


@pytest.mark.parametrize("label", ["", "a.b.c", "city@", ".city", "a@b@c"])
def test_parse_label_refuses_invalid_labels(label):
    with pytest.raises(ValueError):
        rasa.parse_label(label)


def test_crlf_and_byte_order_mark(tmp_path):
    path = tmp_path / "nlu.yml"
    path.write_bytes("\ufeffnlu:\r\n- intent: a\r\n  examples: |\r\n    - to [Rome](city)\r\n    - hi\r\n".encode())
    assert rasa.detect(path)
    records = rasa.read(path, ConversionReport())
    assert [(r.where, r.text, r.spans) for r in records] == [
        ("nlu.yml, line 4", "to Rome", [Span(3, 7, "city", text="Rome")]), ("nlu.yml, line 5", "hi", []),
    ]
    markdown = tmp_path / "nlu.md"
    markdown.write_bytes("\ufeff## intent:a\r\n- to [Rome](city)\r\n".encode())
    assert rasa.detect(markdown)
    assert [(r.where, r.text) for r in rasa.read(markdown, ConversionReport())] == [("nlu.md, line 2", "to Rome")]
