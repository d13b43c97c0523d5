"""HSTU's (2 blocks, the `hstu` row) relative time bias on or off, on the ML-1M users with raw timestamps.

hstu_time_bias_ml1m.py measures the term with HSTU-large. [ZL24]'s `hstu` figure has the term
too (research/modeling/sequential/encoder_utils.py line 89, which their gin files leave on),
yet the table's `hstu` row, without it, already sits near that figure
(experiments/reproduce/ml1m_full.md). This is the same ablation with configs/hstu.py's 2-block
HSTU: whether the term lifts the small model as much as the large one tells whether the
missing term accounts for the `hstu_large` row's distance alone or the two published figures
hold something else. Same data (`../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz`,
users 1-2999), schedule (101 epochs, Adam b2 0.98, no early stop) and protocol (best validation
checkpoint tested), without the term and with [ZL24]'s 128 log buckets, three seeds each.

Findings: experiments/ablations/README.md (the section named after this file); table:
results/hstu_time_bias_ml1m_small/report.md.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/hstu_time_bias_ml1m_small.py
  python -m transrec_jax.report --sweep=experiments/ablations/hstu_time_bias_ml1m_small.py \
      --out=experiments/ablations/results/hstu_time_bias_ml1m_small
"""

import os
import runpy

BASE = ("configs/hstu.py:local,"
        "dataset.path=../shared/data/ml-1m/ratings_users0001-2999_partial.dat.gz,"
        "dataset.format=movielens_dat,model.max_len=200")
AXES = {"time_bias": [("off", {}), ("on", {"model.time_buckets": 128})]}
SEEDS = (0, 1, 2)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["HSTU_ML1M_BUDGET"]
