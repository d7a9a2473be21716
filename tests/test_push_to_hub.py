"""Publishing to the Hub in ONE commit, against a local stand-in for the Hub's HTTP API.

The stand-in listens on 127.0.0.1 only, answers the few endpoints huggingface_hub 2.x calls for create_repo,
README validation, preupload (every file "regular": sent inline in the commit, no LFS) and commit (and the registry
of agent harnesses the client reads for its user agent, empty), records every
request, refuses anything else with 404, and shuts itself down after a time limit or a request budget.
"""

import base64
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import DEMO_DATA, REPO
from modeling_mtl.hub import files_to_push

TOKEN = "hf_standin_SECRET_0123456789abcdef"
MAX_REQUESTS = 100
LIFETIME_S = 600


class StandInHub:
    def __init__(self):
        self.requests, self.commits, self.created, self.unexpected = [], [], [], []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                pass

            def reply(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                hub.requests.append(("GET", self.path, self.headers.get("Authorization"), b""))
                if self.path.split("?")[0] == "/api/agent-harnesses":  # huggingface_hub's user-agent registry
                    return self.reply(200, {"standardEnvVars": [], "harnesses": {}})
                hub.unexpected.append(("GET", self.path))
                self.reply(404, {"error": "not found in the stand-in"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("Authorization"), body))
                if len(hub.requests) > MAX_REQUESTS:
                    self.reply(503, {"error": "request budget spent"})
                    threading.Thread(target=hub.server.shutdown, daemon=True).start()
                    return
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.created.append(payload)
                    repo = f"{payload.get('organization') or 'standin-user'}/{payload['name']}"
                    return self.reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self.reply(200, {})
                match = re.fullmatch(r"/api/(?:models|spaces)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if match and match.group(2) == "preupload":
                    files = json.loads(body)["files"]
                    return self.reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]})
                if match:
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    files = {
                        line["value"]["path"]: base64.b64decode(line["value"]["content"])
                        for line in lines if line["key"] == "file"
                    }
                    others = [line["key"] for line in lines if line["key"] not in ("header", "file")]
                    hub.commits.append({"repo": match.group(1), "revision": match.group(3), "header": lines[0],
                                        "files": files, "other_operations": others})
                    oid = f"{len(hub.commits):040x}"
                    return self.reply(200, {"commitUrl": f"{hub.url}/{match.group(1)}/commit/{oid}",
                                            "commitOid": oid, "pullRequestUrl": None})
                hub.unexpected.append(("POST", path))
                self.reply(404, {"error": "not found in the stand-in"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.timer = threading.Timer(LIFETIME_S, self.server.shutdown)  # stops itself, whatever the test does

    def __enter__(self):
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def hub():
    with StandInHub() as server:
        yield server


@pytest.fixture
def in_process_endpoint(hub, monkeypatch, tmp_path):
    """Point this process's huggingface_hub (and transformers' shared client) at the stand-in."""
    import huggingface_hub.constants as constants
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transformers_hub, "_hf_api", None)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    yield hub
    monkeypatch.setattr(transformers_hub, "_hf_api", None)


def test_train_mtl_pushes_one_commit_and_never_shows_the_token(hub, tiny_encoder_dir, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "train_mtl.py"), str(REPO / "configuration" / "demo.yaml"),
        "--encoder", tiny_encoder_dir, "--data_dir", str(DEMO_DATA), "--output_dir", str(output),
        "--num_train_epochs", "1", "--max_train_samples", "16", "--max_eval_samples", "12",
        "--per_device_train_batch_size", "8", "--logging_steps", "1", "--max_seq_length", "32",
        "--push_to_hub", "--hub_model_id", "tester/tiny-mtl", "--hub_private_repo", "--hub_token", TOKEN,
    ]
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf_home"),
           "NO_PROXY": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    assert not hub.unexpected, hub.unexpected
    assert len(hub.commits) == 1, [c["files"].keys() for c in hub.commits]
    commit = hub.commits[0]
    assert commit["repo"] == "tester/tiny-mtl" and commit["revision"] == "main" and not commit["other_operations"]
    assert hub.created == [{"name": "tiny-mtl", "organization": "tester", "visibility": "private"}]
    sent = set(commit["files"])
    assert sent == set(files_to_push(output))
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modeling_mtl.py",
                "configuration_mtl.py", "pipeline_mtl.py", "handler.py", "modules.json", "sentence_bert_config.json",
                "1_Pooling/config.json", "README.md", "all_results.json"}
    assert expected <= sent
    card = commit["files"]["README.md"].decode()
    plots = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card))
    assert len(plots) == 7 and plots <= sent  # with the reliability diagram
    assert not any(name.startswith("checkpoint-") or name.endswith(("training_args.json", ".jsonl")) for name in sent)
    (output / "training_weights.safetensors").write_bytes(b"not for the Hub")  # ema_decay's training state
    assert "training_weights.safetensors" not in files_to_push(output)
    assert (output / "training_args.json").exists() and any(p.name.startswith("checkpoint-") for p in output.iterdir())
    for name, content in commit["files"].items():
        assert content == (output / name).read_bytes(), name
    assert 'model_id = "tester/tiny-mtl"' in card

    # The token reached the Hub as the bearer credential, and nowhere else.
    assert {auth for method, _, auth, _ in hub.requests if method == "POST"} == {f"Bearer {TOKEN}"}
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
    for path in output.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert all(TOKEN.encode() not in body for _, _, _, body in hub.requests)


