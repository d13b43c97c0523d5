"""Batches of users, not windows: each step's users sampled as the accountant assumes.

A batch holds `capacity` user slots × `windows_per_user` windows: `seq` int32 [capacity, W,
width] (data/batching.py's right-aligned, zero-padded windows), `valid` bool [capacity] (a
slot holds a sampled user) and, like TrainBatcher's, `times` / `users` aligned with `seq`. The
shapes never change, so the step compiles once.

A user's windows, for train.window:
- last: the history's last window, then the window before it, ... (window k ends
  k · max_len items before the end: each training target is in at most one window, the most
  recent W · max_len targets train); windows past the history's start are all padding;
- random / shifted: W independent draws of TrainBatcher's random or shifted window.
Step s draws its users and windows from (config.seed, USERS_STREAM, s), so a resumed run
draws what the uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from transrec_jax.data.batching import gather_windows, relative_times
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.splits import Split, training_view

USERS_STREAM = 2030  # the user sampler's own random stream under config.seed


class UserBatcher:
    """Poisson (each training user with probability q, at most `capacity` kept, a uniform
    subset when more are drawn) or fixed-size (users_per_step without replacement) batches.
    state() / restore() speak TrainBatcher's {"epoch", "batch"}: an epoch is
    ceil(users / users_per_step) steps."""

    def __init__(self, dataset: SequenceDataset, split: Split, *, users_per_step: int, capacity: int,
                 windows_per_user: int, sampling: str, max_len: int, seed: int, window: str = "last",
                 width: int | None = None, with_times: bool = False, with_users: bool = False):
        self.max_len, self.width = max_len, width or max_len + 1
        self.users_per_step, self.capacity = users_per_step, capacity
        self.windows_per_user, self.sampling = windows_per_user, sampling
        self.seed, self.window, self.with_users = seed, window, with_users
        self._train, self._train_end = training_view(dataset, split)
        self._times = relative_times(self._train) if with_times else None
        self.users = np.flatnonzero(self._train_end >= 2)
        self.step = 0

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.users_per_step)

    def state(self) -> dict:
        return {"epoch": self.step // self.steps_per_epoch, "batch": self.step % self.steps_per_epoch}

    def restore(self, state: dict) -> None:
        self.step = int(state["epoch"]) * self.steps_per_epoch + int(state["batch"])

    def __iter__(self):
        return self

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """This step's users (dense ids), at most `capacity`."""
        if self.sampling == "fixed":
            return np.sort(rng.choice(self.users, self.users_per_step, replace=False))
        drawn = self.users[rng.random(len(self.users)) < self.users_per_step / len(self.users)]
        if len(drawn) > self.capacity:
            drawn = np.sort(rng.choice(drawn, self.capacity, replace=False))
        return drawn

    def __next__(self) -> dict:
        rng = np.random.default_rng([self.seed, USERS_STREAM, self.step])
        users = self.sample(rng)
        n, w, width = len(users), self.windows_per_user, self.width
        starts = np.repeat(self._train.offsets[users], w)
        ends = starts + np.repeat(self._train_end[users], w)
        if self.window == "last":
            ends = ends - np.tile(np.arange(w) * self.max_len, n)
        else:  # as TrainBatcher: random, the shortest window with an input and a target; shifted, a full one
            lo = starts + 2 if self.window == "random" else np.minimum(starts + width, ends)
            ends = lo + (rng.random(n * w) * (ends - lo + 1)).astype(np.int64)
        real = ends - starts >= 2  # (a window past the history's start stays all padding)
        ends = np.where(real, ends, starts)
        batch = {"seq": gather_windows(self._train.items, starts, ends, width)}
        if self._times is not None:
            batch["times"] = gather_windows(self._times, starts, ends, width)
        if self.with_users:
            row_users = np.where(real, np.repeat(users + 1, w), 0).astype(np.int32)
            batch["users"] = np.repeat(row_users[:, None], width, axis=1)
        out = {}
        for name, rows in batch.items():
            out[name] = np.zeros((self.capacity, w, width), np.int32)
            out[name][:n] = rows.reshape(n, w, width)
        out["valid"] = np.arange(self.capacity) < n
        self.step += 1
        return out
