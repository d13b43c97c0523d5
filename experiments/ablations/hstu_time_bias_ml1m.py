"""HSTU-large's relative time bias on or off, on the ML-1M users whose raw timestamps we have.

The ml-1m-full file carries no timestamps, so the table's HSTU-large rows
(experiments/reproduce/ml1m_full.py) run without the time term of [ZL24]'s runs, one of the
measurable parts of the `hstu_large` row's distance to the published figure
(experiments/reproduce/ml1m_full.md). `../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz`
holds the raw ratings, with timestamps, of users 1-2999 (49% of the interactions, 3,615 items).
This trains configs/hstu.py's HSTU-large on them, without the term and with [ZL24]'s 128 log
buckets (`model.time_buckets=128`), seeds 0 and 1, with the table's 101-epoch schedule (Adam
b2 0.98, no early stop) and our protocol (best validation checkpoint tested). The difference is
what the term is worth on ML-1M data; ML-100K's is hstu_time_bias.py.

Findings: experiments/ablations/README.md (the section named after this file); table:
results/hstu_time_bias_ml1m/report.md.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/hstu_time_bias_ml1m.py
  python -m transrec_jax.report --sweep=experiments/ablations/hstu_time_bias_ml1m.py \
      --out=experiments/ablations/results/hstu_time_bias_ml1m
"""

import os
import runpy

BASE = ("configs/hstu.py:local,large,"
        "dataset.path=../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz,"
        "dataset.format=movielens_dat,model.max_len=200")
AXES = {"time_bias": [("off", {}), ("on", {"model.time_buckets": 128})]}
SEEDS = (0, 1)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["HSTU_ML1M_BUDGET"]
