"""Transformer blocks: feed-forward, norms, residual wiring, encoder and decoder layers.

Norm placement (`model.norm_placement`) for a sublayer f, with N a LayerNorm:
  pre:    x = x + Dropout(f(N(x)))        the stack ends with a final N
  post:   x = N(x + Dropout(f(x)))        no final N
  sasrec: h = N(x); x = h + f(h)          the stack ends with a final N
The sasrec form is SASRec's original block (Kang & McAuley 2018; its TF code and PyTorch
port): `Q = LN(x); x = Q + MHA(Q, x, x)` -- queries normed, keys/values RAW, the residual
taken from the normed queries, no dropout on the attention output (only on the attention
weights) -- then `x = LN(x); x = x + FFN(x)`, so the feed-forward residual is the normed
input too, and the FFN output gets dropout as in the original. The decoder's
cross-attention follows the same pattern with keys/values from the encoder output.
SASRec's "zero the padding rows after each block" step is not needed: padded keys are
masked out of every attention instead.
"""

from __future__ import annotations

import jax
from flax import nnx

from transrec_jax.models.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    dropout,
    split_key,
)


def make_norm(d_model: int, *, dtype, rngs: nnx.Rngs) -> nnx.Module:
    """LayerNorm with scale and bias."""
    return nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)


def has_final_norm(placement: str) -> bool:
    """pre and sasrec stacks end with a norm; post stacks are already normed."""
    return placement != "post"


class FeedForward(nnx.Module):
    """Position-wise d_model -> d_ff -> d_model with dropout after the activation.

    swiglu: (silu(x W_gate) * x W_hidden) W_output, i.e. three d_model x d_ff matrices.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        activation: str,
        dropout_rate: float,
        init_std: float,
        dtype,
        rngs: nnx.Rngs,
    ):
        if activation not in ("gelu", "relu", "swiglu"):
            raise ValueError(
                f"config.model.activation={activation!r}: expected gelu | relu | swiglu"
            )
        init = nnx.initializers.normal(init_std)

        def linear(d_in, d_out):
            return nnx.Linear(d_in, d_out, dtype=dtype, kernel_init=init, rngs=rngs)

        self.activation = activation
        self.dropout_rate = dropout_rate
        self.hidden = linear(d_model, d_ff)
        self.gate = linear(d_model, d_ff) if activation == "swiglu" else None
        self.output = linear(d_ff, d_model)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        h = self.hidden(x)
        if self.activation == "swiglu":
            h = nnx.silu(self.gate(x)) * h
        elif self.activation == "gelu":
            h = nnx.gelu(h, approximate=False)  # exact erf form, PyTorch's default
        else:
            h = nnx.relu(h)
        return self.output(dropout(h, self.dropout_rate, key))


def sublayer_inputs(placement: str, norm: nnx.Module, x: jax.Array):
    """(query source, self key/value source) of a sublayer under the norm placement."""
    if placement == "post":
        return x, x
    h = norm(x)
    return h, (x if placement == "sasrec" else h)


def sublayer_output(placement: str, norm: nnx.Module, x, h, update, rate: float, key) -> jax.Array:
    """Residual + dropout of the sublayer's `update` onto x (pre, post) or the normed h (sasrec)."""
    update = dropout(update, rate, key)
    if placement == "pre":
        return x + update
    if placement == "post":
        return norm(x + update)
    return h + update


def _check_placement(placement: str) -> None:
    if placement not in ("pre", "post", "sasrec"):
        raise ValueError(f"config.model.norm_placement={placement!r}: expected pre | post | sasrec")


def _attention(model_cfg, *, rotary: bool, dtype, rngs: nnx.Rngs) -> MultiHeadAttention:
    return MultiHeadAttention(
        model_cfg.d_model,
        model_cfg.num_heads,
        dropout_rate=model_cfg.attention_dropout,
        rotary=rotary,
        fused=model_cfg.fused_attention,
        chunk=model_cfg.attention_chunk,
        init_std=model_cfg.init_std,
        qkv_init_std=model_cfg.qkv_init_std,
        dtype=dtype,
        rngs=rngs,
    )


def _feed_forward(model_cfg, *, dtype, rngs: nnx.Rngs) -> FeedForward:
    return FeedForward(
        model_cfg.d_model,
        model_cfg.d_ff,
        activation=model_cfg.activation,
        dropout_rate=model_cfg.dropout,
        init_std=model_cfg.init_std,
        dtype=dtype,
        rngs=rngs,
    )


