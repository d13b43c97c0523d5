"""Ranking kernels: score users against the catalog, mask, rank the held-out target, top-K.

Every metric in `metrics.py` is computed from what these kernels return, under one protocol:

* Item ids: 0 is padding and never rankable; a score vector has num_items + 1 entries.
* The user's history (`exclude`, 0-padded) is not rankable, EXCEPT the user's own target, which
  stays rankable even when it also appears in the history (leave-one-out with repeats).
* rank = 0-based position of the target among rankable items, with PESSIMISTIC ties:
  #(rankable items with score > s_target) + #(rankable items != target with score == s_target).
  A model that scores every item the same thus ranks its target last, not first. It is computed
  as #(rankable items != target whose score is NOT < s_target), which also ranks a NaN target
  (or NaN competitors) pessimistically: a diverged model gets no credit.
* Scores are computed in float32 at full matmul precision: TF32/bf16 rounding would create ties,
  and so pessimistic-rank losses, that the model did not make.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from transrec_jax import sharding

_FULL_PRECISION = jax.lax.Precision.HIGHEST


class _Chunk(NamedTuple):
    """A contiguous block of item ids scored for a batch of users."""

    ids: jax.Array  # i32[C]
    scores: jax.Array  # f32[B, C]
    rankable: jax.Array  # bool[B, C]


def _score_chunk(user_repr, W, b, targets, exclude, start, own) -> _Chunk:
    """Score ids start..start+C-1 (C = rows of W, already sliced) and mark which are rankable:
    real items whose id is in the chunk's `own` range [lo, hi) (below it: ids an overlapping
    earlier chunk scored; from hi: the catalogue's, or the item shard's, end)."""
    size = W.shape[0]
    ids = start + jnp.arange(size, dtype=jnp.int32)
    scores = jnp.matmul(user_repr, W.T, precision=_FULL_PRECISION)
    if b is not None:
        scores = scores + b
    # Scatter the history into a [B, C + 1] mask; ids outside this chunk land in the spare column.
    local = exclude - start
    local = jnp.where((local >= 0) & (local < size), local, size)
    rows = jnp.arange(exclude.shape[0])[:, None]
    in_history = jnp.zeros((exclude.shape[0], size + 1), bool).at[rows, local].set(True)[:, :size]
    is_target = ids[None, :] == targets[:, None]
    real_item = (ids > 0) & (ids >= own[0]) & (ids < own[1])
    return _Chunk(ids, scores, real_item[None, :] & (~in_history | is_target))


def _target_score(chunk: _Chunk, targets, start, own, s_target):
    """s_target, with the entries whose target lies in this chunk's `own` ids read from the
    chunk's scores.

    Reading the target's score from the same matmul the competitors come from keeps exact ties
    exact; a separately computed dot product could differ in the last bit.
    """
    size = chunk.ids.shape[0]
    local = targets - start
    inside = (local >= 0) & (local < size) & (targets >= own[0]) & (targets < own[1])
    picked = jnp.take_along_axis(chunk.scores, jnp.clip(local, 0, size - 1)[:, None], axis=1)[:, 0]
    return jnp.where(inside, picked, s_target)


def _count_ahead(chunk: _Chunk, targets, s_target):
    """Per user: rankable items in the chunk, other than the target, not scored below the target."""
    ahead = (
        chunk.rankable
        & (chunk.ids[None, :] != targets[:, None])
        & ~(chunk.scores < s_target[:, None])
    )
    return ahead.sum(axis=1, dtype=jnp.int32)


def _merge_top_k(best, chunk: _Chunk, kmax):
    """Merge the chunk's rankable items into the running (scores, ids) top-kmax.

    lax.top_k puts the lower index first among equal scores and the running list (lower ids, from
    earlier chunks) comes first in the merge, so ties go to the lower id in every chunking.
    """
    best_scores, best_items = best
    masked = jnp.where(chunk.rankable, chunk.scores, -jnp.inf)
    chunk_scores, chunk_pos = jax.lax.top_k(masked, min(kmax, chunk.ids.shape[0]))
    scores = jnp.concatenate([best_scores, chunk_scores], axis=1)
    items = jnp.concatenate([best_items, chunk.ids[chunk_pos]], axis=1)
    top_scores, top_pos = jax.lax.top_k(scores, kmax)
    return top_scores, jnp.take_along_axis(items, top_pos, axis=1)


@functools.partial(jax.jit, static_argnames=("kmax", "item_chunk", "num_items", "mesh"))
def rank_full(user_repr, W, b, targets, exclude, *, kmax: int, item_chunk: int = 0,
              num_items: int | None = None, mesh=None):
    """Rank each user's target against the whole catalog and return the top-kmax items.

    Args:
      user_repr: f[B, D] user representations.
      W: f[V, D] item table, row i scoring item id i; row 0 and rows past num_items (padding of
        a table split over devices) are never ranked.
      b: f[V] item bias, or None.
      targets: i32[B] held-out item per user; 0 when there is none (top-k only: id 0 stays
        unrankable and the returned rank is meaningless).
      exclude: i32[B, H] ids not to rank (the user's history), 0-padded. The target stays rankable.
      kmax: width of the returned top-k list.
      item_chunk: 0 scores all items at once (memory O(B x V)); > 0 scores that many items at a
        time (memory O(B x item_chunk)), at the price of scoring the catalog twice: once to read
        the target scores, once to count the items ahead of them. Results equal the unchunked
        ones up to float32 rounding: XLA may sum the D products in another order for another
        matmul shape (on CPU, chunks that are not multiples of 512 differ by ~1 ulp), so items
        whose scores agree to an ulp can swap. Exactly representable scores give equal results.
        A chunk as large as a table (or shard) block scores it at once.

      num_items: the catalogue size; None = V - 1.
      mesh: the (data, model) mesh whose `model` axis splits W and b (sharding.py), or None.
        Each item shard then scores only its rows: the target's score comes from the shard
        that holds it, each shard counts its items ahead of it and keeps its own top-kmax, and
        one sum and one gather of [B, shards x kmax] combine them; the [B, V] scores never exist
        on one device.

    Returns:
      ranks: i32[B], pessimistic 0-based rank of the target (module docstring).
      topk_items: i32[B, kmax], best rankable items first; equal scores go to the lower id.
      topk_scores: f32[B, kmax]. Slots beyond the user's rankable items hold id 0 and score -inf
        (-inf marks an empty slot, so model scores are assumed finite).
    """
    if not isinstance(kmax, int) or kmax < 1:
        raise ValueError(f"kmax={kmax!r}: expected a positive integer")
    if not isinstance(item_chunk, int) or item_chunk < 0:
        raise ValueError(f"item_chunk={item_chunk!r}: expected a non-negative integer")
    num_ids = W.shape[0] if num_items is None else num_items + 1
    user_repr = user_repr.astype(jnp.float32)
    W = W.astype(jnp.float32)
    b = jnp.zeros(W.shape[0], jnp.float32) if b is None else b.astype(jnp.float32)
    data, items = P(sharding.DATA), P(sharding.MODEL)
    run = sharding.item_parallel(
        functools.partial(_rank_shard, kmax=kmax, item_chunk=item_chunk, num_ids=num_ids),
        mesh, in_specs=(data, items, items, data, data),
        out_specs=(data, P(sharding.DATA, sharding.MODEL), P(sharding.DATA, sharding.MODEL)))
    ranks, top_scores, top_items = run(user_repr, W, b, targets.astype(jnp.int32),
                                       exclude.astype(jnp.int32))
    if mesh is not None:  # the shards' lists side by side, lower ids first: ties keep going low
        top_scores, position = jax.lax.top_k(top_scores, kmax)
        top_items = jnp.take_along_axis(top_items, position, axis=1)
    top_items = jnp.where(top_scores == -jnp.inf, 0, top_items)
    return ranks, top_items, top_scores


def _rank_shard(user_repr, W, b, targets, exclude, *, kmax, item_chunk, num_ids, axis):
    """`rank_full` on one item shard's block of rows (the whole table when axis is None)."""
    batch = user_repr.shape[0]
    first_id = sharding.row_offset(W.shape[0], axis)
    empty_top = sharding.varying((
        jnp.full((batch, kmax), -jnp.inf, jnp.float32),
        jnp.zeros((batch, kmax), jnp.int32),
    ), axis)
    no_score = sharding.varying(jnp.zeros(batch, jnp.float32), axis)
    rows = W.shape[0]
    end = jnp.minimum(first_id + rows, num_ids)  # past it: the table's padding rows
    # s_target: 0 from every shard but the one holding the target, so their sum is its score.
    if not 0 < item_chunk < rows:
        chunk = _score_chunk(user_repr, W, b, targets, exclude, first_id, (first_id, end))
        s_target = _target_score(chunk, targets, first_id, (first_id, end), no_score)
        s_target = sharding.over_items(s_target, axis)
        ranks = _count_ahead(chunk, targets, s_target)
        top_scores, top_items = _merge_top_k(empty_top, chunk, kmax)
    else:
        num_chunks = -(-rows // item_chunk)
        starts = jnp.arange(num_chunks, dtype=jnp.int32) * item_chunk

        def chunk_at(start):
            """The chunk that owns ids from first_id + start: the last one ends at the block's
            end and overlaps the one before it (no padded copy of the table), whose ids it
            leaves to that chunk."""
            begin = jnp.minimum(start, rows - item_chunk)
            W_chunk = jax.lax.dynamic_slice_in_dim(W, begin, item_chunk)
            b_chunk = jax.lax.dynamic_slice_in_dim(b, begin, item_chunk)
            own = (first_id + start, end)
            return _score_chunk(user_repr, W_chunk, b_chunk, targets, exclude, first_id + begin, own), own

        def read_targets_and_top_k(carry, start):
            s_target, best = carry
            chunk, own = chunk_at(start)
            s_target = _target_score(chunk, targets, chunk.ids[0], own, s_target)
            return (s_target, _merge_top_k(best, chunk, kmax)), None

        def count_ahead(ranks, start):
            return ranks + _count_ahead(chunk_at(start)[0], targets, s_target), None

        (s_target, (top_scores, top_items)), _ = jax.lax.scan(
            read_targets_and_top_k, (no_score, empty_top), starts
        )
        s_target = sharding.over_items(s_target, axis)
        ranks, _ = jax.lax.scan(count_ahead, sharding.varying(jnp.zeros(batch, jnp.int32), axis),
                                starts)

    # This shard's top-kmax; rank_full merges the shards' lists.
    return sharding.over_items(ranks, axis), top_scores, top_items


@jax.jit
def rank_sampled(user_repr, W, b, targets, negatives):
    """Legacy pre-2020 protocol: rank of the target among itself and its N sampled negatives.

    Same pessimistic ties as `rank_full` (a negative equal to the target counts as ahead of it);
    the history needs no mask because `sample_eval_negatives` never draws it. Returns i32[B].
    """
    candidates = jnp.concatenate([targets[:, None], negatives], axis=1).astype(jnp.int32)
    scores = jnp.einsum(
        "bd,bnd->bn",
        user_repr.astype(jnp.float32),
        W.astype(jnp.float32)[candidates],
        precision=_FULL_PRECISION,
    )
    if b is not None:
        scores = scores + b.astype(jnp.float32)[candidates]
    return (~(scores[:, 1:] < scores[:, :1])).sum(axis=1, dtype=jnp.int32)


def _as_offsets_and_items(histories):
    """(offsets i64[U + 1], items i64[sum of lengths]) from a CSR tuple or one array per user."""
    if isinstance(histories, tuple):
        if len(histories) != 2:
            raise ValueError("histories: a tuple is read as (offsets, items); pass a list per user")
        offsets, items = (np.asarray(a, np.int64) for a in histories)
        return offsets, items
    arrays = [np.asarray(h, np.int64).ravel() for h in histories]
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays], dtype=np.int64)])
    items = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return offsets, items


