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

BASE = "configs/sasrec.py:ml-1m"
AXES = {"positions": ("model.positions", ["learned", "sinusoidal", "rotary", "none"])}
SEEDS = (0,)
BUDGET = {
    "train.num_epochs": 200,
    "train.num_steps": 0,
    "train.batch_size": 128,
    "train.learning_rate": 1e-3,
    "train.eval_every_epochs": 4,
    "train.eval_every_steps": 0,
    "train.patience": 10,
}
