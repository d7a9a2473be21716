"""Reliability (issue 7): bad training data and bad run files are refused BEFORE training, naming the file and the
line (or the column / key), and nothing is written; nothing is dropped silently.

Each case runs `train_mtl.main` end to end and checks that the output folder was not created. Unit tests of the
same loaders live in tests/test_data.py and tests/test_training_args.py (docs/reliability.md maps them).
"""

import json
import logging
import re
import shutil

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from conftest import DEMO_DATA, REPO
from modeling_mtl.data import FEATURES, DataSource, encode_dataset_dict, load_source, standardize_dataset_dict
from train_mtl import main

RUN = [
    "--max_steps", "2",
    "--max_seq_length", "32",
    "--eval_strategy", "no",
    "--save_strategy", "steps",
    "--save_steps", "1",
    "--load_best_model_at_end", "false",
]


def run_fails(tmp_path, encoder, data_args, message, error=ValueError, config=None):
    """Run train_mtl.main; it must raise `error` matching `message` and leave no output folder behind."""
    output = tmp_path / "output"
    argv = [str(config or REPO / "configuration" / "demo.yaml"), "--encoder", encoder, "--output_dir", str(output)]
    with pytest.raises(error, match=message):
        main(argv + list(data_args) + RUN)
    assert not output.exists(), sorted(p.name for p in output.iterdir())


@pytest.fixture
def demo(tmp_path):
    """A writable copy of the demo data (JointBERT layout: train/, dev/, test/ with seq.in, seq.out, label)."""
    folder = tmp_path / "demo"
    shutil.copytree(DEMO_DATA, folder)
    return folder


def edit_line(path, number, edit):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# JointBERT files


def test_word_and_tag_counts_differ_on_a_line(tmp_path, tiny_encoder_dir, demo):
    edit_line(demo / "train" / "seq.out", 7, lambda line: line + " O")
    words = len((demo / "train" / "seq.in").read_text().split("\n")[6].split())
    message = rf"train/seq\.out:7: {words + 1} tags for the {words} words on line 7 of .*train/seq\.in"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], message)


@pytest.mark.parametrize(
    "file, message",
    [
        ("seq.out", r"dev/seq\.out has 74 lines but .*dev/seq\.in has 75: .*dev/seq\.in:75 has no counterpart"),
        ("label", r"dev/label has 74 lines but .*dev/seq\.in has 75: .*dev/seq\.in:75 has no counterpart"),
        ("seq.in", r"dev/seq\.out has 75 lines but .*dev/seq\.in has 74: .*dev/seq\.out:75 has no counterpart"),
    ],
    ids=["seq.out_short", "label_short", "seq.in_short"],
)
def test_files_of_a_split_have_different_line_counts(tmp_path, tiny_encoder_dir, demo, file, message):
    path = demo / "dev" / file
    path.write_text("\n".join(path.read_text(encoding="utf-8").split("\n")[:74]) + "\n", encoding="utf-8")
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], message)


@pytest.mark.parametrize("bad_tag", ["U-LOC", "b-LOC", "B-", "LOC", "B_LOC", "E-PERSON"])
def test_tag_that_is_not_bio(tmp_path, tiny_encoder_dir, demo, bad_tag):
    edit_line(demo / "test" / "seq.out", 3, lambda line: " ".join([bad_tag] + line.split()[1:]))
    message = rf"test/seq\.out:3: tag '{re.escape(bad_tag)}' is not a BIO tag"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], message)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_empty_split_file(tmp_path, tiny_encoder_dir, demo, split):
    for name in ("seq.in", "seq.out", "label"):
        (demo / split / name).write_text("")
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], rf"{split}/seq\.in: empty file")


def test_empty_line_inside_a_file(tmp_path, tiny_encoder_dir, demo):
    edit_line(demo / "train" / "label", 12, lambda line: "  ")
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], r"train/label:12: empty line")


def test_bytes_that_are_not_utf8(tmp_path, tiny_encoder_dir, demo):
    path = demo / "train" / "seq.in"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4][:3] + b"\xff\xfe" + lines[4][3:]
    path.write_bytes(b"\n".join(lines))
    message = r"train/seq\.in:5: not valid UTF-8 \(byte 0xff at column 4\)"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], message)


def test_no_train_split(tmp_path, tiny_encoder_dir, demo):
    shutil.rmtree(demo / "train")
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(demo)], r"Source 'demo' has no train split")


def test_data_folder_that_does_not_exist(tmp_path, tiny_encoder_dir):
    missing = tmp_path / "nowhere"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(missing)], r"nowhere does not exist", FileNotFoundError)


