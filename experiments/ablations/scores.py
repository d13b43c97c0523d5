"""Cosine item scores with a temperature, against SASRec's dot product, toward ML-1M 0.190.

HSTU's generative-recommenders scores items by cosine(user vector, item embedding) / 0.05
(`model.score_temperature`): both sides L2-normalised, so an item's score no longer grows
with its embedding's norm. Screened on best_ml1m_screen.py's proxy (configs/sasrec_best.py
with 4 pre-norm blocks, its cosine lr schedule squeezed to 40 epochs), whose base run is this
sweep's temperature=0 level (the same config, copied in from that sweep's runs).

  temperature  model.score_temperature ∈ {0 (dot product), 0.05, 0.1}

Run (one seed):
  python -m transrec_jax.sweep --sweep=experiments/ablations/scores.py
  python -m transrec_jax.report --sweep=experiments/ablations/scores.py \
      --out=experiments/ablations/results/scores
What it found: experiments/ablations/README.md (section scores.py); the table:
results/scores/report.md.
"""

import os
import runpy

BASE = "configs/sasrec_best.py:ml-1m,model.num_layers=4"
AXES = {
    "temperature": [(str(t), {"model.score_temperature": t}) for t in (0.0, 0.05, 0.1)],
}
GRID = "one_at_a_time"
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["cosine_budget"](40)
