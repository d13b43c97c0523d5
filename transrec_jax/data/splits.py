"""Train / validation / test splits as positions into the ragged sequences (no copies).

For user u with sequence s = items[offsets[u]:offsets[u+1]] a split stores, relative to
offsets[u]:
- `train_end[u]`: training uses s[:train_end[u]];
- `val_pos[u]`: the validation target is s[val_pos[u]], predicted from s[:val_pos[u]];
- `test_pos[u]`: the test target is s[test_pos[u]], predicted from s[:test_pos[u]]
  (which includes the validation item).
A position of -1 means the user has no such example.

leave_one_out — last item test, second-to-last validation, the rest train. Users with
fewer than 3 interactions keep their whole sequence for training and are neither
validated nor tested (SASRec's rule); their count is in `Split.summary()`.

next_k — the last k items of each user are the test targets (a set, predicted from
everything before them) and the k before those the validation targets; `test_pos` /
`val_pos` point at the first item of each block, so the single-target evaluators read the
first held-out item (the next-item protocol on the same split). Users with at most 2k
interactions only train.

temporal — global cut points in time (the leakage-free protocol): training sees only
interactions with t < val_time; a user's validation target is their first interaction in
[val_time, test_time) and their test target their first interaction at t >= test_time,
each predicted from everything the user did before it.

cold_items — leave-one-out positions, and a fraction `dataset.cold_item_fraction` of the items
with at least one interaction, drawn uniformly from config.seed, is `withheld`: no training data
contains one. Training reads each user's training part with every withheld item removed
(`training_view`: one filtered copy of the training interactions with its own offsets), so no
training window (last, random, shifted, packed) has one as input or target, and training counts
(the popularity baseline, the popularity sampler) see them 0 times. Validation and test are
leave-one-out's: a target that is a withheld item stays, its user is evaluated and the target is
ranked against the full catalogue — the new-item case this split measures. Evaluation histories
keep withheld items where they happened (a new item the user met after training; the model sees
its untrained embedding), and history masking excludes them like any other history item. The
losses that rank against the catalogue (full softmax, uniformly sampled negatives) still score
a withheld item's output row as a negative: an id-only model never learns more about a new item.
`Split.summary()` counts the withheld items and the val/test users whose target is one.

holdout_users (`dataset.holdout_users` > 0, any split) — a fraction of the users, drawn uniformly
from config.seed, is `held_out`: neither trained (train_end 0) nor validated nor tested, so a
model never saw them (the non-members of privacy/membership.py's attack). `held_out_end` keeps the
train_end each would have had.

train_on_val_item (`dataset.train_on_val_item`, leave_one_out only) — training reads everything
but the test item, the validation item included (as [ZL24] train on ML-1M); `val_trained` marks
the split, so the test evaluates the final state instead of a checkpoint validation picked.

max_history (`dataset.max_history` > 0, any split) — every validation and test history is its
last max_history items before the target: the model's input and the history masking alike (the
few-interaction regime; training is unchanged).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError


@dataclasses.dataclass
class Split:
    kind: str
    train_end: np.ndarray  # int64[num_users]
    val_pos: np.ndarray  # int64[num_users], -1 = none
    test_pos: np.ndarray  # int64[num_users], -1 = none
    num_targets: int = 1  # held-out items per example: s[pos : pos + num_targets]
    max_history: int = 0  # > 0: evaluation histories are s[max(0, pos - max_history) : pos]
    withheld: np.ndarray | None = None  # cold_items: sorted item ids no training data contains
    train_lengths: np.ndarray | None = None  # cold_items: training items per user, withheld removed
    withheld_targets: dict = dataclasses.field(default_factory=dict)  # {"val"|"test": users}
    held_out: np.ndarray | None = None  # holdout_users: sorted user ids outside training and evaluation
    held_out_end: np.ndarray | None = None  # their train_end before they were held out
    val_trained: bool = False  # train_on_val_item: training reads the validation item too

    def eval_users(self, part: str) -> np.ndarray:
        pos = self.val_pos if part == "val" else self.test_pos
        return np.flatnonzero(pos >= 0)

    def summary(self) -> dict:
        held_out = {"num_targets": self.num_targets} if self.num_targets > 1 else {}
        train = self.train_end if self.train_lengths is None else self.train_lengths
        cold = {} if self.withheld is None else {
            "withheld_items": len(self.withheld),
            "val_users_withheld_target": self.withheld_targets["val"],
            "test_users_withheld_target": self.withheld_targets["test"],
        }
        return {
            "split": self.kind,
            **held_out,
            "train_interactions": int(train.sum()),
            "train_users": int((train >= 2).sum()),
            "val_users": int((self.val_pos >= 0).sum()),
            "test_users": int((self.test_pos >= 0).sum()),
            **cold,
            **({} if self.held_out is None else {"held_out_users": len(self.held_out)}),
            **({"max_history": self.max_history} if self.max_history else {}),
            **({"val_item_trained": True} if self.val_trained else {}),
        }


def make_split(ds: SequenceDataset, dataset_cfg, seed: int | None = None) -> Split:
    """The split config.dataset names; `seed` (config.seed) draws cold_items' withheld items."""
    if dataset_cfg.split == "leave_one_out":
        split = leave_one_out(ds)
    elif dataset_cfg.split == "next_k":
        split = next_k(ds, dataset_cfg.next_k)
    elif dataset_cfg.split == "cold_items":
        if seed is None:
            raise ValueError("dataset.split='cold_items' draws its withheld items from config.seed: "
                             "expected make_split(..., seed=config.seed)")
        split = cold_items(ds, dataset_cfg.cold_item_fraction, seed)
    else:
        split = temporal(ds, dataset_cfg.val_time, dataset_cfg.test_time)
    split.max_history = dataset_cfg.max_history
    if dataset_cfg.train_on_val_item:
        split = train_on_val_item(split)
    if dataset_cfg.holdout_users:
        split = hold_out_users(split, dataset_cfg.holdout_users, seed)
    if not (split.test_pos >= 0).any():
        raise DataError(
            f"{ds.name}: the {split.kind} split leaves no user with a test item "
            "(sequences too short, or config.dataset.test_time after the last interaction)"
        )
    return split


