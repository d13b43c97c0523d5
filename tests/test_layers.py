"""Feed-forward, norms, encoder/decoder layers against numpy; cached decoding of the decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from transrec_jax.config import base_config
from transrec_jax.models.attention import causal_mask, combine_masks, key_padding_mask
from transrec_jax.models.layers import DecoderLayer, EncoderLayer, FeedForward, make_norm

D, H, F, B, L = 8, 2, 16, 2, 8
EPS = 1e-6
TOKENS = np.array([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
TARGET_VALID = np.array([[0, 1, 1, 1, 1, 1, 1, 1], [1] * 8], bool)


def model_cfg(**overrides):
    cfg = base_config().model
    cfg.update(d_model=D, num_heads=H, d_ff=F, dropout=0.0, attention_dropout=0.0, init_std=0.3)
    cfg.update(overrides)
    return cfg


def randomize(module, seed=7):
    """Perturb every parameter so norms and biases are not at their identity initial values."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    perturbed = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    nnx.update(module, jax.tree.unflatten(treedef, perturbed))
    return module


def arr(variable):
    return np.asarray(variable[...], np.float64)


def np_norm(norm, x):
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + EPS) * arr(norm.scale) + arr(
        norm.bias
    )


def np_linear(linear, x):
    return x @ arr(linear.kernel) + arr(linear.bias)


def np_ffn(ffn, x):
    h = np_linear(ffn.hidden, x)
    if ffn.activation == "swiglu":
        gate = np_linear(ffn.gate, x)
        h = gate / (1 + np.exp(-gate)) * h
    elif ffn.activation == "gelu":
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    else:
        h = np.maximum(h, 0)
    return np_linear(ffn.output, h)


def np_attention(mha, xq, xkv, mask):
    q, k, v = (
        np_linear(mha.query_proj, xq),
        np_linear(mha.key_proj, xkv),
        np_linear(mha.value_proj, xkv),
    )
    dh = D // H
    out = np.zeros(q.shape)
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        logits = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(dh)
        allowed = np.broadcast_to(np.asarray(mask)[:, 0], logits.shape)
        shifted = np.where(
            allowed, logits - np.where(allowed, logits, -np.inf).max(-1, keepdims=True), -np.inf
        )
        e = np.exp(shifted)
        total = e.sum(-1, keepdims=True)
        out[..., cols] = np.where(total > 0, e / np.where(total > 0, total, 1), 0) @ v[..., cols]
    return np_linear(mha.output_proj, out)


def np_sublayer(placement, norm, x, f):
    """f(query source, self key/value source) under the documented norm placements."""
    if placement == "pre":
        h = np_norm(norm, x)
        return x + f(h, h)
    if placement == "post":
        return np_norm(norm, x + f(x, x))
    h = np_norm(norm, x)  # sasrec: Q = LN(x); x = Q + f(Q, x)
    return h + f(h, x)


def np_encoder_layer(layer, placement, x, mask):
    x = np_sublayer(
        placement, layer.attention_norm, x, lambda q, kv: np_attention(layer.attention, q, kv, mask)
    )
    return np_sublayer(placement, layer.ffn_norm, x, lambda h, _: np_ffn(layer.ffn, h))


def np_decoder_layer(layer, placement, x, encoded, self_mask, cross_mask):
    x = np_sublayer(
        placement,
        layer.self_attention_norm,
        x,
        lambda q, kv: np_attention(layer.self_attention, q, kv, self_mask),
    )
    x = np_sublayer(
        placement,
        layer.cross_attention_norm,
        x,
        lambda q, _: np_attention(layer.cross_attention, q, encoded, cross_mask),
    )
    return np_sublayer(placement, layer.ffn_norm, x, lambda h, _: np_ffn(layer.ffn, h))


def inputs(seed=1, length=L):
    return jax.random.normal(jax.random.key(seed), (B, length, D))


@pytest.mark.parametrize("activation", ["gelu", "relu", "swiglu"])
def test_feed_forward_matches_numpy(activation):
    ffn = randomize(
        FeedForward(
            D,
            F,
            activation=activation,
            dropout_rate=0.0,
            init_std=0.3,
            dtype=jnp.float32,
            rngs=nnx.Rngs(0),
        )
    )
    x = inputs()
    np.testing.assert_allclose(ffn(x), np_ffn(ffn, np.asarray(x, np.float64)), atol=1e-5)
    assert (ffn.gate is not None) == (activation == "swiglu")


