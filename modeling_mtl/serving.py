"""HTTP serving of a trained multi-task model: `python -m modeling_mtl serve --model DIR_OR_REPO` (the `serve` extra).

    pip install -e ".[serve]"
    python -m modeling_mtl serve --model outputs/atis --port 8000 --metrics
    curl -s 127.0.0.1:8000/predict -H 'content-type: application/json' -d '{"texts": ["flights from boston to denver"]}'

A FastAPI app, served by uvicorn:

    POST /predict      {"texts": [...], "top_k"?: N, "aggregation_strategy"?: "first"} (or {"text": "..."})
                       -> {"predictions": [...]}, each item what `model.predict` returns for that text
    POST /embed        {"texts": [...], "normalize"?: bool} -> {"embeddings": [[...], ...]}
    POST /model/parse  {"text": "..."} -> Rasa's NLU parse result (intent, entities, intent_ranking, text)
    GET  /health       liveness;  GET /ready: the model is loaded and warmed up;  GET /info: labels, limits, versions
    GET  /metrics      Prometheus counters and histograms (with --metrics);  GET /docs: the OpenAPI page

Concurrent requests are merged into one forward pass by `MicroBatcher`: a request's texts wait at most `max_wait_ms`
for others, up to `max_batch_size` texts run together in one worker thread (off the event loop), and each caller gets
its own slice of the results. The waiting queue is bounded (`max_queue` texts): when it is full the server answers
503 with `Retry-After` at once instead of letting memory and latency climb. Every error is a JSON object
`{"error": "<what and where>"}`: 413 for a body or a request over its limit, 422 for malformed JSON, a wrong type or a
text over `max_chars_per_text` (naming the field and index, e.g. `texts[3]`), 408 for a body that does not arrive in
time, 504 for a request not answered within `request_timeout_s`. On SIGTERM uvicorn stops accepting connections,
every request already accepted is answered, and the process exits 0. Each request leaves one JSON access-log line
(method, path, status, texts, latency) on the `modeling_mtl.serving` logger.
"""

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import re
import time
from typing import Literal, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from . import __version__
from .schema_mtl import AGGREGATION_STRATEGIES

logger = logging.getLogger("modeling_mtl.serving")

RASA_RANKING_LENGTH = 10  # Rasa's default `ranking_length` of intent classifiers
RASA_EXTRACTOR = "modeling_mtl"


