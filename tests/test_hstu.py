"""HSTU: its block against a numpy reference, the relative bias, masks, packing and chunking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax.config import base_config
from transrec_jax.losses import compute_loss
from transrec_jax.models import build_model
from transrec_jax.models.attention import causal_mask, combine_masks, key_padding_mask
from transrec_jax.models.hstu import HSTUBlock, RelativePositionBias, hstu_attention_core

from test_models import MAX_LEN, NUM_ITEMS, packed_pair, packed_places


def hstu_cfg(**overrides):
    cfg = base_config().model
    cfg.update(name="hstu", max_len=MAX_LEN, d_model=8, num_heads=2, num_layers=2, dropout=0.0,
               attention_dropout=0.0, positions_from="start", scale_embeddings=True)
    cfg.update(overrides)
    return cfg


def make(seed=0, **overrides):
    return build_model(hstu_cfg(**overrides), NUM_ITEMS, rngs=nnx.Rngs(seed))


def silu(x):
    return x / (1.0 + np.exp(-x))


def layer_norm(x, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def numpy_block(block, x, allowed, max_len, heads):
    """The authors' block (hstu.py lines 316-339, 204-212, 419-434) in float64 numpy.

    allowed: bool [B, L, L], query i may use key j.
    """
    x = np.asarray(x, np.float64)
    w_uvqk = np.asarray(block.uvqk.kernel[...], np.float64)
    w_o = np.asarray(block.output.kernel[...], np.float64)
    b_o = np.asarray(block.output.bias[...], np.float64)
    rab = np.asarray(block.relative_bias.weight[...], np.float64)
    batch, length, d = x.shape
    dh = d // heads
    u, v, q, k = np.split(silu(layer_norm(x) @ w_uvqk), 4, axis=-1)
    out = np.zeros_like(x)
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            for i in range(length):
                for j in range(length):
                    if allowed[b, i, j]:
                        bias = rab[max_len - 1 + j - i]
                        weight = silu(q[b, i, cols] @ k[b, j, cols] + bias) / max_len
                        out[b, i, cols] += weight * v[b, j, cols]
    return x + (u * layer_norm(out)) @ w_o + b_o


def test_relative_bias_is_one_scalar_per_offset():
    bias = RelativePositionBias(MAX_LEN, rngs=nnx.Rngs(0))
    w = np.asarray(bias.weight[...])
    assert w.shape == (2 * MAX_LEN - 1,)
    table = np.asarray(bias(MAX_LEN, MAX_LEN))
    expected = np.array([[w[MAX_LEN - 1 + j - i] for j in range(MAX_LEN)] for i in range(MAX_LEN)])
    np.testing.assert_array_equal(table, expected)
    np.testing.assert_array_equal(np.asarray(bias(1, 5)), expected[4:5, :5])  # last query of 5


def test_attention_core_is_silu_of_scores_plus_bias_over_n():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 5, 4)).astype(np.float32) for _ in range(3))
    bias = rng.normal(size=(5, 5)).astype(np.float32)
    mask = np.tril(np.ones((5, 5), bool))[None, None] & (rng.random((2, 1, 1, 5)) > 0.3)
    out, weights = hstu_attention_core(q, k, v, jnp.asarray(mask), bias=bias, scale=1 / 7)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) + bias
    expected_w = np.where(mask, silu(scores.astype(np.float64)) / 7, 0.0)
    np.testing.assert_allclose(weights, expected_w, atol=1e-6)
    np.testing.assert_allclose(out, np.einsum("bhqk,bhkd->bhqd", expected_w, v), atol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_block_matches_numpy_with_causal_and_padding_masks(heads):
    cfg = hstu_cfg(num_heads=heads)
    block = HSTUBlock(cfg, dtype=jnp.float32, rngs=nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(1), (2, MAX_LEN, 8))
    valid = np.ones((2, MAX_LEN), bool)
    valid[0, :3] = False  # left padding of row 0
    mask = combine_masks(causal_mask(MAX_LEN), key_padding_mask(jnp.asarray(valid)))
    got = block(x, mask=mask)
    allowed = np.asarray(jnp.broadcast_to(mask, (2, 1, MAX_LEN, MAX_LEN)))[:, 0]
    np.testing.assert_allclose(got, numpy_block(block, x, allowed, MAX_LEN, heads), atol=1e-5)
    last = block(x, mask=mask, last_only=True)
    np.testing.assert_allclose(last, got[:, -1:], atol=1e-5)


def test_block_with_a_packed_row_attends_within_its_segments():
    block = HSTUBlock(hstu_cfg(), dtype=jnp.float32, rngs=nnx.Rngs(4))
    x = jax.random.normal(jax.random.key(2), (1, MAX_LEN, 8))
    segments = np.array([[1, 1, 1, 2, 2, 2, 2, 3]])
    same = segments[:, :, None] == segments[:, None, :]
    mask = combine_masks(causal_mask(MAX_LEN), jnp.asarray(same)[:, None])
    allowed = np.tril(np.ones((MAX_LEN, MAX_LEN), bool))[None] & same
    got = block(x, mask=mask)
    np.testing.assert_allclose(got, numpy_block(block, x, allowed, MAX_LEN, 2), atol=1e-5)


def test_chunked_attention_equals_unchunked():
    plain, chunked = make(), make(attention_chunk=3)
    tokens = jnp.asarray([[0, 0, 3, 5, 7, 2, 9, 4], [1, 9, 12, 4, 6, 6, 2, 11]], jnp.int32)
    np.testing.assert_allclose(chunked.encode(tokens), plain.encode(tokens), atol=1e-5)

    def loss(model):
        hidden, targets, weights = model.training_forward(
            jnp.pad(tokens, ((0, 0), (1, 0))), key=None)
        return compute_loss(base_config().loss, hidden, targets, weights, *model.output_table(),
                            None)[0]

    grads = [nnx.grad(loss)(m) for m in (plain, chunked)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_hstu_ignores_the_future_and_left_padding():
    model = make()
    items = jnp.asarray([[3, 5, 7, 2, 9], [1, 9, 12, 4, 6]], jnp.int32)
    tokens = jnp.pad(items, ((0, 0), (MAX_LEN - 5, 0)))
    changed = tokens.at[:, 6:].set((tokens[:, 6:] % NUM_ITEMS) + 1)
    a, b = model.encode(tokens), model.encode(changed)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not np.allclose(a[:, 6:], b[:, 6:])
    short = jnp.pad(items, ((0, 0), (1, 0)))  # one padding slot instead of three
    np.testing.assert_allclose(model.encode(short)[:, 1:], a[:, 3:], atol=1e-5)


@pytest.mark.parametrize("positions_from", ["start", "end"])
def test_packed_rows_give_the_unpacked_loss(positions_from):
    model = make(positions_from=positions_from)
    windows, packed = packed_pair()
    plain = model.training_forward(windows, key=None)
    packed_out = model.training_forward(packed["seq"], key=None, segments=packed["segments"],
                                        positions=packed["positions"])
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=False)
    np.testing.assert_allclose(packed_out[0][packed_idx], plain[0][plain_idx], atol=1e-5)
    for exclude_window in (False, True):
        cfg = base_config().loss
        cfg.exclude_window = exclude_window
        plain_loss = compute_loss(cfg, *plain, *model.output_table(), None, window=windows)[0]
        packed_loss = compute_loss(cfg, *packed_out, *model.output_table(), None,
                                   window=packed["seq"], segments=packed["segments"])[0]
        np.testing.assert_allclose(packed_loss, plain_loss, rtol=1e-5)


def test_hstu_trains_with_every_loss_and_dropout_comes_from_the_key():
    model = make(dropout=0.2, score_temperature=0.05)
    seq = jnp.asarray([[0, 0, 3, 5, 7, 2, 9, 4, 8], [1, 9, 12, 4, 6, 6, 2, 11, 3]], jnp.int32)
    out_a = model.training_forward(seq, key=jax.random.key(0))
    np.testing.assert_array_equal(out_a[0], model.training_forward(seq, key=jax.random.key(0))[0])
    assert not np.allclose(out_a[0], model.training_forward(seq, key=jax.random.key(1))[0])
    for name, extra in [("ce", {}), ("bce", {}), ("gbce", {"num_negatives": 4}),
                        ("sampled_softmax", {"num_negatives": 4, "sample_per": "position"})]:
        cfg = base_config().loss
        cfg.update(name=name, **extra)
        loss = compute_loss(cfg, *out_a, *model.output_table(), jax.random.key(2))[0]
        assert np.isfinite(loss) and loss > 0, name
