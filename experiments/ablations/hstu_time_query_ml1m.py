"""HSTU-large's time bias without the target's timestamp, on the ML-1M users with raw timestamps.

In [ZL24]'s code the query time of every position is the timestamp of the item it predicts; at
evaluation, the held-out item's (transrec_jax/models/hstu.py docstring). On ML-1M, where users
rate in same-second bursts, that says which history items were rated with the target. This
runs hstu_time_bias_ml1m.py's `on` arm (HSTU-large, [ZL24]'s 128 log buckets, same data,
101-epoch schedule and protocol, seed 0) with `model.time_query=last_item`: each position
measures time gaps from its own item, so the term keeps the history's gaps and loses the
target's time. Set beside that sweep's `off` and `on` arms (results/hstu_time_bias_ml1m/), it
splits the term's gain into what the gaps between history items give and what knowing the
target's time gives.

Findings: experiments/ablations/README.md (the section named after this file); table:
results/hstu_time_query_ml1m/report.md.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/hstu_time_query_ml1m.py
  python -m transrec_jax.report --sweep=experiments/ablations/hstu_time_query_ml1m.py \
      --out=experiments/ablations/results/hstu_time_query_ml1m
"""

import os
import runpy

BASE = ("configs/hstu.py:local,large,"
        "dataset.path=../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz,"
        "dataset.format=movielens_dat,model.max_len=200,model.time_buckets=128")
AXES = {"time_query": [("last_item", {"model.time_query": "last_item"})]}
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["HSTU_ML1M_BUDGET"]
