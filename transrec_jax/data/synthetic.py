"""A synthetic interaction log with planted sequential structure.

Items are split into topics, with Zipf-skewed popularity inside each topic. Each user walks
through topics (staying with probability `topic_stay`); while staying, the next item is, with
probability `markov_weight`, one of the last item's few fixed successors, otherwise a
popular-skewed draw from the current topic. So the order of a history carries information
that neither item popularity nor the unordered bag of items has: a sequence model should
beat both (tests/test_synthetic.py checks this with simple count-based baselines).

Generation is vectorised over users (a loop over positions only), deterministic from the
seed, and chunked so millions of users and items fit in memory.
"""

from __future__ import annotations

import numpy as np

from transrec_jax.data.errors import DataError
from transrec_jax.data.interactions import Interactions

_USERS_PER_CHUNK = 200_000


def generate(synthetic_cfg, seed: int) -> Interactions:
    s = synthetic_cfg
    if not (1 <= s.num_topics <= s.num_items and 1 <= s.min_len <= s.max_len and s.successors >= 1):
        raise DataError(
            "config.dataset.synthetic: expected 1 <= num_topics <= num_items, "
            "1 <= min_len <= max_len and successors >= 1"
        )
    rng = np.random.default_rng([seed, 20261127])
    sampler = _TopicSampler(s.num_items, s.num_topics, rng)
    # Successors of item i come from i's own topic: row i of a [num_items + 1, successors] table.
    successors = sampler.draw(np.repeat(sampler.topic_of, s.successors), rng).reshape(-1, s.successors)

    users, items = [], []
    for start in range(0, s.num_users, _USERS_PER_CHUNK):
        n = min(_USERS_PER_CHUNK, s.num_users - start)
        seqs = _walk(n, s, sampler, successors, rng)
        lengths = rng.integers(s.min_len, s.max_len + 1, size=n)
        keep = np.arange(s.max_len)[None, :] < lengths[:, None]
        users.append(np.repeat(np.arange(start + 1, start + n + 1, dtype=np.int64), lengths))
        items.append(seqs[keep].astype(np.int64))
    return Interactions(
        users=np.concatenate(users), items=np.concatenate(items), source="synthetic"
    )


def _walk(n, s, sampler, successors, rng) -> np.ndarray:
    seqs = np.empty((n, s.max_len), dtype=np.int32)
    topic = rng.integers(s.num_topics, size=n)
    seqs[:, 0] = sampler.draw(topic, rng)
    for t in range(1, s.max_len):
        switch = rng.random(n) >= s.topic_stay
        topic = np.where(switch, rng.integers(s.num_topics, size=n), topic)
        follow = ~switch & (rng.random(n) < s.markov_weight)
        nxt = successors[seqs[:, t - 1] - 1, rng.integers(s.successors, size=n)]
        seqs[:, t] = np.where(follow, nxt, sampler.draw(topic, rng))
    return seqs


class _TopicSampler:
    """Draws items of given topics with Zipf(1) popularity inside each topic."""

    def __init__(self, num_items: int, num_topics: int, rng: np.random.Generator):
        perm = rng.permutation(num_items) + 1  # item ids 1..num_items
        self.topic_of = np.arange(num_items) % num_topics  # topic of items in `perm` order
        order = np.argsort(self.topic_of, kind="stable")
        self.items = perm[order]  # grouped by topic, most popular first within a topic
        self.topic_of = self.topic_of[np.argsort(perm)]  # indexed by item id - 1
        sizes = np.bincount(self.topic_of, minlength=num_topics)
        rank = np.arange(num_items) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        weight = 1.0 / (rank + 1.0)
        topic_total = np.bincount(np.repeat(np.arange(num_topics), sizes), weights=weight)
        # cdf of topic k lives in (k, k + 1]: one searchsorted serves every topic at once.
        within = np.cumsum(weight) - np.repeat(np.cumsum(topic_total) - topic_total, sizes)
        self.cdf = np.repeat(np.arange(num_topics), sizes) + within / np.repeat(topic_total, sizes)

    def draw(self, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = topics + rng.random(len(topics))
        idx = np.minimum(np.searchsorted(self.cdf, u, side="left"), len(self.items) - 1)
        return self.items[idx]
