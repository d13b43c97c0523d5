r"""Latency and throughput of `python -m transrec_jax.serve` under 1, 8 and 64 concurrent
clients (issue 31, item 3).

Starts the server on an exported model (or targets a running one: --url), then per client
count: that many threads, each on its own keep-alive connection, send POST /recommend with one
history each (seeded random catalogue ids, 1..--history_len of them, k=10) until --requests
have been answered, after a few untimed warm-up requests. Latency: one request's round trip as
its client sees it (p50, p99); requests/s: all answered / wall time. The server runs one model
call at a time (each uses every core), so more clients mostly queue.

  python -m transrec_jax.export --workdir=runs/ml1m --output=/tmp/ml1m_export
  python experiments/export/load_test.py --export=/tmp/ml1m_export

Records go to load_test.json next to this file (a rerun replaces those of its model), the
table is printed and README.md is regenerated (readme.py).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np

from transrec_jax import hardware
from transrec_jax.studies import runner

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "load_test.json")
WARM_UP = 5  # untimed requests per client


def start_server(export_dir: str) -> tuple[subprocess.Popen, str]:
    """`transrec_jax.serve` on a free port, once it answers /health."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "transrec_jax.serve", f"--export={export_dir}",
                               f"--port={port}"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"error: the server exited ({server.returncode}) before answering")
        try:
            health(url)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("error: the server did not answer /health within 5 minutes")


def health(url: str) -> dict:
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=5)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def histories(ids: list, n: int, longest: int, seed: int) -> list[list]:
    """n histories of 1..longest distinct catalogue ids (seeded)."""
    rng = np.random.default_rng(seed)
    catalogue = ids[1:]
    return [[catalogue[i] for i in rng.choice(len(catalogue), rng.integers(1, longest + 1), replace=False)]
            for _ in range(n)]


def run_clients(url: str, bodies: list[bytes], clients: int) -> dict:
    """Send every body once over `clients` connections; latencies and throughput."""
    netloc = urllib.parse.urlsplit(url).netloc
    latencies, failures, lock = [], [], threading.Lock()
    share = [bodies[i::clients] for i in range(clients)]
    start_together = threading.Barrier(clients + 1, timeout=600)

    def client(mine: list[bytes]):
        connection = http.client.HTTPConnection(netloc, timeout=120)
        for body in mine[:WARM_UP]:
            _post(connection, body)
        start_together.wait()
        times = []
        for body in mine[WARM_UP:]:
            start = time.perf_counter()
            status = _post(connection, body)
            times.append(time.perf_counter() - start)
            if status != 200:
                with lock:
                    failures.append(status)
        connection.close()
        with lock:
            latencies.extend(times)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in share]
    for t in threads:
        t.start()
    start_together.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise SystemExit(f"error: {len(failures)} requests failed (statuses {sorted(set(failures))})")
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "requests_per_s": len(ms) / wall}


def _post(connection: http.client.HTTPConnection, body: bytes) -> int:
    connection.request("POST", "/recommend", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status


def save(model: str, records: list[dict]) -> None:
    """load_test.json's records with this model's replaced."""
    kept = [r for r in runner.read_records(RESULTS) if r["model"] != model]
    runner.write_records(RESULTS, kept + records)


def table(records: list[dict]) -> str:
    lines = ["| model | items | clients | requests | p50 ms | p99 ms | requests/s |",
             "|" + " --- |" * 7]
    for r in records:
        lines.append(f"| {r['model']} | {r['num_items']:,} | {r['clients']} | {r['requests']:,} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s']:,.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, help="a directory written by transrec_jax.export")
    parser.add_argument("--url", help="a server already answering from --export (default: start one)")
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per client count")
    parser.add_argument("--history_len", type=int, default=50, help="longest history sent")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="the model's name in the records (default: the export's directory)")
    args = parser.parse_args()
    with open(os.path.join(args.export, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(args.export, "ids.json")) as f:
        ids = json.load(f)["ids"]
    server, url = (None, args.url) if args.url else start_server(args.export)
    name = args.name or os.path.basename(os.path.normpath(args.export))
    about = {"model": name, "architecture": manifest["model"], "num_items": manifest["num_items"],
             "max_len": manifest["max_len"], "k": args.k, "history_len": f"1..{args.history_len}",
             "hardware": hardware.host(), "date": datetime.date.today().isoformat()}
    records = []
    try:
        for clients in (int(c) for c in args.clients.split(",")):
            sent = histories(ids, args.requests + WARM_UP * clients, args.history_len, args.seed)
            bodies = [json.dumps({"history": h, "k": args.k}).encode() for h in sent]
            load = os.getloadavg()[0]  # (other work on the machine slows every figure)
            records.append({**about, **run_clients(url, bodies, clients), "load_avg_1min": load})
            print(table(records[-1:]).splitlines()[-1], flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    save(name, records)
    print(table(records))
    print(f"wrote {RESULTS}")
    import readme  # (beside this file) the README's tables from the records

    readme.write()


if __name__ == "__main__":
    main()
