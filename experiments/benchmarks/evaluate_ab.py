"""Interleaved A/B of `eval.length_buckets`: ML-1M full-ranking test evaluation in one process.

Run (from the repository root; about a minute per round):
  .venv/bin/python experiments/benchmarks/evaluate_ab.py [--buckets=1,4,8] [--rounds=3]

One `Evaluator` per bucket count over all 6,040 ML-1M test users (`configs/sasrec.py:ml-1m`,
SASRec at initialisation, history masked); each is timed cold (first pass: trace + compiles,
one per bucket width), then the variants take turns for --rounds warm passes, so machine-load
drift hits them alike. The metrics must be identical across variants (printed). Output: a
Markdown table and --out (JSON).
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
    parser.add_argument("--buckets", default="1,4,8", help="comma-separated eval.length_buckets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "benchmarks",
                                                       "evaluate_ab.json"))
    args = parser.parse_args()
    from transrec_jax import host_memory

    host_memory.keep_freed_memory()  # as transrec_jax.main does, before JAX starts threads
    import jax

    from configs import sasrec
    from transrec_jax import evaluate, sharding, train
    from transrec_jax.data import load, splits

    os.chdir(REPO)  # the preset's data path is relative to the repository root
    config = sasrec.get_config("ml-1m")
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    graphdef, _, state = train.init_state(config, dataset.num_items, 1, jax.random.key(0))
    mesh = sharding.make_mesh(config.mesh)
    variants = [int(v) for v in args.buckets.split(",")]
    evaluators, cold, warm, values = {}, {}, {v: [] for v in variants}, {}
    for v in variants:
        config.eval.length_buckets = v
        evaluators[v] = evaluate.Evaluator(config, dataset, split, "test", graphdef, mesh)
        start = time.perf_counter()
        values[v] = evaluators[v](state["params"])
        cold[v] = time.perf_counter() - start
    for _ in range(args.rounds):
        for v in variants:
            start = time.perf_counter()
            evaluators[v](state["params"])
            warm[v].append(time.perf_counter() - start)

    base = statistics.median(warm[variants[0]])
    rows = []
    print(f"| eval.length_buckets | cold pass (s) | warm pass, median of {args.rounds} (s) | "
          f"speed-up vs {variants[0]} | HR@10 | NDCG@10 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        median = statistics.median(warm[v])
        rows.append({"length_buckets": v, "cold_s": cold[v], "warm_s": warm[v], "warm_median_s": median,
                     "speedup": base / median, "hr@10": values[v]["hr@10"],
                     "ndcg@10": values[v]["ndcg@10"]})
        print(f"| {v} | {cold[v]:.2f} | {median:.2f} | {base / median:.2f}x | "
              f"{values[v]['hr@10']:.6f} | {values[v]['ndcg@10']:.6f} |")
    from transrec_jax import hardware

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([".venv/bin/python", "experiments/benchmarks/evaluate_ab.py",
                                   *sys.argv[1:]]),
              "users": evaluators[variants[0]].batcher.num_users, "load_average": os.getloadavg(),
              "cpus": os.cpu_count(), **hardware.host(), "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"load average {os.getloadavg()[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
