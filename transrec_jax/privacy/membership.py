"""A membership-inference check: can a trained model's losses tell its training users apart?

The loss-threshold attack (Yeom et al., CSF 2018) guesses "member" when a user's loss is low.
Members are the users who trained; non-members are the users the split held out of training,
validation and test entirely (`dataset.holdout_users`: a seeded fraction, drawn from the same
users, so both groups come from one distribution). Each user's loss is the mean next-item
cross-entropy (full softmax, no dropout) over the positions of one window: the last max_len + 1
items of the part of their history that trains (a held-out user: the part that would have;
under dataset.split=cold_items the window keeps the withheld items training never saw).
The attack's AUC (0.5: no better than a coin) needs no threshold: it is the probability that a
random member's loss is below a random non-member's, ties counting half.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax.data.batching import gather_windows
from transrec_jax.models import training_window
from transrec_jax.serving.run import load_run


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a positive scores above a negative) + P(tie) / 2: the Mann-Whitney U statistic from
    average ranks, O(n log n)."""
    scores = np.concatenate([positives, negatives])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, ties share their mean rank
    rank_sum = average_rank[inverse][: len(positives)].sum()
    n, m = len(positives), len(negatives)
    return float((rank_sum - n * (n + 1) / 2) / (n * m))


def user_losses(graphdef, params, dataset, users: np.ndarray, ends: np.ndarray, width: int,
                with_users: bool = False, batch_size: int = 256) -> np.ndarray:
    """Each user's mean next-item loss over the window of `width` items ending at `ends` (offsets
    relative to the user's first item) of their sequence: float [len(users)]."""

    @jax.jit
    def batch_losses(params, seq, user_ids):
        model = nnx.merge(graphdef, params)
        extra = {"users": jnp.broadcast_to(user_ids[:, None], seq.shape)} if with_users else {}
        hidden, targets, weights = model.training_forward(seq, key=None, **extra)
        scores = model.score_all(hidden)
        items = jnp.arange(scores.shape[-1])
        scores = jnp.where((items >= 1) & (items <= model.num_items), scores, -jnp.inf)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(scores), targets[..., None], -1)[..., 0]
        weights = weights * (targets != 0)
        return jnp.sum(jnp.where(weights > 0, nll, 0.0) * weights, -1) / jnp.maximum(weights.sum(-1), 1.0)

    starts = dataset.offsets[users]
    out = []
    for first in range(0, len(users), batch_size):
        rows = slice(first, first + batch_size)
        seq = np.zeros((batch_size, width), np.int32)
        n = len(users[rows])
        seq[:n] = gather_windows(dataset.items, starts[rows], starts[rows] + ends[rows], width)
        ids = np.zeros(batch_size, np.int32)
        ids[:n] = users[rows] + 1
        out.append(np.asarray(batch_losses(params, seq, ids))[:n])
    return np.concatenate(out)


def attack(workdir: str, checkpoint: str = "best") -> dict:
    """The loss-threshold attack on the run in `workdir` (trained with dataset.holdout_users)."""
    run = load_run(workdir, checkpoint)
    split = run.split()
    if split.held_out is None:
        raise ValueError(f"{workdir}: the run held no users out (dataset.holdout_users=0): "
                         "no non-members to attack with")
    train_end = split.train_end if split.train_lengths is None else split.train_lengths
    members = np.flatnonzero(train_end >= 2)
    common = dict(width=training_window(run.config.model),
                  with_users=run.config.model.user_features != "off")
    member_loss = user_losses(run.graphdef, run.params, run.dataset, members,
                              split.train_end[members], **common)
    outsider_loss = user_losses(run.graphdef, run.params, run.dataset, split.held_out,
                                split.held_out_end, **common)
    return {"auc": auc(-member_loss, -outsider_loss), "members": len(members),
            "non_members": len(split.held_out), "member_loss": float(member_loss.mean()),
            "non_member_loss": float(outsider_loss.mean()), "checkpoint_step": run.step}
