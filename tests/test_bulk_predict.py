"""Tests for `modeling_mtl/bulk_predict.py` (`predict --input ... --output ...`): every input once, in input order,
equal to `predict`, from every input kind; clear errors naming file and line; two-process runs under the CPU DDP
launcher; a killed run resumes without redoing its finished shards."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from modeling_mtl import MultiTaskModel
from modeling_mtl.cli import main

from conftest import REPO, build_lively_model

TEXTS = ["fly from boston to new york", "", "buy a new laptop", "hello there", "book a table in paris for two"] * 7


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("bulk") / "model"
    build_lively_model(tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def expected(model_dir):
    model = MultiTaskModel.from_pretrained(model_dir).eval()
    return [{"index": i, "text": text, **result} for i, (text, result) in enumerate(zip(TEXTS, model.predict(TEXTS)))]


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def same(got, want):
    assert [(r["index"], r["text"], r["label"], [(e["entity_group"], e["start"], e["end"]) for e in r["entities"]])
            for r in got] == [
        (r["index"], r["text"], r["label"], [(e["entity_group"], e["start"], e["end"]) for e in r["entities"]])
        for r in json.loads(json.dumps(want))]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-5)


def write_input(kind, folder):
    path = folder / f"input.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    elif kind == "txt":
        path.write_text("".join(t + "\n" for t in TEXTS))
    elif kind == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text"])
            writer.writerows(enumerate(TEXTS))
    elif kind == "parquet":
        import datasets

        datasets.Dataset.from_dict({"text": TEXTS}).to_parquet(str(path))
    else:  # a datasets folder
        import datasets

        path = folder / "saved"
        datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": TEXTS})}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "txt", "csv", "parquet", "datasets"])
def test_every_input_kind_is_predicted_once_in_order(kind, model_dir, expected, tmp_path):
    source = write_input(kind, tmp_path)
    output = tmp_path / "out.jsonl"
    split = ["--split", "test"] if kind == "datasets" else []
    assert main(["predict", "--model", str(model_dir), "--input", str(source), "--output", str(output),
                 "--shard_size", "4", "--no-progress", *split]) == 0
    same(read_jsonl(output), expected)
    assert not (tmp_path / "out.jsonl.parts").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a"}\n{"txt": "b"}\n', "input.jsonl line 2: expected a string or an object with a 'text' field"),
        ('{"text": "a"}\n{"text": 3}\n', "input.jsonl line 2: 'text' is int (3), not a string"),
        ('{"text": "a"}\n\n', "input.jsonl line 2 is blank"),
        ('{"text": "a"}\n{"text": "b"\n', "input.jsonl line 2 is not JSON"),
    ],
)
def test_bad_input_lines_are_named(content, message, model_dir, tmp_path, capsys):
    source = tmp_path / "input.jsonl"
    source.write_text(content)
    assert main(["predict", "--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--input", "missing.jsonl", "--output", "o.jsonl"], "input missing.jsonl not found"),
        (["--input", "input.xml", "--output", "o.jsonl"], "unknown input type '.xml'"),
        (["--input", "input.jsonl"], "--input / --dataset need --output"),
        (["--input", "input.jsonl", "--output", "o.jsonl", "some text"], "not both"),
        (["--input", "input.jsonl", "--output", "o.jsonl", "--shard_size", "0"], "--shard_size must be at least 1"),
        (["--input", "input.jsonl", "--output", "o.jsonl", "--output-format", "rasa"], "does not apply to bulk"),
    ],
)
def test_bulk_arguments_are_checked(arguments, message, model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "input.xml").write_text("<a/>")
    assert main(["predict", "--model", str(model_dir), "--no-progress", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_parts_of_another_run_are_refused(model_dir, tmp_path, capsys):
    source = write_input("jsonl", tmp_path)
    parts = tmp_path / "out.jsonl.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"input": "elsewhere", "shard_size": 4}))
    assert main(["predict", "--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
                 "--no-progress"]) == 2
    assert "holds the shards of another run (it differs in ['input'" in capsys.readouterr().err


def launch(model_dir, source, output, shard_size):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configuration" / "accelerate_ddp_cpu.yaml"), "-m", "modeling_mtl", "predict",
               "--model", str(model_dir), "--input", str(source), "--output", str(output),
               "--shard_size", str(shard_size), "--batch_size", "16", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def process_tree(root):
    """`root` and every process below it (torchrun's workers leave the launcher's process group)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree.extend(frontier)
    return tree


def kill_tree(process):
    """SIGKILL a launcher and its workers at once, as a preempted node would."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_two_processes_write_every_input_once_in_order_and_resume_after_a_kill(model_dir, tmp_path):
    texts = [f"fly from city {i} to paris {'and back ' * (i % 4)}".strip() for i in range(12000)]
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(text) + "\n" for text in texts))
    output, parts = tmp_path / "out.jsonl", tmp_path / "out.jsonl.parts"

    first = launch(model_dir, source, output, 100)
    deadline = time.monotonic() + 300
    while len(list(parts.glob("shard-*.jsonl"))) < 6:
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no shard was written in time"
        time.sleep(0.05)
    kill_tree(first)
    time.sleep(1)  # nothing is left to write a shard
    finished = len(list(parts.glob("shard-*.jsonl")))
    assert not output.exists() and finished < 120, "the first run was to be killed before it finished"

    second = launch(model_dir, source, output, 100)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    resumed = sum(int(line.split(": ")[1].split(" of")[0]) for line in stderr.splitlines()
                  if "of its shards were already done" in line)
    assert resumed == finished  # the shards done before the kill were not predicted again
    assert "12000 texts predicted into" in stderr and "(120 shards, 2 processes)" in stderr
    records = read_jsonl(output)
    assert [r["index"] for r in records] == list(range(len(texts)))
    assert [r["text"] for r in records] == texts
    reference = MultiTaskModel.from_pretrained(model_dir).eval()
    sample = list(range(0, len(texts), 997))
    same([records[i] for i in sample],
         [{"index": i, "text": texts[i], **result} for i, result in zip(sample, reference.predict([texts[i] for i in sample]))])
    assert not parts.exists()
