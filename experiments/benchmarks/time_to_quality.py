"""Time to quality: wall time from launch until validation NDCG@10 reaches a target on ML-1M.

Each recipe is a study run (transrec_jax/studies/runner.py starts the training CLI,
`python -m transrec_jax.main`, so data loading, compilation, every train step and every
validation pass are on the clock) in a fresh workdir, evaluating on
the validation users every epoch (full ranking over all items, history excluded, the protocol of
experiments/reproduce/). This script watches the run's metrics.jsonl and notes the time at
which each validation row appears; the run stops at the first row reaching --target, or at
--limit seconds. Compiling is on the clock too: by default (--compilation-cache=cold) each run
gets an empty compilation cache of its own, as a first launch does; `warm` shares the user's cache
(transrec_jax/compile_cache.py), as a rerun of the same programs does. Each result records which,
and how many compiled programs the cache held before and after the run, and the box's speed just
before and after it (transrec_jax/hardware.py `speed`: the same CPU model runs slower in some
hours than others). Recipes (RECIPES below):

  sasrec_plus  the published SASRec+ recipe [KV23] as experiments/reproduce/ml1m.py runs it
               (row sasrec_plus_ce: full CE, SASRec norm placement, dropout 0.1, Adam b2 0.999,
               lr 1e-3, batch 128), early stopping off
  fast         the same model and loss, lr 3e-3 after a 96-step warm-up, constant
  fast_unpacked  fast with train.pack_rows=False (every recipe here packs rows, as
               configs/sasrec.py does: the same batches on ~1.7x fewer row slots)
  fast_cosine  fast with cosine decay to 0 over an 18-epoch budget
  fast_cosine_80  the same over 80 epochs
  best         fast_cosine_80 with 4 blocks instead of 2: configs/sasrec_best.py as it was
               when measured (RESULTS.md section 5), before it moved to 8 pre-norm blocks
  best_55      best with its cosine decay over 55 epochs instead of 80
  best_shifted best with train.window=shifted (every training item of a long history trains)
  best_exclude_window  best with loss.exclude_window (the window's other items out of the softmax)
  short_exclude_window  best_exclude_window with its cosine decay over 20 epochs instead of 80
  best_fast    configs/sasrec_best.py:ml-1m,fast: short_exclude_window at batch 32 after a
               two-epoch warm-up (train.warmup_epochs=2)
  best_config  our best single configuration as it ships, configs/sasrec_best.py:ml-1m,
               exclude_window,rotary,two_heads (80 epochs at batch 128): with --target=1 a
               run's time to convergence, its best validation's wall time (best_at_s)

Run (from the repository root; about --limit seconds per recipe):
  .venv/bin/python experiments/benchmarks/time_to_quality.py --recipes=fast,sasrec_plus --limit=1200
  # on a GPU (experiments/benchmarks/gpu.sh runs these two):
  python experiments/benchmarks/time_to_quality.py --recipes=best_fast --limit=120 \\
      --config-overrides=rotary,two_heads,train.num_epochs=8,train.bf16=True,model.fused_attention=True,model.attention_dropout=0.0
  python experiments/benchmarks/time_to_quality.py --recipes=best_config --target=1 --limit=300 \\
      --config-overrides=train.bf16=True,model.fused_attention=True,model.attention_dropout=0.0
Output: a Markdown table on stdout and --out (JSON: every validation row with its wall time).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import runpy
import shlex
import shutil
import sys
import time

from transrec_jax import compile_cache, hardware
from transrec_jax.studies import runner
from transrec_jax.studies.study import Run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sasrec_plus() -> dict:
    """Config file and overrides of the reproduction table's SASRec+ CE row, plus its budget."""
    table = runpy.run_path(os.path.join(REPO, "experiments", "reproduce", "ml1m.py"))
    row = next(r for r in table["ROWS"] if r["name"] == "sasrec_plus_ce")
    return {"config": row["config"], "overrides": {**table["BUDGET"], **row["overrides"]}}


