"""Item-sharding benchmark (issue 26): item tables split over the `model` axis of the mesh.

Run (from the repository root):
  nice -n 10 .venv/bin/python experiments/benchmarks/item_sharding.py
      [--items=10000000,1000000,100000000] [--d-model=16] [--batch-size=64]
      [--negatives=256] [--steps=5] [--eval-users=256]
      [--item-chunk=65536] [--meshes=1x1,1x2,1x4,1x8,2x4] [--weak-items=100000]
      [--weak-devices=1,2,4,8] [--weak-batch=32] [--weak-steps=10] [--budget-gib=12]
      [--memory-margin=1.6] [--out=PATH]
  tiny check: --items=20000 --steps=2 --eval-users=16 --item-chunk=4096 --weak-items=2000
      --weak-steps=2 --out=/tmp/item_sharding.json

Each configuration runs in its own subprocess, started with
XLA_FLAGS="--xla_force_host_platform_device_count=N --xla_cpu_multi_thread_eigen=false"
(N simulated CPU devices; each device's ops single-threaded), and applies
`transrec_jax.host_memory.keep_freed_memory()` as the training CLI does.

Item sharding (--meshes, DATAxMODEL): SASRec (`configs/sasrec.py`: 2 pre-LN blocks, 1 head,
max_len 50, Adam) at d_model = d_ff = --d-model over --items items, sampled softmax with
--negatives uniform negatives per sequence, `train.init_state(..., mesh)` (the state created
in place on the mesh) and `train.compile_train_step` on random batches of item ids
(`sharding.global_batch`): one first step (compile + run), then --steps timed steps. Then
full-ranking evaluation of --eval-users random users over every item, history excluded,
`eval.item_chunk` items at a time: `evaluate._eval_step` (what `evaluate.Evaluator` jits, with
the same output sharding), one cold pass (compile + run) and one warm pass. Per row:
  table bytes / device:  the addressable shards on device 0 of the item-table leaves
                         (`sharding.ITEM_TABLES`) of params, and of params + Adam's mu and nu;
  state bytes / device:  every leaf of the state on device 0 (the replicated rest included);
  XLA temp / device:     `compile().memory_analysis()` of the SPMD step (one device's program);
  HLO check:             the compiled step's collectives (all-gather, all-reduce, ...) with
                         their shapes; how many arrays they carry are a device's whole block
                         of table rows (with mesh.data > 1: the table gradient's all-reduce
                         over `data`); how many shapes in it have the whole padded table's
                         row count as a dimension (0 for model > 1 means no device ever holds a
                         whole-table array);
  peak RSS:              ru_maxrss of the subprocess. The simulated devices all live in that one
                         process, so it holds every shard: RSS does NOT fall with mesh.model.
A (catalogue, mesh) whose process would exceed --budget-gib of host memory, estimated from the
sizes (`memory_estimate`: the state, its copies over `data`, the random bits drawn to create
it, the step's temporaries), is not run; nor is one while the shared machine has less than --memory-margin x its
estimate available (waited for up to 5 minutes); the record says which and why. d_model 16 by
default: the machine's memory is shared with other people's runs, and the per-device table
figures scale with d_model alike.

Weak scaling (--weak-devices): --weak-items items, mesh.model = 1 (data parallel over N
devices), --weak-batch sequences per device, median step time of --weak-steps timed steps.
On this 2-core box the simulated devices share the cores: step time grows with devices.

Output: Markdown tables on stdout and the JSON record (default item_sharding.json here).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

MARK = "@@RESULT@@ "
GIB = 2**30
MAX_LEN = 50
ADAM_COPIES = 2  # mu and nu, each the size of the params


def get_config(args, *, items: int, mesh: tuple[int, int], batch: int):
    from configs import sasrec

    words = ["synthetic", f"dataset.synthetic.num_items={items}", f"model.max_len={MAX_LEN}",
             f"model.d_model={args.d_model}", f"model.d_ff={args.d_model}",
             "loss.name=sampled_softmax", f"loss.num_negatives={args.negatives}",
             f"train.batch_size={batch}", f"eval.batch_size={args.eval_users}",
             f"eval.item_chunk={args.item_chunk}", f"mesh.data={mesh[0]}", f"mesh.model={mesh[1]}"]
    return sasrec.get_config(",".join(words))


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def device0_bytes(state) -> dict:
    """Bytes on device 0: item tables of params / of params + optimizer state; whole state."""
    import jax

    from transrec_jax import sharding

    dev0 = jax.devices()[0]
    out = {"table_params": 0, "table_params_and_adam": 0, "state": 0, "state_global": 0,
           "table_global": 0}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        table = bool(names & set(sharding.ITEM_TABLES))
        here = sum(s.data.nbytes for s in leaf.addressable_shards if s.device == dev0)
        out["state"] += here
        out["state_global"] += leaf.nbytes
        if table:
            out["table_params_and_adam"] += here
            out["table_global"] += leaf.nbytes
            if "params" in names:
                out["table_params"] += here
    return out


SHAPE = re.compile(r"\b(?:f32|bf16|s32|u32|pred|f16|s8|u8)\[([\d,]*)\]")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


def hlo_summary(text: str, table_rows: int, shard_rows: int) -> dict:
    """The compiled (per-device) program's collectives with their result shapes, how many of
    the arrays they carry are one device's block of table rows (shard_rows x ...), and the
    lines with a shape that has the whole padded table's row count as a dimension."""
    collectives = {name: [] for name in COLLECTIVES}
    full_rows = []
    shard_arrays = 0
    for line in text.splitlines():
        if "=" not in line:
            continue
        lhs, _, rhs = line.partition("=")
        rhs = rhs.strip()
        for name in COLLECTIVES:
            m = re.match(rf"(.*?)\s+{name}(-start)?\(", rhs)
            if m:  # the result type, layouts dropped: f32[64,50,32] or a tuple of them
                collectives[name].append(re.sub(r"\{[\d,]*\}", "", m.group(1)))
                shard_arrays += sum(dims.split(",")[0] == str(shard_rows)
                                    for dims in SHAPE.findall(m.group(1)))
        for dims in SHAPE.findall(line):
            if str(table_rows) in dims.split(","):
                full_rows.append(line.strip()[:200])
                break
    return {"collectives": {k: v for k, v in collectives.items() if v},
            "table_block_arrays_in_collectives": shard_arrays,
            "lines_with_whole_table_rows": len(full_rows),
            "lines_with_whole_table_rows_first": full_rows[:5]}


