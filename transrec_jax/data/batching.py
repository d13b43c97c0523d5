"""Seeded host-side batchers with fixed shapes, so `jit` compiles each step once.

Training rows are windows of `max_len + 1` items (the model's inputs plus the shifted
target; `width` sets another length, e.g. max_len + next_k for the encoder-decoder),
right-aligned and left-padded with 0. Evaluation rows are the last `max_len` history items
before a target, plus the user's whole history for masking, padded to a fixed batch size
with a `valid` mask.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.splits import Split


def gather_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Rows items[max(start, end - width):end], right-aligned in a zero-padded [n, width] array."""
    idx = ends[:, None] - width + np.arange(width)[None, :]
    valid = idx >= starts[:, None]
    return np.where(valid, items[np.where(valid, idx, 0)], 0).astype(np.int32)


@dataclasses.dataclass
class TrainBatcher:
    """Epochs of shuffled training users; the state (epoch, batch) restores the stream exactly.

    The user order of epoch e is a permutation drawn from (seed, e). A history trains on its
    last window, or (`window='random'`) on the window ending at a uniformly random position
    after its second item, drawn from (seed, epoch, batch) — every prefix is a training example
    over the epochs, which one-target-per-window models need. The last batch of an epoch is filled with all-padding rows, which
    carry no targets.
    """

    dataset: SequenceDataset
    split: Split
    max_len: int
    batch_size: int
    seed: int
    window: str = "last"
    epoch: int = 0
    batch: int = 0
    width: int | None = None  # items per row; None = max_len + 1

    def __post_init__(self):
        self.width = self.width or self.max_len + 1
        self.users = np.flatnonzero(self.split.train_end >= 2)
        if len(self.users) == 0:
            raise ValueError(f"{self.dataset.name}: no user has 2 or more training items")
        self._order_epoch, self._order = -1, None

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def state(self) -> dict:
        return {"epoch": int(self.epoch), "batch": int(self.batch)}

    def restore(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.users)
            self._order_epoch = self.epoch
        users = self._order[self.batch * self.batch_size : (self.batch + 1) * self.batch_size]
        starts = self.dataset.offsets[users]
        ends = starts + self.split.train_end[users]
        width = self.width
        if self.window == "random":
            rng = np.random.default_rng([self.seed, self.epoch, self.batch, 1])
            lo = starts + 2  # the shortest window that still has an input and a target
            ends = lo + (rng.random(len(users)) * (ends - lo + 1)).astype(np.int64)
        seq = np.zeros((self.batch_size, width), dtype=np.int32)
        seq[: len(users)] = gather_windows(self.dataset.items, starts, ends, width)
        self.batch += 1
        if self.batch == self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return {"seq": seq}


class EvalBatcher:
    """Fixed-size evaluation batches for one part ('val' or 'test') of a split.

    Each batch holds `history` [B, max_len] (the last max_len items before the target),
    `target` [B], `valid` [B], `user` [B] (dense user index) and, when history masking is on,
    `exclude` [B, H]: the user's whole history before the target, H = the longest such
    history in this part (so every batch has the same shape). With `next_k` > 0 a batch also
    holds `targets` [B, next_k]: the target and the items after it, repeats zeroed (a set).

    With `length_buckets` n > 1 the users are visited shortest history first (`order`) and
    each batch's `history` is only as wide as the smallest of the n widths
    ceil(max_len * i / n) that keeps one padding column before its longest history (or
    max_len): the cut columns are padding, which every model masks, and positions count from
    the right, so user vectors are unchanged while the encoder skips most of the padding (ML-1M
    test histories: median 95 of max_len 200). A model then compiles at most n shapes.
    """

    def __init__(self, dataset: SequenceDataset, split: Split, part: str, max_len: int,
                 batch_size: int, mask_history: bool = True, next_k: int = 0,
                 length_buckets: int = 1):
        if part not in ("val", "test"):
            raise ValueError(f"part={part!r}: expected 'val' or 'test'")
        self.dataset, self.max_len, self.batch_size = dataset, max_len, batch_size
        self.users = split.eval_users(part)
        pos = (split.val_pos if part == "val" else split.test_pos)[self.users]
        self.starts = dataset.offsets[self.users]
        self.ends = self.starts + pos  # exclusive end of the history = index of the target
        self.exclude_width = int(pos.max(initial=1)) if mask_history else 0
        self.next_k = next_k
        # The width each user needs: its history plus one padding column (BERT4Rec drops the
        # oldest column to append [MASK]), at most max_len.
        needed = np.minimum(pos + 1, max_len)
        buckets = max(length_buckets, 1)
        self.order = np.argsort(needed, kind="stable") if buckets > 1 else np.arange(len(pos))
        self._needed = needed[self.order]
        self._widths = np.unique(-(-max_len * np.arange(1, buckets + 1) // buckets))  # ceil
        if next_k and (self.ends + next_k > dataset.offsets[self.users + 1]).any():
            raise ValueError(f"next_k={next_k}: some {part} user has fewer items after the target")

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    @property
    def num_users(self) -> int:
        return len(self.users)

    def targets(self) -> np.ndarray:
        return self.dataset.items[self.ends]

    def histories(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of each evaluated user's history in dataset.items."""
        return self.starts, self.ends

    def __iter__(self):
        b, items = self.batch_size, self.dataset.items
        for first in range(0, len(self.users), b):
            rows = self.order[first : first + b]
            n = len(rows)
            starts, ends = self.starts[rows], self.ends[rows]
            width = int(self._widths[np.searchsorted(self._widths, self._needed[first : first + b].max())])
            batch = {
                "history": np.zeros((b, width), np.int32),
                "target": np.zeros(b, np.int32),
                "valid": np.zeros(b, bool),
                "user": np.zeros(b, np.int32),
            }
            batch["history"][:n] = gather_windows(items, starts, ends, width)
            batch["target"][:n] = items[ends]
            batch["valid"][:n] = True
            batch["user"][:n] = self.users[rows]
            if self.exclude_width:
                batch["exclude"] = np.zeros((b, self.exclude_width), np.int32)
                batch["exclude"][:n] = gather_windows(items, starts, ends, self.exclude_width)
            if self.next_k:
                batch["targets"] = np.zeros((b, self.next_k), np.int32)
                block = gather_windows(items, ends, ends + self.next_k, self.next_k)
                batch["targets"][:n] = distinct(block)
            yield batch


def distinct(rows: np.ndarray) -> np.ndarray:
    """Each row with every repeat of an earlier item set to 0 (target sets are sets)."""
    earlier = np.tril(np.ones((rows.shape[1],) * 2, bool), -1)  # [i, j]: j before i
    repeat = ((rows[:, :, None] == rows[:, None, :]) & earlier).any(axis=2)
    return np.where(repeat, 0, rows)
