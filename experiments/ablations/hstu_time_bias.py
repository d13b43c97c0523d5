"""HSTU's relative time bias (`model.time_buckets=128`, the authors' 128 log buckets) on or off.

The ML-1M files here carry no timestamps, so the HSTU rows of experiments/reproduce/ml1m_full.py
run without the time term the authors' ML-1M runs had. ML-100K has timestamps: this measures what
the term is worth there, on configs/hstu.py (the authors' ML-1M recipe: 2 blocks, d = 50, 128
negatives per position, 101 epochs, best validation checkpoint), the run without it against
the one with it (one seed).

What it found: experiments/ablations/README.md (section hstu_time_bias.py); the table:
results/hstu_time_bias/report.md.

Run:
  python -m transrec_jax.sweep --sweep=experiments/ablations/hstu_time_bias.py
  python -m transrec_jax.report --sweep=experiments/ablations/hstu_time_bias.py \
      --out=experiments/ablations/results/hstu_time_bias
"""

BASE = "configs/hstu.py:ml-100k"
AXES = {"time_bias": [("off", {}), ("on", {"model.time_buckets": 128})]}
SEEDS = (0,)
BUDGET = {"train.eval_every_epochs": 1, "train.eval_every_steps": 0}  # configs/hstu.py's own 101 epochs