@pytest.mark.parametrize("flag", ["--max_train_samples", "--max_eval_samples"], ids=["max_train_samples", "max_eval_samples"])
def test_sample_limit_of_zero_empties_a_split(tmp_path, tiny_encoder_dir, flag):
    split = "train" if "train" in flag else "validation"
    message = rf"The {split} split has no examples"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(DEMO_DATA), flag, "0"], message)


# ---------------------------------------------------------------------------------------------------------------
# CSV and JSON Lines: columns, rows, values


def write_csv(folder, train, valid=None):
    folder.mkdir(exist_ok=True)
    (folder / "train.csv").write_text(train, encoding="utf-8")
    (folder / "valid.csv").write_text(valid or train, encoding="utf-8")
    return folder


CSV_OK = "text,label\nfly to paris,travel\nbuy a laptop,technology\n"


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("sentence,label\nfly to paris,travel\n", [], r"train\.csv: no text column 'text'; it has columns 'sentence', 'label'"),
        ("text,intent\nfly to paris,travel\n", [], r"train\.csv: no sentence label column 'label'; it has columns 'text', 'intent'"),
        (CSV_OK, ["--sentence_label_column", "topic"], r"train\.csv: no sentence label column 'topic'; it has columns 'text', 'label'"),
        (CSV_OK, ["--text_column", "body"], r"train\.csv: no text column 'body'"),
    ],
    ids=["missing_text_column", "missing_label_column", "unknown_label_column", "unknown_text_column"],
)
def test_csv_columns(tmp_path, tiny_encoder_dir, content, extra, message):
    folder = write_csv(tmp_path / "csv", content)
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(folder), *extra], message)


@pytest.mark.parametrize(
    "row, message",
    [
        ("Hello, world,greeting", r"train\.csv:3: 3 fields for the 2 columns of the header \('text', 'label'\)"),
        ("just a text", r"train\.csv:3: 1 fields for the 2 columns of the header"),
        (",travel", r"train\.csv:3: empty text"),
        ("\u200b \x00,travel", r"train\.csv:3: empty text"),
    ],
    ids=["unquoted_comma", "missing_field", "empty_text", "invisible_text"],
)
def test_csv_rows(tmp_path, tiny_encoder_dir, row, message):
    folder = write_csv(tmp_path / "csv", CSV_OK.replace("buy a laptop,technology", row))
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(folder)], message)


def write_jsonl(folder, rows):
    """train.jsonl with `rows`, dev.jsonl with the first row only."""
    folder.mkdir(exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "dev.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    return folder


NER_ROW = {"tokens": ["fly", "to", "paris"], "ner": ["O", "O", "B-LOC"], "label": "travel"}


@pytest.mark.parametrize(
    "row, extra, message",
    [
        ({"text": "fly", "label": ["travel", "other"]}, [], r"train\.jsonl:2: column 'label' holds \['travel', 'other'\], not a label"),
        ({"text": "fly", "label": True}, [], r"train\.jsonl:2: column 'label' holds True, not a label"),
        ({"text": "fly", "label": 1.5}, [], r"train\.jsonl:2: column 'label' holds 1\.5, not a label"),
        ({"text": 42, "label": "travel"}, [], r"train\.jsonl:2: column 'text' must hold a string, got 42"),
        ('{"text": "fly", "label": ', [], r"train\.jsonl:2: not valid JSON"),
        ('["fly", "travel"]', [], r"train\.jsonl:2: expected a JSON object, got list"),
        ({**NER_ROW, "ner": ["O", "B-LOC"]}, ["--tokens_column", "tokens", "--tags_column", "ner"], r"train\.jsonl:2: 2 tags for 3 words"),
        ({**NER_ROW, "ner": ["O", "O", "LOC"]}, ["--tokens_column", "tokens", "--tags_column", "ner"], r"train\.jsonl:2: tag 'LOC' is not a BIO tag"),
        ({**NER_ROW, "tokens": "fly to paris"}, ["--tokens_column", "tokens", "--tags_column", "ner"], r"train\.jsonl:2: column 'tokens' must hold a list of strings"),
        (NER_ROW, ["--tokens_column", "tokens", "--tags_column", "slots"], r"(train|dev)\.jsonl: no tags column 'slots'; it has columns 'tokens', 'ner', 'label'"),
    ],
    ids=["label_list", "label_bool", "label_float", "text_int", "bad_json", "not_an_object", "tag_count", "tag_not_bio", "tokens_not_list", "unknown_tags_column"],
)
def test_jsonl_rows_and_columns(tmp_path, tiny_encoder_dir, row, extra, message):
    first = NER_ROW if extra else {"text": "buy a laptop", "label": "technology"}
    folder = write_jsonl(tmp_path / "jsonl", [first, row])
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(folder), *extra], message)


