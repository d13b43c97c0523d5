"""How long `recommend --users=all --explain=METHOD` takes for every user of a trained run.

  .venv/bin/python experiments/benchmarks/explain_speed.py --workdir=RUN \
      [--methods=none,rollout,attention,grad,occlusion,ig] [--k=10] [--repeats=1] [--out=PATH]

Each method runs the real command line in its own subprocess, end to end as a user meets it:
interpreter and JAX start, checkpoint and dataset load, top-K for every user, the attributions
(compiled per history-width bucket, explain.py), the Parquet write. `none` is the same command
without --explain: the attribution's own cost is the difference. Reported per method: the
median wall time over --repeats runs, users in the written file, users/s, and whether the
median is within --target_s (issue 29 asks for all ML-1M users in under a minute on a 2-core
CPU). Output: a Markdown table on stdout and a JSON record (default
experiments/benchmarks/explain_speed.json) with the machine, its load average and the commands.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from transrec_jax import hardware  # noqa: E402

METHODS = ("none", "rollout", "attention", "grad", "occlusion", "ig")


def command(workdir: str, method: str, k: int, top: int, output: str) -> list[str]:
    cmd = [sys.executable, "-m", "transrec_jax.recommend", f"--workdir={workdir}", "--users=all",
           f"--k={k}", f"--output={output}"]
    return cmd + ([f"--explain={method}", f"--explain_top={top}"] if method != "none" else [])


def time_method(args, method: str) -> dict:
    walls, users = [], None
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "top.parquet")
        cmd = command(args.workdir, method, args.k, args.explain_top, output)
        for _ in range(args.repeats):
            start = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                return {"method": method, "error": f"timed out after {args.timeout} s"}
            walls.append(time.perf_counter() - start)
            if proc.returncode:
                return {"method": method, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
            import pyarrow.parquet as pq

            users = len(pq.read_table(output, columns=["user"]).column("user").unique())
    median = statistics.median(walls)
    return {"method": method, "wall_s": walls, "median_wall_s": median, "users": users,
            "users_per_s": users / median, "within_target": median <= args.target_s,
            "command": " ".join(["python", *cmd[1:-1], "--output=top.parquet"])}


def markdown_table(rows: list[dict], target_s: float) -> str:
    none = next((r for r in rows if r["method"] == "none" and "error" not in r), None)
    lines = [f"| --explain | users | median wall (s) | attribution alone (s) | users/s | within {target_s:.0f} s |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | – | {r['error']} | – | – | no |")
            continue
        alone = "–" if none is None or r is none else f"{r['median_wall_s'] - none['median_wall_s']:.1f}"
        lines.append(f"| {r['method']} | {r['users']:,} | {r['median_wall_s']:.1f} | {alone} | "
                     f"{r['users_per_s']:.0f} | {'yes' if r['within_target'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run written by transrec_jax.main")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--explain_top", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--target_s", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per command")
    parser.add_argument("--out", default=os.path.join(REPO, "experiments/benchmarks/explain_speed.json"))
    args = parser.parse_args()
    with open(os.path.join(args.workdir, "config.json")) as f:
        recorded = json.load(f)
    load_before = os.getloadavg()
    rows = []
    for method in args.methods.split(","):
        if method not in METHODS:
            sys.exit(f"error: --methods: {method!r} is not one of {', '.join(METHODS)}")
        print(f"{method} ...", file=sys.stderr, flush=True)
        rows.append(time_method(args, method))
    table = markdown_table(rows, args.target_s)
    print(table)
    import jax

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/explain_speed.py", *sys.argv[1:]]),
        "machine": {**hardware.host(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": {"python": platform.python_version(), "jax": jax.__version__},
        "settings": {"workdir": args.workdir, "model": recorded["model"]["name"],
                     "dataset": recorded["dataset"]["name"], "max_len": recorded["model"]["max_len"],
                     "k": args.k, "explain_top": args.explain_top, "repeats": args.repeats,
                     "target_s": args.target_s},
        "results": rows,
        "table_markdown": table,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
