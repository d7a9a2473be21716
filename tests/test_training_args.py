"""Run configuration: YAML/JSON files, --key value overrides, and clear errors for unknown keys or wrong types."""

import json
import re

import pytest

from modeling_mtl.training_args import parse_arguments


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_values_and_overrides(tmp_path):
    path = write(tmp_path, "data_dir: data/demo\nnum_train_epochs: 3\nlearning_rate: 1.0e-4\nsave_strategy: no\neval_strategy: no\n"
                         "sentence_label_separator: '#'   # quoted: a bare # starts a YAML comment\n")
    model, data, training = parse_arguments([path, "--num_train_epochs", "2", "--pooling_mode=cls", "--use_cpu"])
    assert data.data_dir == "data/demo"
    assert training.num_train_epochs == 2 and training.learning_rate == 1e-4
    assert training.save_strategy == "no"  # YAML 1.2 booleans: `no` stays a string
    assert training.use_cpu is True
    assert model.pooling_mode == "cls" and model.config_overrides() == {
        "pooling_mode": "cls", "head_dropout": 0.1, "sentence_loss_weight": 1.0, "token_loss_weight": 1.0,
        "token_decoding": "bio_viterbi",  # the training default
        "sentence_label_separator": "#",
    }
    assert training.label_names == ["sentence_labels", "token_labels"]


def test_a_hash_on_the_command_line_is_a_value_not_a_comment(tmp_path):
    path = write(tmp_path, "data_dir: data/demo\n")
    model, _, _ = parse_arguments([path, "--sentence_label_separator", "#", "--pooling_mode", "null"])
    assert model.sentence_label_separator == "#" and model.pooling_mode is None


@pytest.mark.parametrize("line", ["sentence_label_separator: #", "sentence_label_separator:   # ATIS's separator"])
def test_a_bare_hash_in_a_run_file_is_refused_with_its_line(tmp_path, line):
    path = write(tmp_path, f"data_dir: data/demo\n{line}\n")
    with pytest.raises(ValueError, match=rf"run.yaml, line 2: `{re.escape(line)}` gives sentence_label_separator no value"):
        parse_arguments([path])


def test_a_null_separator_in_a_run_file_is_accepted(tmp_path):
    path = write(tmp_path, "data_dir: data/demo\nsentence_label_separator: null   # no combined labels\n")
    model, _, _ = parse_arguments([path])
    assert model.sentence_label_separator is None


def test_json_config_and_sources(tmp_path):
    path = write(tmp_path, json.dumps({"sources": [{"data_dir": "a"}, {"data_dir": "b", "data_format": "sst2"}]}),
                 "run.json")
    _, data, _ = parse_arguments([path])
    sources = data.data_sources()
    assert [s.data_dir for s in sources] == ["a", "b"] and sources[1].data_format == "sst2"


@pytest.mark.parametrize(
    "text, argv, message",
    [
        ("data_dir: x\nlearning_rat: 0.1\n", [], "unknown argument(s) 'learning_rat' (from {path})"),
        ("data_dir: x\n", ["--epochs", "3"], "unknown argument(s) 'epochs' (from the command line)"),
        ("num_train_epochs: three\n", [], "argument 'num_train_epochs' (from {path}) is 'three' (str)"),
        ("bf16: yes\n", [], "argument 'bf16' (from {path}) is 'yes' (str)"),
        ("data_dir: [1, 2]\n", [], "argument 'data_dir' (from {path}) is [1, 2] (list)"),
        ("- a\n- b\n", [], "{path}: expected a mapping"),
        ("a: [\n", [], "{path}: not valid YAML"),
    ],
)
def test_bad_configurations_name_the_key_and_the_file(tmp_path, text, argv, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as error:
        parse_arguments([path, *argv])
    assert message.format(path=path) in str(error.value)


def test_unknown_source_keys_are_refused(tmp_path):
    _, data, _ = parse_arguments([write(tmp_path, "sources:\n  - data_dir: a\n    label_col: x\n")])
    with pytest.raises(ValueError, match=r"sources\[0\] has unknown keys \['label_col'\]"):
        data.data_sources()


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml not found"):
        parse_arguments([str(tmp_path / "nope.yaml")])
