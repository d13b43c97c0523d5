"""Peak memory and time to prepare an ML-20M-sized dataset (138k users, ~20M interactions).

The synthetic generator stands in for ML-20M (same users and interactions; ids are ints),
then the standard preprocessing (stable sort, 5-core, remap) and the cache write run as for
any source. Peak RSS is the process's high-water mark (getrusage), generation included.

  python experiments/benchmarks/preprocess_memory.py [--users=138493 --items=26744]
Prints a table and writes experiments/benchmarks/preprocess_memory.json.
"""

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

from transrec_jax import config as config_lib
from transrec_jax import hardware
from transrec_jax.data import load, preprocess, synthetic


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--min_len", type=int, default=20)
    parser.add_argument("--max_len", type=int, default=270)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "preprocess_memory.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    c = config_lib.base_config()
    c.dataset.synthetic.update(num_users=args.users, num_items=args.items, num_topics=50,
                               min_len=args.min_len, max_len=args.max_len)
    c.dataset.update(min_user_interactions=5, min_item_interactions=5)
    t0 = time.perf_counter()
    raw = synthetic.generate(c.dataset.synthetic, seed=0)
    t1 = time.perf_counter()
    ds = preprocess.preprocess(raw, c.dataset)
    del raw
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        load._write_cache(os.path.join(tmp, "x.npz"), ds)
    t3 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "users": ds.num_users, "items": ds.num_items, "interactions": int(len(ds.items)),
        "generate_s": t1 - t0, "preprocess_s": t2 - t1, "cache_write_s": t3 - t2,
        "peak_rss_mb": peak_mb, "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", "experiments/benchmarks/preprocess_memory.py", *sys.argv[1:]]),
        **hardware.host(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
    }
    print("| users | items | interactions | generate s | preprocess s | cache s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {row['users']:,} | {row['items']:,} | {row['interactions']:,} | {row['generate_s']:.1f} "
          f"| {row['preprocess_s']:.1f} | {row['cache_write_s']:.1f} | {peak_mb:,.0f} |")
    with open(args.out, "w") as f:
        json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
