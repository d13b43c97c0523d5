"""HSTU (Zhai et al., "Actions Speak Louder than Words", ICML 2024), written from scratch.

One HSTU block replaces a Transformer layer's attention and feed-forward with a gated
pointwise attention (facebookresearch/generative-recommenders @2e81fab,
generative_recommenders/research/modeling/sequential/hstu.py):

  u, v, q, k = split(SiLU(LN(x) W_uvqk))                              lines 316-339
  A = SiLU(q kᵀ + rab) / n, times the causal (and padding) mask          lines 204-212
  x = x + W_o(Dropout(u ⊙ LN(A v))) + b_o                              lines 419-434

The LayerNorms have no scale or bias (F.layer_norm, eps 1e-6); W_uvqk has no bias and starts
from N(0, 0.02); W_o from xavier_uniform, b_o from PyTorch's default (uniform, bound one over the root of fan_in).
There is no softmax, no 1/√d scaling, no attention dropout and no feed-forward. n is the
padded sequence length of the authors' batches, a constant (line 166: the size of the
attention mask): here model.max_len, so a query's scale does not depend on how much padding
an evaluation batch carries. rab is a learned relative position bias, one scalar per offset
j - i in (-max_len, max_len) (lines 87-147, `_pos_w`); in slot offsets, which left padding and
packing leave unchanged within a sequence.

With model.time_buckets > 0 (the authors: num_buckets=128, line 609) rab also has their
relative time term (class RelativeBucketedTimeAndPositionBasedBias, lines 87-147): one learned
scalar per bucket (`_ts_w`, line 101: num_buckets + 1 from N(0, 0.02)), for query i and key j

  ts_w[bucket(t_query(i) - t(j))],  bucket(Δ) = clamp(floor(ln(max(|Δ|, 1)) / 0.301), 0, num_buckets)

(bucketization_fn, lines 610-612; the natural log: a gap under 2³¹ s reaches bucket 71 at most).
t_query(i) is the time of the item after position i, the one it predicts (lines 129-136:
ext_timestamps[:, 1:] - ext_timestamps[:, :-1]). At evaluation too, the last position's query
time is the held-out target's: research/modeling/sequential/features.py lines 68-83 write
target_timestamps into `timestamps` at index past_lengths (line 90), for the training rows
(research/trainer/train.py lines 313-317) and the evaluation rows (lines 454-456) alike, and
the user vector is the encoder output at past_lengths - 1 (research/data/eval.py lines
108-113, hstu.py line 771). Here times are int32 seconds since the dataset's first timestamp
(data/batching.relative_times), passed as [B, L + 1]: the L items' times, then the last
position's query time, so query i's time is times[:, i + 1]. model.time_query="last_item"
reads times[:, i] instead, the time of item i, so that no position reads when its target
happened: on ML-1M, where users rate in same-second bursts, the target's time says which
history items were rated with it. Only differences count, and left padding (masked keys) and
packing (a segment's queries see only its own keys) keep them.

Per head: q and k have d_model / num_heads features, as do u and v (dqk = dv = 50 / 25 in
the ML-1M configs). The model around the blocks is SASRec's (`SASRec` training, every
position a target, packed rows); configs/hstu.py sets the authors' embedding scale, learned
positions from the oldest item, cosine scores with temperature 0.05 and the sampled softmax.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from transrec_jax.models.attention import chunked_attention_core, dropout
from transrec_jax.models.recommenders import SASRec


def hstu_attention_core(q, k, v, mask, key=None, *, bias, scale: float):
    """Heads-first q / k / v [B, H, L, Dh] -> (out [B, H, Lq, Dh], weights [B, H, Lq, Lk]).

    weights = SiLU(q kᵀ + bias) · scale, 0 where mask is False; bias broadcasts to
    [B, H, Lq, Lk]. `key` is unused (HSTU has no attention dropout); it keeps the signature of
    attention.attention_core so chunked_attention_core can run either.
    """
    del key
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.silu(logits + bias) * scale
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)
    out = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), v)
    return out, weights


def time_buckets(delta: jax.Array, num_buckets: int) -> jax.Array:
    """int32 bucket of each time difference Δ (seconds): the authors' bucketization_fn,
    floor(ln(max(|Δ|, 1)) / 0.301) in float32, clamped to [0, num_buckets]."""
    seconds = jnp.maximum(jnp.abs(delta), 1).astype(jnp.float32)
    return jnp.clip((jnp.log(seconds) / 0.301).astype(jnp.int32), 0, num_buckets)


class RelativeTimeBias(nnx.Module):
    """One learned scalar per bucket of t_query - t_key, num_buckets + 1 from N(0, 0.02).

    query "target": query i's time is the time of the item it predicts ([ZL24]); "last_item":
    the time of item i itself, so no position reads when its target happened.
    """

    def __init__(self, num_buckets: int, query: str, *, rngs: nnx.Rngs):
        self.num_buckets = num_buckets
        self.query = query
        self.weight = nnx.Param(0.02 * jax.random.normal(rngs.params(), (num_buckets + 1,)))

    def __call__(self, times: jax.Array, q_len: int) -> jax.Array:
        """times int32 [B, L + 1] (see the module docstring) -> float32 [B, q_len, L]; the
        queries are the last q_len of the L positions."""
        item_times = times[:, :-1]
        query_times = times[:, -q_len:] if self.query == "target" else item_times[:, -q_len:]
        delta = query_times[:, :, None] - item_times[:, None, :]
        return self.weight[...][time_buckets(delta, self.num_buckets)]


class RelativePositionBias(nnx.Module):
    """One learned scalar per slot offset j - i, |j - i| < max_len, from N(0, 0.02)."""

    def __init__(self, max_len: int, *, rngs: nnx.Rngs):
        self.max_len = max_len
        self.weight = nnx.Param(0.02 * jax.random.normal(rngs.params(), (2 * max_len - 1,)))

    def __call__(self, q_len: int, k_len: int) -> jax.Array:
        """float32 [q_len, k_len]; the queries are the last q_len of the k_len slots."""
        queries = jnp.arange(k_len - q_len, k_len)[:, None]
        offsets = jnp.arange(k_len)[None, :] - queries
        return self.weight[...][self.max_len - 1 + offsets]


def _torch_linear_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class HSTUBlock(nnx.Module):
    """Pointwise gated attention with a relative position (and time) bias (see the module
    docstring)."""

    def __init__(self, model_cfg, *, dtype, rngs: nnx.Rngs):
        d_model, heads = model_cfg.d_model, model_cfg.num_heads
        if d_model % heads:
            raise ValueError(
                f"config.model.d_model={d_model} is not divisible by model.num_heads={heads}"
            )
        self.num_heads = heads
        self.head_dim = d_model // heads
        self.scale = 1.0 / model_cfg.max_len
        self.chunk = model_cfg.attention_chunk
        self.dropout_rate = model_cfg.dropout
        self.input_norm = nnx.LayerNorm(d_model, epsilon=1e-6, use_scale=False, use_bias=False,
                                        dtype=dtype, rngs=rngs)
        self.uvqk = nnx.Linear(d_model, 4 * d_model, use_bias=False, dtype=dtype,
                               kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.relative_bias = RelativePositionBias(model_cfg.max_len, rngs=rngs)
        buckets = model_cfg.time_buckets
        self.time_bias = (RelativeTimeBias(buckets, model_cfg.time_query, rngs=rngs)
                          if buckets else None)
        self.attention_norm = nnx.LayerNorm(d_model, epsilon=1e-6, use_scale=False,
                                            use_bias=False, dtype=dtype, rngs=rngs)
        self.output = nnx.Linear(d_model, d_model, dtype=dtype,
                                 kernel_init=nnx.initializers.xavier_uniform(),
                                 bias_init=_torch_linear_bias_init(d_model), rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None, key: jax.Array | None = None,
                 last_only: bool = False, times: jax.Array | None = None) -> jax.Array:
        """x [B, L, D] -> [B, L, D] ([B, 1, D] with last_only: the last position alone).

        mask: bool, broadcastable to [B, H, L, L] (causal, key padding, packed segments).
        times: int32 [B, L + 1], required with model.time_buckets > 0 and only then.
        """
        if (times is None) != (self.time_bias is None):
            raise ValueError("HSTU blocks take times exactly when config.model.time_buckets > 0")
        length = x.shape[1]
        u, v, q, k = jnp.split(jax.nn.silu(self.uvqk(self.input_norm(x))), 4, axis=-1)
        if last_only:
            x, u, q = x[:, -1:], u[:, -1:], q[:, -1:]
            mask = None if mask is None else mask[..., -1:, :]

        def heads(t):  # [B, L, D] -> [B, H, L, Dh]
            return t.reshape(*t.shape[:2], self.num_heads, self.head_dim).swapaxes(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        bias = self.relative_bias(q.shape[2], length)[None, None]
        if times is not None:
            bias = bias + self.time_bias(times, q.shape[2])[:, None]
        core = functools.partial(hstu_attention_core, scale=self.scale)
        if self.chunk and q.shape[2] > self.chunk:
            out = chunked_attention_core(q, k, v, mask, None, core=core, chunk=self.chunk,
                                         bias=bias)
        else:
            out, _ = core(q, k, v, mask, bias=bias)
        attended = out.swapaxes(1, 2).reshape(*x.shape[:2], -1)
        gated = u * self.attention_norm(attended)
        return x + self.output(dropout(gated, self.dropout_rate, key))


class HSTU(SASRec):
    """SASRec's objective and model around a stack of HSTU blocks, with no final norm.

    Its attention weights are SiLU(q kᵀ + rab) / n, pointwise, not a softmax: rows do not sum
    to 1 and are no shares of the history, so encode(return_attention=True) refuses.
    """

    softmax_attention = False

    @classmethod
    def make_layer(cls, model_cfg, *, dtype, rngs: nnx.Rngs) -> nnx.Module:
        return HSTUBlock(model_cfg, dtype=dtype, rngs=rngs)

    @classmethod
    def ends_with_norm(cls, model_cfg) -> bool:
        return False