@dataclasses.dataclass
class ServeOptions:
    """The server's batching and limits (the `serve` command's options of the same names)."""

    max_batch_size: int = 32
    """Most texts in one forward pass; 1 turns batching off."""
    max_wait_ms: float = 5.0
    """How long the oldest waiting text waits for others before its batch runs anyway."""
    max_queue: int = 256
    """Most texts waiting for the model; a request that would exceed it gets 503 with Retry-After."""
    max_texts_per_request: int = 64
    max_chars_per_text: int = 2000
    max_body_bytes: int = 1_000_000
    request_timeout_s: float = 30.0
    """From a request's arrival in the queue to its answer; past it, 504."""
    body_timeout_s: float = 10.0
    """Most seconds between two parts of a request body (a client that stalls mid-body gets 408)."""
    metrics: bool = False
    """Serve Prometheus metrics at /metrics."""

    def check(self):
        for name in ("max_batch_size", "max_queue", "max_texts_per_request", "max_chars_per_text", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("request_timeout_s", "body_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if self.max_texts_per_request > self.max_queue:
            raise ValueError(f"max_texts_per_request ({self.max_texts_per_request}) exceeds max_queue "
                             f"({self.max_queue}): such a request could never be queued")
        return self


class QueueFull(Exception):
    """The waiting queue holds too many texts (or the server is shutting down): answered 503."""


# ---------------------------------------------------------------------------------------------------- batching


@dataclasses.dataclass(eq=False)
class Job:
    key: tuple  # what to run: ("predict", top_k, aggregation_strategy) or ("embed", normalize)
    texts: list
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """Merge the texts of concurrent requests into batches for `run(key, texts) -> results` (one result per text),
    called in one worker thread. Jobs of the same key share a batch, oldest first; a job larger than
    `max_batch_size` runs alone (`run` splits it)."""

    def __init__(self, run, max_batch_size, max_wait_s, max_queue, on_batch=None):
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with each batch's size (metrics)
        self.pending = collections.deque()
        self.queued_texts = 0
        self.closing = False
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="modeling_mtl-model")
        self._work = None
        self._task = None

    def start(self):
        self._work = asyncio.Event()
        self._task = asyncio.create_task(self._serve())

    async def close(self):
        """Answer every queued job, then stop the worker."""
        self.closing = True
        if self._task is not None:
            self._work.set()
            await self._task
        self.executor.shutdown(wait=True)

    async def submit(self, key, texts):
        if self.closing:
            raise QueueFull("the server is shutting down")
        if self.queued_texts + len(texts) > self.max_queue:
            raise QueueFull(f"the queue is full ({self.queued_texts} of {self.max_queue} texts waiting)")
        loop = asyncio.get_running_loop()
        job = Job(key, list(texts), loop.create_future(), loop.time())
        self.pending.append(job)
        self.queued_texts += len(job.texts)
        self._work.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the caller's timeout: free its place in the queue now
            if job in self.pending:
                self.pending.remove(job)
                self.queued_texts -= len(job.texts)
            raise

    async def _serve(self):
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                if self.closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            first = self.pending[0]
            wait = first.arrived + self.max_wait_s - loop.time()
            if wait > 0 and not self.closing and self._waiting_texts(first.key) < self.max_batch_size:
                self._work.clear()
                try:
                    await asyncio.wait_for(self._work.wait(), wait)
                except TimeoutError:
                    pass
                continue
            batch = self._take(first.key)
            texts = [text for job in batch for text in job.texts]
            if self.on_batch is not None:
                self.on_batch(len(texts))
            try:
                results = await loop.run_in_executor(self.executor, self.run, first.key, texts)
            except Exception as error:  # e.g. an input the model refuses: every caller of the batch hears it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in batch:
                if not job.future.done():
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)

    def _waiting_texts(self, key):
        return sum(len(job.texts) for job in self.pending if job.key == key)

    def _take(self, key):
        batch, kept, size = [], collections.deque(), 0
        for job in self.pending:
            if job.key == key and (not batch or size + len(job.texts) <= self.max_batch_size):
                batch.append(job)
                size += len(job.texts)
            else:
                kept.append(job)
        self.pending = kept
        self.queued_texts -= size
        return batch


# ---------------------------------------------------------------------------------------------------- requests


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: Optional[list[StrictStr]] = Field(None, description="texts to read (or give one `text`)")
    text: Optional[StrictStr] = Field(None, description="one text (instead of `texts`)")

    def text_list(self):
        if (self.texts is None) == (self.text is None):
            raise RequestError(422, 'give either "texts" (a list of strings) or "text" (a string)')
        return [self.text] if self.texts is None else self.texts


class PredictRequest(TextsRequest):
    top_k: Optional[StrictInt] = Field(None, ge=1, description="add intent_ranking: the N best sentence labels")
    aggregation_strategy: Literal[AGGREGATION_STRATEGIES] = "first"


class EmbedRequest(TextsRequest):
    normalize: Optional[StrictBool] = Field(None, description="L2-normalise (default: the model's setting)")


class ParseRequest(BaseModel):
    """Rasa's parse request: `text` (Rasa also sends `message_id`, accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    text: StrictStr


class RequestError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status, message, headers=None, **extra):
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def describe_validation_errors(errors):
    """FastAPI's validation errors as one line: `texts[2]: Input should be a valid string; ...`."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # loc is ("body", character offset)
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON (character {error['loc'][-1]}: {reason})")
            continue
        if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
            parts.append("the body is empty: send a JSON object")
            continue
        location = [part for part in error.get("loc", ()) if part != "body"]
        where = ""
        for part in location:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def rasa_parse_result(text, prediction):
    """A `predict` result in the shape of Rasa's `/model/parse` answer."""
    return {
        "text": text,
        "intent": {"name": prediction["label"], "confidence": prediction["score"]},
        "entities": [
            {"start": entity["start"], "end": entity["end"], "value": entity["word"], "entity": entity["entity_group"],
             "confidence_entity": entity["score"], "extractor": RASA_EXTRACTOR}
            for entity in prediction["entities"]
        ],
        "intent_ranking": [{"name": item["label"], "confidence": item["score"]}
                           for item in prediction.get("intent_ranking", [])],
    }


