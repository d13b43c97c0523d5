"""Input-pipeline wait: how much of a training step goes to building and copying the batch.

Run (from the repository root, ~2 minutes on 2 CPU cores):
  .venv/bin/python experiments/benchmarks/input_pipeline.py [--loss=bce_1neg] [--rounds=4]

The training loop (`transrec_jax.train.train_and_evaluate`) builds batch n+1 on the host with
`TrainBatcher` while step n runs (JAX dispatch is asynchronous; the loop blocks only on the
previous step's loss). This script runs that same loop in two ways, in one process, alternating
blocks of --block steps for --rounds rounds:
  inline:    next(batcher) + device_put inside the loop, exactly as train.py does;
  prebuilt:  the same batches built and copied beforehand (no input work in the loop).
input wait = (inline - prebuilt) / inline, from the medians of the per-block step times. It
also reports the host cost of `next(batcher)` alone over one epoch (mean and the slowest call:
the batcher shuffles and lays out a whole epoch on its first call).
Data: ML-1M (`configs/sasrec.py:ml-1m`, the train-step benchmark's shape), or random rows of
its shape when the file is absent (flagged). Output: a Markdown table and input_pipeline.json.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

LOSSES = {"ce": "ml-1m", "bce_1neg": "ml-1m,loss.name=bce,loss.num_negatives=1",
          "sampled_softmax_256": "ml-1m,loss.name=sampled_softmax,loss.num_negatives=256"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="bce_1neg", choices=sorted(LOSSES))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block", type=int, default=8, help="steps per timed block")
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "benchmarks",
                                                       "input_pipeline.json"))
    args = parser.parse_args()

    from transrec_jax import host_memory

    host_memory.keep_freed_memory()  # as transrec_jax.main does, before JAX starts threads
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from configs import sasrec
    from transrec_jax import sharding, train
    from transrec_jax.data import load, splits
    from transrec_jax.data.batching import TrainBatcher
    from transrec_jax.models import training_window

    os.chdir(REPO)  # the preset's data path is relative to the repository root
    config = sasrec.get_config(LOSSES[args.loss])
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    batcher = TrainBatcher(dataset, split, config.model.max_len, config.train.batch_size,
                           config.seed, config.train.window, width=training_window(config.model))

    host_ms = []
    for _ in range(batcher.steps_per_epoch):
        start = time.perf_counter()
        next(batcher)
        host_ms.append(1000 * (time.perf_counter() - start))

    mesh = sharding.make_mesh(config.mesh)
    replicated, data_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    steps_total = 2 * args.rounds * args.block + 2
    graphdef, tx, state = train.init_state(config, dataset.num_items, steps_total, init_key)
    state = jax.device_put(state, replicated)
    step_fn = jax.jit(
        functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          item_log_probs=None),
        in_shardings=(replicated, data_sharding, replicated),
        out_shardings=(replicated, replicated), donate_argnums=0)

    def run_block(next_batch) -> float:
        """Seconds per step of `args.block` steps of train.py's loop, drained at the end."""
        nonlocal state
        pending = None
        start = time.perf_counter()
        for _ in range(args.block):
            batch = next_batch()
            state, metrics = step_fn(state, batch, train_key)
            if pending is not None:
                float(pending["loss"])  # train.py's _check_finite on the previous step
            pending = metrics
        float(pending["loss"])
        return (time.perf_counter() - start) / args.block

    def inline():
        return jax.device_put(next(batcher), data_sharding)

    prebuilt = [jax.device_put(next(batcher), data_sharding) for _ in range(args.block)]
    jax.block_until_ready(prebuilt)
    run_block(iter(prebuilt * 2).__next__)  # compile + warm up
    timings = {"inline": [], "prebuilt": []}
    for _ in range(args.rounds):
        timings["inline"].append(run_block(inline))
        timings["prebuilt"].append(run_block(iter(prebuilt).__next__))

    inline_ms = 1000 * statistics.median(timings["inline"])
    prebuilt_ms = 1000 * statistics.median(timings["prebuilt"])
    from transrec_jax import hardware

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/input_pipeline.py",
                             *sys.argv[1:]]),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, "
                   f"{os.cpu_count()} CPUs", **hardware.host(), "load_average": os.getloadavg(),
        "loss": args.loss, "config": f"configs/sasrec.py:{LOSSES[args.loss]}",
        "data": dataset.name, "batch_size": config.train.batch_size,
        "max_len": config.model.max_len, "rounds": args.rounds, "block": args.block,
        "host_batch_ms_mean": statistics.fmean(host_ms), "host_batch_ms_max": max(host_ms),
        "inline_step_ms": inline_ms, "prebuilt_step_ms": prebuilt_ms,
        "input_wait_fraction": (inline_ms - prebuilt_ms) / inline_ms,
        "block_step_ms": {k: [1000 * v for v in vs] for k, vs in timings.items()},
    }
    print(f"| loss | next(batcher) alone (ms, mean / slowest) | step, inline batches (ms) | "
          f"step, prebuilt batches (ms) | input wait |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.loss} | {result['host_batch_ms_mean']:.2f} / {result['host_batch_ms_max']:.1f} "
          f"| {inline_ms:.1f} | {prebuilt_ms:.1f} | {100 * result['input_wait_fraction']:.1f}% |")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