def leave_one_out(ds: SequenceDataset) -> Split:
    n = ds.lengths
    ok = n >= 3
    return Split(
        kind="leave_one_out",
        train_end=np.where(ok, n - 2, n),
        val_pos=np.where(ok, n - 2, -1),
        test_pos=np.where(ok, n - 1, -1),
    )


def train_on_val_item(split: Split) -> Split:
    """`split` (leave_one_out) with every validated user training up to their test item."""
    if split.kind != "leave_one_out":
        raise ValueError(f"dataset.train_on_val_item: only with a leave_one_out split, not {split.kind!r}")
    train_end = np.where(split.val_pos >= 0, split.test_pos, split.train_end)
    return dataclasses.replace(split, train_end=train_end, val_trained=True)


COLD_ITEMS_STREAM = (2028, 3)  # the withheld items' own random stream under config.seed


def cold_items(ds: SequenceDataset, fraction: float, seed: int) -> Split:
    """Leave-one-out, with round(fraction * n) of the n items that have an interaction (at least
    1, at most n - 1) withheld from training; drawn uniformly from (seed, COLD_ITEMS_STREAM)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"config.dataset.cold_item_fraction={fraction}: expected a value in (0, 1)")
    split = leave_one_out(ds)
    present = np.unique(ds.items)
    count = min(max(round(fraction * len(present)), 1), len(present) - 1)
    rng = np.random.default_rng([seed, *COLD_ITEMS_STREAM])
    withheld = np.sort(rng.choice(present, count, replace=False))
    users = np.repeat(np.arange(ds.num_users), ds.lengths)
    kept = _in_training(ds, split.train_end) & ~np.isin(ds.items, withheld)
    return dataclasses.replace(
        split, kind="cold_items", withheld=withheld,
        train_lengths=np.bincount(users[kept], minlength=ds.num_users).astype(np.int64),
        withheld_targets={part: int(np.isin(_targets(ds, pos), withheld).sum())
                          for part, pos in (("val", split.val_pos), ("test", split.test_pos))},
    )


HOLDOUT_USERS_STREAM = (2028, 4)  # the held-out users' own random stream under config.seed


def hold_out_users(split: Split, fraction: float, seed: int | None) -> Split:
    """`split` with round(fraction * users) of its users who train (at least 1), drawn uniformly
    from (seed, HOLDOUT_USERS_STREAM), taken out of training, validation and test."""
    if seed is None:
        raise ValueError("dataset.holdout_users draws its users from config.seed: expected "
                         "make_split(..., seed=config.seed)")
    train = split.train_end if split.train_lengths is None else split.train_lengths
    trained = np.flatnonzero(train >= 2)
    count = min(max(round(fraction * len(trained)), 1), len(trained) - 1)
    rng = np.random.default_rng([seed, *HOLDOUT_USERS_STREAM])
    users = np.sort(rng.choice(trained, count, replace=False))
    out = dataclasses.replace(split, train_end=split.train_end.copy(), val_pos=split.val_pos.copy(),
                              test_pos=split.test_pos.copy(), held_out=users,
                              held_out_end=split.train_end[users].copy())
    out.train_end[users] = 0
    out.val_pos[users] = out.test_pos[users] = -1
    if split.train_lengths is not None:
        out.train_lengths = split.train_lengths.copy()
        out.train_lengths[users] = 0
    return out


def training_view(ds: SequenceDataset, split: Split) -> tuple[SequenceDataset, np.ndarray]:
    """(sequences, train_end) that training reads: `ds` and split.train_end, or, when the split
    withholds items, each user's training part without them (own offsets, train_end = their
    lengths): batchers and training counts then need no idea of withheld items."""
    if split.withheld is None:
        return ds, split.train_end
    kept = _in_training(ds, split.train_end) & ~np.isin(ds.items, split.withheld)
    view = dataclasses.replace(
        ds, offsets=np.concatenate([[0], np.cumsum(split.train_lengths)]), items=ds.items[kept],
        timestamps=None if ds.timestamps is None else ds.timestamps[kept])
    return view, split.train_lengths


def _targets(ds: SequenceDataset, pos: np.ndarray) -> np.ndarray:
    """The target item of every user with one (pos >= 0)."""
    users = np.flatnonzero(pos >= 0)
    return ds.items[ds.offsets[users] + pos[users]]


def _in_training(ds: SequenceDataset, train_end: np.ndarray) -> np.ndarray:
    """bool[num_interactions]: the interaction lies in its user's training part."""
    pos = np.arange(len(ds.items)) - np.repeat(ds.offsets[:-1], ds.lengths)
    return pos < np.repeat(train_end, ds.lengths)


