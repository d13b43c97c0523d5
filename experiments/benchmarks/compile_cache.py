"""A run's cost with and without its compiled programs on disk (transrec_jax/compile_cache.py).

The same short run three times, each a process of its own (`python -m transrec_jax.main`, so
imports, data loading, compiling, the steps and the validation and test passes are all on the
clock): cold (a fresh cache: every program compiled and written), warm (every program read
back), cold again (another fresh cache), so that a change in machine load shows as a difference
between the two cold runs. The test metrics of all three must agree: a cached program is the
same program.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/compile_cache.py \\
      [--config=configs/sasrec_best.py:ml-1m,exclude_window,rotary,two_heads] [--epochs=1]
Output: a Markdown table on stdout and --out (JSON; declare a kept record in summary.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from transrec_jax import hardware  # noqa: E402


def run_once(config: str, epochs: int, workdir: str, cache: str) -> dict:
    """One training process; its wall time, the run's own timings and the cache it left."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transrec_jax.main", f"--config={config}",
                    f"--workdir={workdir}", f"--compilation_cache_dir={cache}",
                    f"--config.train.num_epochs={epochs}"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(os.path.join(workdir, "results.json")) as f:
        r = json.load(f)
    files = [os.path.join(cache, n) for n in os.listdir(cache) if n.endswith("-cache")]
    return {"process_s": wall, "train_time_s": r["train_time_s"], "wall_time_s": r["wall_time_s"],
            "steps": r["steps"], "test_ndcg@10": r["test"]["ndcg@10"],
            "cache_entries": len(files), "cache_bytes": sum(os.path.getsize(p) for p in files)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sasrec_best.py:ml-1m,exclude_window,rotary,two_heads")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "benchmarks", "compile_cache.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    root = tempfile.mkdtemp(prefix="compile_cache_")
    try:
        runs = {}
        for name, cache in (("cold", "a"), ("warm", "a"), ("cold_again", "b")):
            runs[name] = run_once(args.config, args.epochs, os.path.join(root, name), os.path.join(root, cache))
            print(f"{name}: {runs[name]['process_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if len({r["test_ndcg@10"] for r in runs.values()}) != 1:
        raise SystemExit(f"error: the three runs' test NDCG@10 differ: {runs}")
    cold = (runs["cold"]["process_s"] + runs["cold_again"]["process_s"]) / 2
    record = {
        "what": "one short run's process time: programs compiled (cold) vs read from the cache (warm)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "experiments/benchmarks/compile_cache.py", *sys.argv[1:]]),
        "config": args.config, "epochs": args.epochs, "runs": runs,
        "saved_s": cold - runs["warm"]["process_s"], "warm_over_cold": runs["warm"]["process_s"] / cold,
        "load_average_before": load_before, "load_average_after": os.getloadavg(), **hardware.host(),
    }
    print("| run | process s | train loop s | cache entries |\n|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['process_s']:.1f} | {r['train_time_s']:.1f} | {r['cache_entries']} |")
    print(f"warm saves {record['saved_s']:.1f} s of the cold runs' mean ({record['warm_over_cold']:.2f}x)")
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