# ---------------------------------------------------------------------------------------------------- the app


class RequestGuard:
    """ASGI middleware around every request: read every POST body as JSON, refuse a body over `max_bytes` (413,
    from Content-Length at once or while it streams in) and one whose next part takes longer than `timeout_s` (408),
    and write the access-log line (and the request metrics). Plain ASGI rather than `@app.middleware("http")`, whose
    task group would wrap the errors raised while the body is read in an ExceptionGroup."""

    def __init__(self, app, max_bytes, timeout_s, metrics=None):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers", ()))
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
            # Every body here is JSON: read it as such whatever the client declared (`curl -d` says form data).
            kept = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
            scope = {**scope, "headers": [*kept, (b"content-type", b"application/json")]}
        scope.setdefault("state", {})
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, f"the request body is {int(length)} bytes; the limit is {self.max_bytes}")
            await response(scope, receive, send_and_note)
        else:
            await self.app(scope, self.limited(receive), send_and_note)
        self.log(scope, status[0], time.perf_counter() - started)

    def limited(self, receive):
        received, complete = 0, False

        async def limited_receive():
            nonlocal received, complete
            if complete:  # after the body only a disconnect can come: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise HTTPException(413, f"the request body exceeds the limit of {self.max_bytes} bytes")
            return message

        return limited_receive

    def log(self, scope, status, latency):
        path, texts = scope["path"], scope["state"].get("texts", 0)
        logger.info(json.dumps({"method": scope["method"], "path": path, "status": status, "texts": texts,
                                "latency_ms": round(latency * 1000, 2)}))
        if self.metrics is not None:
            route = path if path in ROUTES else "other"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(latency)