class EncoderLayer(nnx.Module):
    """Self-attention + feed-forward; the caller's mask decides causal vs bidirectional."""

    def __init__(self, model_cfg, *, dtype, rngs: nnx.Rngs):
        _check_placement(model_cfg.norm_placement)
        self.placement = model_cfg.norm_placement
        self.dropout_rate = model_cfg.dropout
        # SASRec's block has no dropout on the attention output (see the module docstring).
        self.attention_output_dropout = 0.0 if self.placement == "sasrec" else model_cfg.dropout
        self.attention_norm = make_norm(model_cfg.d_model, dtype=dtype, rngs=rngs)
        rotary = model_cfg.positions == "rotary"
        self.attention = _attention(model_cfg, rotary=rotary, dtype=dtype, rngs=rngs)
        self.ffn_norm = make_norm(model_cfg.d_model, dtype=dtype, rngs=rngs)
        self.ffn = _feed_forward(model_cfg, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None, key: jax.Array | None = None,
                 last_only: bool = False, return_attention: bool = False):
        """x [B, L, D] -> [B, L, D]; key=None disables dropout.

        last_only: the last position's output only, [B, 1, D] (its keys and values still come
        from every position): all a user vector needs from the top layer, at ~1/L of the
        attention and feed-forward cost. return_attention: (output, the attention weights
        [B, H, Lq, L] before dropout), computed by the explicit core even when the model is
        fused or chunked (explanations read them); off, nothing else is computed.
        """
        attn_key, attn_out_key, ffn_key, ffn_out_key = split_key(key, 4)
        placement = self.placement
        h, kv = sublayer_inputs(placement, self.attention_norm, x)
        if last_only:
            x, h = x[:, -1:], h[:, -1:]
            mask = None if mask is None else mask[..., -1:, :]
        weights = None
        if return_attention:
            update, weights = self.attention(h, kv, mask=mask, key=attn_key, return_weights=True)
        else:
            update = self.attention(h, kv, mask=mask, key=attn_key)
        attn_rate, ffn_rate = self.attention_output_dropout, self.dropout_rate
        x = sublayer_output(placement, self.attention_norm, x, h, update, attn_rate, attn_out_key)
        h, _ = sublayer_inputs(placement, self.ffn_norm, x)
        update = self.ffn(h, key=ffn_key)
        x = sublayer_output(placement, self.ffn_norm, x, h, update, ffn_rate, ffn_out_key)
        return (x, weights) if return_attention else x


class DecoderLayer(nnx.Module):
    """Causal self-attention, cross-attention to an encoder output, feed-forward.

    The causal mask is built in; `self_mask` / `cross_mask` add e.g. padding. `decode` runs
    the same layer on new positions against a self-attention KVCache and equals `__call__`
    on the full prefix. Rotary positions (model.positions == 'rotary') apply to the
    self-attention only.
    """

    def __init__(self, model_cfg, *, dtype, rngs: nnx.Rngs):
        _check_placement(model_cfg.norm_placement)
        self.placement = model_cfg.norm_placement
        self.dropout_rate = model_cfg.dropout
        self.attention_output_dropout = 0.0 if self.placement == "sasrec" else model_cfg.dropout
        d_model = model_cfg.d_model
        self.self_attention_norm = make_norm(d_model, dtype=dtype, rngs=rngs)
        rotary = model_cfg.positions == "rotary"
        self.self_attention = _attention(model_cfg, rotary=rotary, dtype=dtype, rngs=rngs)
        self.cross_attention_norm = make_norm(d_model, dtype=dtype, rngs=rngs)
        self.cross_attention = _attention(model_cfg, rotary=False, dtype=dtype, rngs=rngs)
        self.ffn_norm = make_norm(d_model, dtype=dtype, rngs=rngs)
        self.ffn = _feed_forward(model_cfg, dtype=dtype, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        encoded: jax.Array,
        *,
        self_mask: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """x [B, Lt, D] targets, encoded [B, Ls, D] -> [B, Lt, D]."""
        self_key, self_out_key, rest_key = split_key(key, 3)
        h, kv = sublayer_inputs(self.placement, self.self_attention_norm, x)
        mask = combine_masks(causal_mask(x.shape[1]), self_mask)
        update = self.self_attention(h, kv, mask=mask, key=self_key)
        x = self._self_attention_output(x, h, update, self_out_key)
        return self._cross_attention_and_ffn(x, encoded, cross_mask, rest_key)

    def init_cache(self, batch_size: int, capacity: int) -> KVCache:
        return self.self_attention.init_cache(batch_size, capacity)

    def decode(
        self,
        x: jax.Array,
        encoded: jax.Array,
        cache: KVCache,
        *,
        self_mask: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """x [B, S, D]: the next S target positions; self_mask broadcasts to [B, H, S, capacity]."""
        self_key, self_out_key, rest_key = split_key(key, 3)
        h, kv = sublayer_inputs(self.placement, self.self_attention_norm, x)
        update, cache = self.self_attention.decode(h, kv, cache, mask=self_mask, key=self_key)
        x = self._self_attention_output(x, h, update, self_out_key)
        return self._cross_attention_and_ffn(x, encoded, cross_mask, rest_key), cache

    def _self_attention_output(self, x, h, update, key):
        rate = self.attention_output_dropout
        return sublayer_output(self.placement, self.self_attention_norm, x, h, update, rate, key)

    def _cross_attention_and_ffn(self, x, encoded, cross_mask, key):
        attn_key, attn_out_key, ffn_key, ffn_out_key = split_key(key, 4)
        placement = self.placement
        h, _ = sublayer_inputs(placement, self.cross_attention_norm, x)
        update = self.cross_attention(h, encoded, mask=cross_mask, key=attn_key)
        attn_rate, ffn_rate = self.attention_output_dropout, self.dropout_rate
        x = sublayer_output(
            placement, self.cross_attention_norm, x, h, update, attn_rate, attn_out_key
        )
        h, _ = sublayer_inputs(placement, self.ffn_norm, x)
        update = self.ffn(h, key=ffn_key)
        return sublayer_output(placement, self.ffn_norm, x, h, update, ffn_rate, ffn_out_key)
