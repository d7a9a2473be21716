"""Tests for `modeling_mtl/serving.py` (`python -m modeling_mtl serve`): the real server, uvicorn in a subprocess on a
free loopback port, called over HTTP (nothing of the HTTP layer is mocked). Its answers are the model's own
`predict` / `encode`, concurrent callers get their own, every limit and malformed body has its status and message,
a full queue answers 503, and SIGTERM with requests in flight loses none of them."""

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy
import pytest

from conftest import build_lively_model, free_port, wait_until_ready
from modeling_mtl import MultiTaskModel
from modeling_mtl.cli import main

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")

TEXTS = [
    "fly from boston to new york",
    "buy a new laptop",
    "show me the cheapest flights from san francisco to denver on monday morning",
    "hello",
    "what is the weather in paris",
    "book a table for two",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("served") / "model"
    build_lively_model(tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(model_dir):
    return MultiTaskModel.from_pretrained(model_dir).eval()


class Server:
    def __init__(self, process, port, log):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def call(self, path, body=None, raw=None, timeout=60):
        """(status, headers, parsed JSON or text) of a GET (no body) or POST."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, headers, text = response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            status, headers, text = error.code, error.headers, error.read().decode()
        try:
            return status, headers, json.loads(text)
        except ValueError:
            return status, headers, text

    def log_text(self):
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def running_server(model_dir, tmp_path, *options):
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "modeling_mtl", "serve", "--model", str(model_dir), "--port", str(port), *options],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    server = Server(process, port, log)
    try:
        wait_until_ready(process, lambda: server.call("/ready", timeout=5)[0] == 200, server.log_text, "the server")
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def json_round_trip(value):
    return json.loads(json.dumps(value))


def assert_same_predictions(served, expected):
    """Labels, entity spans and tags exactly; scores to float32 noise (another batch means other padding)."""
    assert len(served) == len(expected)
    for got, want in zip(served, json_round_trip(expected)):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert [{k: v for k, v in e.items() if k != "score"} for e in got["entities"]] == [
            {k: v for k, v in e.items() if k != "score"} for e in want["entities"]]
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]], abs=1e-5)
        assert [r["label"] for r in got.get("intent_ranking", [])] == [r["label"] for r in want.get("intent_ranking", [])]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with running_server(model_dir, tmp_path_factory.mktemp("server"), "--metrics", "--max_wait_ms", "30",
                        "--max_texts_per_request", "8", "--max_chars_per_text", "200",
                        "--max_body_bytes", "4000", "--body_timeout_s", "2") as server:
        yield server


def test_predict_embed_and_parse_answer_as_the_model_does(server, reference):
    status, _, body = server.call("/predict", {"texts": TEXTS})
    assert status == 200
    assert_same_predictions(body["predictions"], reference.predict(TEXTS))
    status, _, body = server.call("/predict", {"text": TEXTS[0], "top_k": 2, "aggregation_strategy": "average"})
    assert status == 200
    assert_same_predictions(body["predictions"], reference.predict(TEXTS[:1], top_k=2, aggregation_strategy="average"))
    assert len(body["predictions"][0]["intent_ranking"]) == 2

    status, _, body = server.call("/embed", {"texts": TEXTS[:3]})
    assert status == 200
    numpy.testing.assert_allclose(body["embeddings"], reference.encode(TEXTS[:3]), atol=1e-5)

    text = TEXTS[2]
    status, _, parsed = server.call("/model/parse", {"text": text, "message_id": "abc"})
    assert status == 200
    (expected,) = reference.predict([text], top_k=3)
    assert set(parsed) == {"text", "intent", "entities", "intent_ranking"}
    assert parsed["text"] == text
    assert parsed["intent"]["name"] == expected["label"]
    assert parsed["intent"]["confidence"] == pytest.approx(expected["score"], abs=1e-5)
    assert [r["name"] for r in parsed["intent_ranking"]] == [r["label"] for r in expected["intent_ranking"]]
    assert parsed["entities"], "the lively model tags words in this text"
    for entity, want in zip(parsed["entities"], expected["entities"], strict=True):
        assert set(entity) == {"start", "end", "value", "entity", "confidence_entity", "extractor"}
        assert entity["value"] == text[entity["start"] : entity["end"]] == want["word"]
        assert entity["entity"] == want["entity_group"]


def test_health_ready_info_docs_and_metrics(server, reference):
    assert server.call("/health")[:3:2] == (200, {"status": "ok"})
    status, _, ready = server.call("/ready")
    assert status == 200 and ready["ready"] is True
    status, _, info = server.call("/info")
    assert status == 200
    assert info["sentence_labels"] == reference.config.sentence_labels
    assert info["token_labels"] == reference.config.token_labels
    assert info["max_seq_length"] == reference.config.max_seq_length
    assert info["limits"]["max_texts_per_request"] == 8 and info["runtime"] == "torch"
    status, _, page = server.call("/docs")
    assert status == 200 and "swagger" in page.lower()
    status, _, schema = server.call("/openapi.json")
    assert {"/predict", "/embed", "/model/parse", "/health", "/ready", "/info"} <= set(schema["paths"])
    server.call("/predict", {"text": "hello"})
    status, _, metrics = server.call("/metrics")
    assert status == 200
    assert 'modeling_mtl_requests_total{path="/predict",status="200"}' in metrics
    assert "modeling_mtl_batch_size_count" in metrics and "modeling_mtl_queue_depth" in metrics


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(server, reference):
    texts = [f"{TEXTS[i % len(TEXTS)]} {'again ' * (i % 5)}".strip() for i in range(24)]
    expected = reference.predict(texts)

    def metric(name):
        lines = [line for line in server.call("/metrics")[2].splitlines() if line.startswith(name + " ")]
        return float(lines[0].split()[1])

    passes_before, texts_before = metric("modeling_mtl_batch_size_count"), metric("modeling_mtl_batch_size_sum")
    with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(lambda text: server.call("/predict", {"text": text}), texts))
    assert [status for status, _, _ in answers] == [200] * len(texts)
    for (_, _, body), want in zip(answers, expected):
        assert_same_predictions(body["predictions"], [want])
    passes = metric("modeling_mtl_batch_size_count") - passes_before
    assert metric("modeling_mtl_batch_size_sum") - texts_before == len(texts)
    assert passes < len(texts) / 2, f"{len(texts)} concurrent texts took {passes} forward passes: not batched"


@pytest.mark.parametrize(
    "path, raw, status, message",
    [
        ("/predict", b'{"texts": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}', 413,
         "texts holds 9 texts; the limit is 8 per request"),
        ("/predict", json.dumps({"texts": ["ok", "x" * 201]}).encode(), 422,
         "texts[1] is 201 characters long; the limit is 200"),
        ("/predict", json.dumps({"texts": ["x" * 150] * 8, "pad": "y" * 3000}).encode(), 413,
         "bytes; the limit is 4000"),
        ("/predict", b'{"texts": ["a", 3]}', 422, "texts[1]: Input should be a valid string"),
        ("/predict", b'{"texts": ["a"', 422, "the body is not valid JSON (character 14"),
        ("/predict", b"", 422, "the body is empty: send a JSON object"),
        ("/predict", b'["a"]', 422, "body: Input should be a valid dictionary"),
        ("/predict", b'{"texts": ["a"], "text": "b"}', 422, 'give either "texts" (a list of strings) or "text"'),
        ("/predict", b'{}', 422, 'give either "texts"'),
        ("/predict", b'{"texts": "a"}', 422, "texts: Input should be a valid list"),
        ("/predict", b'{"text": "a", "top_k": 0}', 422, "top_k: Input should be greater than or equal to 1"),
        ("/predict", b'{"text": "a", "temperature": 2}', 422, "temperature: Extra inputs are not permitted"),
        ("/predict", b'{"texts": ["ok", "\\ud800"]}', 422, "texts[1] is not valid Unicode"),
        ("/embed", b'{"texts": [null]}', 422, "texts[0]: Input should be a valid string"),
        ("/model/parse", b'{"texts": ["a"]}', 422, "text: Field required"),
    ],
)
def test_bad_requests_get_a_clear_json_error(server, path, raw, status, message):
    got_status, _, body = server.call(path, raw=raw)
    assert got_status == status, body
    assert message in body["error"]


def read_reply(client):
    """One whole HTTP response from a raw socket (its headers and body may arrive in separate segments)."""
    reply = b""
    while True:
        head, _, body = reply.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.I)
        if length and len(body) >= int(length.group(1)):
            return reply.decode()
        chunk = client.recv(4096)
        if not chunk:
            return reply.decode()
        reply += chunk


def test_the_server_stays_up_after_bad_and_vanished_clients_and_times_out_a_stalled_body(server, reference):
    for _ in range(3):  # a client that sends a request and leaves before the answer
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 21\r\n\r\n{\"text\": \"leaving\"}  ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as client:  # stalls mid-body
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"text\": ")
        reply = read_reply(client)
    assert reply.startswith("HTTP/1.1 408"), reply
    assert "did not arrive within 2 s" in reply
    status, _, body = server.call("/predict", {"text": TEXTS[0]})
    assert status == 200
    assert_same_predictions(body["predictions"], reference.predict(TEXTS[:1]))


def test_access_log_has_one_json_line_per_request(server):
    server.call("/predict", {"texts": TEXTS[:2]})
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith('{"method"')]
    predict = [line for line in lines if line["path"] == "/predict" and line["status"] == 200 and line["texts"] == 2]
    assert predict, lines[-5:]
    assert set(predict[-1]) == {"method", "path", "status", "texts", "latency_ms"}
    assert predict[-1]["method"] == "POST" and predict[-1]["latency_ms"] > 0


def test_a_full_queue_answers_503_with_retry_after_and_a_slow_one_504(model_dir, tmp_path, reference):
    with running_server(model_dir, tmp_path, "--max_queue", "4", "--max_texts_per_request", "4",
                        "--batch_size", "64", "--max_wait_ms", "1500", "--request_timeout_s", "20") as server:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(server.call, "/predict", {"texts": TEXTS[i : i + 2]}) for i in (0, 2)]
            time.sleep(0.6)  # both are queued (4 texts: the queue is full) and wait for more texts for 1.5 s
            status, headers, body = server.call("/predict", {"text": "one more"})
            assert status == 503, body
            assert headers["Retry-After"] == "1"
            assert "the queue is full (4 of 4 texts waiting)" in body["error"]
            answers = [future.result() for future in waiting]
        assert [status for status, _, _ in answers] == [200, 200]
        assert_same_predictions(answers[0][2]["predictions"] + answers[1][2]["predictions"],
                                reference.predict(TEXTS[:4]))
        assert server.call("/predict", {"text": "now there is room"})[0] == 200

    with running_server(model_dir, tmp_path, "--max_wait_ms", "3000", "--batch_size", "64",
                        "--request_timeout_s", "0.5") as server:
        status, _, body = server.call("/predict", {"text": "too slow"})
        assert status == 504 and body["error"] == "no answer within 0.5 s"
        assert server.call("/ready")[2]["queued_texts"] == 0  # the abandoned text left the queue


def test_sigterm_answers_every_accepted_request_then_exits_0(model_dir, tmp_path, reference):
    texts = TEXTS * 2
    with running_server(model_dir, tmp_path, "--max_wait_ms", "1500", "--batch_size", "64") as server:
        with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
            in_flight = [pool.submit(server.call, "/predict", {"text": text}) for text in texts]
            time.sleep(0.7)  # all accepted and queued, waiting 1.5 s for a fuller batch
            server.process.send_signal(signal.SIGTERM)
            answers = [future.result() for future in in_flight]
        assert server.process.wait(timeout=60) == 0, server.log_text()
    assert [status for status, _, _ in answers] == [200] * len(texts)
    for (_, _, body), want in zip(answers, reference.predict(texts)):
        assert_same_predictions(body["predictions"], [want])
    assert "Shutting down" in server.log_text()
    with pytest.raises(OSError):  # and it no longer listens
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--max_texts_per_request", "300"], "max_texts_per_request (300) exceeds max_queue (256)"),
        (["--request_timeout_s", "0"], "request_timeout_s must be positive"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--bf16"], "--bf16 does not apply to serve"),
    ],
)
def test_serve_refuses_bad_options_before_loading_the_model(model_dir, options, message, capsys):
    assert main(["serve", "--model", str(model_dir), *options]) == 2
    assert message in capsys.readouterr().err


def test_serve_runs_an_int8_onnx_export_like_its_onnx_model(model_dir, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
    from modeling_mtl.onnx_export import OnnxMultiTaskModel, export_onnx

    folder = export_onnx(MultiTaskModel.from_pretrained(model_dir).eval(), tmp_path / "onnx")
    expected = OnnxMultiTaskModel.from_folder(folder, quantized=True).predict(TEXTS, top_k=2)
    with running_server(folder, tmp_path, "--onnx", "int8") as server:
        status, _, body = server.call("/predict", {"texts": TEXTS, "top_k": 2})
        assert status == 200
        assert_same_predictions(body["predictions"], expected)
        assert server.call("/info")[2]["runtime"] == "onnxruntime (int8)"
