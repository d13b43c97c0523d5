"""Evaluation benchmark: full-ranking users/s of our jit evaluator (`transrec_jax.evaluate.Evaluator`).

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/evaluate_speed.py [--repeats=5] [--batch-size=256]
      [--synthetic-users=10000]
      [--synthetic-items=1000000] [--item-chunk=65536] [--catalogs=ml-1m,synthetic] [--out=PATH]
      [--config-overrides=train.bf16=True,model.fused_attention=True,model.attention_dropout=0.0]

Two catalogs, each in its own subprocess (so that peak RSS is per catalog):
  ml-1m:      `configs/sasrec.py:ml-1m` (3,416 items), all 6,040 users, test part of the
              leave-one-out split, history masked, all items scored at once (without the
              data file: random histories of the same shape, flagged in the JSON).
  synthetic:  a random catalog of --synthetic-items items and --synthetic-users users (lengths
              uniform in 3..200), the same model shape, items scored --item-chunk at a time
              (memory O(batch x chunk), at the price of scoring the catalog twice).
The model is SASRec at its initialisation: ranking cost does not depend on the weights. Each
subprocess applies `transrec_jax.host_memory.keep_freed_memory()` as the training CLI does.
Reported per catalog:
  cold_s:   the first full pass (trace + compile + run),
  warm_s:   median wall time of --repeats further full passes (batching on the host, transfer,
            encoder, scoring, ranking, top-K and the metric sums all included),
  users/s:  evaluated users / warm_s,
  encode_s: median time of the encoder alone over the same batches (user vectors only),
  compiles_after_first_pass: XLA compilations during the warm passes (should be 0),
  peak RSS: ru_maxrss of the subprocess.
Output: a Markdown table on stdout and experiments/benchmarks/evaluate_speed.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

CATALOGS = ("ml-1m", "synthetic")
MARK = "@@RESULT@@ "


def synthetic_dataset(num_users: int, num_items: int, seed: int):
    from transrec_jax.data.dataset import SequenceDataset

    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 201, num_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(1, num_items + 1, offsets[-1]).astype(np.int32)
    return SequenceDataset(offsets=offsets, items=items, num_items=num_items,
                           user_ids=np.arange(num_users), item_ids=np.arange(num_items + 1),
                           name=f"synthetic-{num_items}")


def run_catalog(args) -> dict:
    from transrec_jax import host_memory

    host_memory.keep_freed_memory()  # as transrec_jax.main does, before JAX starts threads
    import jax
    from flax import nnx

    from configs import sasrec
    from transrec_jax import evaluate, sharding, train
    from transrec_jax.data import load, splits

    config = sasrec.get_config(",".join(filter(None, ["ml-1m", args.config_overrides])))
    config.eval.batch_size = args.batch_size
    start = time.perf_counter()
    source = "ML-1M file"
    if args.only == "synthetic":
        dataset = synthetic_dataset(args.synthetic_users, args.synthetic_items, config.seed)
        config.eval.item_chunk = args.item_chunk
        source = "random catalog"
    elif os.path.isfile(os.path.join(REPO, config.dataset.path)):
        cwd = os.getcwd()
        os.chdir(REPO)  # the preset's path is relative to the repository root
        try:
            dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
        finally:
            os.chdir(cwd)
    else:  # e.g. a GPU box without the data: same users, items and length cap, random items
        dataset = synthetic_dataset(6040, 3416, config.seed)
        source = "random stand-in of ML-1M's shape (the ML-1M file was not found)"
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    data_s = time.perf_counter() - start
    mesh = sharding.make_mesh(config.mesh)
    graphdef, _, state = train.init_state(config, dataset.num_items, 1, jax.random.key(0))
    params = state["params"]
    test = evaluate.Evaluator(config, dataset, split, "test", graphdef, mesh)

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _secs, **_: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)

    start = time.perf_counter()
    metrics = test(params)
    cold = time.perf_counter() - start
    compiles.clear()
    warm = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        again = test(params)
        warm.append(time.perf_counter() - start)
    assert again == metrics, "evaluation is not deterministic"
    recompiles = len(compiles)

    encode = jax.jit(lambda p, h: nnx.merge(graphdef, p).user_representation(h))
    batches = [jax.device_put(b["history"]) for b in test.batcher]
    jax.block_until_ready(encode(params, batches[0]))
    encode_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready([encode(params, h) for h in batches])
        encode_times.append(time.perf_counter() - start)

    return {
        "data": source,
        "users": test.batcher.num_users,
        "items": dataset.num_items,
        "eval_batch_size": config.eval.batch_size,
        "item_chunk": config.eval.item_chunk,
        "exclude_width": test.batcher.exclude_width,
        "data_s": data_s,
        "cold_s": cold,
        "warm_s": warm,
        "median_warm_s": statistics.median(warm),
        "users_per_s": test.batcher.num_users / statistics.median(warm),
        "median_encode_s": statistics.median(encode_times),
        "compiles_after_first_pass": recompiles,
        "hr@10": metrics.get("hr@10"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }


def parent(args) -> None:
    start = time.time()
    results = {}
    for catalog in args.catalogs:
        cmd = [sys.executable, os.path.abspath(__file__), f"--only={catalog}",
               f"--repeats={args.repeats}", f"--synthetic-users={args.synthetic_users}",
               f"--synthetic-items={args.synthetic_items}", f"--item-chunk={args.item_chunk}",
               f"--batch-size={args.batch_size}", f"--config-overrides={args.config_overrides}"]
        print(f"[{time.time() - start:6.0f}s] {catalog} ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
            lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
            if proc.returncode or not lines:
                res = {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
            else:
                res = json.loads(lines[-1][len(MARK):])
        except subprocess.TimeoutExpired:
            res = {"error": f"timed out after {args.timeout} s"}
        print(f"         {res.get('median_warm_s', res.get('error'))}", file=sys.stderr, flush=True)
        results[catalog] = res
    table = markdown_table(results)
    print(table)
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/evaluate_speed.py",
                             *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "machine": platform.machine(), "loadavg_after": os.getloadavg()},
        "versions": versions,
        "settings": {"model": "configs/sasrec.py:ml-1m at initialisation (d_model 64, 2 blocks, "
                              "1 head, max_len 200)", "split": "leave_one_out, test part",
                     "history_masked": True, "repeats": args.repeats,
                     "eval_batch_size": args.batch_size,
                     "config_overrides": args.config_overrides},
        "results": results,
        "table_markdown": table,
        "total_wall_s": time.time() - start,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.out} ({report['total_wall_s']:.0f} s)", file=sys.stderr)


def markdown_table(results: dict) -> str:
    rows = ["| catalog | items | users | item chunk | cold pass (s) | warm pass (s) | users/s | "
            "encoder alone (s) | compiles after 1st pass | peak RSS (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for catalog, r in results.items():
        if "error" in r:
            rows.append(f"| {catalog} | failed: {r['error'][-80:]!r} | | | | | | | | |")
            continue
        rows.append(
            f"| {catalog} | {r['items']:,} | {r['users']:,} | {r['item_chunk'] or 'all'} | "
            f"{r['cold_s']:.2f} | {r['median_warm_s']:.2f} | {r['users_per_s']:,.0f} | "
            f"{r['median_encode_s']:.2f} | {r['compiles_after_first_pass']} | "
            f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="warm full passes")
    p.add_argument("--batch-size", type=int, default=256, help="config.eval.batch_size")
    p.add_argument("--config-overrides", default="",
                   help="extra configs/sasrec.py words, e.g. train.bf16=True,model.fused_attention=True")
    p.add_argument("--synthetic-users", type=int, default=10_000)
    p.add_argument("--synthetic-items", type=int, default=1_000_000)
    p.add_argument("--item-chunk", type=int, default=65_536, help="synthetic catalog only")
    p.add_argument("--catalogs", type=lambda s: s.split(","), default=list(CATALOGS),
                   help=f"comma-separated subset of {','.join(CATALOGS)}")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "evaluate_speed.json"), help="JSON output path")
    p.add_argument("--only", choices=CATALOGS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if set(args.catalogs) - set(CATALOGS):
        p.error(f"--catalogs: expected a subset of {list(CATALOGS)}")
    if args.only:
        print(MARK + json.dumps(run_catalog(args)), flush=True)
    else:
        parent(args)


if __name__ == "__main__":
    main()