def sample_eval_negatives(histories, targets, num_items, n, rng, popularity=None):
    """Draw n distinct negatives per user for the legacy sampled protocol (`rank_sampled`).

    Negatives are never in the user's history nor equal to the target, are distinct within a user,
    and are drawn uniformly over 1..num_items, or in proportion to `popularity` (counts indexed by
    item id; zero-count items are never drawn). Drawing with replacement and discarding repeats and
    forbidden ids is exactly sampling without replacement from the restricted distribution, so
    this vectorised rejection sampler needs no per-user loop.

    Args:
      histories: one int array per user (a list), or a CSR tuple (offsets[U + 1], items).
      targets: int[U] held-out item per user.
      num_items: catalog size; ids are 1..num_items.
      n: negatives per user.
      rng: np.random.Generator; the same seed gives the same negatives.
      popularity: optional float/int[num_items + 1] sampling weights.

    Returns:
      np.int32[U, n].
    """
    offsets, items = _as_offsets_and_items(histories)
    targets = np.asarray(targets, np.int64)
    num_users = len(targets)
    if len(offsets) != num_users + 1:
        raise ValueError(f"histories: {len(offsets) - 1} users, targets has {num_users}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive integer")
    if ((targets < 1) | (targets > num_items)).any():
        raise ValueError(f"targets: expected item ids in 1..num_items={num_items}")
    if ((items < 0) | (items > num_items)).any():
        raise ValueError(f"histories: expected item ids in 0..num_items={num_items}")

    num_ids = num_items + 1
    if popularity is None:
        drawable = np.arange(num_ids) > 0

        def draw(shape):
            return rng.integers(1, num_items + 1, size=shape)
    else:
        popularity = np.asarray(popularity, np.float64)
        if popularity.shape != (num_ids,) or (popularity < 0).any() or popularity[1:].sum() <= 0:
            raise ValueError(
                f"popularity: expected {num_ids} non-negative weights indexed by item id, some positive"
            )
        drawable = (popularity > 0) & (np.arange(num_ids) > 0)
        probabilities = popularity[1:] / popularity[1:].sum()

        def draw(shape):
            return rng.choice(num_items, size=shape, p=probabilities) + 1

    # Forbidden (user, item) pairs as sorted, distinct keys user * num_ids + item. Sorting and
    # searchsorted, not np.unique/np.isin, which are several times slower here (numpy 2.4).
    users = np.repeat(np.arange(num_users, dtype=np.int64), np.diff(offsets))
    all_users = np.arange(num_users, dtype=np.int64)
    taken = np.sort(np.concatenate([users * num_ids + items, all_users * num_ids + targets]))
    taken = taken[np.concatenate([[True], taken[1:] != taken[:-1]])]
    blocked = np.bincount(taken // num_ids, weights=drawable[taken % num_ids], minlength=num_users)
    available = drawable.sum() - blocked
    if (available < n).any():
        user = int(np.argmax(available < n))
        raise ValueError(f"n={n}: user {user} has only {int(available[user])} items left to draw from")

    negatives = np.zeros((num_users, n), np.int32)
    filled = np.zeros(num_users, np.int64)
    pending = all_users
    while pending.size:
        drawn = draw((pending.size, 2 * n))
        keys = pending[:, None] * num_ids + drawn
        # Repeats within a row: after a stable sort, every copy but the first follows an equal value.
        order = np.argsort(drawn, axis=1, kind="stable")
        sorted_drawn = np.take_along_axis(drawn, order, axis=1)
        repeat = np.zeros(drawn.shape, bool)
        np.put_along_axis(repeat, order[:, 1:], sorted_drawn[:, 1:] == sorted_drawn[:, :-1], axis=1)
        where = np.minimum(np.searchsorted(taken, keys), len(taken) - 1)
        accepted = ~repeat & (taken[where] != keys)
        slot = np.cumsum(accepted, axis=1) - 1
        accepted &= slot < (n - filled[pending])[:, None]
        rows, cols = np.nonzero(accepted)
        negatives[pending[rows], filled[pending[rows]] + slot[rows, cols]] = drawn[rows, cols]
        filled[pending] += accepted.sum(axis=1)
        taken = np.sort(np.concatenate([taken, keys[accepted]]))
        pending = pending[filled[pending] < n]
    return negatives


def popularity_scores(train_item_counts) -> np.ndarray:
    """The most-popular baseline's item scores: the training count of each item id, as float32.

    Counts above 2**24 are rounded by float32, which can merge them into (pessimistic) ties.
    """
    counts = np.asarray(train_item_counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("train_item_counts: expected a 1-D array of non-negative counts by item id")
    return counts.astype(np.float32)


def rank_popularity(item_scores, targets, exclude, *, kmax: int, item_chunk: int = 0, mesh=None):
    """`rank_full` for the popularity baseline: zero user vectors, `item_scores` as the item bias.

    Scores are then exactly the bias (0 * 0 + b), whatever the matmul precision, so popularity
    ties stay exact ties and are broken pessimistically.
    """
    num_items = len(item_scores) - 1
    shards = sharding.model_size(mesh)  # rows split evenly over the item shards
    item_scores = jnp.pad(jnp.asarray(item_scores, jnp.float32), (0, -len(item_scores) % shards))
    batch = jnp.shape(targets)[0]
    return rank_full(
        jnp.zeros((batch, 1), jnp.float32),
        jnp.zeros((item_scores.shape[0], 1), jnp.float32),
        item_scores,
        jnp.asarray(targets),
        jnp.asarray(exclude),
        kmax=kmax,
        item_chunk=item_chunk,
        num_items=num_items,
        mesh=mesh,
    )