def test_rows_without_any_label_are_kept_and_reported(tmp_path, caplog):
    """A row with neither a sentence label nor tags is kept (it still shapes nothing but the encoder's input
    statistics) and a warning names how many there are and the first one's file and line."""
    rows = [{"text": "fly to paris", "label": "travel"}, {"text": "no label"}, {"text": "x", "label": None}]
    folder = write_jsonl(tmp_path / "jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="modeling_mtl.data"):
        loaded = load_source(DataSource(data_dir=str(folder)))
    assert loaded["train"]["sentence_label"] == ["travel", None, None]
    message = r"train\.jsonl: 2 of 3 examples have neither a sentence label nor tags \(first: .*train\.jsonl:2\)"
    assert re.search(message, caplog.text)


def test_class_label_id_out_of_range_is_an_error():
    """A Hub ClassLabel id beyond the names is corrupt data (not "no label", which is -1): it names split and row."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    good = Dataset.from_dict({"text": ["good", "bad"], "label": [1, -1]}, features=features)
    converted = standardize_dataset_dict(DatasetDict({"train": good}), DataSource(dataset_name="toy"))
    assert converted["train"]["sentence_label"] == ["pos", None]
    # A cast does not check the ids: a ClassLabel column can hold an id without a name.
    bad = Dataset.from_dict({"text": ["good", "odd"], "label": [1, 5]})
    bad = bad.cast_column("label", ClassLabel(names=["neg", "pos"]))
    message = r"source 'toy' split 'train' row 2: column 'label' holds 5, not a label id of its ClassLabel \(0\.\.1, or -1"
    with pytest.raises(ValueError, match=message):
        standardize_dataset_dict(DatasetDict({"train": bad}), DataSource(dataset_name="toy"))


def test_words_without_a_sub_token_are_counted_and_reported(tokenizer, caplog):
    """A word the tokenizer drops entirely (a lone variation selector or zero-width space) keeps its place but its
    tag cannot be learned: encode_dataset_dict counts these words and warns, naming the first example."""
    rows = {
        "text": ["fly \ufe0f paris", "ok"],
        "words": [["fly", "\ufe0f", "paris"], ["ok"]],
        "tags": [["O", "B-LOC", "B-LOC"], ["O"]],
        "sentence_label": ["a", "a"],
        "source": ["s", "s"],
    }
    data = DatasetDict({"train": Dataset.from_dict(rows, features=FEATURES)})
    with caplog.at_level(logging.WARNING, logger="modeling_mtl.data"):
        encoded, stats = encode_dataset_dict(data, tokenizer, ["a"], ["O", "B-LOC", "I-LOC"], max_length=32)
    assert stats["train"]["words_without_token"] == 1 and stats["train"]["words_lost"] == 0
    assert encoded["train"][0]["word_token_index"][1] == -1
    assert "train: 1 words produce no sub-token with this tokenizer (first in example 0: ['\\ufe0f'])" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# Run files (YAML / JSON) and overrides


@pytest.mark.parametrize(
    "text, message",
    [
        ("data_dir: {data}\nlearning_rat: 0.1\n", r"unknown argument\(s\) 'learning_rat' \(from {config}\)"),
        ("data_dir: {data}\nnum_train_epochs: three\n", r"argument 'num_train_epochs' \(from {config}\) is 'three' \(str\)"),
        ("data_dir: {data}\nper_device_train_batch_size: 2.5\n", r"argument 'per_device_train_batch_size' \(from {config}\) is 2\.5 \(float\)"),
        ("data_dir: {data}\nbf16: yes\n", r"argument 'bf16' \(from {config}\) is 'yes' \(str\)"),
        ("sources:\n  - data_dir: {data}\n    label_col: x\n", r"sources\[0\] has unknown keys \['label_col'\]"),
        ("- data_dir: {data}\n", r"{config}: expected a mapping"),
        ("data_dir: [\n", r"{config}: not valid YAML"),
    ],
    ids=["unknown_key", "wrong_type_str", "wrong_type_float", "yaml11_boolean", "unknown_source_key", "not_a_mapping", "bad_yaml"],
)
def test_bad_run_file(tmp_path, tiny_encoder_dir, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text.format(data=DEMO_DATA))
    run_fails(tmp_path, tiny_encoder_dir, [], message.format(config=re.escape(str(config))), config=config)


def test_unknown_override_on_the_command_line(tmp_path, tiny_encoder_dir):
    message = r"unknown argument\(s\) 'epochs' \(from the command line\)"
    run_fails(tmp_path, tiny_encoder_dir, ["--data_dir", str(DEMO_DATA), "--epochs", "3"], message)


def test_missing_run_file(tmp_path, tiny_encoder_dir):
    run_fails(tmp_path, tiny_encoder_dir, [], r"nope\.yaml not found", FileNotFoundError, config=tmp_path / "nope.yaml")
