"""Position information: learned absolute, sinusoidal, rotary (applied inside attention), none.

Sequences are right-aligned and left-padded, so absolute positions are counted from the
RIGHT end: the most recent item is position 0, the one before it 1, and so on. Extra left
padding then leaves every real item's position id unchanged, which is what makes outputs at
real positions independent of how much padding precedes them. A packed training row (several
users' windows in one row) passes each token's id explicitly, counted from its own window's
right end. Rotary positions only enter through differences of positions, so they use plain
left-to-right indices, which are right within a packed segment too. `model.positions_from =
'start'` numbers items from the oldest one in the window instead (`start_aligned_ids`), as
SASRec's original code does with its right-padded rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

WAVELENGTH_BASE = 10000.0


def right_aligned_ids(length: int) -> jax.Array:
    """Position id of each slot of a length-`length` sequence: length-1, ..., 1, 0."""
    return jnp.arange(length - 1, -1, -1, dtype=jnp.int32)


def start_aligned_ids(tokens: jax.Array, segments: jax.Array | None = None) -> jax.Array:
    """int32[B, L]: each token's index among the real items of its row (or packed segment),
    the oldest being 0 -- SASRec's original numbering (model.positions_from='start').

    Counting real items only keeps left padding out of the ids; padding slots get 0.
    """
    real = tokens != 0
    if segments is None:
        counts = jnp.cumsum(real, axis=1)
    else:  # real items at or before each slot within its own segment
        length = tokens.shape[1]
        earlier = jnp.tril(jnp.ones((length, length), bool))[None]
        same = (segments[:, :, None] == segments[:, None, :]) & earlier & real[:, None, :]
        counts = same.sum(axis=2)
    return jnp.maximum(counts - 1, 0).astype(jnp.int32)


def sinusoidal_table(position_ids: jax.Array, dim: int) -> jax.Array:
    """Vaswani et al. sin/cos encodings, float32[..., dim] (sin on even, cos on odd features)."""
    inv_freq = 1.0 / (WAVELENGTH_BASE ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = position_ids.astype(jnp.float32)[..., None] * inv_freq
    table = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return table.reshape(*position_ids.shape, -1)[..., :dim]


class LearnedPositions(nnx.Module):
    """One trained vector per right-aligned position id (max_len of them)."""

    def __init__(self, max_len: int, d_model: int, *, init_std: float, dtype, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(
            max_len,
            d_model,
            dtype=dtype,
            embedding_init=nnx.initializers.normal(init_std),
            rngs=rngs,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids int32[L] or [B, L] (`right_aligned_ids`, or a packed batch's) -> [..., D]."""
        return self.embedding(ids)


class SinusoidalPositions(nnx.Module):
    """Fixed encodings of right-aligned position ids; holds no parameters."""

    def __init__(self, d_model: int, *, dtype):
        self.d_model = d_model
        self.dtype = dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids int32[L] or [B, L] -> [..., D]."""
        return sinusoidal_table(ids, self.d_model).astype(self.dtype)


def make_positions(model_cfg, *, dtype, rngs: nnx.Rngs):
    """The module that adds positions to the input embeddings, or None (rotary | none)."""
    kind = model_cfg.positions
    if kind == "learned":
        m = model_cfg
        std = m.position_init_std or m.embedding_init_std or m.init_std
        return LearnedPositions(m.max_len, m.d_model, init_std=std, dtype=dtype, rngs=rngs)
    if kind == "sinusoidal":
        return SinusoidalPositions(model_cfg.d_model, dtype=dtype)
    if kind in ("rotary", "none"):
        return None
    raise ValueError(
        f"config.model.positions={kind!r}: expected learned | sinusoidal | rotary | none"
    )


def rotary_angles(positions: jax.Array, head_dim: int) -> tuple[jax.Array, jax.Array]:
    """(sin, cos), float32[len(positions), head_dim // 2], for rotary embeddings."""
    inv_freq = 1.0 / (WAVELENGTH_BASE ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[:, None] * inv_freq
    return jnp.sin(angles), jnp.cos(angles)


def apply_rotary(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotate x[B, L, H, Dh] by its positions[L] (half-split / GPT-NeoX pairing of features)."""
    sin, cos = rotary_angles(positions, x.shape[-1])
    sin, cos = sin[None, :, None, :], cos[None, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)