def test_norm_matches_numpy():
    norm = randomize(make_norm(D, dtype=jnp.float32, rngs=nnx.Rngs(0)))
    x = inputs()
    np.testing.assert_allclose(norm(x), np_norm(norm, np.asarray(x, np.float64)), atol=1e-5)


@pytest.mark.parametrize("placement", ["pre", "post", "sasrec"])
def test_encoder_layer_matches_numpy(placement):
    layer = randomize(
        EncoderLayer(model_cfg(norm_placement=placement), dtype=jnp.float32, rngs=nnx.Rngs(0))
    )
    x = inputs()
    mask = combine_masks(causal_mask(L), key_padding_mask(jnp.asarray(TOKENS) != 0))
    out = layer(x, mask=mask)
    np.testing.assert_allclose(
        out, np_encoder_layer(layer, placement, np.asarray(x, np.float64), mask), atol=1e-4
    )


def test_encoder_layer_dropout_comes_from_the_key():
    layer = EncoderLayer(
        model_cfg(dropout=0.3, attention_dropout=0.3), dtype=jnp.float32, rngs=nnx.Rngs(0)
    )
    x = inputs()
    a = layer(x, mask=None, key=jax.random.key(0))
    np.testing.assert_allclose(layer(x, mask=None, key=jax.random.key(0)), a)
    assert not np.allclose(layer(x, mask=None, key=jax.random.key(1)), a)
    assert not np.allclose(layer(x, mask=None), a)


@pytest.mark.parametrize("placement", ["pre", "post", "sasrec"])
def test_decoder_layer_matches_numpy(placement):
    layer = randomize(
        DecoderLayer(model_cfg(norm_placement=placement), dtype=jnp.float32, rngs=nnx.Rngs(0))
    )
    x, encoded = inputs(seed=1), inputs(seed=2)
    self_mask, cross_mask = (
        key_padding_mask(jnp.asarray(TARGET_VALID)),
        key_padding_mask(jnp.asarray(TOKENS) != 0),
    )
    out = layer(x, encoded, self_mask=self_mask, cross_mask=cross_mask)
    expected = np_decoder_layer(
        layer,
        placement,
        np.asarray(x, np.float64),
        np.asarray(encoded, np.float64),
        causal_mask(L) & self_mask,
        cross_mask,
    )
    np.testing.assert_allclose(out, expected, atol=1e-4)


def decoder_case(placement, positions):
    layer = randomize(
        DecoderLayer(
            model_cfg(norm_placement=placement, positions=positions),
            dtype=jnp.float32,
            rngs=nnx.Rngs(0),
        )
    )
    x, encoded = inputs(seed=1), inputs(seed=2)
    self_mask = key_padding_mask(jnp.asarray(TARGET_VALID))
    cross_mask = key_padding_mask(jnp.asarray(TOKENS) != 0)
    return layer, x, encoded, dict(self_mask=self_mask, cross_mask=cross_mask)


@pytest.mark.parametrize(
    "placement,positions", [("pre", "learned"), ("post", "rotary"), ("sasrec", "rotary")]
)
def test_decoder_step_by_step_matches_full(placement, positions):
    layer, x, encoded, masks = decoder_case(placement, positions)
    cache = layer.init_cache(B, x.shape[1])
    outs = []
    for t in range(x.shape[1]):
        out, cache = layer.decode(x[:, t : t + 1], encoded, cache, **masks)
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), layer(x, encoded, **masks), atol=1e-5)


def test_decoder_decoding_under_jit_and_scan():
    layer, x, encoded, masks = decoder_case("pre", "rotary")
    steps = x.shape[1]

    @nnx.jit
    def decode_all(layer, x, encoded):
        def step(cache, x_t):
            out, cache = layer.decode(x_t[:, None], encoded, cache, **masks)
            return cache, out[:, 0]

        cache, outs = jax.lax.scan(step, layer.init_cache(B, steps), x.transpose(1, 0, 2))
        return outs.transpose(1, 0, 2), cache.index

    stepwise, index = decode_all(layer, x, encoded)
    assert int(index) == steps
    np.testing.assert_allclose(stepwise, layer(x, encoded, **masks), atol=1e-5)
