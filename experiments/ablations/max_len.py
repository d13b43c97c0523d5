"""History length ablation: how many recent items SASRec+ on ML-1M should see.

model.max_len ∈ {50, 100, 200}: training windows and evaluation histories are cut to the last
max_len items (ML-1M users have 165 interactions on average). Everything else is
configs/sasrec.py:ml-1m; budget as in the loss ablation.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/max_len.py
  python -m transrec_jax.report --sweep=experiments/ablations/max_len.py
"""

BASE = "configs/sasrec.py:ml-1m"
AXES = {"max_len": ("model.max_len", [50, 100, 200])}
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
