"""Where our JAX train step spends its time: XLA ops by kind, and the host's system time.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/profile_step.py [--loss=bce_1neg] [--steps=3]
      [--keep-freed-memory] [--trace-dir=/tmp/profile_step]
  .venv/bin/python experiments/benchmarks/profile_step.py \
      --config=configs/sasrec_best.py:ml-1m,fast,rotary,two_heads

Builds the step as train_step.py does (`configs/sasrec.py:ml-1m` + the loss) or, with
--config, as training that config does (its dataset, its batcher with packed rows, its loss
and mesh; the batches are those of the most common packed shape among the epoch's first
64), runs five warm-up steps, then --steps steps under `jax.profiler` and prints:
  * per-step op time by kind, summed over XLA's threads (so it can exceed the wall time),
    each XLA op classified from the compiled HLO: dropout/RNG (threefry), matmul, softmax and
    other exp/log, masks and selects, reductions, gathers, scatters, copies/transposes, rest;
  * the --top most expensive ops with their HLO text;
  * wall, user and system time per step and the minor page faults (first-touch memory).
On a machine shared with other work, op times include time the threads were descheduled.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(")


def hlo_instructions(hlo: str) -> tuple[dict, dict]:
    """({instruction: (opcode, called computations, op_name metadata, line)}, {computation: lines})."""
    computations, current = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            current = header.group(1)
            computations[current] = []
        elif line.strip() == "}":
            current = None
        elif current:
            computations[current].append(line)
    instructions = {}
    for lines in computations.values():
        for line in lines:
            m = _INSTRUCTION.match(line)
            if m:
                calls = re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line)
                op_name = " ".join(re.findall(r'op_name="([^"]*)"', line))
                instructions[m.group(1)] = (m.group(2), calls, op_name, line.strip())
    return instructions, computations


def opcodes_inside(computation: str, computations: dict, seen: set) -> collections.Counter:
    counts = collections.Counter()
    for line in computations.get(computation, []):
        m = _INSTRUCTION.match(line)
        if m:
            counts[m.group(2)] += 1
        for called in re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line):
            if called not in seen:
                seen.add(called)
                counts += opcodes_inside(called, computations, seen)
    return counts


def classify(name: str, instructions: dict, computations: dict) -> str:
    if name not in instructions:
        return "runtime (not an XLA op)"
    opcode, calls, op_name, _ = instructions[name]
    if re.search(r"threefry|bernoulli|random_bits|_uniform|iota_2x32", op_name):
        return "dropout randomness (threefry)"
    ops = collections.Counter({opcode: 1})
    for called in calls:
        ops += opcodes_inside(called, computations, set())
    if ops["dot"] or ops["convolution"]:
        return "matmul"
    for kind, opcodes in (("scatter", ("scatter",)), ("gather", ("gather",)),
                          ("exp/log (softmax, softplus, gelu)", ("exponential", "log",
                                                                 "log-plus-one", "erf")),
                          ("reduce (norms, sums)", ("reduce",)),
                          ("select (masks, dropout)", ("select",)),
                          ("copy/transpose", ("copy", "transpose"))):
        if any(ops[o] for o in opcodes):
            return kind
    return "other elementwise"


def config_step(config_arg: str):
    """(config, jitted step, state, device batches, source) for training `config_arg` as
    transrec_jax.train does: its data, batcher (packed rows), state on its mesh and step."""
    import math
    import runpy

    import jax

    from transrec_jax import evaluate, sharding, train
    from transrec_jax.data import load, splits
    from transrec_jax.data.batching import TrainBatcher
    from transrec_jax.models import training_window

    from transrec_jax.config import ConfigError

    path, _, arg = config_arg.partition(":")
    if not os.path.isfile(os.path.join(REPO, path)):
        sys.exit(f"error: --config={config_arg}: no config file {path} under {REPO}; "
                 "expected path.py[:arg], e.g. configs/sasrec_best.py:ml-1m,fast")
    try:
        config = runpy.run_path(os.path.join(REPO, path))["get_config"](arg or None)
    except ConfigError as e:
        sys.exit(f"error: --config={config_arg}: {e}")
    cwd = os.getcwd()
    os.chdir(REPO)  # a preset's dataset path is relative to the repository root
    try:
        dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
    finally:
        os.chdir(cwd)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    mesh = sharding.make_mesh(config.mesh)
    pack_rows = math.lcm(max(config.train.batch_size // 8, 1), mesh.shape[sharding.DATA])
    batcher = TrainBatcher(dataset, split, config.model.max_len, config.train.batch_size, config.seed,
                           config.train.window, width=training_window(config.model),
                           pack_row_multiple=pack_rows if config.train.pack_rows else 0,
                           with_times=config.model.time_buckets > 0,
                           with_users=config.model.user_features != "off")
    first = [next(batcher) for _ in range(min(64, batcher.steps_per_epoch))]
    shapes = collections.Counter(b["seq"].shape for b in first)
    shape, count = shapes.most_common(1)[0]
    batches = [b for b in first if b["seq"].shape == shape][:8]
    item_counts = evaluate.train_item_counts(dataset, split)
    total_steps = config.train.num_steps or config.train.num_epochs * batcher.steps_per_epoch
    graphdef, tx, state = train.init_state(
        config, dataset.num_items, total_steps, jax.random.split(jax.random.key(config.seed))[0], mesh,
        steps_per_epoch=batcher.steps_per_epoch,
        item_features=train.item_features(config, dataset, item_counts, log=lambda m: None),
        user_features=train.user_features(config, dataset, log=lambda m: None))
    step = train.compile_train_step(config, graphdef, tx, state, mesh,
                                    train._popularity_log_probs(item_counts, config.loss))
    data_sharding = sharding.batch_sharding(mesh)
    source = (f"{config.dataset.name} TrainBatcher, batches of rows x width {shape} ({count} of the "
              f"epoch's first {len(first)}; {len(shapes)} shapes)")
    return config, step, state, [sharding.global_batch(b, data_sharding) for b in batches], source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loss", default="bce_1neg", help="a train_step.py loss name")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="transrec_jax.host_memory.keep_freed_memory() first, as the CLI does")
    p.add_argument("--trace-dir", default="/tmp/profile_step")
    p.add_argument("--top", type=int, default=10, help="how many of the most expensive ops to print")
    p.add_argument("--config", default="", help="profile this config's step instead (path.py:arg)")
    args = p.parse_args()
    if args.keep_freed_memory:
        from transrec_jax import host_memory

        host_memory.keep_freed_memory()
    import jax

    import train_step as ts
    from transrec_jax import train

    if args.config:
        config, step, state, device_batches, source = config_step(args.config)
        train_key = jax.random.split(jax.random.key(config.seed))[1]
        what = args.config
    else:
        batches, num_items, source = ts.make_batches(4)
        config = ts.get_config(args.loss)
        init_key, train_key = jax.random.split(jax.random.key(config.seed))
        graphdef, tx, state = train.init_state(config, num_items, 100, init_key)
        step = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx,
                                         loss_cfg=config.loss, item_log_probs=None),
                       donate_argnums=0)
        device_batches = [{"seq": jax.device_put(b)} for b in batches]
        what = f"loss {args.loss}"
    hlo = step.lower(state, device_batches[0], train_key).compile().as_text()
    instructions, computations = hlo_instructions(hlo)

    def run(n):
        nonlocal state
        for i in range(n):
            state, metrics = step(state, device_batches[i % len(device_batches)], train_key)
            jax.block_until_ready(metrics)

    run(5)  # past the first steps, where a kept heap still grows
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(args.steps)
    wall = (time.perf_counter() - start) / args.steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    jax.profiler.start_trace(args.trace_dir, create_perfetto_trace=True)
    run(args.steps)
    jax.profiler.stop_trace()

    trace = sorted(glob.glob(os.path.join(args.trace_dir, "plugins/profile/*/perfetto_trace.json.gz")))[-1]
    with gzip.open(trace) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in instructions:
            per_op[e["name"]] += e["dur"] / 1e3 / args.steps  # ms per step
    per_kind = collections.Counter()
    for name, ms in per_op.items():
        per_kind[classify(name, instructions, computations)] += ms
    total = sum(per_kind.values())
    print(f"{what}; data: {source}; keep_freed_memory: {args.keep_freed_memory}; "
          f"load average {os.getloadavg()}")
    print(f"per step: wall {wall * 1e3:.0f} ms, user {(after.ru_utime - before.ru_utime) / args.steps * 1e3:.0f} ms, "
          f"system {(after.ru_stime - before.ru_stime) / args.steps * 1e3:.0f} ms, minor page faults "
          f"{(after.ru_minflt - before.ru_minflt) / args.steps:.0f} "
          f"(= {(after.ru_minflt - before.ru_minflt) / args.steps * 4 / 1024:.0f} MiB of 4 KiB pages)")
    print(f"\n| op kind | ms per step (summed over threads) | share |\n|---|---:|---:|")
    for kind, ms in per_kind.most_common():
        print(f"| {kind} | {ms:.1f} | {ms / total:.0%} |")
    print(f"| total | {total:.1f} | |\n\nmost expensive ops:")
    for name, ms in per_op.most_common(args.top):
        print(f"{ms:7.1f} ms  {classify(name, instructions, computations):32s} "
              f"{instructions[name][3][:140]}")


if __name__ == "__main__":
    main()