def recipes() -> dict[str, dict]:
    published = sasrec_plus()
    common = {"train.patience": 0, "train.eval_every_epochs": 1}
    return {
        "sasrec_plus": {"config": published["config"],
                        "overrides": {**published["overrides"], **common}},
        "fast": {"config": published["config"], "overrides": {
            **published["overrides"], **common,
            # 3x the learning rate, reached over the first 2 epochs (96 steps), then constant:
            # on ML-1M the published lr gains ~0.01 validation NDCG@10 per epoch after epoch 4.
            "train.learning_rate": 3e-3,
            "train.warmup_steps": 96,
        }},
        "fast_unpacked": {"config": published["config"], "overrides": {
            **published["overrides"], **common,
            # `fast` without packed rows (configs/sasrec.py packs them): the speed reference.
            "train.learning_rate": 3e-3,
            "train.warmup_steps": 96,
            "train.pack_rows": False,
        }},
        "fast_cosine": {"config": published["config"], "overrides": {
            **published["overrides"], **common,
            # `fast` with a budget: cosine decay to 0 over 18 epochs (864 steps), since `fast`
            # gained little per epoch after epoch 10 at a constant 3e-3 (RESULTS.md).
            "train.learning_rate": 3e-3,
            "train.warmup_steps": 96,
            "train.schedule": "cosine",
            "train.num_epochs": 18,
        }},
        "fast_cosine_80": {"config": published["config"], "overrides": {
            **published["overrides"], **common,
            # The same decay over 80 epochs (3,840 steps), where `fast` plateaus (RESULTS.md).
            "train.learning_rate": 3e-3,
            "train.warmup_steps": 96,
            "train.schedule": "cosine",
            "train.num_epochs": 80,
        }},
        # configs/sasrec_best.py with 4 blocks in SASRec's placement, as it was when measured
        # (fast_cosine_80 with 4 blocks; the preset's own schedule). The preset's 8 pre-norm
        # blocks take longer an epoch: no faster route to the target.
        "best": {"config": "configs/sasrec_best.py:ml-1m",
                 "overrides": {"model.num_layers": 4, "model.norm_placement": "sasrec"}},
        # `best` with its cosine over 55 epochs instead of 80, so the low-lr end falls inside
        # a 15-minute run; it lowered the plateau (RESULTS.md, time to quality).
        "best_55": {"config": "configs/sasrec_best.py:ml-1m", "overrides": {
            "model.num_layers": 4, "model.norm_placement": "sasrec", "train.num_epochs": 55}},
        # `best` training every item of the long histories: a full window at a random offset
        # each epoch (train.window=shifted) instead of the last one, which leaves a third of
        # ML-1M's training targets untrained (RESULTS.md section 7); it lifts validation, not
        # test NDCG@10 (experiments/reproduce/ml1m.py row best_4blocks_shifted).
        "best_shifted": {"config": "configs/sasrec_best.py:ml-1m", "overrides": {
            "model.num_layers": 4, "model.norm_placement": "sasrec", "train.window": "shifted"}},
        # `best` with each position's softmax leaving out the other items of its window
        # (loss.exclude_window), the ML-1M table's strongest single change, which also reaches
        # a given validation level in fewer epochs there (experiments/reproduce/early_runs/
        # gpu_h200_2026-12-04.json) at a dearer epoch.
        "best_exclude_window": {"config": "configs/sasrec_best.py:ml-1m,exclude_window", "overrides": {
            "model.num_layers": 4, "model.norm_placement": "sasrec"}},
        # best_exclude_window with the whole schedule inside a short budget: its cosine decay
        # ends after 20 epochs (960 steps), so the low-lr end, where every recipe here gains
        # most, comes before the target rather than after it.
        "short_exclude_window": {"config": "configs/sasrec_best.py:ml-1m,exclude_window", "overrides": {
            "model.num_layers": 4, "model.norm_placement": "sasrec", "train.num_epochs": 20}},
        # The preset word `fast`: short_exclude_window at batch 32 with a two-epoch warm-up.
        "best_fast": {"config": "configs/sasrec_best.py:ml-1m,fast", "overrides": {}},
        # The ML-1M table's row best_exclude_window_rotary_2heads as the preset ships it.
        "best_config": {"config": "configs/sasrec_best.py:ml-1m,exclude_window,rotary,two_heads",
                        "overrides": {}},
    }


def recipe_run(name: str, recipe: dict, args) -> Run:
    """The recipe as a study run; --config-overrides key=value words win over its overrides
    (other words join its config arg)."""
    words = [w for w in args.config_overrides.split(",") if w]
    extra = dict(w.split("=", 1) for w in words if "=" in w)
    config = ",".join([recipe["config"], *(w for w in words if "=" not in w)])
    return Run(name, {"recipe": name}, name, 0, config, {**recipe["overrides"], **extra},
               os.path.join(args.workdir_root, name))


def read_new_rows(path: str, seen: int) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f if line.endswith("\n")]
    return [json.loads(line) for line in lines[seen:]]


def cache_dir(run: Run, mode: str) -> str:
    """`cold`: an empty cache in the run's fresh workdir; `warm`: the one every run shares."""
    if mode == "cold":
        return run.path("compilation_cache")
    return os.path.expanduser(os.environ.get("JAX_COMPILATION_CACHE_DIR") or compile_cache.DEFAULT_DIR)


