"""Multi-head attention against a numpy reference; masks, fused path, KV cache, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax.models.attention import (
    MultiHeadAttention,
    bidirectional_mask,
    causal_mask,
    combine_masks,
    dropout,
    dropout_keep_threshold,
    key_padding_mask,
)

D, H, B, L = 8, 2, 2, 8
TOKENS = np.array([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


def make_attention(*, rotary=False, fused=False, dropout_rate=0.0, seed=0, chunk=0):
    return MultiHeadAttention(
        D,
        H,
        dropout_rate=dropout_rate,
        rotary=rotary,
        fused=fused,
        chunk=chunk,
        init_std=0.3,
        dtype=jnp.float32,
        rngs=nnx.Rngs(seed),
    )


def numpy_rotary(x, positions):
    """Rotate feature pairs (i, i + d/2) of x[B, L, d] by angle position * 10000^(-2i/d)."""
    half = x.shape[-1] // 2
    freq = 10000.0 ** (-np.arange(half) * 2.0 / x.shape[-1])
    angle = positions[:, None] * freq[None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate(
        [x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1
    )


def numpy_attention(mha, xq, xkv, mask, rotary=False):
    """softmax(QKᵀ/√d)V head by head (columns h*dh:(h+1)*dh), rows with no allowed key -> 0."""

    def p(proj):
        return np.asarray(proj.kernel[...], np.float64), np.asarray(proj.bias[...], np.float64)

    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = map(
        p, (mha.query_proj, mha.key_proj, mha.value_proj, mha.output_proj)
    )
    xq, xkv = np.asarray(xq, np.float64), np.asarray(xkv, np.float64)
    q, k, v = xq @ wq + bq, xkv @ wk + bk, xkv @ wv + bv
    batch, lq, lk, dh = xq.shape[0], xq.shape[1], xkv.shape[1], D // H
    mask = np.ones((1, 1, lq, lk), bool) if mask is None else np.asarray(mask)
    merged = np.zeros((batch, lq, D))
    all_weights = np.zeros((batch, H, lq, lk))
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
        if rotary:
            qh, kh = numpy_rotary(qh, np.arange(lq)), numpy_rotary(kh, np.arange(lk))
        logits = qh @ kh.transpose(0, 2, 1) / np.sqrt(dh)
        allowed = np.broadcast_to(mask[:, min(h, mask.shape[1] - 1)], logits.shape)
        logits = np.where(allowed, logits, -np.inf)
        row_max = np.max(np.where(allowed, logits, -1e300), axis=-1, keepdims=True)
        e = np.where(allowed, np.exp(logits - row_max), 0.0)
        total = e.sum(-1, keepdims=True)
        weights = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
        all_weights[:, h] = weights
        merged[..., cols] = weights @ vh
    return merged @ wo + bo, all_weights


def masks():
    padding = key_padding_mask(jnp.asarray(TOKENS) != 0)
    return {
        "none": None,
        "causal": causal_mask(L),
        "key_padding": padding,
        "bidirectional": combine_masks(bidirectional_mask(L, L), padding),
        "causal_and_padding": combine_masks(causal_mask(L), padding),
    }


def inputs(seed=1, length=L):
    return jax.random.normal(jax.random.key(seed), (B, length, D))


def test_mask_helpers_match_numpy():
    np.testing.assert_array_equal(causal_mask(4)[0, 0], np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(bidirectional_mask(2, 3), np.ones((1, 1, 2, 3), bool))
    padding = key_padding_mask(jnp.asarray(TOKENS) != 0)
    assert padding.shape == (B, 1, 1, L)
    np.testing.assert_array_equal(padding[:, 0, 0], TOKENS != 0)
    combined = combine_masks(causal_mask(L), None, padding)
    np.testing.assert_array_equal(
        combined, np.tril(np.ones((L, L), bool))[None, None] & (TOKENS != 0)[:, None, None]
    )
    assert combine_masks(None, None) is None


@pytest.mark.parametrize(
    "mask_name,rotary",
    [
        ("none", False),
        ("causal", False),
        ("key_padding", False),
        ("bidirectional", False),
        ("causal_and_padding", False),
        ("causal_and_padding", True),
    ],
)
def test_matches_numpy(mask_name, rotary):
    mha = make_attention(rotary=rotary)
    x = inputs()
    mask = masks()[mask_name]
    out, weights = mha(x, x, mask=mask, return_weights=True)
    expected, expected_weights = numpy_attention(mha, x, x, mask, rotary=rotary)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)


def test_cross_attention_matches_numpy():
    mha = make_attention()
    xq, xkv = inputs(seed=2, length=3), inputs(seed=3)
    mask = key_padding_mask(jnp.asarray(TOKENS) != 0)
    np.testing.assert_allclose(
        mha(xq, xkv, mask=mask), numpy_attention(mha, xq, xkv, mask)[0], atol=1e-5
    )


def test_weights_rows_sum_to_one_over_unmasked_keys():
    mha = make_attention()
    x = inputs()
    mask = masks()["causal_and_padding"]
    _, weights = mha(x, x, mask=mask, return_weights=True)
    allowed = np.broadcast_to(np.asarray(mask), weights.shape)
    np.testing.assert_array_equal(np.asarray(weights)[~allowed], 0.0)
    row_has_key = allowed.any(-1)
    np.testing.assert_allclose(np.asarray(weights).sum(-1)[row_has_key], 1.0, atol=1e-6)
    # Row 0 has three padding slots: those queries see no key and get zero weights.
    assert not row_has_key[0, :, :3].any() and row_has_key[0, :, 3:].all()


@pytest.mark.parametrize("mask_name", ["none", "bidirectional", "causal_and_padding"])
def test_fused_matches_explicit(mask_name):
    explicit, fused = make_attention(rotary=True), make_attention(rotary=True, fused=True)
    x = inputs()
    mask = masks()[mask_name]
    np.testing.assert_allclose(fused(x, x, mask=mask), explicit(x, x, mask=mask), atol=1e-5)
    # Asking the fused module for weights runs the explicit path.
    np.testing.assert_allclose(
        fused(x, x, mask=mask, return_weights=True)[1],
        explicit(x, x, mask=mask, return_weights=True)[1],
    )


@pytest.mark.parametrize("implementation", [None, "xla"])
def test_dot_product_attention_core_matches_numpy(implementation):
    """The primitive behind the fused path, on split heads, against the numpy softmax core."""
    q, k, v = (jax.random.normal(jax.random.key(i), (B, L, H, D // H)) for i in range(3))
    mask = np.asarray(masks()["key_padding"])
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D // H)
    logits = np.where(mask, logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", w, v), atol=1e-5)


def test_fused_rejects_attention_dropout():
    with pytest.raises(ValueError, match="attention_dropout"):
        make_attention(fused=True, dropout_rate=0.1)


def test_attention_dropout_uses_the_key():
    mha = make_attention(dropout_rate=0.5)
    x = inputs()
    deterministic = mha(x, x)
    a, b = mha(x, x, key=jax.random.key(0)), mha(x, x, key=jax.random.key(1))
    np.testing.assert_allclose(mha(x, x, key=jax.random.key(0)), a)
    assert not np.allclose(a, deterministic) and not np.allclose(a, b)
    np.testing.assert_allclose(mha(x, x), deterministic)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.1])
def test_dropout_keep_rate_and_scale(rate):
    """Realised keep rate = threshold/256 within binomial bounds; kept values are x·256/threshold."""
    threshold = dropout_keep_threshold(rate)
    assert abs((256 - threshold) / 256 - rate) <= 1 / 512
    n = 200_003  # odd: not a whole number of random words
    out = np.asarray(dropout(jnp.ones((n,)), rate, jax.random.key(0)))
    kept = out != 0
    p = threshold / 256
    assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[kept], 256 / threshold, rtol=1e-6)
    assert abs(out.mean() - 1.0) < 5 * np.sqrt((1 - p) / p / n)  # E[output] = x
    # Bytes of one hash land far apart in the flat array; both halves keep at the same rate
    # and neighbouring elements are uncorrelated.
    for half in (kept[: n // 2], kept[n // 2 :]):
        assert abs(half.mean() - p) < 5 * np.sqrt(p * (1 - p) / half.size)
    assert abs(np.corrcoef(kept[:-1], kept[1:])[0, 1]) < 5 / np.sqrt(n)


def test_dropout_keep_rate_per_position_over_keys():
    """Every position is kept at the same rate across keys (no position is stuck)."""
    masks = jax.vmap(lambda k: dropout(jnp.ones((4, 33)), 0.2, k) != 0)(
        jax.random.split(jax.random.key(1), 2000)
    )
    per_position = np.asarray(masks).mean(axis=0)
    p = 205 / 256
    assert np.abs(per_position - p).max() < 5 * np.sqrt(p * (1 - p) / 2000)


def test_dropout_is_deterministic_per_key_and_keeps_dtype():
    x = jax.random.normal(jax.random.key(2), (3, 5, 7)).astype(jnp.bfloat16)
    a = dropout(x, 0.3, jax.random.key(0))
    assert a.dtype == jnp.bfloat16 and a.shape == x.shape
    np.testing.assert_array_equal(a, dropout(x, 0.3, jax.random.key(0)))
    np.testing.assert_array_equal(a, jax.jit(dropout, static_argnums=1)(x, 0.3, jax.random.key(0)))
    assert not np.array_equal(a, dropout(x, 0.3, jax.random.key(1)))


def test_dropout_identity_without_key_or_rate():
    x = jax.random.normal(jax.random.key(2), (4, 6))
    assert dropout(x, 0.2, None) is x
    assert dropout(x, 0.0, jax.random.key(0)) is x


@pytest.mark.parametrize("rate", [0.001, 0.999])
def test_dropout_rejects_rates_that_round_away(rate):
    with pytest.raises(ValueError, match="dropout rate"):
        dropout(jnp.ones((8,)), rate, jax.random.key(0))


@pytest.mark.parametrize("rotary,steps", [(False, 1), (True, 2)])
def test_kv_cache_matches_full_recomputation(rotary, steps):
    mha = make_attention(rotary=rotary)
    x = inputs()
    padding = key_padding_mask(jnp.asarray(TOKENS) != 0)
    full = mha(x, x, mask=combine_masks(causal_mask(L), padding))
    cache = mha.init_cache(B, L)
    outs = []
    for start in range(0, L, steps):
        chunk = x[:, start : start + steps]
        out, cache = mha.decode(chunk, chunk, cache, mask=padding)
        outs.append(out)
    assert int(cache.index) == L
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)


def test_kv_cache_under_jit_and_scan():
    mha = make_attention(rotary=True)
    x = inputs()
    full = mha(x, x, mask=causal_mask(L))

    @jax.jit
    def decode_all(x):
        def step(cache, x_t):
            out, cache = mha.decode(x_t[:, None], x_t[:, None], cache)
            return cache, out[:, 0]

        _, outs = jax.lax.scan(step, mha.init_cache(B, L), x.transpose(1, 0, 2))
        return outs.transpose(1, 0, 2)

    np.testing.assert_allclose(decode_all(x), full, atol=1e-5)