def memory_analysis(compiled) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    return {"xla_argument_bytes": stats.argument_size_in_bytes,
            "xla_output_bytes": stats.output_size_in_bytes,
            "xla_alias_bytes": stats.alias_size_in_bytes,
            "xla_temp_bytes": stats.temp_size_in_bytes}


def child(spec: dict) -> dict:
    from transrec_jax import host_memory

    host_memory.keep_freed_memory()  # before JAX starts its threads, as transrec_jax.main does
    import functools

    import jax

    from transrec_jax import config as config_lib
    from transrec_jax import evaluate, sharding, train

    args = argparse.Namespace(**spec["args"])
    items, mesh_shape, batch = spec["items"], tuple(spec["mesh"]), spec["batch"]
    config = get_config(args, items=items, mesh=mesh_shape, batch=batch)
    config_lib.validate(config, jax.device_count())
    out = {"devices": jax.device_count(), "rss_start_gib": rss_gib()}
    mesh = sharding.make_mesh(config.mesh)
    out["mesh_shape"] = dict(mesh.shape)
    rng = np.random.default_rng(0)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))

    start = time.perf_counter()
    graphdef, tx, state = train.init_state(config, items, spec["steps"] + 1, init_key, mesh)
    jax.block_until_ready(state)
    out["init_s"] = time.perf_counter() - start
    table_rows = state["params"]["item_embedding"]["embedding"].shape[0]
    shard_rows = table_rows // mesh.shape[sharding.MODEL]
    out["table_rows"] = int(table_rows)
    out["bytes_device0"] = device0_bytes(state)
    out["rss_after_init_gib"] = rss_gib()

    step_fn = train.compile_train_step(config, graphdef, tx, state, mesh)
    data_sharding = sharding.batch_sharding(mesh)

    def make_batch():
        seq = rng.integers(1, items + 1, size=(batch, MAX_LEN + 1), dtype=np.int32)
        return sharding.global_batch({"seq": seq}, data_sharding)

    batches = [make_batch() for _ in range(min(spec["steps"] + 1, 4))]
    start = time.perf_counter()
    compiled = step_fn.lower(state, batches[0], train_key).compile()
    out["train_compile_s"] = time.perf_counter() - start
    out["train_xla"] = memory_analysis(compiled)
    if spec["hlo"]:
        out["train_hlo"] = hlo_summary(compiled.as_text(), table_rows, shard_rows)
    times, losses = [], []
    for i in range(spec["steps"] + 1):
        start = time.perf_counter()
        state, metrics = compiled(state, batches[i % len(batches)], train_key)
        losses.append(float(metrics["loss"]))  # blocks until the step is done
        times.append(time.perf_counter() - start)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite loss: {losses}")
    out.update(first_step_s=times[0], step_s=times[1:], median_step_s=statistics.median(times[1:]),
               loss_first=losses[0], loss_last=losses[-1], rss_after_train_gib=rss_gib())

    if spec["eval_users"]:
        users = spec["eval_users"]
        history = rng.integers(1, items + 1, size=(users, MAX_LEN), dtype=np.int32)
        host = {"history": history, "exclude": history.copy(),
                "target": rng.integers(1, items + 1, size=users, dtype=np.int32),
                "valid": np.ones(users, bool)}
        eval_batch = sharding.global_batch(host, data_sharding)
        e = config.eval
        step = jax.jit(
            functools.partial(evaluate._eval_step, graphdef=graphdef, ks=tuple(e.ks),
                              kmax=max(e.ks), item_chunk=e.item_chunk, sampled=False, mesh=mesh),
            out_shardings=sharding.replicated(mesh))
        params = state["params"]
        start = time.perf_counter()
        lowered = step.lower(params, eval_batch)
        eval_compiled = lowered.compile()
        out["eval_compile_s"] = time.perf_counter() - start
        out["eval_xla"] = memory_analysis(eval_compiled)
        if spec["hlo"]:
            out["eval_hlo"] = hlo_summary(eval_compiled.as_text(), table_rows, shard_rows)
        passes, results = [], []
        for _ in range(2):
            start = time.perf_counter()
            sums, topk, _ = eval_compiled(params, eval_batch)
            results.append(jax.device_get(sums))
            jax.block_until_ready(topk)
            passes.append(time.perf_counter() - start)
        out.update(eval_users=users, eval_first_s=passes[0], eval_warm_s=passes[1],
                   eval_users_per_s=users / passes[1],
                   eval_hr10=float(results[1]["hr@10"]) / users,
                   rss_after_eval_gib=rss_gib())
    out["peak_rss_gib"] = rss_gib()
    return out


