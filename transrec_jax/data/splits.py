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

    def eval_users(self, part: str) -> np.ndarray:
        pos = self.val_pos if part == "val" else self.test_pos
        return np.flatnonzero(pos >= 0)

    def summary(self) -> dict:
        held_out = {"num_targets": self.num_targets} if self.num_targets > 1 else {}
        return {
            "split": self.kind,
            **held_out,
            "train_interactions": int(self.train_end.sum()),
            "train_users": int((self.train_end >= 2).sum()),
            "val_users": int((self.val_pos >= 0).sum()),
            "test_users": int((self.test_pos >= 0).sum()),
        }


def make_split(ds: SequenceDataset, dataset_cfg) -> Split:
    if dataset_cfg.split == "leave_one_out":
        split = leave_one_out(ds)
    elif dataset_cfg.split == "next_k":
        split = next_k(ds, dataset_cfg.next_k)
    else:
        split = temporal(ds, dataset_cfg.val_time, dataset_cfg.test_time)
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
