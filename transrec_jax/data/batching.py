"""Seeded host-side batchers with few, fixed shapes, so `jit` compiles each step once per shape.

Training rows are windows of `max_len + 1` items (the model's inputs plus the shifted
target; `width` sets another length, e.g. max_len + next_k for the encoder-decoder),
right-aligned and left-padded with 0. Evaluation rows are the last `max_len` history items
before a target, plus the user's whole history for masking, padded to a fixed batch size
with a `valid` mask.

Length buckets (train.length_buckets, eval.length_buckets): batches of users with similar
history lengths, each only as wide as one of n fixed widths (`bucket_widths`) that keeps one
padding column before its longest row. The cut columns are padding, which every model masks,
and positions count from the right, so outputs are unchanged while the encoder skips most of
the padding; a model compiles at most n shapes.
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


def bucket_widths(full: int, n: int) -> np.ndarray:
    """The n row widths ceil(full * i / n), i = 1..n (duplicates dropped)."""
    n = max(n, 1)
    return np.unique(-(-full * np.arange(1, n + 1) // n))


def bucket_width(widths: np.ndarray, longest: int) -> int:
    """The smallest of `widths` that holds `longest` items plus one padding column (or the
    largest width): BERT4Rec drops a row's first column, and SASRec's first target is
    predicted from a padding input."""
    return int(widths[np.searchsorted(widths, min(longest + 1, widths[-1]))])


@dataclasses.dataclass
class TrainBatcher:
    """Epochs of shuffled training users; the state (epoch, batch) restores the stream exactly.

    The user order of epoch e is a permutation drawn from (seed, e). A history trains on its
    last window, or (`window='random'`) on the window ending at a uniformly random position
    after its second item, drawn from (seed, epoch, batch) — every prefix is a training example
    over the epochs, which one-target-per-window models need. One batch per epoch (the last,
    without buckets) is filled with all-padding rows, which carry no targets.

    With `length_buckets` n > 1 each pool of `pool_batches` consecutive batches of the
    permutation is sorted by training length, cut into batches, and those batches are visited in
    a seeded random order; each batch is then cut to a bucket width (module docstring). Every
    user still trains once per epoch; batches mix only users of similar length.
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
    length_buckets: int = 1
    pool_batches: int = 8

    def __post_init__(self):
        self.width = self.width or self.max_len + 1
        self.users = np.flatnonzero(self.split.train_end >= 2)
        if len(self.users) == 0:
            raise ValueError(f"{self.dataset.name}: no user has 2 or more training items")
        widths = bucket_widths(self.width, self.length_buckets)
        # A row keeps at least one input column before its width - max_len target columns.
        self.widths = widths[widths > self.width - self.max_len]
        self._plan_epoch, self._plan = -1, None

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def state(self) -> dict:
        return {"epoch": int(self.epoch), "batch": int(self.batch)}

    def restore(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self):
        return self

    def _epoch_plan(self) -> list[np.ndarray]:
        """The users of each batch of the current epoch, in visiting order."""
        b = self.batch_size
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.users)
        if self.length_buckets == 1:
            return [order[i : i + b] for i in range(0, len(order), b)]
        rng = np.random.default_rng([self.seed, self.epoch, 2])
        plan = []
        for first in range(0, len(order), b * self.pool_batches):
            pool = order[first : first + b * self.pool_batches]
            pool = pool[np.argsort(self.split.train_end[pool], kind="stable")]
            batches = [pool[i : i + b] for i in range(0, len(pool), b)]
            plan += [batches[i] for i in rng.permutation(len(batches))]
        return plan

    def __next__(self) -> dict:
        if self._plan_epoch != self.epoch:
            self._plan, self._plan_epoch = self._epoch_plan(), self.epoch
        users = self._plan[self.batch]
        starts = self.dataset.offsets[users]
        ends = starts + self.split.train_end[users]
        if self.window == "random":
            rng = np.random.default_rng([self.seed, self.epoch, self.batch, 1])
            lo = starts + 2  # the shortest window that still has an input and a target
            ends = lo + (rng.random(len(users)) * (ends - lo + 1)).astype(np.int64)
        width = self.width
        if self.length_buckets > 1:
            width = bucket_width(self.widths, int((ends - starts).max()))
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
    each batch's `history` is cut to a bucket width (module docstring; ML-1M test histories:
    median 95 of max_len 200).
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
        lengths = np.minimum(pos, max_len)
        self.order = np.argsort(lengths, kind="stable") if length_buckets > 1 else np.arange(len(pos))
        self._lengths = lengths[self.order]
        self._widths = bucket_widths(max_len, length_buckets)
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
            width = bucket_width(self._widths, int(self._lengths[first : first + b].max()))
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
