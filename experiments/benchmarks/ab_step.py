"""Interleaved A/B timing of our JAX train step across git revisions (one change at a time).

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/ab_step.py --loss=bce_1neg 8532483 ab0da29 HEAD HEAD:keep
  .venv/bin/python experiments/benchmarks/ab_step.py HEAD:keep .:keep \
      --config=configs/sasrec_best.py:ml-1m,fast,rotary,two_heads --out=/tmp/ab.json

Each variant is REV or REV:keep (keep = `transrec_jax.host_memory.keep_freed_memory()` first,
as the training CLI does, for revisions that have it; the working tree is `.`). Every revision
is `git archive`d into a temporary directory and gets its own subprocess that builds the step
and compiles it: `configs/sasrec.py:ml-1m` + the loss, batch 128, ML-1M TrainBatcher batches
(random ones without the data file); or, with --config, that config's step as training builds
it (profile_step.py `config_step`: its batcher's packed rows, its loss and mesh; the config file
and that function are the working tree's, the library the revision's). Then the parent asks
the variants in turn, round after round, for --per steps each, so that load changes on a shared
machine hit every variant alike. Reports the median step time per variant and its speed-up
over the first one; --out also writes them as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import functools, json, os, sys, time
repo, loss, keep = sys.argv[1], sys.argv[2], sys.argv[3] == "keep"
sys.path.insert(0, repo)
if keep:
    from transrec_jax import host_memory
    assert host_memory.keep_freed_memory()
import jax, numpy as np
from transrec_jax import train
if loss.startswith("config="):  # the working tree's profile_step.py, the revision's library
    sys.path.insert(1, sys.argv[6])
    import profile_step
    config, step, state, device_batches, _ = profile_step.config_step(loss[len("config="):])
    train_key = jax.random.split(jax.random.key(config.seed))[1]
else:
    sys.path.insert(0, os.path.join(repo, "experiments", "benchmarks"))
    import train_step as ts
    config = ts.get_config(loss)
    batches = np.load(sys.argv[4])
    num_items = int(sys.argv[5])
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    graphdef, tx, state = train.init_state(config, num_items, 100, init_key)
    step = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                                     item_log_probs=None), donate_argnums=0)
    device_batches = [{"seq": jax.device_put(b)} for b in batches]
i = 0
def one():
    global state, i
    state, metrics = step(state, device_batches[i % len(device_batches)], train_key)
    i += 1
    jax.block_until_ready(metrics)
one(); one()
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        start = time.perf_counter(); one(); times.append(time.perf_counter() - start)
    print(json.dumps(times), flush=True)
"""


def export(rev: str, root: str) -> str:
    """A directory holding `rev` (`.` = the working tree as it is)."""
    if rev == ".":
        return REPO
    path = os.path.join(root, rev.replace("/", "_"))
    os.makedirs(path, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", path], input=archive.stdout, check=True)
    # The data preset's path is relative to the repository root: make it resolve there too.
    shared = os.path.join(os.path.dirname(REPO), "shared")
    if os.path.isdir(shared) and not os.path.exists(os.path.join(root, "shared")):
        os.symlink(shared, os.path.join(root, "shared"))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help="REV or REV:keep; . = the working tree")
    p.add_argument("--loss", default="bce_1neg", help="a train_step.py loss name")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--per", type=int, default=2, help="steps per variant per round")
    p.add_argument("--config", default="",
                   help="time this config's training step instead of --loss's (path.py:arg)")
    p.add_argument("--out", default="", help="also write the results here (JSON)")
    args = p.parse_args()

    sys.path.insert(0, os.path.join(REPO, "experiments", "benchmarks"))
    sys.path.insert(0, REPO)
    import numpy as np
    import train_step as ts

    from transrec_jax import hardware

    load_before, speed_before = os.getloadavg(), hardware.speed()
    root = tempfile.mkdtemp()
    try:
        what = f"config={args.config}" if args.config else args.loss
        if args.config:
            num_items, path, source = 0, "", f"{args.config}: its TrainBatcher's batches"
        else:
            batches, num_items, source = ts.make_batches(8)
            path = os.path.join(root, "batches.npy")
            np.save(path, batches)
        procs = {}
        for variant in args.variants:
            rev, _, mode = variant.partition(":")
            tree = export(rev, root)
            procs[variant] = subprocess.Popen(
                [sys.executable, "-c", CHILD, tree, what, mode or "default", path, str(num_items),
                 os.path.dirname(os.path.abspath(__file__))],
                cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if procs[variant].stdout.readline().strip() != "ready":  # compile one at a time
                sys.exit(f"{variant}: the child failed to start")
        times = {v: [] for v in procs}
        for _ in range(args.rounds):
            for variant, proc in procs.items():
                proc.stdin.write(f"{args.per}\n")
                proc.stdin.flush()
                times[variant] += json.loads(proc.stdout.readline())
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first = statistics.median(times[args.variants[0]])
    print(f"{what}; data: {source}; load average {os.getloadavg()}")
    print("| variant | median step (ms) | min-max (ms) | steps | speed-up vs first |")
    print("|---|---:|---:|---:|---:|")
    for variant, t in times.items():
        median = statistics.median(t)
        print(f"| {variant} | {median * 1e3:.1f} | {min(t) * 1e3:.0f}-{max(t) * 1e3:.0f} | "
              f"{len(t)} | {first / median:.2f} |")
    if args.out:
        revisions = {v: subprocess.run(["git", "rev-parse", v.partition(":")[0] if v[0] != "." else "HEAD"],
                                       cwd=REPO, capture_output=True, text=True).stdout.strip()
                     for v in args.variants}
        command = " ".join([".venv/bin/python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO),
                            *sys.argv[1:]])
        record = {"benchmark": "ab_step", "command": command, "step": what, "data": source,
                  "load_average_before": load_before, "load_average_after": os.getloadavg(),
                  "speed_before": speed_before, "speed_after": hardware.speed(), **hardware.host(),
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                  "variants": {v: {"revision": revisions[v], "working_tree": v.startswith("."),
                                   "median_ms": statistics.median(t) * 1e3,
                                   "speedup_vs_first": first / statistics.median(t),
                                   "step_ms": [x * 1e3 for x in t]} for v, t in times.items()}}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
