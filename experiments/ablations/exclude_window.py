"""Leaving each training row's other items out of the softmax (`loss.exclude_window`).

Evaluation ranks only items outside the user's history, yet full CE also pushes down the
user's own other items at every position. SASRec+'s 3000-negative code never samples them
(its negatives come from outside the user's sequence), and our `sasrec_plus_ss3000_unseen`
row, drawn that way, learned faster than the uniform draw. This screens the same exclusion for
full CE on best_ml1m_screen.py's proxy (configs/sasrec_best.py with 4 blocks, 40 epochs of
cosine decay, seed 0), one run against that screen's base run (results/best_ml1m_screen/).
Its run trained unpacked rows (slower; the same losses): it predates the exclusion per
segment of a packed row, and its recorded settings keep it that way.

What it found: experiments/ablations/README.md (section exclude_window.py); the table:
results/exclude_window/report.md.

Run (one seed):
  python -m transrec_jax.sweep --sweep=experiments/ablations/exclude_window.py
  python -m transrec_jax.report --sweep=experiments/ablations/exclude_window.py \
      --out=experiments/ablations/results/exclude_window
"""

import os
import runpy

BASE = "configs/sasrec_best.py:ml-1m,model.num_layers=4"
AXES = {"exclude_window": [("on", {"loss.exclude_window": True, "train.pack_rows": False})]}
GRID = "one_at_a_time"
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["cosine_budget"](40)
