"""Output head ablation on ML-1M: tied vs separate item table, every vs last position trained.

  head    tied: scores are dot products with the input item embeddings (SASRec);
          linear: a separate output table (the tutorial "linear head")
  target  every: SASRec's objective, the next item at every position of the window;
          last: only the window's last position (model.name=transformer_recommender)

Both axes are crossed (4 runs per seed) on the same encoder, configs/sasrec.py:ml-1m, with
random training windows for every row (train.window=random), so last-position training sees
all positions over the epochs; budget as in the loss ablation. Last-position training gets
one target per user per epoch, so at equal epochs it sees far fewer targets: that is the
point being measured.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/output_head.py
  python -m transrec_jax.report --sweep=experiments/ablations/output_head.py
"""

import os
import runpy

BASE = "configs/sasrec.py:ml-1m,train.window=random"
AXES = {
    "head": ("model.head", ["tied", "linear"]),
    "target": [
        ("every", {"model.name": "sasrec"}),
        # packed rows put several windows in a row; last-position training reads one per row
        ("last", {"model.name": "transformer_recommender", "train.pack_rows": False}),
    ],
}
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["BUDGET"]
