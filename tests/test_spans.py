"""Character spans to word-level BIO tags (`modeling_mtl.spans`): offsets, repairs, edges, overlaps, labels."""

import random

import pytest

from modeling_mtl.decoding_mtl import bio_to_entities, split_words
from modeling_mtl.spans import (
    EDGE_POLICIES,
    OVERLAP_POLICIES,
    ConversionReport,
    Span,
    SpanError,
    SpanRecord,
    records_to_columns,
    to_words_and_tags,
)


def record(text, *spans, label=None, where="train.json, task 1"):
    return SpanRecord(text=text, spans=list(spans), sentence_label=label, where=where)


def span_at(text, part, label, *, with_text=True, occurrence=0):
    """The Span of the `occurrence`-th `part` in `text`, in Python indices."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(part, start + 1)
    return Span(start, start + len(part), label, part if with_text else None)


def utf16(text, index):
    """The UTF-16 code-unit offset of Python index `index` (what a browser tool reports)."""
    return len(text[:index].encode("utf-16-le")) // 2


def convert(rec, **policies):
    report = ConversionReport()
    return to_words_and_tags(rec, report, **policies), report


def test_plain_ascii_multi_word_spans_b_then_i():
    text = "fly from Boston to New York City tomorrow"
    (words, tags), report = convert(record(text, span_at(text, "Boston", "from"), span_at(text, "New York City", "to")))
    assert words == ["fly", "from", "Boston", "to", "New", "York", "City", "tomorrow"]
    assert tags == ["O", "O", "B-from", "O", "B-to", "I-to", "I-to", "O"]
    assert report.counts == {}
    assert (report.records, report.spans) == (1, 2)


def test_words_and_entity_offsets_equal_split_words_so_predict_agrees():
    text = "Book a table at Café Rouge, Paris (tonight) for 2 people!"
    spans = [span_at(text, "Café Rouge", "restaurant"), span_at(text, "Paris", "city"), span_at(text, "2", "count")]
    (words, tags), report = convert(record(text, *spans))
    splitter = split_words(text)
    assert words == [word for word, _, _ in splitter]
    entities = bio_to_entities(text, tags, [1.0] * len(tags), [(start, end) for _, start, end in splitter])
    assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in entities] == [
        (s.label, s.start, s.end, s.text) for s in spans
    ]
    assert report.counts == {}


def test_emoji_before_span_with_utf16_offsets_and_text_is_repaired():
    text = "I 😀 love 🇫🇷 Paris and Nice"
    paris, nice = text.index("Paris"), text.index("Nice")
    spans = [
        Span(utf16(text, paris), utf16(text, paris) + 5, "city", "Paris"),
        Span(utf16(text, nice), utf16(text, nice) + 4, "city", "Nice"),
    ]
    assert spans[0].start == paris + 3  # the face counts 2, each regional indicator of the flag 2
    (words, tags), report = convert(record(text, *spans))
    assert words == ["I", "😀", "love", "🇫", "🇷", "Paris", "and", "Nice"]
    assert tags == ["O", "O", "O", "O", "O", "B-city", "O", "B-city"]
    assert report.counts == {"repaired_utf16_offsets": 2}
    assert report.examples["repaired_utf16_offsets"][0] == (
        f"train.json, task 1: span {paris + 3}-{paris + 8} 'Paris' (city): offsets counted on UTF-16 code units; "
        f"read as {paris}-{paris + 5} 'Paris'"
    )


def test_emoji_before_span_without_text_is_taken_as_given():
    text = "I 😀 love Paris"
    (words, tags), report = convert(record(text, span_at(text, "Paris", "city", with_text=False)))
    assert words == ["I", "😀", "love", "Paris"]
    assert tags == ["O", "O", "O", "B-city"]
    assert report.counts == {}


def test_shift_proven_by_one_span_applies_to_the_spans_without_text():
    text = "😀 Paris and Nice"
    spans = [Span(3, 8, "city", "Paris"), Span(13, 17, "city")]  # UTF-16 offsets; the second carries no text
    (_, tags), report = convert(record(text, *spans))
    assert tags == ["O", "B-city", "O", "B-city"]
    assert report.counts == {"repaired_utf16_offsets": 2}


def test_combining_mark_before_span_and_edge_before_the_mark():
    text = "cafe\u0301 in Paris"
    spans = [span_at(text, "Paris", "city"), Span(0, 4, "place", "cafe")]  # "cafe" stops before the accent
    (words, tags), report = convert(record(text, *spans))
    assert words == ["cafe\u0301", "in", "Paris"]
    assert tags == ["B-place", "O", "B-city"]
    assert report.counts == {"expanded_to_word": 1}
    assert report.examples["expanded_to_word"] == [
        "train.json, task 1: span 0-4 'cafe' (place) ends inside the word 'cafe\u0301': grown to 0-5 'cafe\u0301'"
    ]


def test_crlf_text_with_offsets_counted_on_lf_text_is_repaired():
    text = "Hello\r\nflight to\r\nBoston please"
    lf = text.replace("\r\n", "\n")
    spans = [Span(lf.index("Boston"), lf.index("Boston") + 6, "city", "Boston")]
    (words, tags), report = convert(record(text, *spans))
    assert words == ["Hello", "flight", "to", "Boston", "please"]
    assert tags == ["O", "O", "O", "B-city", "O"]
    assert report.counts == {"repaired_crlf_offsets": 1}
    assert "offsets counted on the text with \"\\r\\n\" as \"\\n\"; read as 18-24 'Boston'" in (
        report.examples["repaired_crlf_offsets"][0]
    )


def test_lf_text_with_offsets_counted_on_crlf_text_is_repaired():
    text = "Hello\nflight to\nBoston"
    crlf = text.replace("\n", "\r\n")
    spans = [Span(crlf.index("Boston"), crlf.index("Boston") + 6, "city", "Boston")]
    (_, tags), report = convert(record(text, *spans))
    assert tags == ["O", "O", "O", "B-city"]
    assert report.counts == {"repaired_crlf_offsets": 1}


def test_bom_counted_or_not():
    text = "\ufeffgo to Paris"
    (words, tags), report = convert(record(text, Span(6, 11, "city", "Paris")))  # the tool did not count the BOM
    assert words == ["go", "to", "Paris"]
    assert tags == ["O", "O", "B-city"]
    assert report.counts == {"repaired_bom_offsets": 1}

    (_, tags), report = convert(record("go to Paris", Span(7, 12, "city", "Paris")))  # counted a BOM since removed
    assert tags == ["O", "O", "B-city"]
    assert report.counts == {"repaired_bom_offsets": 1}


def test_unprovable_mismatch_is_refused_naming_where_offsets_and_both_texts():
    text = "fly to Boston"
    with pytest.raises(SpanError) as error:
        convert(record(text, Span(7, 13, "city", "Denver"), where="dev.json, task 7"))
    assert str(error.value).startswith(
        "dev.json, task 7: span 7-13 (city) should be 'Denver', but the text there is 'Boston'; no known offset shift"
    )


def test_span_edge_inside_a_word_expand_or_refuse():
    text = "Boston's harbour"
    rec = record(text, Span(0, 6, "city", "Boston"))
    (words, tags), report = convert(rec, edge_policy="expand")
    assert (words, tags) == (["Boston's", "harbour"], ["B-city", "O"])
    assert report.counts == {"expanded_to_word": 1}
    with pytest.raises(SpanError, match="span 0-6 'Boston' \\(city\\) ends inside the word \"Boston's\""):
        convert(rec, edge_policy="refuse")
    with pytest.raises(SpanError, match="starts inside the word 'harbour'"):
        convert(record(text, Span(10, 16, "place", "arbour")), edge_policy="refuse")


def test_edge_at_punctuation_is_a_word_boundary_and_whitespace_is_trimmed():
    text = "fly to Boston, then home"
    (words, tags), report = convert(record(text, span_at(text, "Boston", "city")), edge_policy="refuse")
    assert words[2:4] == ["Boston", ","]
    assert tags == ["O", "O", "B-city", "O", "O", "O"]
    (_, tags), report = convert(record(text, span_at(text, " Boston, ", "city")))
    assert tags == ["O", "O", "B-city", "I-city", "O", "O"]
    assert report.counts == {"trimmed_whitespace": 1}


def test_overlapping_and_nested_spans_refused_naming_both():
    text = "New York City marathon"
    overlapping = record(text, Span(0, 8, "a", "New York"), Span(4, 13, "b", "York City"))
    with pytest.raises(SpanError, match="span 4-13 'York City' \\(b\\) overlaps span 0-8 'New York' \\(a\\)"):
        convert(overlapping)
    nested = record(text, Span(4, 8, "state", "York"), Span(0, 13, "city", "New York City"))
    with pytest.raises(SpanError, match=r"span 4-8 'York' \(state\) is nested in span 0-13 'New York City' \(city\)"):
        convert(nested)


def test_overlapping_and_nested_spans_keep_longest():
    text = "New York City marathon"
    spans = [Span(4, 8, "state", "York"), Span(0, 13, "city", "New York City"), Span(9, 22, "event", "City marathon")]
    rec = record(text, *spans)
    (_, tags), report = convert(rec, overlap_policy="keep_longest")
    assert tags == ["B-city", "I-city", "I-city", "O"]
    assert report.counts == {"dropped_overlapping_span": 2}
    assert report.examples["dropped_overlapping_span"] == [
        "train.json, task 1: span 9-22 'City marathon' (event) dropped: it shares words with span 0-13 'New York City' "
        "(city)",
        "train.json, task 1: span 4-8 'York' (state) dropped: it shares words with span 0-13 'New York City' (city)",
    ]


def test_duplicate_spans_count_once():
    text = "to Boston's harbour"
    rec = record(text, Span(3, 9, "city", "Boston"), Span(3, 9, "city", "Boston"), Span(3, 11, "city", "Boston's"))
    (_, tags), report = convert(rec)
    assert tags == ["O", "B-city", "O"]
    assert report.counts == {"expanded_to_word": 2, "duplicate_span": 2}
    assert report.examples["duplicate_span"][0].endswith("repeats span 3-9 'Boston' (city); counted once")


def test_empty_and_whitespace_spans_are_skipped_and_counted():
    text = "fly  to Paris"
    spans = [Span(4, 4, "x", ""), Span(3, 5, "y", "  "), span_at(text, "Paris", "city")]
    (_, tags), report = convert(record(text, *spans))
    assert tags == ["O", "O", "B-city"]
    assert report.counts == {"empty_span": 1, "whitespace_span": 1}
    assert report.examples["whitespace_span"] == ["train.json, task 1: span 3-5 '  ' (y): covers no word; skipped"]


@pytest.mark.parametrize(
    "span, message",
    [
        (Span(6, 20, "city"), "span 6-20 (city): ends past the end of the text (12 characters)."),
        (Span(-1, 3, "city"), "span -1-3 (city): negative offset."),
        (Span(5, 3, "city"), "span 5-3 (city): ends before it starts."),
        (Span(6, 20, "city", "Boston"), "span 6-20 'Boston' (city): ends past the end of the text (12 characters)."),
        (Span(0, 3.0, "city"), "span 0-3.0 (city): end is 3.0, not an integer offset."),
    ],
)
def test_offsets_out_of_range_are_refused(span, message):
    with pytest.raises(SpanError) as error:
        convert(record("go to Boston", span))
    assert str(error.value) == f"train.json, task 1: {message}"


def test_text_without_words_is_skipped_and_counted_with_its_spans():
    assert convert(record("\u200b \u200b", Span(0, 1, "x")))[0] is None
    _, report = convert(record("\u200b \u200b", Span(0, 1, "x")))
    assert report.examples == {
        "empty_text": ["train.json, task 1: no word in the text '\\u200b \\u200b'; record skipped with its 1 span(s)"]
    }
    assert report.records == 0


def test_text_without_spans_is_all_o():
    (words, tags), report = convert(record("hello there"))
    assert (words, tags) == (["hello", "there"], ["O", "O"])
    assert report.counts == {"no_spans": 1}


def test_labels_with_spaces_are_replaced_reversibly():
    text = "from Boston"
    report = ConversionReport()
    words, tags = to_words_and_tags(record(text, Span(5, 11, "from loc", "Boston")), report)
    assert tags == ["O", "B-from_loc"]
    assert report.counts == {"label_spaces_replaced": 1}
    assert report.labels == {"from_loc": "from loc"}
    with pytest.raises(SpanError, match="labels 'from loc' and 'from_loc' would both become tags"):
        to_words_and_tags(record(text, Span(5, 11, "from_loc", "Boston")), report)
    with pytest.raises(SpanError, match="label 'from_loc city' holds whitespace other than single spaces, or both"):
        convert(record(text, Span(5, 11, "from_loc city")))
    (_, tags), report = convert(record(text, Span(5, 11, " city ")))
    assert tags == ["O", "B-city"]
    assert report.counts == {"label_whitespace_stripped": 1}


@pytest.mark.parametrize("label", ["", "  ", None])
def test_empty_labels_are_refused(label):
    with pytest.raises(SpanError, match=r"span 5-11 'Boston' \(.*\): the label is .*; every span needs a non-empty"):
        convert(record("from Boston", Span(5, 11, label)))


def test_records_to_columns_and_summary():
    records = [
        record("fly to Boston", Span(7, 13, "city"), label="flight", where="train.json, task 1"),
        record("no entity here", label="", where="train.json, task 2"),
        record(" \u200b ", where="train.json, task 3"),
        record("Boston's port", Span(0, 6, "city"), label=None, where="more.json, task 1"),
    ]
    report = ConversionReport()
    columns = records_to_columns(records, report, edge_policy="expand")
    assert columns == {
        "text": ["fly to Boston", "no entity here", "Boston's port"],
        "words": [["fly", "to", "Boston"], ["no", "entity", "here"], ["Boston's", "port"]],
        "tags": [["O", "O", "B-city"], ["O", "O", "O"], ["B-city", "O"]],
        "sentence_label": ["flight", None, None],
    }
    assert report.counts == {"no_spans": 1, "empty_text": 1, "expanded_to_word": 1}
    assert report.by_file == {"train.json": {"no_spans": 1, "empty_text": 1}, "more.json": {"expanded_to_word": 1}}
    summary = report.summary()
    assert summary.startswith("Span conversion: 3 records, 2 entity spans:\n")
    assert "  empty_text: 1\n    train.json, task 3: no word in the text ' \\u200b '; record skipped" in summary
    assert "  per file:\n    more.json: expanded_to_word 1\n    train.json: no_spans 1, empty_text 1" in summary

    other = ConversionReport()
    records_to_columns([record("go", Span(0, 2, "x"), where="test.json, task 1")], other)
    report.merge(other)
    assert (report.records, report.spans) == (4, 3)
    assert "test.json" not in report.by_file  # no problem there
    assert ConversionReport().summary() == "Span conversion: 0 records, 0 entity spans; no problems."


def test_policies_are_checked():
    assert EDGE_POLICIES == ("expand", "refuse") and OVERLAP_POLICIES == ("refuse", "keep_longest")
    with pytest.raises(ValueError, match="edge_policy is 'split'; choose one of"):
        convert(record("a b"), edge_policy="split")
    with pytest.raises(ValueError, match="overlap_policy is 'keep'; choose one of"):
        convert(record("a b"), overlap_policy="keep")
    with pytest.raises(TypeError, match="unknown policies"):
        records_to_columns([], ConversionReport(), edge=1)


def test_spans_counted_in_different_ways_are_refused_naming_both():
    text = "😀 Paris and Nice"
    spans = [Span(3, 8, "city", "Paris"), Span(12, 16, "city", "Nice")]  # UTF-16, then Python indices
    with pytest.raises(SpanError) as error:
        convert(record(text, *spans))
    assert str(error.value) == (
        "train.json, task 1: the spans' offsets were counted in different ways: span 3-8 'Paris' (city) fits "
        "UTF-16 code units, span 12-16 'Nice' (city) fits the text as given; no one offset shift fits every span of "
        "the record."
    )


def test_summary_keeps_the_first_examples_and_counts_the_rest():
    report = ConversionReport(max_examples=1)
    for task in (1, 2, 3):
        to_words_and_tags(record("hi", where=f"a.json, task {task}"), report)
    assert report.summary() == (
        "Span conversion: 3 records, 0 entity spans:\n"
        "  no_spans: 3\n"
        "    a.json, task 1: no spans: every word tagged O\n"
        "    ... 2 more"
    )


def test_random_texts_round_trip_through_predict_offsets():
    """Spans on splitter words, in Python indices and in UTF-16 units with their text, give tags whose entities
    (as `predict` computes them from `split_words`) are exactly the spans."""
    rng = random.Random(19)
    pieces = ["Paris", "New", "York", "e\u0301te\u0301", "😀", "🇫🇷", "Boston's", ",", ".", "(", ")", "ü", "東京"]
    pieces.append("x-ray")
    separators = [" ", "  ", "\n", "\r\n", "\t", " \u200b "]
    for _ in range(200):
        words = [rng.choice(pieces) for _ in range(rng.randint(1, 12))]
        text = "".join(word + rng.choice(separators) for word in words)
        splitter = split_words(text)
        spans, index = [], 0
        while index < len(splitter):
            length = rng.randint(1, 3)
            if rng.random() < 0.4 and index + length <= len(splitter):
                start, end = splitter[index][1], splitter[index + length - 1][2]
                spans.append((start, end, rng.choice(["city", "thing"])))
                index += length + rng.randint(0, 1)  # entities may be adjacent
            else:
                index += 1
        python = record(text, *[Span(s, e, label) for s, e, label in spans])
        browser = record(text, *[Span(utf16(text, s), utf16(text, e), label, text[s:e]) for s, e, label in spans])
        for rec in (python, browser):
            (got_words, tags), report = convert(rec, edge_policy="refuse")
            assert got_words == [word for word, _, _ in splitter]
            entities = bio_to_entities(text, tags, [1.0] * len(tags), [(s, e) for _, s, e in splitter])
            assert [(e["start"], e["end"], e["entity_group"]) for e in entities] == spans
            assert set(report.counts) <= {"no_spans", "repaired_utf16_offsets"}