class Metrics:
    """The Prometheus series of one app (its own registry, so several apps in a process do not clash)."""

    def __init__(self):
        import prometheus_client as prometheus

        self.prometheus = prometheus
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter("modeling_mtl_requests", "HTTP requests", ["path", "status"],
                                           registry=self.registry)
        self.latency = prometheus.Histogram("modeling_mtl_request_latency_seconds", "request latency", ["path"],
                                            registry=self.registry,
                                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.texts = prometheus.Counter("modeling_mtl_texts", "texts read by the model", registry=self.registry)
        self.batch_size = prometheus.Histogram("modeling_mtl_batch_size", "texts per forward pass",
                                               registry=self.registry,
                                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_depth = prometheus.Gauge("modeling_mtl_queue_depth", "texts waiting for the model",
                                            registry=self.registry)

    def batch(self, size):
        self.batch_size.observe(size)
        self.texts.inc(size)

    def exposition(self):
        return self.prometheus.generate_latest(self.registry)


def create_app(model, options=None, model_name=None, onnx=None):
    """The FastAPI app serving `model` (a loaded `MultiTaskModel` or `OnnxMultiTaskModel`) under `options`."""
    options = (options or ServeOptions()).check()
    metrics = Metrics() if options.metrics else None
    config = model.config

    def run(key, texts):
        if key[0] == "embed":
            return model.encode(texts, batch_size=options.max_batch_size, normalize_embeddings=key[1]).tolist()
        _, top_k, strategy = key
        return model.predict(texts, batch_size=options.max_batch_size, top_k=top_k, aggregation_strategy=strategy)

    batcher = MicroBatcher(run, options.max_batch_size, options.max_wait_ms / 1000, options.max_queue,
                           on_batch=metrics.batch if metrics else None)
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        await asyncio.get_running_loop().run_in_executor(batcher.executor, run, ("predict", None, "first"), ["ready"])
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.close()

    app = FastAPI(
        title="modeling_mtl",
        version=__version__,
        description="Sentence label, entities and embeddings from one multi-task encoder pass.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestError)
    async def on_request_error(request, error):
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (404, 405, 400) and this module's
    async def on_http_error(request, error):
        return error_response(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request, error):
        errors = error.errors()
        return error_response(422, describe_validation_errors(errors),
                              detail=json.loads(json.dumps(errors, default=str)))

    def check_limits(texts):
        if len(texts) > options.max_texts_per_request:
            raise RequestError(413, f"texts holds {len(texts)} texts; the limit is {options.max_texts_per_request} "
                               "per request")
        for index, text in enumerate(texts):
            if len(text) > options.max_chars_per_text:
                raise RequestError(422, f"texts[{index}] is {len(text)} characters long; the limit is "
                                   f"{options.max_chars_per_text}")

    async def answer(request, key, texts):
        check_limits(texts)
        try:  # before queueing: one caller's bad text must not fail the batch it would share with others
            model.check_inputs(texts, allow_words=False)
        except (TypeError, ValueError) as error:  # e.g. a lone surrogate; "input 3" -> "texts[3]"
            raise RequestError(422, re.sub(r"^input (\d+)", r"texts[\1]", str(error))) from None
        request.state.texts = len(texts)  # for the access log
        try:
            return await asyncio.wait_for(batcher.submit(key, texts), options.request_timeout_s)
        except QueueFull as error:
            raise RequestError(503, f"{error}; retry shortly", {"Retry-After": "1"}) from None
        except TimeoutError:
            raise RequestError(504, f"no answer within {options.request_timeout_s:g} s") from None

    @app.post("/predict", summary="sentence label and entities per text")
    async def predict(body: PredictRequest, request: Request):
        texts = body.text_list()
        return {"predictions": await answer(request, ("predict", body.top_k, body.aggregation_strategy), texts)}

    @app.post("/embed", summary="sentence embeddings")
    async def embed(body: EmbedRequest, request: Request):
        return {"embeddings": await answer(request, ("embed", body.normalize), body.text_list())}

    @app.post("/model/parse", summary="Rasa NLU parse result of one text")
    async def parse(body: ParseRequest, request: Request):
        top_k = min(RASA_RANKING_LENGTH, len(config.sentence_labels))
        (prediction,) = await answer(request, ("predict", top_k, "first"), [body.text])
        return rasa_parse_result(body.text, prediction)

    @app.get("/health", summary="liveness")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="readiness: the model is loaded and warmed up")
    async def ready():
        if not state["ready"]:
            raise RequestError(503, "the model is not ready", {"Retry-After": "1"})
        return {"ready": True, "queued_texts": batcher.queued_texts}

    @app.get("/info", summary="model, labels, limits and versions")
    async def info():
        return {
            "model": model_name or getattr(config, "_name_or_path", None),
            "revision": getattr(config, "_commit_hash", None),
            "model_type": config.model_type,
            "runtime": f"onnxruntime ({onnx})" if onnx else "torch",
            "package_version": __version__,
            "sentence_labels": list(config.sentence_labels),
            "token_labels": list(config.token_labels),
            "max_seq_length": config.max_seq_length,
            "out_of_scope_label": config.out_of_scope_label,
            "limits": {name: getattr(options, name) for name in (
                "max_batch_size", "max_wait_ms", "max_queue", "max_texts_per_request", "max_chars_per_text",
                "max_body_bytes", "request_timeout_s")},
        }

    if metrics is not None:
        @app.get("/metrics", summary="Prometheus metrics")
        async def prometheus_metrics():
            metrics.queue_depth.set(batcher.queued_texts)
            return PlainTextResponse(metrics.exposition(), media_type=metrics.prometheus.CONTENT_TYPE_LATEST)

    app.add_middleware(RequestGuard, max_bytes=options.max_body_bytes, timeout_s=options.body_timeout_s,
                       metrics=metrics)
    app.state.batcher = batcher
    return app


ROUTES = ("/predict", "/embed", "/model/parse", "/health", "/ready", "/info", "/metrics")


def serve(app, host="127.0.0.1", port=8000, log_level="info"):
    """Run `app` with uvicorn until SIGTERM or Ctrl+C; returns once every accepted request is answered."""
    import signal

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           timeout_graceful_shutdown=None, lifespan="on"))
    # uvicorn re-raises the signal it shut down on, after restoring the handlers it found: with these in place the
    # process exits 0 after a graceful shutdown instead of dying of the signal (or printing a KeyboardInterrupt).
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


__all__ = ["MicroBatcher", "ServeOptions", "create_app", "rasa_parse_result", "serve"]
