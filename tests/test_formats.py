"""The format table (modeling_mtl/formats/__init__.py): every format's row, detection (span formats by file content,
word formats by folder shape), splits by file name, loading through DataSource / load_source, and the readers'
names kept in `modeling_mtl.data` / `modeling_mtl.data_formats`."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import make_jointbert, write
from modeling_mtl.data import DataSource, build_label_maps, load_conll, load_jointbert, load_source, load_sst2
from modeling_mtl.formats import FORMATS, SPAN_FORMATS, WORD_FORMATS, detect_format, detect_span_format

FIXTURES = Path(__file__).parent / "fixtures" / "span_formats"


def folder(tmp_path, **files):
    root = tmp_path / "data"
    root.mkdir()
    for name, fixture in files.items():
        shutil.copy(FIXTURES / fixture, root / name.replace("_", "."))
    return root


def test_a_label_studio_folder_is_detected_and_split_by_file_name(tmp_path):
    root = folder(tmp_path, train_json="label_studio.json", test_json="label_studio_min.json")
    assert detect_span_format(root) == "label-studio"
    raw = load_source(DataSource(data_dir=str(root)))
    # No validation file: 10% of the 7 training tasks (rounded, stratified by intent) become one.
    assert list(raw) == ["train", "validation", "test"]
    assert (len(raw["train"]), len(raw["validation"]), len(raw["test"])) == (6, 1, 2)
    assert raw["test"][0]["words"] == ["fly", "to", "Boston"] and raw["test"][0]["tags"] == ["O", "O", "B-city"]
    assert set(raw["train"]["source"]) == {"data"}
    sentence_labels, token_labels = build_label_maps(raw["train"])
    assert "B-big_city" in token_labels and "atis_flight" in sentence_labels


def test_one_classification_export_is_the_train_split_and_feeds_the_sentence_head_only(tmp_path):
    root = folder(tmp_path, reviews_jsonl="doccano_classification.jsonl")
    raw = load_source(DataSource(data_dir=str(root)))
    assert list(raw) == ["train"] and raw["train"]["sentence_label"] == ["positive", "negative"]
    assert raw["train"]["tags"] == [None, None]  # no span anywhere: not "no entity" but "not annotated"


def test_data_format_overrides_detection_and_unknown_names_are_listed(tmp_path):
    root = folder(tmp_path, train_jsonl="prodigy.jsonl")
    assert len(load_source(DataSource(data_dir=str(root), data_format="prodigy"))["train"]) == 3
    with pytest.raises(ValueError, match="Unknown data_format 'brat'.*label-studio"):
        DataSource(data_dir=str(root), data_format="brat")


def test_a_folder_mixing_tools_or_unnamed_files_is_refused(tmp_path):
    root = folder(tmp_path, train_json="label_studio.json", test_jsonl="prodigy.jsonl")
    with pytest.raises(ValueError, match="files of several annotation formats"):
        load_source(DataSource(data_dir=str(root)))
    root = tmp_path / "two"
    root.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        shutil.copy(FIXTURES / "prodigy.jsonl", root / name)
    with pytest.raises(ValueError, match="a.jsonl: its name does not say whether it is train"):
        load_source(DataSource(data_dir=str(root)))


def test_tabular_json_lines_are_still_tabular(tmp_path):
    root = tmp_path / "tab"
    root.mkdir()
    (root / "train.jsonl").write_text(json.dumps({"text": "great", "label": "positive"}) + "\n", encoding="utf-8")
    assert detect_span_format(root) is None
    assert load_source(DataSource(data_dir=str(root)))["train"]["sentence_label"] == ["positive"]


def test_every_format_module_has_the_interface():
    for name, module in SPAN_FORMATS.items():
        assert module.NAME == name and module.SUFFIXES and callable(module.detect) and callable(module.read)


def test_label_studio_tasks_one_per_line_read_like_the_json_export(tmp_path):
    tasks = json.loads((FIXTURES / "label_studio.json").read_text(encoding="utf-8-sig"))
    root = tmp_path / "lines"
    root.mkdir()
    (root / "train.jsonl").write_text("\n".join(json.dumps(task, ensure_ascii=False) for task in tasks) + "\n",
                                      encoding="utf-8")
    from_lines = load_source(DataSource(data_dir=str(root)))["train"]
    from_json = load_source(DataSource(data_dir=str(folder(tmp_path, train_json="label_studio.json"))))["train"]
    assert detect_span_format(root) == "label-studio"
    assert from_lines["words"] == from_json["words"] and from_lines["tags"] == from_json["tags"]


def test_train_mtl_trains_on_an_annotation_export_in_one_command(tiny_encoder_dir, tmp_path):
    from conftest import REPO
    from train_mtl import main

    root = folder(tmp_path, train_json="label_studio.json", test_json="label_studio_min.json")
    trainer = main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir", str(root),
                    "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "1", "--max_seq_length", "32",
                    "--report_to", "none"])
    assert "B-person" in trainer.model.config.token_labels and "greeting" in trainer.model.config.sentence_labels
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert results["test_samples"] == 2 and "test_token_f1" in results


def test_the_policies_are_data_keys_of_a_run(tmp_path):
    from modeling_mtl.training_args import DataArguments

    root = folder(tmp_path, train_json="label_studio_overlap.json")
    with pytest.raises(ValueError, match="overlaps|nested"):
        load_source(DataArguments(data_dir=str(root)).data_sources()[0])
    kept = load_source(DataArguments(data_dir=str(root), overlap_policy="keep_longest").data_sources()[0])
    assert kept["train"]["tags"] == [["O", "O", "O", "B-place", "I-place"]]
    with pytest.raises(ValueError, match="edge_policy is 'grow'; expected one of expand, refuse"):
        DataSource(data_dir=str(root), edge_policy="grow")


def test_a_rasa_nlu_folder_is_detected_and_roles_become_part_of_the_tag(tmp_path):
    root = folder(tmp_path, nlu_yml="rasa_nlu.yml")
    assert detect_span_format(root) == "rasa"
    raw = load_source(DataSource(data_dir=str(root)))
    assert list(raw) == ["train"] and raw["train"]["sentence_label"] == ["atis_flight"] * 3 + ["greet"]
    assert raw["train"][0]["tags"] == ["O", "O", "O", "B-fromloc.city_name", "O", "B-toloc.city_name"]
    assert raw["train"][1]["words"][5:7] == ["NYC", "😀"] and raw["train"][1]["tags"][5] == "B-city_name"
    assert raw["train"][2]["tags"] == ["O", "O", "B-fromloc.city_name", "O"]  # role written into the entity name


def test_loaders_can_be_called_directly(tmp_path):
    make_jointbert(tmp_path / "atis")
    write(tmp_path / "wnut" / "train.conll", "Paris\tB-location\n")
    write(tmp_path / "sst" / "stsa.binary.train", "1 good\n")
    assert load_jointbert(tmp_path / "atis")["train"]["source"] == ["atis", "atis"]
    assert load_conll(tmp_path / "wnut", "ner")["train"]["source"] == ["ner"]
    assert load_sst2(str(tmp_path / "sst"))["train"]["source"] == ["sst"]


def test_column_options_rejected_for_fixed_formats(tmp_path):
    make_jointbert(tmp_path)
    with pytest.raises(ValueError, match="Column options only apply to csv, jsonl and Hub sources"):
        load_source(DataSource(data_dir=str(tmp_path), text_column="text"))


def test_detect_format_errors(tmp_path):
    write(tmp_path / "notes.md", "hello\n")
    with pytest.raises(ValueError, match=r"Cannot detect the data format .*<split>/seq\.in.*found notes\.md"):
        detect_format(tmp_path)
    write(tmp_path / "train.csv", "text,label\n")
    write(tmp_path / "train.jsonl", "{}\n")
    with pytest.raises(ValueError, match="several formats"):
        detect_format(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect_format(tmp_path / "missing")


def test_every_format_has_one_row_and_the_error_lists_what_detection_looks_for(tmp_path):
    assert set(WORD_FORMATS) == {"jointbert", "conll", "sst2", "csv", "jsonl"}
    assert set(FORMATS) == set(WORD_FORMATS) | set(SPAN_FORMATS)
    for name in FORMATS:
        assert DataSource(data_dir=str(tmp_path), data_format=name).data_format == name
    write(tmp_path / "notes.md", "hello\n")
    with pytest.raises(ValueError, match="Cannot detect") as error:
        detect_format(tmp_path)
    for looked_for in ("<split>/seq.in", "stsa.binary.<split>", "*.csv", "*.jsonl", "*.conll", *SPAN_FORMATS, ".yml"):
        assert looked_for in str(error.value), looked_for


def test_the_old_data_formats_module_keeps_its_names():
    from modeling_mtl import data_formats

    assert data_formats.load_jointbert is load_jointbert and data_formats.detect_format is detect_format
    assert set(data_formats.TABULAR_FORMATS) == {"csv", "jsonl"} and "jointbert" in data_formats.FORMATS
