"""Where our JAX train step spends its time: XLA ops by kind, and the host's system time.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/profile_step.py [--loss=bce_1neg] [--steps=3]
      [--keep-freed-memory] [--trace-dir=/tmp/profile_step]

Builds the step as train_step.py does (`configs/sasrec.py:ml-1m` + the loss), runs five
warm-up steps, then --steps steps under `jax.profiler` and prints:
  * per-step op time by kind, summed over XLA's threads (so it can exceed the wall time),
    each XLA op classified from the compiled HLO: dropout/RNG (threefry), matmul, softmax and
    other exp/log, masks and selects, reductions, gathers, scatters, copies/transposes, rest;
  * the ten most expensive ops with their HLO text;
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loss", default="bce_1neg", help="a train_step.py loss name")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="transrec_jax.host_memory.keep_freed_memory() first, as the CLI does")
    p.add_argument("--trace-dir", default="/tmp/profile_step")
    args = p.parse_args()
    if args.keep_freed_memory:
        from transrec_jax import host_memory

        host_memory.keep_freed_memory()
    import jax

    import train_step as ts
    from transrec_jax import train

    batches, num_items, source = ts.make_batches(4)
    config = ts.get_config(args.loss)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    graphdef, tx, state = train.init_state(config, num_items, 100, init_key)
    step = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx,
                                     loss_cfg=config.loss, item_log_probs=None),
                   donate_argnums=0)
    device_batches = [{"seq": jax.device_put(b)} for b in batches]
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
    print(f"loss {args.loss}; data: {source}; keep_freed_memory: {args.keep_freed_memory}; "
          f"load average {os.getloadavg()}")
    print(f"per step: wall {wall * 1e3:.0f} ms, user {(after.ru_utime - before.ru_utime) / args.steps * 1e3:.0f} ms, "
          f"system {(after.ru_stime - before.ru_stime) / args.steps * 1e3:.0f} ms, minor page faults "
          f"{(after.ru_minflt - before.ru_minflt) / args.steps:.0f} "
          f"(= {(after.ru_minflt - before.ru_minflt) / args.steps * 4 / 1024:.0f} MiB of 4 KiB pages)")
    print(f"\n| op kind | ms per step (summed over threads) | share |\n|---|---:|---:|")
    for kind, ms in per_kind.most_common():
        print(f"| {kind} | {ms:.1f} | {ms / total:.0%} |")
    print(f"| total | {total:.1f} | |\n\nmost expensive ops:")
    for name, ms in per_op.most_common(10):
        print(f"{ms:7.1f} ms  {classify(name, instructions, computations):32s} "
              f"{instructions[name][3][:140]}")


if __name__ == "__main__":
    main()
