"""Multi-head scaled dot-product attention, its boolean masks, dropout and a KV cache.

Masks are boolean, True = "this query may attend to this key", shaped to broadcast against
[B, H, Lq, Lk], and combine with `combine_masks` (logical AND). A query row with no allowed
key (a padding query under causal + key-padding masks) gets all-zero weights and a zero
attention output instead of NaNs; such rows are padding and never feed a real position.

Dropout randomness comes from an explicit key (None = deterministic) so the module holds
only parameters. `chunk` > 0 computes the core `chunk` query rows at a time
(`chunked_attention_core`), so long sequences train without [B, H, L, L] float tensors.
Incremental decoding passes a `KVCache` pytree in and gets the updated one back, which
works under jit and lax.scan.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend.random import threefry_2x32

from transrec_jax.models.positions import apply_rotary


def dropout_keep_threshold(rate: float) -> int:
    """Kept byte values out of 256: `dropout` keeps an element iff its random byte is below this.

    The realised drop rate is (256 - threshold) / 256, the nearest multiple of 1/256 to `rate`
    (0.2 -> 51/256 = 0.1992, 0.1 -> 26/256 = 0.1016); a rate that would round to no dropout
    or to dropping everything is refused.
    """
    threshold = round((1.0 - rate) * 256)
    if not 0 < threshold < 256:
        raise ValueError(f"dropout rate {rate}: expected a value in (1/512, 1 - 1/512)")
    return threshold


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when key is None (evaluation) or rate is 0.

    Keep-masks come from random bytes, 8 per threefry hash. `jax.random.bernoulli` (and
    `jax.random.bits` of any width, under partitionable threefry) spends a whole hash per
    element, and on CPU those masks, mostly over the [B, H, L, L] attention weights, were a
    quarter of the SASRec train step. Kept values are scaled by 256 / threshold, the inverse
    of the realised keep probability, so E[output] = x exactly.
    """
    if key is None or rate == 0.0:
        return x
    threshold = dropout_keep_threshold(rate)
    size = x.size
    words = -(-size // 4)  # uint32 words, 4 bytes each, from words / 2 hashes
    pair = jax.random.bits(key, (2,), jnp.uint32)  # a raw threefry key, whatever key's impl
    bits = threefry_2x32(pair, jnp.arange(words, dtype=jnp.uint32))
    random_bytes = jax.lax.bitcast_convert_type(bits, jnp.uint8).reshape(-1)[:size]
    keep = random_bytes.reshape(x.shape) < threshold
    return jnp.where(keep, x * (256 / threshold), 0).astype(x.dtype)


def split_key(key: jax.Array | None, num: int) -> list[jax.Array | None]:
    """`num` independent keys from `key`, or `num` Nones when running deterministically."""
    if key is None:
        return [None] * num
    return list(jax.random.split(key, num))


def causal_mask(length: int) -> jax.Array:
    """bool[1, 1, L, L]: query i sees keys 0..i."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


def bidirectional_mask(q_len: int, k_len: int) -> jax.Array:
    """bool[1, 1, Lq, Lk]: every query sees every key (padding is handled by key_padding_mask)."""
    return jnp.ones((1, 1, q_len, k_len), dtype=bool)


def key_padding_mask(valid: jax.Array) -> jax.Array:
    """bool[B, 1, 1, Lk] from valid: bool[B, Lk] (e.g. tokens != 0)."""
    return valid[:, None, None, :]


def same_segment_mask(segments: jax.Array | None) -> jax.Array | None:
    """bool[B, 1, L, L] from segments int32[B, L]: query and key in the same packed segment
    (see data/batching.pack_windows); None for unpacked rows."""
    if segments is None:
        return None
    return (segments[:, :, None] == segments[:, None, :])[:, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical AND of the given masks (None entries ignored); None if all are None."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    combined = present[0]
    for m in present[1:]:
        combined = jnp.logical_and(combined, m)
    return combined


class KVCache(NamedTuple):
    """Projected keys/values of the positions decoded so far; slots >= index are unused."""

    keys: jax.Array  # [B, capacity, H, Dh], rotary already applied
    values: jax.Array  # [B, capacity, H, Dh]
    index: jax.Array  # int32 scalar: number of filled slots


class MultiHeadAttention(nnx.Module):
    """softmax(Q Kᵀ / √d_k) V over `num_heads` heads with Q/K/V/output projections.

    `rotary=True` rotates q and k by their positions (self-attention only; a cross-attention
    has no shared position axis). `fused=True` computes the core with
    `jax.nn.dot_product_attention`; it has no attention dropout, so it requires
    dropout_rate == 0, and a call asking for the weights runs the explicit path instead.
    `chunk` > 0 runs the explicit core in query chunks (`chunked_attention_core`) whenever
    there are more than `chunk` queries and the weights are not asked for. Weights start from
    N(0, init_std); `qkv_init_std` > 0 gives the Q/K/V projections their own std.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        dropout_rate: float,
        rotary: bool,
        fused: bool,
        chunk: int,
        init_std: float,
        dtype,
        rngs: nnx.Rngs,
        qkv_init_std: float = 0.0,
    ):
        if d_model % num_heads:
            raise ValueError(
                f"config.model.d_model={d_model} is not divisible by model.num_heads={num_heads}"
            )
        if fused and dropout_rate > 0:
            raise ValueError(
                "config.model.fused_attention=True needs model.attention_dropout=0 "
                "(jax.nn.dot_product_attention has no attention dropout)"
            )
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout_rate = dropout_rate
        self.rotary = rotary
        self.fused = fused
        self.chunk = chunk
        self.dtype = dtype

        def projection(std):
            return nnx.Linear(
                d_model,
                d_model,
                dtype=dtype,
                kernel_init=nnx.initializers.normal(std),
                rngs=rngs,
            )

        self.query_proj = projection(qkv_init_std or init_std)
        self.key_proj = projection(qkv_init_std or init_std)
        self.value_proj = projection(qkv_init_std or init_std)
        self.output_proj = projection(init_std)

    def _project(self, inputs_q, inputs_kv, q_positions, kv_positions):
        """Q, K, V split into heads [B, L, H, Dh]; q and k rotated when rotary."""

        def split_heads(x):
            return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim)

        q = split_heads(self.query_proj(inputs_q))
        k = split_heads(self.key_proj(inputs_kv))
        v = split_heads(self.value_proj(inputs_kv))
        if self.rotary:
            q, k = apply_rotary(q, q_positions), apply_rotary(k, kv_positions)
        return q, k, v

    def _merge_heads(self, out: jax.Array) -> jax.Array:
        return self.output_proj(out.reshape(*out.shape[:-2], -1))

    def __call__(
        self,
        inputs_q: jax.Array,
        inputs_kv: jax.Array,
        *,
        mask: jax.Array | None = None,
        key: jax.Array | None = None,
        return_weights: bool = False,
    ):
        """inputs_q [B, Lq, D], inputs_kv [B, Lk, D] -> [B, Lq, D].

        With return_weights, also the attention weights [B, H, Lq, Lk] (before dropout).
        Rotary self-attention with Lq < Lk reads the queries as the LAST Lq of the Lk
        positions (e.g. only the last position, for a user vector).
        """
        q_len, kv_len = inputs_q.shape[1], inputs_kv.shape[1]
        q_positions, kv_positions = jnp.arange(kv_len - q_len, kv_len), jnp.arange(kv_len)
        q, k, v = self._project(inputs_q, inputs_kv, q_positions, kv_positions)
        out, weights = self._attend(q, k, v, mask, key, return_weights)
        out = self._merge_heads(out)
        return (out, weights) if return_weights else out

    def init_cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty cache for up to `capacity` decoded positions."""
        shape = (batch_size, capacity, self.num_heads, self.head_dim)
        dtype = self.dtype or jnp.float32
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))

    def decode(
        self,
        inputs_q: jax.Array,
        inputs_kv: jax.Array,
        cache: KVCache,
        *,
        mask: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Causal self-attention for S new positions appended after the cached ones.

        inputs_q / inputs_kv: [B, S, D], the new positions' query and key/value sources (the
        same array unless a norm placement feeds them differently). The new positions see
        every cached slot and the new ones up to themselves; `mask` (broadcastable to
        [B, H, S, capacity]) can remove more, e.g. padding. The caller keeps
        index + S <= capacity.
        """
        steps = inputs_q.shape[1]
        positions = cache.index + jnp.arange(steps)
        q, k, v = self._project(inputs_q, inputs_kv, positions, positions)
        start = (0, cache.index, 0, 0)
        keys = jax.lax.dynamic_update_slice(cache.keys, k.astype(cache.keys.dtype), start)
        values = jax.lax.dynamic_update_slice(cache.values, v.astype(cache.values.dtype), start)
        capacity = cache.keys.shape[1]
        seen = jnp.arange(capacity)[None, :] <= positions[:, None]  # [S, capacity]
        out, _ = self._attend(q, keys, values, combine_masks(seen[None, None], mask), key, False)
        return self._merge_heads(out), KVCache(keys, values, cache.index + steps)

    def _attend(self, q, k, v, mask, key, return_weights):
        """q [B, Lq, H, Dh], k/v [B, Lk, H, Dh] -> ([B, Lq, H, Dh], [B, H, Lq, Lk] or None)."""
        scale = self.head_dim**-0.5
        if self.fused and not return_weights:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale)
            if mask is not None:  # match the explicit path on rows with no allowed key
                batch, q_len, heads = q.shape[:3]
                has_key = jnp.broadcast_to(jnp.any(mask, axis=-1), (batch, heads, q_len))
                out = jnp.where(has_key.transpose(0, 2, 1)[..., None], out, 0).astype(out.dtype)
            return out, None
        # Heads-first [B, H, L, Dh] operands: with the head axis between batch and length, XLA:CPU
        # copied [B, H, Lq, Lk]-sized tensors into other layouts, and the core ran slower.
        q, k, v = (x.swapaxes(1, 2) for x in (q, k, v))
        core = functools.partial(attention_core, rate=self.dropout_rate, scale=scale)
        if self.chunk and q.shape[2] > self.chunk and not return_weights:
            out = chunked_attention_core(q, k, v, mask, key, core=core, chunk=self.chunk)
            return out.swapaxes(1, 2), None
        out, weights = core(q, k, v, mask, key)
        return out.swapaxes(1, 2), weights