def next_k(ds: SequenceDataset, k: int) -> Split:
    """Hold out each user's last k items for test and the k before them for validation."""
    if k < 1:
        raise ValueError(f"config.dataset.next_k={k}: expected a positive integer")
    n = ds.lengths
    ok = n > 2 * k
    return Split(
        kind="next_k",
        train_end=np.where(ok, n - 2 * k, n),
        val_pos=np.where(ok, n - 2 * k, -1),
        test_pos=np.where(ok, n - k, -1),
        num_targets=k,
    )


def temporal(ds: SequenceDataset, val_time: int, test_time: int) -> Split:
    if ds.timestamps is None:
        raise DataError(f"{ds.name}: a temporal split needs timestamps; this dataset has none")
    ts = ds.timestamps
    # Per user, the number of interactions strictly before a cut = position of the first one after it.
    before_val = _count_before(ts, ds.offsets, val_time)
    before_test = _count_before(ts, ds.offsets, test_time)
    n = ds.lengths
    has_val = (before_val < n) & (before_val < before_test) & (before_val > 0)
    has_test = (before_test < n) & (before_test > 0)
    return Split(
        kind="temporal",
        train_end=before_val,
        val_pos=np.where(has_val, before_val, -1),
        test_pos=np.where(has_test, before_test, -1),
    )


def _count_before(ts: np.ndarray, offsets: np.ndarray, cut: int) -> np.ndarray:
    """Interactions per user with t < cut (each user's timestamps are sorted)."""
    user = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return np.bincount(user[ts < cut], minlength=len(offsets) - 1).astype(np.int64)
