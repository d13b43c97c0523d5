"""Architecture ablation: depth, heads, width and norm placement of SASRec+ on ML-1M.

One factor at a time around configs/sasrec.py (2 blocks, 1 head, d=64, pre-norm): each axis
varies alone while the others stay at that base, 9 runs per seed. `d` sets the feed-forward
width to d as well (SASRec's choice). GRID = "product" runs the full 3×3×3×3 grid instead (81
runs per seed; the one-at-a-time runs are among them, with the same names). Same budget as
the loss ablation: at most 200 epochs, early stopping after 40 epochs without validation gain.

  blocks  model.num_layers ∈ {1, 2, 4}
  heads   model.num_heads ∈ {1, 2, 4}
  d       model.d_model = model.d_ff ∈ {32, 64, 128}
  norm    model.norm_placement ∈ {pre, post, sasrec}: pre-LN, post-LN, SASRec's own placement

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/architecture.py
  python -m transrec_jax.report --sweep=experiments/ablations/architecture.py
"""

import os
import runpy

BASE = "configs/sasrec.py:ml-1m"
AXES = {
    "blocks": ("model.num_layers", [1, 2, 4]),
    "heads": ("model.num_heads", [1, 2, 4]),
    "d": [(str(d), {"model.d_model": d, "model.d_ff": d}) for d in (32, 64, 128)],
    "norm": ("model.norm_placement", ["pre", "post", "sasrec"]),
}
GRID = "one_at_a_time"
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["BUDGET"]
