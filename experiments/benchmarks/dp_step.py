"""The private step's cost: DP-SGD (privacy/dp_sgd.py) against the ordinary step, same users.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/dp_step.py [--config=configs/sasrec.py:ml-1m] [--steps=20]
  .venv/bin/python experiments/benchmarks/dp_step.py --config=configs/sasrec.py:ml-1m,item_features

One batch of --users users, each with its last training window (train.window=last), goes to
  ordinary:  train.train_step on the [users, width] rows (train.pack_rows off: the same rows);
  dp:        dp_sgd.dp_train_step on the same windows as [users, 1, width] (per-user gradients
             by vmap, clipping, noise), every slot a sampled user;
  dp_poisson: the same with the batch as a Poisson run lays it out: accounting.make_plan's
             capacity of user slots, the last ones empty (their compute is spent all the same).
Each step is compiled first, then the three run in turn --steps times (so machine load hits all
alike), each call timed to completion; the medians and their ratios go to --out
(default experiments/benchmarks/dp_step.json; declare a kept record in summary.py).
The issue's goal: dp within 3 times the ordinary step on CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sasrec.py:ml-1m")
    parser.add_argument("--users", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    # (a record here is declared in summary.py: CURRENT or SUPERSEDED)
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "benchmarks", "dp_step.json"))
    args = parser.parse_args()

    import jax
    import numpy as np

    from transrec_jax import evaluate, hardware, sharding, train
    from transrec_jax.data import load, splits
    from transrec_jax.data.batching import TrainBatcher
    from transrec_jax.models import training_window
    from transrec_jax.privacy import accounting, dp_sgd
    from transrec_jax.studies.study import base_config

    os.chdir(REPO)  # presets' data paths are relative to the repository root
    config = base_config(args.config, "--config")
    config.unlock()
    config.train.pack_rows = False
    config.privacy.update(mode="dp_sgd", users_per_step=args.users, noise_multiplier=1.0)
    config.lock()
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda *_: None)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    width = training_window(config.model)
    rows = next(TrainBatcher(dataset, split, config.model.max_len, args.users, config.seed, width=width))
    population = int((split.train_end >= 2).sum())
    plan = accounting.make_plan(config.privacy, population, 1000)
    mesh = sharding.make_mesh(config.mesh)
    features = train.item_features(config, dataset, evaluate.train_item_counts(dataset, split),
                                   log=lambda *_: None)  # an item tower's input (config word item_features)
    graphdef, tx, state = train.init_state(config, dataset.num_items, 1000, jax.random.key(0), mesh,
                                           item_features=features)
    key = jax.random.key(1)

    def private_batch(slots):
        seq = np.zeros((slots, 1, width), np.int32)
        seq[: args.users, 0] = rows["seq"]
        return {"seq": seq, "valid": np.arange(slots) < args.users}

    steps = {
        "ordinary": (train.compile_train_step(config, graphdef, tx, state, mesh), rows),
        "dp": (dp_sgd.compile_dp_step(config, plan, graphdef, tx, state, mesh), private_batch(args.users)),
        "dp_poisson": (dp_sgd.compile_dp_step(config, plan, graphdef, tx, state, mesh),
                       private_batch(plan.capacity)),
    }
    batch_sharding = sharding.batch_sharding(mesh)
    # Each step gets its own copy of the state (the steps donate it).
    states = {name: jax.tree.map(lambda x: x.copy(), state) for name in steps}
    batches = {name: sharding.global_batch(batch, batch_sharding) for name, (_, batch) in steps.items()}
    compile_s = {}
    for name, (fn, _) in steps.items():
        start = time.perf_counter()
        states[name], metrics = fn(states[name], batches[name], key)
        jax.block_until_ready(metrics)
        compile_s[name] = time.perf_counter() - start
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, (fn, _) in steps.items():
            start = time.perf_counter()
            states[name], metrics = fn(states[name], batches[name], key)
            jax.block_until_ready(metrics)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    record = {
        "what": "median seconds per training step: ordinary vs user-level DP-SGD on the same users",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "experiments/benchmarks/dp_step.py", *sys.argv[1:]]),
        "config": args.config, "model": config.model.name, "loss": config.loss.name,
        "max_len": config.model.max_len, "num_items": dataset.num_items, "users": args.users,
        "poisson_capacity": plan.capacity, "steps": args.steps,
        "median_s": median, "compile_s": compile_s,
        "dp_over_ordinary": median["dp"] / median["ordinary"],
        "dp_poisson_over_ordinary": median["dp_poisson"] / median["ordinary"],
        "load_average": os.getloadavg(), "device": jax.devices()[0].device_kind,
        "versions": {"jax": jax.__version__}, **hardware.host(),
    }
    print(f"{'step':<12}{'median s':>10}{'x ordinary':>12}")
    for name in steps:
        print(f"{name:<12}{median[name]:>10.4f}{median[name] / median['ordinary']:>12.2f}")
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
