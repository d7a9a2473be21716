"""Load on the HTTP server (`python -m modeling_mtl serve`): micro-batched vs unbatched vs in-process `predict`.

    python benchmarks/serve_load.py                                  # about 4 minutes on 2 CPU cores
    python benchmarks/serve_load.py --clients 1 8 --seconds 5 --output /tmp/serve_load.json

Everything runs on the loopback address, bounded in time, and stops by itself. Rows, one run:
  (a) the server as shipped (`--batch_size 32 --max_wait_ms 5`): N concurrent clients (threads with keep-alive
      connections) each send one ATIS test utterance per request, for `--seconds`;
  (b) the same server with batching off (`--batch_size 1`), the same clients;
  (c) the ceiling: in-process `model.predict` at batch size 32 over the same texts, no HTTP.
For each row: texts/s, latency p50 / p95 / p99 (per request; for (c) per batch of 32), and how many 200 answers
differ from in-process `predict` (label or entity spans). The overload run sends a burst of 4x the queue's
capacity at once to a server with a small queue (`--overload_queue`): the counts of 200 / 503 / other, whether every
200 is correct, and the server's resident memory before and after. The clients share the 2 cores with the server,
so the server rows pay for the client threads' CPU too. JSON goes to `--output`.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCHMARKS))

from speed_sections.common import code_facts, load_predict_model, machine_facts, read_atis  # noqa: E402

TRAINED_ATIS = REPO / "outputs" / "atis_span_roundtrip" / "run_jointbert (original)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TRAINED_ATIS),
                        help="a trained model folder (default: the ATIS model of benchmarks/atis_span_roundtrip.py; "
                        "without one, an untrained ATIS-shaped MiniLM model: the speed is the same)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each row")
    parser.add_argument("--batch_size", type=int, default=32, help="the batched server's (and row c's) batch size")
    parser.add_argument("--max_wait_ms", type=float, default=5.0)
    parser.add_argument("--overload_queue", type=int, default=32, help="max_queue of the overload run's server")
    parser.add_argument("--burst", type=int, default=4, help="the overload burst, in multiples of its queue")
    parser.add_argument("--output", default=str(BENCHMARKS / "results" / "serve_load.json"))
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- servers


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, model_dir, log_dir, *options):
        self.port = free_port()
        self.log = open(Path(log_dir) / f"server-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modeling_mtl", "serve", "--model", str(model_dir), "--port", str(self.port),
             *options], stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + 180
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server {options} did not start; see {self.log.name}")
            time.sleep(0.3)

    def ready(self):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request("GET", "/ready")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def rss_mib(self):
        with open(f"/proc/{self.process.pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self):
        self.process.terminate()
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def post(connection, text):
    connection.request("POST", "/predict", json.dumps({"text": text}), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def load_row(port, texts, clients, seconds):
    """`clients` threads, each with its own keep-alive connection, send one text per request until the time is up."""
    records = []  # (latency s, status, text index, body)
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def client(number):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        index, own = number, []
        start_line.wait()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status, body = post(connection, texts[index % len(texts)])
            except OSError as error:  # counted as "other"
                status, body = f"error: {type(error).__name__}", b""
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            own.append((time.perf_counter() - started, status, index % len(texts), body))
            index += clients
        with lock:
            records.extend(own)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start_line.wait()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - began


def percentiles(latencies):
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def at(share):
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "mean_ms": statistics.mean(ordered) * 1000}


def same_answer(got, want):
    keys = lambda p: [(e["entity_group"], e["start"], e["end"]) for e in p["entities"]]  # noqa: E731
    return got["label"] == want["label"] and keys(got) == keys(want)


def summarise(records, elapsed, expected):
    ok = [record for record in records if record[1] == 200]
    wrong = sum(not same_answer(json.loads(body)["predictions"][0], expected[index]) for _, _, index, body in ok)
    statuses = {}
    for record in records:
        statuses[str(record[1])] = statuses.get(str(record[1]), 0) + 1
    return {"requests": len(records), "statuses": statuses, "texts_per_s": len(ok) / elapsed,
            **percentiles([record[0] for record in ok]), "wrong_answers": wrong}


# ---------------------------------------------------------------------------------------------------- main


def in_process_row(model, texts, batch_size, seconds):
    latencies, done, began = [], 0, time.perf_counter()
    start = 0
    while time.perf_counter() - began < seconds:
        chunk = texts[start : start + batch_size] or texts[:batch_size]
        start = (start + batch_size) % len(texts)
        tick = time.perf_counter()
        model.predict(chunk, batch_size=batch_size)
        latencies.append(time.perf_counter() - tick)
        done += len(chunk)
    return {"texts_per_s": done / (time.perf_counter() - began), **percentiles(latencies), "batches": len(latencies)}


def overload_run(model_dir, log_dir, texts, expected, queue, burst, batch_size, options):
    server = Server(model_dir, log_dir, "--batch_size", str(batch_size), "--max_queue", str(queue),
                    "--max_texts_per_request", str(min(queue, 64)), *options)
    summary = {}
    try:
        load_row(server.port, texts, 4, 2.0)  # warm-up
        before = server.rss_mib()
        count = queue * burst
        barrier = threading.Barrier(count)

        def one(index):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            connection.connect()
            barrier.wait()
            started = time.perf_counter()
            try:
                status, body = post(connection, texts[index % len(texts)])
            except OSError as error:
                status, body = f"error: {type(error).__name__}", b""
            return time.perf_counter() - started, status, index % len(texts), body

        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            records = list(pool.map(one, range(count)))
        elapsed = time.perf_counter() - began
        after = server.rss_mib()
        summary = summarise(records, elapsed, expected)
        rejected = [record[0] for record in records if record[1] == 503]
        summary.update(burst_requests=count, max_queue=queue, seconds=elapsed, rss_mib_before=before,
                       rss_mib_after=after, p99_ms_of_503=percentiles(rejected).get("p99_ms"),
                       other=sum(n for status, n in summary["statuses"].items() if status not in ("200", "503")))
    finally:
        summary["exit_code_after_sigterm"] = server.stop()
    return summary


def main(argv=None):
    args = parse_args(argv)
    texts = read_atis("test")
    model, described = load_predict_model(args.model)
    report = {"command": "python benchmarks/serve_load.py " + " ".join(argv or sys.argv[1:]), "model": described,
              "texts": len(texts), "seconds_per_row": args.seconds, "batch_size": args.batch_size,
              "max_wait_ms": args.max_wait_ms, "machine": machine_facts(), "code": code_facts(), "rows": []}
    expected = model.predict(texts, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="serve_load-") as scratch:
        model_dir = args.model
        if not (Path(model_dir) / "config.json").is_file():
            model_dir = os.path.join(scratch, "model")
            model.save_pretrained(model_dir)
        # The served model decodes as load_predict_model's does (argmax), so answers compare one to one.
        options = ("--token_decoding", model.config.token_decoding, "--max_wait_ms", str(args.max_wait_ms))
        batched = Server(model_dir, scratch, "--batch_size", str(args.batch_size), *options)
        unbatched = Server(model_dir, scratch, "--batch_size", "1", *options)
        try:
            for server in (batched, unbatched):
                load_row(server.port, texts, 8, 2.0)  # warm-up
            report["rss_mib_batched_server_before"] = batched.rss_mib()
            for clients in args.clients:
                for name, server in (("batched", batched), ("unbatched", unbatched)):
                    records, elapsed = load_row(server.port, texts, clients, args.seconds)
                    row = {"server": name, "clients": clients, **summarise(records, elapsed, expected)}
                    report["rows"].append(row)
                    print(json.dumps(row), flush=True)
            report["rss_mib_batched_server_after"] = batched.rss_mib()
        finally:
            report["exit_codes_after_sigterm"] = [batched.stop(), unbatched.stop()]
        ceiling = {"server": "in-process predict", "clients": None,
                   **in_process_row(model, texts, args.batch_size, args.seconds)}
        report["rows"].append(ceiling)
        print(json.dumps(ceiling), flush=True)
        report["overload"] = overload_run(model_dir, scratch, texts, expected, args.overload_queue, args.burst,
                                          args.batch_size, options)
        print(json.dumps({"overload": report["overload"]}), flush=True)
    by = {(row["server"], row["clients"]): row for row in report["rows"]}
    report["ratios"] = {
        f"{clients}_clients": {
            "batched_vs_ceiling": by[("batched", clients)]["texts_per_s"] / ceiling["texts_per_s"],
            "batched_vs_unbatched": by[("batched", clients)]["texts_per_s"] / by[("unbatched", clients)]["texts_per_s"],
        }
        for clients in args.clients
    }
    print(json.dumps({"ratios": report["ratios"]}, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
