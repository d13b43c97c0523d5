"""The one training budget every shipped ablation row shares, so rows stay comparable.

At most 200 epochs of batch 128 at lr 1e-3, validation every 4 epochs, early stopping after
10 validations (40 epochs) without NDCG@10 gain. Change it here (or per invocation with
`--set=train.num_epochs=...`, which the report states above the table).
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
