"""History length ablation: how many recent items SASRec+ on ML-1M should see.

model.max_len ∈ {50, 100, 200}: training windows and evaluation histories are cut to the last
max_len items (ML-1M users have 165 interactions on average). Everything else is
configs/sasrec.py:ml-1m; budget as in the loss ablation.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/max_len.py
  python -m transrec_jax.report --sweep=experiments/ablations/max_len.py
"""

import os
import runpy

BASE = "configs/sasrec.py:ml-1m"
AXES = {"max_len": ("model.max_len", [50, 100, 200])}
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["BUDGET"]
