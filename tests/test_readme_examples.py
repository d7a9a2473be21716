"""README's "One example per format" blocks run as written: each in an empty folder, its shell lines with bash and
its `python -m modeling_mtl ...` line through the same entry point in this process (`cli.main`, what `__main__`
calls: a fresh interpreter per block would spend most of the test importing), and its `inspect-data` detects the
format the block is about and reads its examples."""

import io
import re
import shlex
import subprocess

import pytest

from conftest import REPO
from modeling_mtl.cli import main

EXPECTED = {  # folder the block writes -> (format detected, training examples, entity types, sentence labels)
    "ls": ("label-studio", 1, 2, 1),
    "doccano": ("doccano", 2, 3, 2),
    "prodigy": ("prodigy", 1, 1, 0),
    "rasa": ("rasa", 3, 3, 2),
    "jointbert": ("jointbert", 1, 2, 1),
    "conll": ("conll", 1, 2, 0),
    "sst2": ("sst2", 2, 0, 2),
    "csv": ("csv", 2, 0, 2),
}


def readme_blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("#### One example per format", 1)[1].split("\nBefore training,", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_there_is_one_block_per_format():
    folders = [re.search(r"inspect-data (\S+)", block).group(1) for block in readme_blocks()]
    assert sorted(folders) == sorted(EXPECTED)


@pytest.mark.parametrize("block", readme_blocks(), ids=lambda block: re.search(r"inspect-data (\S+)", block).group(1))
def test_the_block_runs_and_reads_its_format(block, tmp_path, monkeypatch):
    folder = re.search(r"inspect-data (\S+)", block).group(1)
    data_format, examples, entity_types, sentence_labels = EXPECTED[folder]
    shell, command = block.rstrip("\n").rsplit("\n", 1)
    assert command.startswith("python -m modeling_mtl "), command
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", shell], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.chdir(tmp_path)
    stdout = io.StringIO()
    assert main(shlex.split(command)[3:], stdout=stdout) == 0
    out = stdout.getvalue()
    assert re.search(rf"^Source {folder}: {data_format}$", out, re.M), out
    assert re.search(rf"^train: {examples} examples\n  sentence labels \({sentence_labels}\): .*\n"
                     rf"  entity types \({entity_types}\): ", out, re.M), out
