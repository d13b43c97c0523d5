"""The one training budget every shipped ablation row shares, so rows stay comparable.

At most 200 epochs of batch 128 at lr 1e-3, validation every 4 epochs, early stopping after
10 validations (40 epochs) without NDCG@10 gain. Change it here (or per invocation with
`--set=train.num_epochs=...`, which the report states above the table).

The best_* sweeps train instead by cosine_budget: configs/sasrec_best.py's schedule run to its end;
the HSTU sweeps on ML-1M by HSTU_ML1M_BUDGET, the ML-1M (3,706 items) table's HSTU schedule.
"""

BUDGET = {
    "train.num_epochs": 200,
    "train.num_steps": 0,
    "train.batch_size": 128,
    "train.learning_rate": 1e-3,
    "train.eval_every_epochs": 4,
    "train.eval_every_steps": 0,
    "train.patience": 10,
}


def cosine_budget(num_epochs: int) -> dict:
    """The reproduction tables' batch, Adam and per-epoch validation, trained by
    configs/sasrec_best.py's schedule (lr 3e-3, 96-step warm-up, cosine decay to 0 over
    num_epochs) to its end: a cosine schedule has no sensible early stop."""
    return {
        "train.batch_size": 128,
        "train.adam_b2": 0.999,
        "train.num_steps": 0,
        "train.eval_every_epochs": 1,
        "train.eval_every_steps": 0,
        "train.num_epochs": num_epochs,
        "train.learning_rate": 3e-3,
        "train.warmup_steps": 96,
        "train.schedule": "cosine",
        "train.patience": 0,
    }


# experiments/reproduce/ml1m_full.py's HSTU schedule: [ZL24]'s 101 epochs with Adam b2 0.98 and
# no early stop, validated every epoch (the best validation checkpoint is tested)
HSTU_ML1M_BUDGET = {"train.num_epochs": 101, "train.adam_b2": 0.98, "train.patience": 0,
                    "train.eval_every_epochs": 1, "train.eval_every_steps": 0}