def cached_programs(path: str) -> int:
    """Compiled programs in a JAX compilation cache directory (one `*-cache` file each)."""
    return sum(name.endswith("-cache") for name in os.listdir(path)) if os.path.isdir(path) else 0


def run_recipe(name: str, recipe: dict, args) -> dict:
    run = recipe_run(name, recipe, args)
    shutil.rmtree(run.workdir, ignore_errors=True)  # a fresh run: the CLI would resume otherwise
    os.makedirs(run.workdir)
    metrics_path = run.path("metrics.jsonl")
    cache = cache_dir(run, args.compilation_cache)
    cached_before = cached_programs(cache)
    log = open(run.path("log.txt"), "w")
    speed_before = hardware.speed()
    load_before = os.getloadavg()
    start = time.perf_counter()
    process = runner.start(run, env={**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}, log=log)
    curve, seen, reached, reason = [], 0, None, "limit"
    while True:
        time.sleep(0.5)
        elapsed = time.perf_counter() - start
        rows = read_new_rows(metrics_path, seen)
        seen += len(rows)
        for row in rows:
            if row["kind"] != "val":
                continue
            curve.append({"wall_s": round(elapsed, 1), "step": row["step"],
                          "value": row[args.metric]})
            print(f"  [{name} {elapsed:7.1f}s] step {row['step']:6d}  val {args.metric} "
                  f"{row[args.metric]:.4f}", flush=True)
            if reached is None and row[args.metric] >= args.target:
                reached = elapsed
        if reached is not None:
            reason = "target"
            break
        if process.poll() is not None:
            reason = f"run ended (exit {process.returncode})"
            break
        if elapsed > args.limit:
            break
    if process.poll() is None:
        process.terminate()
        process.wait()
    log.close()
    best = max(curve, key=lambda c: c["value"]) if curve else None
    return {"recipe": name, "command": shlex.join(run.command()), "time_to_target_s": reached,
            "stopped_by": reason, "best_value": best and best["value"],
            "best_at_s": best and best["wall_s"], "validations": len(curve), "curve": curve,
            "compilation_cache": {"mode": args.compilation_cache, "programs_before": cached_before,
                                  "programs_after": cached_programs(cache)},
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "speed_before": speed_before, "speed_after": hardware.speed()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="fast,sasrec_plus", help="comma-separated RECIPES names")
    parser.add_argument("--target", type=float, default=0.18)
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--limit", type=float, default=1200.0, help="seconds per recipe")
    parser.add_argument("--config-overrides", default="", help="extra key=value words for every recipe")
    parser.add_argument("--compilation-cache", dest="compilation_cache", choices=("cold", "warm"),
                        default="cold",
                        help="cold: each run compiles into an empty cache of its own (a first launch); "
                             "warm: the shared cache, which may hold the run's programs (a rerun)")
    parser.add_argument("--workdir-root", dest="workdir_root", default="/tmp/time_to_quality")
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "benchmarks",
                                                       "time_to_quality.json"))
    args = parser.parse_args()
    available = recipes()
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"--recipes: unknown {unknown}; expected names from {sorted(available)}")

    results = []
    for name in names:
        print(f"{name}: until val {args.metric} >= {args.target} or {args.limit:.0f} s", flush=True)
        results.append(run_recipe(name, available[name], args))

    print(f"\n| recipe | time to val {args.metric} >= {args.target} | best val (at s) | validations "
          "| stopped by | compilation cache (programs before / after) | load avg (1 min) before / after "
          "| matmul GFLOP/s before / after |")
    print("|---|---:|---:|---:|---|---|---|---|")
    for r in results:
        reached = f"{r['time_to_target_s']:.0f} s" if r["time_to_target_s"] else "not reached"
        best = f"{r['best_value']:.4f} ({r['best_at_s']:.0f})" if r["curve"] else "-"
        cache = r["compilation_cache"]
        print(f"| {r['recipe']} | {reached} | {best} | {r['validations']} | {r['stopped_by']} | "
              f"{cache['mode']} ({cache['programs_before']} / {cache['programs_after']}) | "
              f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f} | "
              f"{r['speed_before']['matmul_gflops']:.0f} / {r['speed_after']['matmul_gflops']:.0f} |")
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "experiments/benchmarks/time_to_quality.py",
                                 *sys.argv[1:]]),
            "machine": f"{platform.machine()} {platform.system()} {platform.release()}, "
                       f"{os.cpu_count()} CPUs", **hardware.host(), "python": platform.python_version(),
            "target": args.target, "metric": args.metric, "limit_s": args.limit,
            "config_overrides": args.config_overrides, "results": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
