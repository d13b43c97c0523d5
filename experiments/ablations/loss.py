"""Loss ablation: which training loss makes SASRec best on ML-1M, at one fixed budget?

Only the loss changes; the model is SASRec+ from configs/sasrec.py (pre-norm, 1 head, d=64,
2 blocks, max_len 200) and every row trains under BUDGET: at most 200 epochs of batch 128
at lr 1e-3, validation every 4 epochs, early stopping after 10 validations (40 epochs)
without NDCG@10 gain, test metrics from the best validation checkpoint.

  bce_1neg        binary cross-entropy, 1 uniform negative per position (original SASRec)
  bce_256neg      BCE with 256 negatives per position: gBCE's row without its calibration
  ssm_16/128/1024 sampled softmax over the positive and N uniform negatives drawn per sequence
  gbce_256        gBCE, 256 negatives, t = 0.75 (gSASRec, Petrov & Macdonald 2023)
  ce_full         softmax cross-entropy over the whole catalog (SASRec+)

Run (then the table and plots):
  python -m transrec_jax.sweep --sweep=experiments/ablations/loss.py
  python -m transrec_jax.report --sweep=experiments/ablations/loss.py --out=experiments/ablations/results/loss
A cheaper budget for every row: --set=train.num_epochs=50 (with the same flag to report).
"""

import os
import runpy

BASE = "configs/sasrec.py:ml-1m"
AXES = {
    "loss": [
        ("bce_1neg", {"loss.name": "bce", "loss.num_negatives": 1}),
        ("bce_256neg", {"loss.name": "bce", "loss.num_negatives": 256}),
        ("ssm_16", {"loss.name": "sampled_softmax", "loss.num_negatives": 16}),
        ("ssm_128", {"loss.name": "sampled_softmax", "loss.num_negatives": 128}),
        ("ssm_1024", {"loss.name": "sampled_softmax", "loss.num_negatives": 1024}),
        ("gbce_256", {"loss.name": "gbce", "loss.num_negatives": 256, "loss.gbce_t": 0.75}),
        ("ce_full", {"loss.name": "ce"}),
    ],
}
SEEDS = (0,)
BUDGET = runpy.run_path(os.path.join(os.path.dirname(__file__), "budget.py"))["BUDGET"]