def test_model_push_to_hub_uploads_the_folder_and_its_card_in_one_commit(in_process_endpoint, tiny_model, tmp_path):
    from transformers import AutoModel

    hub = in_process_endpoint
    folder = tmp_path / "trained"
    tiny_model.save_pretrained(folder)
    (folder / "plots").mkdir()
    (folder / "plots" / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (folder / "all_results.json").write_text('{"test_sentence_accuracy": 0.5}')
    (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# card\n![curve](plots/curve.png)\n")
    (folder / "notes.txt").write_text("not part of the model")
    (folder / "training_args.bin").write_bytes(b"pickle")

    model = AutoModel.from_pretrained(folder)
    info = model.push_to_hub("tester/pushed", private=True, token=TOKEN)
    assert info.oid and len(hub.commits) == 1 and not hub.unexpected
    sent = hub.commits[0]["files"]
    assert {"README.md", "plots/curve.png", "all_results.json", "config.json", "model.safetensors", "modeling_mtl.py",
            "configuration_mtl.py", "pipeline_mtl.py", "inference_mtl.py", "decoding_mtl.py", "publishing_mtl.py",
            "schema_mtl.py", "handler.py", "tokenizer.json", "modules.json",
            "1_Pooling/config.json"} == set(sent) - {"tokenizer_config.json", "sentence_bert_config.json"}
    assert sent["README.md"] == (folder / "README.md").read_bytes()
    assert hub.created[0]["visibility"] == "private"
    assert {auth for method, _, auth, _ in hub.requests if method == "POST"} == {f"Bearer {TOKEN}"}

    # A model with no card of its own gets a minimal one with the Hub metadata.
    tiny_model.push_to_hub("tester/bare", token=TOKEN, tags=["demo"])
    card = hub.commits[1]["files"]["README.md"].decode()
    assert "library_name: transformers" in card and '- "custom_code"' in card and '- "demo"' in card
    assert 'AutoModel.from_pretrained("tester/bare", trust_remote_code=True)' in card
    assert TOKEN not in card


def test_a_space_folder_is_pushed_as_a_gradio_space_in_one_commit(in_process_endpoint, tiny_model, tmp_path):
    pytest.importorskip("gradio", reason="the demo extra is not installed")
    from modeling_mtl.space import push_space, write_space

    hub = in_process_endpoint
    tiny_model.save_pretrained(tmp_path / "model")
    folder = write_space(tmp_path / "model", tmp_path / "space", repo_id="tester/pushed")
    url = push_space(folder, "tester/demo", token=TOKEN)
    assert url == f"{hub.url}/spaces/tester/demo" and len(hub.commits) == 1 and not hub.unexpected
    assert hub.created[0]["type"] == "space" and hub.created[0]["sdk"] == "gradio"
    assert set(hub.commits[0]["files"]) == {"README.md", "app.py", "requirements.txt", "space_config.json"}