def run_child(spec: dict, timeout: int) -> dict:
    devices = spec["mesh"][0] * spec["mesh"][1]
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                                     "--xla_cpu_multi_thread_eigen=false")
    cmd = [sys.executable, os.path.abspath(__file__), "--child=" + json.dumps(spec)]
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=env)
        lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
        if proc.returncode or not lines:
            res = {"error": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
        else:
            res = json.loads(lines[-1][len(MARK):])
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {timeout} s"}
    res.update(xla_flags=env["XLA_FLAGS"], wall_s=time.time() - start)
    return res


def available_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


def memory_estimate(items: int, d_model: int, mesh: tuple[int, int]) -> dict:
    """Host bytes one configuration needs, from the sizes. SASRec's tied head: one float32 item
    table of items + 1 rows padded to a multiple of mesh.model; the state holds it and Adam's mu
    and nu. Each of the mesh.data rows of devices holds a whole copy of the tables (row-sharded
    over `model`, replicated over `data`), and all the simulated devices live in this process.
    `train.init_state` draws the table's random bits beside the state it creates (its XLA
    temporaries are the state's size), and the heap did not always reuse that memory for the
    step's temporaries: 2 blocks of table rows per device, 6 with mesh.data > 1 (the table
    gradient all-reduced over `data` once per use of the table; XLA memory analysis). Peak RSS
    measured at 10M items varied between identical runs: 7.8 and 11.2 GiB at 1x1, d_model 32
    (3.6 GiB state); 4.6 and 7.0 GiB at 1x1, d_model 16 (1.8 GiB); 15.1 GiB at 2x4, d_model 16
    (2 x 1.8 GiB). Hence --memory-margin."""
    data, model = mesh
    rows = -(-(items + 1) // model) * model
    table = rows * d_model * 4
    state = (1 + ADAM_COPIES) * table
    step_temporaries = (6 if data > 1 else 2) * table * data  # over all data x model devices
    return {"rows": rows, "table_bytes": table, "state_bytes": state, "replicas": data,
            "step_temporaries_bytes": step_temporaries,
            "process_peak_bytes": 2 * state * data + step_temporaries}


def skip_reason(need: dict, d_model: int, budget_gib: float) -> str | None:
    if need["process_peak_bytes"] <= budget_gib * GIB:
        return None
    copies = f", held {need['replicas']} times (mesh.data)" if need["replicas"] > 1 else ""
    return (f"the float32 item table ({need['table_bytes'] / GIB:.1f} GiB at d_model {d_model}) "
            f"with Adam's mu and nu is a {need['state_bytes'] / GIB:.1f} GiB state{copies}; "
            f"creating it draws as many random bits, and the step's temporaries add "
            f"{need['step_temporaries_bytes'] / GIB:.1f} GiB, so this one process (the simulated "
            f"devices share it) could peak near {need['process_peak_bytes'] / GIB:.1f} GiB > the "
            f"{budget_gib:g} GiB budget")


def wait_for_memory(need: dict, margin: float, wait_s: int = 300) -> str | None:
    """None once the machine has `margin` x the estimated peak available (other people's
    processes share its memory: a run must not make the OOM killer pick theirs); else, after
    `wait_s` seconds, why the configuration is not run."""
    wanted = margin * need["process_peak_bytes"] / GIB
    deadline = time.time() + wait_s
    while True:
        have = available_gib()
        if have is None or have >= wanted:
            return None
        if time.time() > deadline:
            return (f"the shared machine had {have:.1f} GiB available, less than {margin:g} x the "
                    f"{need['process_peak_bytes'] / GIB:.1f} GiB estimate, for {wait_s} s")
        time.sleep(10)


def parse_mesh(text: str) -> tuple[int, int]:
    data, model = (int(x) for x in text.lower().split("x"))
    return data, model


def parent(args) -> None:
    from transrec_jax import hardware

    start = time.time()
    load_before = os.getloadavg()
    shared = {k: getattr(args, k) for k in ("d_model", "negatives", "eval_users", "item_chunk")}
    catalogue_rows, skipped = [], []
    for items in args.items:
        for mesh in args.meshes:
            need = memory_estimate(items, args.d_model, mesh)
            # Over the budget by its sizes, or not enough memory free within the wait.
            reason = (skip_reason(need, args.d_model, args.budget_gib)
                      or wait_for_memory(need, args.memory_margin))
            if reason:
                skipped.append({"items": items, "mesh": list(mesh), **need,
                                "budget_gib": args.budget_gib,
                                "mem_available_gib": available_gib(), "reason": reason})
                print(f"[skip] {items:,} items, mesh {mesh[0]}x{mesh[1]}: {reason}",
                      file=sys.stderr, flush=True)
                continue
            spec = {"items": items, "mesh": mesh, "batch": args.batch_size, "steps": args.steps,
                    "eval_users": args.eval_users, "hlo": True, "args": shared}
            print(f"[{time.time() - start:6.0f}s] {items:,} items, mesh {mesh[0]}x{mesh[1]} ...",
                  file=sys.stderr, flush=True)
            res = run_child(spec, args.timeout)
            res.update(part="item_sharding", items=items, mesh=list(mesh), batch_size=args.batch_size)
            print(f"         {one_line(res)}", file=sys.stderr, flush=True)
            catalogue_rows.append(res)

    weak_rows = []
    for devices in args.weak_devices:
        spec = {"items": args.weak_items, "mesh": (devices, 1), "batch": args.weak_batch * devices,
                "steps": args.weak_steps, "eval_users": 0, "hlo": True, "args": shared}
        print(f"[{time.time() - start:6.0f}s] weak scaling: {devices} device(s) ...",
              file=sys.stderr, flush=True)
        res = run_child(spec, args.timeout)
        res.update(part="weak_scaling", items=args.weak_items, mesh=[devices, 1],
                   batch_size=args.weak_batch * devices, per_device_batch=args.weak_batch)
        print(f"         {one_line(res)}", file=sys.stderr, flush=True)
        weak_rows.append(res)

    tables = markdown_tables(catalogue_rows, weak_rows, skipped)
    print(tables)
    import importlib.metadata as md

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["nice -n 10 .venv/bin/python", "experiments/benchmarks/item_sharding.py",
                             *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), **hardware.host(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "mem_available_gib_at_end": available_gib(),
                    "note": "shared machine; simulated CPU devices share its cores"},
        "versions": {"python": platform.python_version(),
                     **{n: md.version(n) for n in ("jax", "jaxlib", "flax", "optax", "numpy")}},
        "settings": {
            "model": "configs/sasrec.py", "d_model": args.d_model, "d_ff": args.d_model,
            "max_len": MAX_LEN, "loss": f"sampled_softmax, {args.negatives} uniform negatives "
            "per sequence", "batch_size": args.batch_size, "timed_steps": args.steps,
            "eval_users": args.eval_users, "item_chunk": args.item_chunk,
            "meshes": [list(m) for m in args.meshes], "items": args.items,
            "weak_items": args.weak_items, "weak_devices": args.weak_devices,
            "weak_batch_per_device": args.weak_batch, "weak_steps": args.weak_steps,
            "budget_gib": args.budget_gib, "memory_margin": args.memory_margin, "data": "random item ids (uniform), not a dataset",
            "xla_flags": "--xla_force_host_platform_device_count=N "
                         "--xla_cpu_multi_thread_eigen=false",
            "host_memory": "keep_freed_memory",
        },
        "results": catalogue_rows,
        "weak_scaling": weak_rows,
        "skipped": skipped,
        "table_markdown": tables,
        "total_wall_s": time.time() - start,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.out} ({report['total_wall_s']:.0f} s)", file=sys.stderr)


def one_line(r: dict) -> str:
    if "error" in r:
        return r["error"][-600:]
    text = (f"table/device {r['bytes_device0']['table_params_and_adam'] / GIB:.3f} GiB (params + "
            f"Adam), median step {r['median_step_s']:.3f} s, RSS {r['peak_rss_gib']:.2f} GiB")
    if "eval_warm_s" in r:
        text += f", eval warm {r['eval_warm_s']:.1f} s"
    return text


def mib(x: float) -> str:
    return f"{x / 2**20:,.1f}"


def markdown_tables(rows: list[dict], weak: list[dict], skipped: list[dict]) -> str:
    out = []
    if rows:
        out += ["| items | devices | mesh (data x model) | table rows | table / device, params (MiB) "
                "| table / device, params + Adam (MiB) | state / device (MiB) | XLA temp / device, "
                "step (MiB) | whole-table shapes in step HLO | table blocks in step collectives | "
                "median step (s) | eval warm (s) | eval cold (s) | peak RSS (GiB) |",
                "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            head = f"| {r['items']:,} | {r['mesh'][0] * r['mesh'][1]} | {r['mesh'][0]}x{r['mesh'][1]} |"
            if "error" in r:
                out.append(f"{head} failed: {r['error'][-80:]!r} | | | | | | | | | | |")
                continue
            b = r["bytes_device0"]
            temp = r.get("train_xla", {}).get("xla_temp_bytes")
            out.append(
                f"{head} {r['table_rows']:,} | {mib(b['table_params'])} | "
                f"{mib(b['table_params_and_adam'])} | {mib(b['state'])} | "
                f"{mib(temp) if temp is not None else 'n/a'} | "
                f"{r['train_hlo']['lines_with_whole_table_rows']} | "
                f"{r['train_hlo']['table_block_arrays_in_collectives']} | {r['median_step_s']:.3f} | "
                f"{r['eval_warm_s']:.1f} | {r['eval_first_s']:.1f} | {r['peak_rss_gib']:.2f} |")
    for s in skipped:
        out.append(f"\n{s['items']:,} items, mesh {s['mesh'][0]}x{s['mesh'][1]}: not run. "
                   f"{s['reason']}.")
    if weak:
        out += ["", "| weak scaling: devices | mesh (data x model) | items | batch (per device) | "
                "median step (s) | vs 1 device | XLA temp / device, step (MiB) | table blocks in step "
                "collectives | peak RSS (GiB) |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = next((r["median_step_s"] for r in weak
                     if "median_step_s" in r and r["mesh"] == [1, 1]), None)
        for r in weak:
            head = f"| {r['mesh'][0]} | {r['mesh'][0]}x{r['mesh'][1]} | {r['items']:,} |"
            if "error" in r:
                out.append(f"{head} failed: {r['error'][-80:]!r} | | | | | |")
                continue
            ratio = f"{r['median_step_s'] / base:.2f}x" if base else "n/a"
            out.append(f"{head} {r['batch_size']} ({r['per_device_batch']}) | "
                       f"{r['median_step_s']:.3f} | {ratio} | "
                       f"{mib(r['train_xla']['xla_temp_bytes'])} | "
                       f"{r['train_hlo']['table_block_arrays_in_collectives']} | "
                       f"{r['peak_rss_gib']:.2f} |")
    return "\n".join(out)


def main() -> None:
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=ints, default=[10_000_000, 1_000_000, 100_000_000],
                   help="catalogues; one whose state does not fit --budget-gib is skipped")
    p.add_argument("--d-model", type=int, default=16, help="model.d_model (= model.d_ff)")
    p.add_argument("--batch-size", type=int, default=64, help="global train batch (sequences)")
    p.add_argument("--negatives", type=int, default=256, help="loss.num_negatives")
    p.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    p.add_argument("--eval-users", type=int, default=256, help="users ranked over every item")
    p.add_argument("--item-chunk", type=int, default=65_536, help="eval.item_chunk")
    p.add_argument("--meshes", type=lambda s: [parse_mesh(x) for x in s.split(",") if x],
                   default=[(1, 1), (1, 2), (1, 4), (1, 8), (2, 4)], help="DATAxMODEL,...")
    p.add_argument("--weak-items", type=int, default=100_000)
    p.add_argument("--weak-devices", type=ints, default=[1, 2, 4, 8])
    p.add_argument("--weak-batch", type=int, default=32, help="sequences per device")
    p.add_argument("--weak-steps", type=int, default=10)
    p.add_argument("--budget-gib", type=float, default=12.0,
                   help="host memory one configuration may take (state + gradient, estimated)")
    p.add_argument("--memory-margin", type=float, default=1.6,
                   help="run a configuration only while this x its estimate is available "
                        "(ru_maxrss reached up to 3.1x the state at 10M items, 1x1)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per subprocess")
    p.add_argument("--out", default=os.path.join(HERE, "item_sharding.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(MARK + json.dumps(child(json.loads(args.child))), flush=True)
    else:
        parent(args)


if __name__ == "__main__":
    main()
