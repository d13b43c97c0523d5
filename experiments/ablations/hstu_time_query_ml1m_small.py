"""HSTU's (2 blocks) time bias without the target's timestamp, on the ML-1M users with raw timestamps.

hstu_time_query_ml1m.py for configs/hstu.py's 2-block HSTU (the table's `hstu` row):
hstu_time_bias_ml1m_small.py's `on` arm with `model.time_query=last_item`, so that each position
measures time gaps from its own item, not from the timestamp of the item it predicts. Set beside
that sweep's `off` and `on` arms (results/hstu_time_bias_ml1m_small/), it splits the small
model's gain from the term as hstu_time_query_ml1m.py does the large one's.

Findings: experiments/ablations/README.md (the section named after hstu_time_query_ml1m.py);
table: results/hstu_time_query_ml1m_small/report.md.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/hstu_time_query_ml1m_small.py
  python -m transrec_jax.report --sweep=experiments/ablations/hstu_time_query_ml1m_small.py \
      --out=experiments/ablations/results/hstu_time_query_ml1m_small
"""

import os
import runpy

BASE = ("configs/hstu.py:local,"
        "dataset.path=../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz,"
        "dataset.format=movielens_dat,model.max_len=200,model.time_buckets=128")
AXES = {"time_query": [("last_item", {"model.time_query": "last_item"})]}
SEEDS = (0, 1, 2)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["HSTU_ML1M_BUDGET"]
