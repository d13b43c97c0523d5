"""Seeded host-side batchers with few, fixed shapes, so `jit` compiles each step shape once.

Training rows are windows of `max_len + 1` items (the model's inputs plus the shifted
target; `width` sets another length, e.g. max_len + next_k for the encoder-decoder),
right-aligned and left-padded with 0. Evaluation rows are the last `max_len` history items
before a target, plus the user's whole history for masking, padded to a fixed batch size
with a `valid` mask.

With `with_times` (HSTU's relative time bias, config.model.time_buckets > 0) training batches
also carry `times` aligned with `seq`, evaluation batches `history_times` aligned with `history`
and `target_time`: int32 seconds since the dataset's earliest timestamp (`relative_times`).
With `with_users` (config.model.user_features) training batches carry `users` aligned with
`seq`: each row's user (dense index + 1, 0 for an all-padding row) in every column, so packing
moves each window's user with it; evaluation batches always carry `user`.

Padding is most of a batch on real data (ML-1M training windows: 46% of the slots), and
both batchers can skip it without changing what is computed: training batches can pack
several users' windows into one row (`pack_windows`), evaluation batches can group users of
similar history length and cut the padding columns (`EvalBatcher`'s length buckets).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError
from transrec_jax.data.splits import Split, training_view


def gather_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Rows items[max(start, end - width):end], right-aligned in a zero-padded [n, width] array."""
    idx = ends[:, None] - width + np.arange(width)[None, :]
    valid = idx >= starts[:, None]
    return np.where(valid, items[np.where(valid, idx, 0)], 0).astype(np.int32)


def relative_times(dataset: SequenceDataset) -> np.ndarray:
    """int32 seconds of each interaction since the dataset's earliest (it has timestamps)."""
    start = int(dataset.timestamps.min())
    span = int(dataset.timestamps.max()) - start
    if span > np.iinfo(np.int32).max:
        raise DataError(f"{dataset.name}: timestamps span {span:,} s, more than int32 seconds "
                        "(68 years) hold: expected unix seconds")
    return (dataset.timestamps - start).astype(np.int32)


