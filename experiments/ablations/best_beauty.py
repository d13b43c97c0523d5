"""Toward the best Amazon Beauty configuration: does the ML-1M best carry over, and what moves it.

Starts from the ML-1M table's `best_4blocks` row: configs/sasrec_best.py with 4 blocks in
SASRec's norm placement (SASRec+ with full cross-entropy, ReLU, d = d_ff = 64, 1 head, dropout
0.1, scaled embeddings; lr 3e-3 after a 96-step warm-up, cosine decay to 0, best validation
checkpoint tested; the preset has 8 pre-norm blocks since) on the S3-Rec Beauty split
(preset word `beauty`: max_len 50; 22,363 users, 12,101 items, ~9 items per user). Beauty's
models peak within a few epochs, so the cosine runs over 40 epochs instead of 80. The base
with dropout 0.1 overfitted, so dropout 0.5 is the centre, and the axes are one
regularisation and one capacity knob:

  dropout  model.dropout = model.attention_dropout ∈ {0.5, 0.1}
  blocks   model.num_layers ∈ {4, 2}

Width d = d_ff = 256 (with dropout 0.5) did not train at this lr with SASRec's norm placement
and is not an axis. What the runs found, and what they cost: experiments/ablations/README.md
(section best_beauty.py); the table: results/best_beauty/report.md.

One factor at a time around the base (dropout 0.5, 4 blocks), seed 0; the winner runs with 3
seeds as the `best` row of experiments/reproduce/beauty.py. Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/best_beauty.py
  python -m transrec_jax.report --sweep=experiments/ablations/best_beauty.py \
      --out=experiments/ablations/results/best_beauty
"""

import os
import runpy

BASE = (
    "configs/sasrec_best.py:beauty,model.num_layers=4,model.norm_placement=sasrec,"
    "model.dropout=0.5,model.attention_dropout=0.5"
)
AXES = {
    "dropout": [(str(p), {"model.dropout": p, "model.attention_dropout": p}) for p in (0.5, 0.1)],
    "blocks": ("model.num_layers", [4, 2]),
}
GRID = "one_at_a_time"
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["cosine_budget"](40)
