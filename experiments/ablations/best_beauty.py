"""Toward the best Amazon Beauty configuration: does the ML-1M best carry over, and what moves it.

Starts from the ML-1M table's `best_4blocks` row: configs/sasrec_best.py with 4 blocks in
SASRec's norm placement (SASRec+ with full cross-entropy, ReLU, d = d_ff = 64, 1 head, dropout
0.1, scaled embeddings; lr 3e-3 after a 96-step warm-up, cosine decay to 0, best validation
checkpoint tested; the preset has 8 pre-norm blocks since) on the S3-Rec Beauty split
(preset word `beauty`: max_len 50; 22,363 users, 12,101 items, ~9 items per user). Beauty is
~30x sparser than ML-1M and its models peak within a few epochs (the reproduction table's
sampled-softmax row: validation NDCG@10 best at epoch 3 of 200), so the cosine runs over 40
epochs instead of 80. The base ran with dropout 0.1 first and overfitted (validation best at
epoch 6, then falling); with dropout 0.5 it did not, so dropout 0.5 is the centre and the axes
are one regularisation and one capacity knob:

  dropout  model.dropout = model.attention_dropout ∈ {0.5, 0.1}
  blocks   model.num_layers ∈ {4, 2}

Width d = d_ff = 256 (with dropout 0.5) did not train at this lr with SASRec's norm placement,
as 8 blocks did not on ML-1M: the loss stayed at 8.4-9.1 and validation NDCG@10 near 0.01 for
6 epochs (popularity: 0.005), at 70 s an epoch on one core; it was stopped and is not an axis.

One factor at a time around the base (dropout 0.5, 4 blocks), seed 0; the winner runs with 3
seeds as the `best` row of experiments/reproduce/beauty.py. Measured on the 2-core Zen 5 box,
one core per run: ~16 s an epoch with 4 blocks (11 min a run). Run:
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