def bucket_widths(full: int, n: int) -> np.ndarray:
    """The n row widths ceil(full * i / n), i = 1..n (duplicates dropped)."""
    n = max(n, 1)
    return np.unique(-(-full * np.arange(1, n + 1) // n))


def bucket_width(widths: np.ndarray, longest: int) -> int:
    """The smallest of `widths` that holds `longest` items plus one padding column (or the
    largest width): BERT4Rec drops a row's first column to append [MASK]."""
    return int(widths[np.searchsorted(widths, min(longest + 1, widths[-1]))])


def pack_windows(windows: np.ndarray, row_multiple: int,
                 aligned: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Right-aligned windows [n, W] packed into fewer rows of W: {"seq", "segments", "positions"}.

    A window's segment is its items plus the one padding slot before them (a full window
    has none): in an unpacked row that slot is the input SASRec predicts the first item from,
    and BERT4Rec drops a row's first column. Segments are placed first-fit, longest first,
    several to a row, each row right-aligned; the row count is rounded up to a multiple of
    `row_multiple` (at most n). `segments` numbers the segments 1, 2, ... within a row (0 =
    row padding) for the models' same-segment attention mask; `positions` counts from each
    segment's right end (its last item is 0), the id the item has in its unpacked row. With
    those two, every model computes on a packed row exactly what it computes on the rows it
    came from; only random draws laid out over the rows differ (dropout and cloze masks, and
    sampled softmax's negatives, which a row's windows then share), not their law.
    `aligned` ({name: int32 [n, W]}, e.g. times) arrays go where their windows go, under `name`.
    """
    aligned = aligned or {}
    n, width = windows.shape
    lengths = np.minimum((windows != 0).sum(axis=1) + 1, width)
    lengths[lengths == 1] = 0  # an all-padding window (the end of an epoch) has no segment
    free, rows_of = [], np.zeros(n, np.int64)
    for i in np.argsort(-lengths, kind="stable"):
        if lengths[i] == 0:
            break
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), len(free))
        if row == len(free):
            free.append(width)
        free[row] -= lengths[i]
        rows_of[i] = row
    num_rows = min(max(-(-len(free) // row_multiple) * row_multiple, row_multiple), n)
    arrays = {"seq": windows, **aligned}
    names = (*arrays, "segments", "positions")
    out = {name: np.zeros((num_rows, width), np.int32) for name in names}
    end = np.full(num_rows, width)  # each row fills from the right
    count = np.zeros(num_rows, np.int32)
    for i in range(n):  # window order within a row: the order of the batch
        length = lengths[i]
        if length == 0:
            continue
        row = rows_of[i]
        cols = slice(end[row] - length, end[row])
        count[row] += 1
        for name, array in arrays.items():
            out[name][row, cols] = array[i, width - length :]
        out["segments"][row, cols] = count[row]
        out["positions"][row, cols] = np.arange(length - 1, -1, -1)
        end[row] -= length
    return out


@dataclasses.dataclass
class TrainBatcher:
    """Epochs of shuffled training users; the state (epoch, batch) restores the stream exactly.

    The user order of epoch e is a permutation drawn from (seed, e). A history trains on its
    last window; or (`window='random'`) on the window ending at a uniformly random position
    after its second item — every prefix is a training example over the epochs, which
    one-target-per-window models need; or (`window='shifted'`) on a full-width window at a
    uniformly random offset — a history no longer than a window trains whole as with 'last',
    a longer one trains every item over the epochs (with 'last', a third of ML-1M's training
    targets, those before each long history's last 200 items, never train). Random ends are
    drawn from (seed, epoch, batch). The last batch of an epoch is filled with all-padding
    rows, which carry no targets.

    `pack_row_multiple` > 0 packs each batch's windows into fewer rows (`pack_windows`, a
    multiple of that many rows): the same users, targets and loss, on less padding.
    `with_times`: batches also carry `times`, each item's `relative_times`, aligned with `seq`.
    `with_users`: batches also carry `users`, aligned with `seq`: the row's user (dense index
    + 1) in every column of a real window, the padding slot before its first item included (an
    input SASRec trains), 0 in all-padding rows (and, packed, in row padding).
    Windows come from `splits.training_view`: a split that withholds items (cold_items) trains
    on each history with them removed, so no window of any mode holds one.
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
    pack_row_multiple: int = 0  # > 0: pack windows into rows, a multiple of this many
    with_times: bool = False
    with_users: bool = False

    def __post_init__(self):
        self.width = self.width or self.max_len + 1
        self._train, self._train_end = training_view(self.dataset, self.split)
        # (relative to the view's earliest time when items are withheld: only differences count)
        self._times = relative_times(self._train) if self.with_times else None
        self.users = np.flatnonzero(self._train_end >= 2)
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
        starts = self._train.offsets[users]
        ends = starts + self._train_end[users]
        width = self.width
        if self.window != "last":
            rng = np.random.default_rng([self.seed, self.epoch, self.batch, 1])
            # random: the shortest window that still has an input and a target; shifted: a full one
            lo = starts + 2 if self.window == "random" else np.minimum(starts + width, ends)
            ends = lo + (rng.random(len(users)) * (ends - lo + 1)).astype(np.int64)
        seq = np.zeros((self.batch_size, width), dtype=np.int32)
        seq[: len(users)] = gather_windows(self._train.items, starts, ends, width)
        aligned = {}
        if self.with_times:
            aligned["times"] = np.zeros_like(seq)
            aligned["times"][: len(users)] = gather_windows(self._times, starts, ends, width)
        if self.with_users:
            aligned["users"] = np.zeros_like(seq)
            aligned["users"][: len(users)] = (users + 1)[:, None].astype(np.int32)
        self.batch += 1
        if self.batch == self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        if self.pack_row_multiple:
            return pack_windows(seq, self.pack_row_multiple, aligned)
        return {"seq": seq, **aligned}


def history_spans(dataset: SequenceDataset, split: Split, part: str):
    """(users, starts, ends) of the histories before each of `part`'s targets."""
    users = split.eval_users(part)
    pos = (split.val_pos if part == "val" else split.test_pos)[users]
    ends = dataset.offsets[users] + pos  # exclusive end of the history = the target
    starts = ends - (np.minimum(pos, split.max_history) if split.max_history else pos)
    return users, starts, ends


class EvalBatcher:
    """Fixed-size evaluation batches for one part ('val' or 'test') of a split.

    Each batch holds `history` [B, max_len] (the last max_len items before the target),
    `target` [B], `valid` [B], `user` [B] (dense user index) and, when history masking is on,
    `exclude` [B, H]: the user's whole history before the target, zero-padded to H = the
    longest such history of validation and test alike (every batch has the same shape, and the
    test pass reuses the validation pass's compiled programs). A split's `max_history` > 0 cuts
    every history, `exclude` included, to its last max_history items. With `next_k` > 0 a batch also
    holds `targets` [B, next_k]: the target and the items after it, repeats zeroed (a set).
    With `with_times`, `history_times` (aligned with `history`) and `target_time` [B]: the
    items' `relative_times`.

    With `length_buckets` n > 1 the users are visited shortest history first (`order`) and
    each batch's `history` is only as wide as the smallest of the n widths
    ceil(max_len * i / n) that keeps one padding column before its longest history
    (`bucket_width`): the cut columns are padding, which every model masks, and positions
    count from the right, so user vectors are unchanged while the encoder skips most of the
    padding (ML-1M test histories: median 95 of max_len 200). A model then compiles at most n
    shapes.
    """

    def __init__(self, dataset: SequenceDataset, split: Split, part: str, max_len: int,
                 batch_size: int, mask_history: bool = True, next_k: int = 0,
                 length_buckets: int = 1, with_times: bool = False):
        if part not in ("val", "test"):
            raise ValueError(f"part={part!r}: expected 'val' or 'test'")
        self.dataset, self.max_len, self.batch_size = dataset, max_len, batch_size
        self._times = relative_times(dataset) if with_times else None
        self.users, self.starts, self.ends = history_spans(dataset, split, part)
        lengths = self.ends - self.starts
        _, other_starts, other_ends = history_spans(dataset, split, "test" if part == "val" else "val")
        longest = max(int(lengths.max(initial=1)), int((other_ends - other_starts).max(initial=1)))
        self.exclude_width = longest if mask_history else 0
        self.next_k = next_k
        needed = np.minimum(lengths + 1, max_len)  # history + one padding column, as bucket_width
        self.order = np.argsort(needed, kind="stable") if length_buckets > 1 else np.arange(len(self.users))
        self._lengths = np.minimum(lengths, max_len)[self.order]
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
            if self._times is not None:
                batch["history_times"] = np.zeros((b, width), np.int32)
                batch["history_times"][:n] = gather_windows(self._times, starts, ends, width)
                batch["target_time"] = np.zeros(b, np.int32)
                batch["target_time"][:n] = self._times[ends]
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
