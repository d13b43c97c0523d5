"""Negative item samplers and their sampling log-probabilities, keyed only by a jax key.

uniform:    items 1..num_items, each with q = 1 / num_items.
popularity: q = exp(item_log_probs) (entry 0, padding, is -inf and never drawn).
in_batch:   the batch's own real targets, a position drawn ∝ its weight (uniformly for 0/1
            weights), so q(item) = (its weight among the targets) / (total target weight).
unseen:     for each row of the training window, K distinct items that row does not hold,
            uniformly (without replacement): SASRec+'s draw (Klenitskiy & Vasilev 2023,
            datasets.py `sample_negatives`: `np.random.choice` over the items outside the
            user's sequence, `replace=False`), one per sequence, so sampled_softmax only.
The first three draw with replacement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transrec_jax.config import ConfigError

SAMPLERS = ("uniform", "popularity", "in_batch", "unseen")


def uniform(key: jax.Array, shape: tuple[int, ...], num_items: int) -> jax.Array:
    return jax.random.randint(key, shape, 1, num_items + 1, dtype=jnp.int32)


def popularity(key: jax.Array, shape: tuple[int, ...], item_log_probs: jax.Array) -> jax.Array:
    return _draw(key, shape, jnp.exp(item_log_probs.astype(jnp.float32)))


def in_batch(key: jax.Array, shape: tuple[int, ...], targets: jax.Array, weights: jax.Array):
    """Ids of targets[n] for positions n drawn with probability ∝ weights[n] (flat [N] inputs)."""
    positions = _draw(key, shape, jnp.maximum(weights, 0.0).astype(jnp.float32))
    return targets[positions].astype(jnp.int32)


def unseen(key: jax.Array, shape: tuple[int, int], num_items: int, window: jax.Array) -> jax.Array:
    """[R, K] ids: for row r of window [R, W], K distinct items outside window[r], uniformly.

    Uniform noise over the catalogue, pushed below every draw at the row's own items and at
    padding, then its top K: every K-subset of the row's other items is equally likely.
    """
    check_unseen(shape[1], num_items, window.shape[1])
    seen = row_items(window, num_items)[:, 0].at[:, 0].set(True)
    noise = jnp.where(seen, -1.0, jax.random.uniform(key, seen.shape))
    return jax.lax.top_k(noise, shape[1])[1].astype(jnp.int32)


def row_items(window: jax.Array, num_items: int, segments: jax.Array | None = None) -> jax.Array:
    """bool [R, S, num_items + 1]: which ids each segment of each row of window [R, W] holds.

    Column 0 is padding. An unpacked row is one segment (S = 1). A packed row's segments are
    numbered 1, 2, ... with 0 for row padding (data/batching.pack_windows); each spans at least
    two columns (an item and the padding slot before it), so S = W // 2 + 1 slots hold them.
    """
    return block_items(window, 0, num_items + 1, segments)


def block_items(window: jax.Array, first_id, num_ids: int, segments: jax.Array | None = None):
    """`row_items` for the ids first_id .. first_id + num_ids - 1 only: bool [R, S, num_ids]
    (one shard's block of an item table split over devices)."""
    rows = jnp.arange(window.shape[0])[:, None]
    local = window - first_id
    local = jnp.where((local >= 0) & (local < num_ids), local, num_ids)  # others: a spare column
    slots = 1 if segments is None else window.shape[1] // 2 + 1
    seen = jnp.zeros((window.shape[0], slots, num_ids + 1), bool)
    return seen.at[rows, 0 if segments is None else segments, local].set(True)[..., :num_ids]


def check_unseen(num_negatives: int, num_items: int, width: int) -> None:
    """A row of `width` items leaves at least num_items - width others to draw from."""
    if num_negatives > num_items - width:
        raise ConfigError(
            f"config.loss.num_negatives={num_negatives} with loss.sampler='unseen': a training "
            f"row of {width} items may leave only {num_items - width} of the {num_items} items "
            f"to draw from; expected at most {num_items - width}"
        )


def _draw(key: jax.Array, shape: tuple[int, ...], probs: jax.Array) -> jax.Array:
    """Indices drawn ∝ probs (zero-probability entries never).

    jax.random.choice searches the CDF: O(len(probs) + draws) memory, where Gumbel-max
    (jax.random.categorical) would build a [*shape, len(probs)] noise array.
    """
    return jax.random.choice(key, probs.shape[0], shape, replace=True, p=probs).astype(jnp.int32)


def _check(sampler: str, item_log_probs, targets, window=None) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"config.loss.sampler={sampler!r}: expected one of {SAMPLERS}")
    if sampler == "popularity" and item_log_probs is None:
        raise ValueError("config.loss.sampler='popularity' needs item_log_probs")
    if sampler == "in_batch" and targets is None:
        raise ValueError("config.loss.sampler='in_batch' needs the batch targets")
    if sampler == "unseen" and window is None:
        raise ValueError("config.loss.sampler='unseen' needs the training window")


def sample(
    sampler: str,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    num_items: int,
    item_log_probs=None,
    targets=None,
    weights=None,
    window=None,
) -> jax.Array:
    """int32 item ids of the given shape from the named sampler (targets/weights flat [N];
    window [R, W], the rows' training items, for 'unseen', whose shape is [R, K])."""
    _check(sampler, item_log_probs, targets, window)
    if sampler == "uniform":
        return uniform(key, shape, num_items)
    if sampler == "popularity":
        return popularity(key, shape, item_log_probs)
    if sampler == "unseen":
        return unseen(key, shape, num_items, window)
    return in_batch(key, shape, targets, weights)


def log_q(
    sampler: str,
    ids: jax.Array,
    *,
    num_items: int,
    item_log_probs=None,
    targets=None,
    weights=None,
) -> jax.Array:
    """float32 log-probability that one draw of the named sampler returns each of `ids`
    (not 'unseen': its K draws are not independent, and a row's candidates are equally likely)."""
    _check(sampler, item_log_probs, targets)
    if sampler == "unseen":
        raise ValueError("loss.sampler='unseen' has no per-draw log q")
    if sampler == "uniform":
        return jnp.full(ids.shape, -jnp.log(float(num_items)), dtype=jnp.float32)
    if sampler == "popularity":
        return item_log_probs[ids].astype(jnp.float32)
    real = jnp.where(weights > 0, weights, 0.0).astype(jnp.float32)
    counts = jnp.sum((ids[..., None] == targets) * real, axis=-1)
    return jnp.log(counts) - jnp.log(real.sum())
