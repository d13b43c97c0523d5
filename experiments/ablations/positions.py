"""Position ablation: how SASRec+ on ML-1M learns where an item sits in the history.

  learned     a trained embedding per position (SASRec)
  sinusoidal  fixed sine/cosine features (the original Transformer)
  rotary      RoPE: queries and keys rotated by position inside attention
  none        no position signal beyond the causal mask

Everything else is configs/sasrec.py:ml-1m; budget as in the loss ablation.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/positions.py
  python -m transrec_jax.report --sweep=experiments/ablations/positions.py
"""

import os
import runpy

BASE = "configs/sasrec.py:ml-1m"
AXES = {"positions": ("model.positions", ["learned", "sinusoidal", "rotary", "none"])}
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["BUDGET"]
