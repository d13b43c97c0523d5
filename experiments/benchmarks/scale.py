"""Scale benchmark (issue 7, 4a): 1M users x 1M items trained and fully ranked within 16 GB.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/scale.py [--users=1000000] [--items=1000000]
      [--steps=100] [--batch-size=256] [--negatives=256] [--ce-steps=2] [--ce-batch-size=32]
      [--ce-chunk=8192] [--eval-users=5000] [--item-chunk=65536] [--out=PATH]
  tiny check: --users=2000 --items=5000 --steps=3 --ce-steps=1 --eval-users=100 --out=/tmp/s.json

Everything runs in ONE process, so that its peak RSS covers every phase, after
`transrec_jax.host_memory.keep_freed_memory()` as the training CLI does (freed memory then
stays resident: the RSS after a phase is the high-water mark so far, reused by later phases).
  data:  the synthetic generator (`dataset.synthetic`, lengths 20..60) through
         `load.load_dataset` (built fresh in a temporary cache dir), the leave-one-out split,
         the training item counts and the `TrainBatcher`, as `transrec_jax.train` does;
  train: SASRec (`configs/sasrec.py`: d_model 64, 2 pre-LN blocks, 1 head, d_ff 64,
         max_len 50, Adam) with sampled softmax (--negatives uniform negatives per sequence),
         `transrec_jax.train.train_step` jitted with the same shardings and donation as
         `train_and_evaluate`; 1 first step (trace + compile) then --steps timed steps, each
         = host batch + transfer + step, blocked on the loss;
  eval:  full ranking of all items, history excluded, `eval.item_chunk` items at a time, on a
         seeded sample of --eval-users test users (`evaluate.Evaluator` on the split with the
         other users' test positions cleared): a cold pass (compile + run), a warm pass, and
         the popularity baseline pass that `train_and_evaluate` runs beside it;
  ce:    (--ce-steps > 0) a fresh SASRec trained with full softmax CE streamed over
         --ce-chunk items (`loss.ce_chunk_size`), at --ce-batch-size: its cost is
         O(batch x max_len x num_items): 4 matmuls of 2 B L V D FLOP (forward, its checkpointed
         recompute, two gradients), ~6.6 TFLOP per step at batch 256 here.
After each phase: ru_maxrss and VmHWM / VmRSS (/proc/self/status). Projected times (a full
epoch, all test users) are the measured medians scaled up, labelled as projections.
Output: Markdown tables on stdout and experiments/benchmarks/scale.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

GIB = 2**30
TARGET_GIB = 16


def memory() -> dict:
    """Peak and current resident memory of this process, in GiB."""
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                status[key] = int(value.split()[0]) * 1024 / GIB  # kB
    return {"ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
            "vmhwm_gib": status.get("VmHWM"), "vmrss_gib": status.get("VmRSS")}


def nbytes(tree) -> int:
    import jax

    return sum(int(x.nbytes) for x in jax.tree.leaves(tree))


def get_config(args, loss: str):
    from configs import sasrec

    words = ["synthetic", f"dataset.synthetic.num_users={args.users}",
             f"dataset.synthetic.num_items={args.items}", "model.max_len=50",
             f"eval.item_chunk={args.item_chunk}", f"eval.batch_size={args.eval_batch_size}"]
    if loss == "sampled_softmax":
        words += ["loss.name=sampled_softmax", f"loss.num_negatives={args.negatives}",
                  f"train.batch_size={args.batch_size}"]
    else:
        words += ["loss.name=ce", f"loss.ce_chunk_size={args.ce_chunk}",
                  f"train.batch_size={args.ce_batch_size}"]
    return sasrec.get_config(",".join(words))


def build_data(config, cache_dir: str) -> dict:
    from transrec_jax import evaluate
    from transrec_jax.data import load, splits

    config.dataset.cache_dir = cache_dir  # always built fresh, never read from ~/.cache
    times = {}
    start = time.perf_counter()
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
    times["generate_preprocess_cache_s"] = time.perf_counter() - start
    start = time.perf_counter()
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    item_counts = evaluate.train_item_counts(dataset, split)
    times["split_and_item_counts_s"] = time.perf_counter() - start
    return {"dataset": dataset, "split": split, "item_counts": item_counts, "times": times}


def train_phase(config, data: dict, steps: int) -> tuple[dict, dict, object]:
    """(figures, state, graphdef): first step, then `steps` timed steps, as train.py runs them."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from transrec_jax import sharding, train
    from transrec_jax.data.batching import TrainBatcher
    from transrec_jax.models import training_window

    dataset, split = data["dataset"], data["split"]
    start = time.perf_counter()
    batcher = TrainBatcher(dataset, split, config.model.max_len, config.train.batch_size,
                           config.seed, config.train.window, width=training_window(config.model))
    mesh = sharding.make_mesh(config.mesh)
    replicated, data_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    graphdef, tx, state = train.init_state(config, dataset.num_items, steps + 1, init_key)
    state = jax.device_put(state, replicated)
    step_fn = jax.jit(
        functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          item_log_probs=train._popularity_log_probs(data["item_counts"],
                                                                     config.loss)),
        in_shardings=(replicated, data_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    setup_s = time.perf_counter() - start
    step_times, batch_times, losses = [], [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        host = next(batcher)
        batched = time.perf_counter()
        state, metrics = step_fn(state, jax.device_put(host, data_sharding), train_key)
        losses.append(float(metrics["loss"]))  # blocks until the step is done
        step_times.append(time.perf_counter() - start)
        batch_times.append(batched - start)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite loss: {losses}")
    timed = step_times[1:] or step_times
    median = statistics.median(timed)
    batch = config.train.batch_size
    figures = {
        "loss": config.loss.name, "batch_size": batch,
        "negatives": config.loss.num_negatives if config.loss.name == "sampled_softmax" else None,
        "ce_chunk_size": config.loss.ce_chunk_size if config.loss.name == "ce" else None,
        "setup_s": setup_s, "first_step_s": step_times[0], "timed_steps": len(step_times) - 1,
        "step_s": step_times[1:], "median_step_s": median,
        "median_host_batch_s": statistics.median(batch_times[1:] or batch_times),
        "seqs_per_s": batch / median,
        "steps_per_epoch": batcher.steps_per_epoch,
        "projected_epoch_s": batcher.steps_per_epoch * median,
        "loss_first": losses[0], "loss_last": losses[-1],
        "params_bytes": nbytes(state["params"]), "opt_state_bytes": nbytes(state["opt_state"]),
        "batcher_bytes": 2 * batcher.users.nbytes,  # training user ids + the epoch's order
    }
    return figures, state, graphdef


def eval_phase(config, data: dict, params, graphdef, num_users: int, seed: int) -> dict:
    from transrec_jax import evaluate, sharding

    dataset, split = data["dataset"], data["split"]
    test_users = split.eval_users("test")
    chosen = np.random.default_rng([seed, 7]).choice(test_users, min(num_users, len(test_users)),
                                                     replace=False)
    keep = np.zeros(dataset.num_users, bool)
    keep[chosen] = True
    sample = dataclasses.replace(split, test_pos=np.where(keep, split.test_pos, -1))
    mesh = sharding.make_mesh(config.mesh)
    test = evaluate.Evaluator(config, dataset, sample, "test", graphdef, mesh)
    start = time.perf_counter()
    metrics = test(params)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = test(params)
    warm = time.perf_counter() - start
    assert again == metrics, "evaluation is not deterministic"
    start = time.perf_counter()
    popularity = test.popularity(data["item_counts"])
    popularity_s = time.perf_counter() - start
    users = test.batcher.num_users
    return {
        "users": users, "test_users_all": len(test_users), "items": dataset.num_items,
        "item_chunk": config.eval.item_chunk, "eval_batch_size": config.eval.batch_size,
        "exclude_width": test.batcher.exclude_width,
        "cold_s": cold, "warm_s": warm, "users_per_s": users / warm,
        "projected_all_test_users_s": len(test_users) / (users / warm),
        "popularity_s": popularity_s,
        "hr@10": metrics["hr@10"], "ndcg@10": metrics["ndcg@10"],
        "popularity_hr@10": popularity["hr@10"],
    }


def run(args) -> dict:
    from transrec_jax import host_memory

    kept = host_memory.keep_freed_memory()  # as transrec_jax.main does, before JAX starts threads
    import jax

    from transrec_jax import config as config_lib

    phases = {"start": memory()}
    config = get_config(args, "sampled_softmax")
    config_lib.validate(config, jax.device_count())
    with tempfile.TemporaryDirectory() as cache_dir:
        data = build_data(config, cache_dir)
    dataset, split = data["dataset"], data["split"]
    phases["data"] = memory()
    stats = dataset.stats()
    interactions = stats["interactions"]
    print(f"[data] {stats['users']:,} users, {stats['items']:,} items, {interactions:,} "
          f"interactions, {data['times']}", file=sys.stderr, flush=True)

    sampled, state, graphdef = train_phase(config, data, args.steps)
    phases["train_sampled_softmax"] = memory()
    print(f"[train] median step {sampled['median_step_s']:.3f} s", file=sys.stderr, flush=True)

    evaluation = eval_phase(config, data, state["params"], graphdef, args.eval_users, config.seed)
    phases["eval_full_ranking"] = memory()
    print(f"[eval] {evaluation['users_per_s']:.0f} users/s", file=sys.stderr, flush=True)
    del state

    chunked = None
    if args.ce_steps:
        ce_config = get_config(args, "ce")
        config_lib.validate(ce_config, jax.device_count())
        chunked, state, _ = train_phase(ce_config, data, args.ce_steps)
        del state
        phases["train_chunked_ce"] = memory()
        print(f"[ce] median step {chunked['median_step_s']:.3f} s", file=sys.stderr, flush=True)

    host_arrays = {
        "dataset.items (int32)": dataset.items.nbytes,
        "dataset.offsets, user_ids, item_ids": (dataset.offsets.nbytes + dataset.user_ids.nbytes
                                                 + dataset.item_ids.nbytes),
        "split (train_end, val_pos, test_pos)": nbytes([split.train_end, split.val_pos,
                                                         split.test_pos]),
        "training item counts": data["item_counts"].nbytes,
        "train batcher (user ids, epoch order)": sampled["batcher_bytes"],
        "params": sampled["params_bytes"],
        "Adam state (mu, nu)": sampled["opt_state_bytes"],
        "raw interactions, transient (int64 user + item, computed)": 16 * interactions,
    }
    peak = max(m["vmhwm_gib"] or 0.0 for m in phases.values())
    peak = max(peak, max(m["ru_maxrss_gib"] for m in phases.values()))
    return {
        "keep_freed_memory": kept,
        "dataset": {**stats, "split": split.summary(), "times": data["times"],
                    "requested_items": args.items},
        "train_sampled_softmax": sampled,
        "eval_full_ranking": evaluation,
        "train_chunked_ce": chunked,
        "memory_after_phase": phases,
        "host_arrays_bytes": host_arrays,
        "peak_gib": peak,
        "target_gib": TARGET_GIB,
        "pass": bool(peak < TARGET_GIB),
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }


def markdown_tables(r: dict) -> str:
    s, e, c = r["train_sampled_softmax"], r["eval_full_ranking"], r["train_chunked_ce"]
    mem = r["memory_after_phase"]
    rows = ["| phase | work | first step / cold pass (s) | median step / warm pass (s) | "
            "throughput | PROJECTED full pass | peak RSS after phase (GiB) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    d = r["dataset"]
    rows.append(f"| data | {d['users']:,} users x {d['items']:,} items, {d['interactions']:,} "
                f"interactions: generate + preprocess + cache, split, counts | | "
                f"{sum(d['times'].values()):.1f} | | | {mem['data']['vmhwm_gib']:.2f} |")

    def train_row(name, t):
        what = (f"sampled softmax, {t['negatives']} negatives/seq" if t["loss"] == "sampled_softmax"
                else f"chunked CE, chunk {t['ce_chunk_size']:,}")
        return (f"| {name} | {what}, batch {t['batch_size']}, {t['timed_steps']} timed step(s) | "
                f"{t['first_step_s']:.2f} | {t['median_step_s']:.3f} | {t['seqs_per_s']:,.1f} seqs/s | "
                f"epoch ({t['steps_per_epoch']:,} steps): {duration(t['projected_epoch_s'])} | "
                f"{mem[name]['vmhwm_gib']:.2f} |")

    rows.append(train_row("train_sampled_softmax", s))
    rows.append(
        f"| eval_full_ranking | {e['users']:,} sampled test users x {e['items']:,} items, chunk "
        f"{e['item_chunk']:,}, history excluded | {e['cold_s']:.1f} | {e['warm_s']:.1f} | "
        f"{e['users_per_s']:,.0f} users/s | all {e['test_users_all']:,} test users: "
        f"{duration(e['projected_all_test_users_s'])} | {mem['eval_full_ranking']['vmhwm_gib']:.2f} |")
    if c is not None:
        rows.append(train_row("train_chunked_ce", c))
    arrays = ["| host array | size (GiB) |", "|---|---:|"]
    arrays += [f"| {k} | {v / GIB:.3f} |" for k, v in r["host_arrays_bytes"].items()]
    verdict = (f"peak RSS {r['peak_gib']:.2f} GiB vs target {r['target_gib']} GiB: "
               f"{'PASS' if r['pass'] else 'FAIL'}")
    return "\n".join(rows) + "\n\n" + "\n".join(arrays) + "\n\n" + verdict


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000, help="dataset.synthetic.num_users")
    p.add_argument("--items", type=int, default=1_000_000, help="dataset.synthetic.num_items")
    p.add_argument("--steps", type=int, default=100, help="timed sampled-softmax steps")
    p.add_argument("--batch-size", type=int, default=256, help="sampled-softmax train batch")
    p.add_argument("--negatives", type=int, default=256, help="loss.num_negatives")
    p.add_argument("--ce-steps", type=int, default=2, help="timed chunked-CE steps; 0 skips")
    p.add_argument("--ce-batch-size", type=int, default=32, help="chunked-CE train batch")
    p.add_argument("--ce-chunk", type=int, default=8192, help="loss.ce_chunk_size")
    p.add_argument("--eval-users", type=int, default=5000, help="sampled test users ranked")
    p.add_argument("--eval-batch-size", type=int, default=256, help="eval.batch_size")
    p.add_argument("--item-chunk", type=int, default=65_536, help="eval.item_chunk")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "scale.json"), help="JSON output path")
    args = p.parse_args()
    start = time.time()
    load_before = os.getloadavg()
    results = run(args)
    table = markdown_tables(results)
    print(table)
    import importlib.metadata as md

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/scale.py", *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "machine": platform.machine(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "versions": {"python": platform.python_version(),
                     **{n: md.version(n) for n in ("jax", "jaxlib", "flax", "numpy")}},
        "settings": vars(args),
        "results": results,
        "table_markdown": table,
        "total_wall_s": time.time() - start,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.out} ({report['total_wall_s']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
