"""`python -m modeling_mtl inspect-data` (modeling_mtl/inspect_data.py) on a Label Studio folder of known counts."""

import io
import json
import re

import pytest

from modeling_mtl.cli import main


def task(text, intent, *spans):
    result = [{"from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": text.index(word), "end": text.index(word) + len(word), "text": word, "labels": [kind]}}
              for word, kind in spans]
    result.append({"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [intent]}})
    return {"data": {"text": text}, "annotations": [{"id": 1, "result": result, "was_cancelled": False}]}


@pytest.fixture
def run_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    long_text = "flights from boston to denver " + "and then onwards " * 10
    train = [task("flights from boston to denver", "flight", ("boston", "from_city"), ("denver", "to_city")),
             task("fares to denver", "airfare", ("denver", "to_city")),
             task(long_text, "flight", ("boston", "from_city")),
             task("hello", "greet")]
    # "hello" is in train and validation; "meal" and "airline" are labels train never has.
    validation = [task("hello", "greet"), task("what meals are served", "meal"),
                  task("united flights to dallas", "flight", ("united", "airline"), ("dallas", "to_city"))]
    (data / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (data / "dev.json").write_text(json.dumps(validation), encoding="utf-8")
    path = tmp_path / "run.yaml"
    path.write_text(f"data_dir: {data}\nmax_seq_length: 16\ntest_split_percentage: 0\n", encoding="utf-8")
    return path


def test_the_summary_names_format_counts_unseen_labels_truncation_and_duplicates(run_file):
    out = io.StringIO()
    assert main(["inspect-data", str(run_file)], stdout=out) == 0
    text = out.getvalue()
    # 3 of the 7 records carry a sentence label only: the conversion counts them, naming file and task.
    assert re.search(r"^Source data: label-studio\n  Span conversion: 7 records, 6 entity spans:\n    no_spans: 3\n"
                     r"      dev.json, task 1: no spans: every word tagged O$", text, re.M), text
    assert re.search(r"^train: 4 examples\n  sentence labels \(3\): flight 2, airfare 1, greet 1\n"
                     r"  entity types \(2\): from_city 2, to_city 2$", text, re.M), text
    assert "validation: 3 examples" in text
    assert "only in validation, not in train (sentence labels, scored as errors): meal" in text
    assert "only in validation, not in train (entity types, scored as errors): airline" in text
    assert "texts longer than max_seq_length 16 tokens (truncated): train 1 (first: example 2)" in text
    assert text.rstrip().endswith("texts in more than one split: train/validation 1")


def test_json_output_holds_the_same_figures(run_file):
    out = io.StringIO()
    assert main(["inspect-data", str(run_file), "--json"], stdout=out) == 0
    summary = json.loads(out.getvalue())
    assert summary["sources"] == [{"name": "data", "format": "label-studio", "conversion": {"no_spans": 3}, "records": 7}]
    assert summary["splits"]["validation"]["sentence_labels"] == {"greet": 1, "meal": 1, "flight": 1}
    assert summary["truncated"]["train"] == {"examples": 1, "first_index": 2}
    assert summary["duplicates_across_splits"] == {"train/validation": 1}


def test_data_training_would_refuse_exits_2_naming_the_file(tmp_path, capsys):
    (tmp_path / "train.json").write_text('[{"data": {"text": "go to Paris"}, "annotations": [{"result": ['
                                         '{"type": "labels", "value": {"start": 6, "end": 40, "labels": ["city"]}}]}]}]',
                                         encoding="utf-8")
    assert main(["inspect-data", str(tmp_path)], stdout=io.StringIO()) == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m modeling_mtl inspect-data: error:") and "train.json" in error, error


def test_a_target_that_does_not_exist_exits_2(tmp_path, capsys):
    assert main(["inspect-data", str(tmp_path / "nope.yaml")], stdout=io.StringIO()) == 2
    assert "neither a run file nor a data folder" in capsys.readouterr().err


def test_the_length_checked_is_the_one_training_uses(run_file, tiny_encoder_dir):
    # No max_seq_length in the run file: training takes the encoder's own rule (here its 128 positions, not the
    # tokenizer's model_max_length of 512), and so must the truncation count.
    from modeling_mtl import MultiTaskModel

    run_file.write_text(run_file.read_text(encoding="utf-8").replace("max_seq_length: 16\n", "")
                        + f"encoder: {tiny_encoder_dir}\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["inspect-data", str(run_file), "--json"], stdout=out) == 0
    trained = MultiTaskModel.from_encoder(tiny_encoder_dir, sentence_labels=["a"], token_labels=["O"])
    assert json.loads(out.getvalue())["max_seq_length"] == trained.config.max_seq_length == 128