def attention_core(q, k, v, mask, key, *, rate: float, scale: float):
    """Heads-first q [B, H, Lq, Dh], k/v [B, H, Lk, Dh] -> (out [B, H, Lq, Dh], weights).

    weights [B, H, Lq, Lk] are softmax(q kᵀ · scale) before dropout, 0 at masked keys.
    """
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)
    dropped = dropout(weights, rate, key)
    out = jnp.einsum("bhqk,bhkd->bhqd", dropped.astype(v.dtype), v)
    return out, weights


def chunked_attention_core(q, k, v, mask, key, *, core, chunk: int, bias=None):
    """`core`'s output (see attention_core), computed `chunk` query rows at a time.

    Query rows are independent, so this is exact up to float rounding. Each chunk is
    checkpointed and the chunks run under lax.map: the backward pass recomputes a chunk's
    [B, H, chunk, Lk] logits and weights instead of keeping [B, H, Lq, Lk] ones, and the
    compiled program holds one chunk body whatever Lq is. Chunk i drops out with
    fold_in(key, i), so the mask differs from the unchunked one but has the same law.
    Lq is padded up to a multiple of `chunk` (the padded rows are computed, then dropped).
    A mask with a query axis (causal) is split with the queries: it stays an input of up to
    B·Lq·Lk bools, 1 byte each and not per head; one without (key padding) is shared.
    bias: an additive score bias [..., Lq, Lk] (HSTU's relative positions), split with the
    queries and passed on as core(..., bias=chunk_of_bias).
    """
    q_len = q.shape[2]
    num_chunks = -(-q_len // chunk)
    padding = num_chunks * chunk - q_len

    def split(x):
        """[..., Lq, X] -> [num_chunks, ..., chunk, X], padded with zeros / False."""
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, padding), (0, 0)])
        return jnp.moveaxis(x.reshape(*x.shape[:-2], num_chunks, chunk, x.shape[-1]), -3, 0)

    if mask is not None:
        mask = jnp.asarray(mask)
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    per_query = mask is not None and mask.shape[2] > 1
    if bias is not None:
        bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one_chunk(xs):
        index, q_chunk, mask_chunk, bias_chunk = xs
        chunk_key = None if key is None else jax.random.fold_in(key, index)
        mask_chunk = mask_chunk if per_query else mask
        if bias_chunk is None:
            out, _ = core(q_chunk, k, v, mask_chunk, chunk_key)
        else:
            out, _ = core(q_chunk, k, v, mask_chunk, chunk_key, bias=bias_chunk)
        return out

    xs = (jnp.arange(num_chunks), split(q), split(mask) if per_query else None,
          None if bias is None else split(bias))
    out = jax.lax.map(one_chunk, xs)  # [num_chunks, B, H, chunk, Dh]
    out = jnp.moveaxis(out, 0, 2).reshape(*q.shape[:2], num_chunks * chunk, q.shape[3])
    return out[:, :, :q_len]
