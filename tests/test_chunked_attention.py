"""model.attention_chunk: query-chunked attention equals the unchunked core, holds no [Lq, Lk]
float tensor, and drops out with the same byte-dropout function, one key per chunk."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax.config import base_config
from transrec_jax.losses import compute_loss
from transrec_jax.models import build_model
from transrec_jax.models.attention import (
    MultiHeadAttention,
    attention_core,
    bidirectional_mask,
    causal_mask,
    chunked_attention_core,
    combine_masks,
    dropout,
    key_padding_mask,
)

D, H, B, L = 8, 2, 2, 8
TOKENS = np.array([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
PADDING = key_padding_mask(jnp.asarray(TOKENS) != 0)
MASKS = {
    "causal_and_padding": combine_masks(causal_mask(L), PADDING),
    "bidirectional_and_padding": combine_masks(bidirectional_mask(L, L), PADDING),
    "key_padding_only": PADDING,  # no query axis: shared by every chunk
}


def make_attention(chunk, *, rotary=False, dropout_rate=0.0):
    return MultiHeadAttention(D, H, dropout_rate=dropout_rate, rotary=rotary, fused=False,
                              chunk=chunk, init_std=0.3, dtype=jnp.float32, rngs=nnx.Rngs(0))


def inputs(length=L, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, length, D))


def value_and_grads(mha, xq, xkv, mask):
    """Output, and the gradients of a fixed random projection of it w.r.t. params and inputs."""
    probe = jax.random.normal(jax.random.key(7), (B, xq.shape[1], D))

    def loss(model, xq, xkv):
        return jnp.sum(model(xq, xkv, mask=mask) * probe)

    @nnx.jit  # one program, not hundreds of eagerly compiled primitives
    def run(mha, xq, xkv):
        return mha(xq, xkv, mask=mask), nnx.grad(loss, argnums=(0, 1, 2))(mha, xq, xkv)

    return run(mha, xq, xkv)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def float_shapes(jaxpr):
    """Shapes of every float value an equation of jaxpr (or of a sub-jaxpr) produces."""
    out = []
    for eqn in jaxpr.eqns:
        out += [v.aval.shape for v in eqn.outvars
                if hasattr(v.aval, "dtype") and jnp.issubdtype(v.aval.dtype, jnp.floating)]
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    out += float_shapes(sub)
    return out


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("chunk,rotary", [(3, False), (4, True), (1, False)])
def test_chunked_matches_unchunked_with_gradients(mask_name, chunk, rotary):
    """chunk 3 does not divide L = 8 (padded queries), 4 does, 1 is one query per chunk."""
    x, mask = inputs(), MASKS[mask_name]
    reference = value_and_grads(make_attention(0, rotary=rotary), x, x, mask)
    chunked = value_and_grads(make_attention(chunk, rotary=rotary), x, x, mask)
    assert_trees_close(chunked, reference)


def test_fewer_queries_than_keys_reads_the_last_positions():
    """Lq < Lk (the last_only path): 5 rotary queries at positions 3..7 against 8 keys."""
    xq, xkv = inputs(5, seed=2), inputs()
    mask = MASKS["causal_and_padding"][..., -5:, :]
    reference = value_and_grads(make_attention(0, rotary=True), xq, xkv, mask)
    chunked = value_and_grads(make_attention(2, rotary=True), xq, xkv, mask)
    assert_trees_close(chunked, reference)


def test_chunked_gradient_holds_no_query_by_key_tensor():
    """The bounded-memory claim, structurally: the backward pass of the chunked core has no
    float [.., .., Lq, Lk] value, the unchunked one does."""
    x, mask = inputs(), MASKS["causal_and_padding"]

    def shapes(chunk):
        mha = make_attention(chunk)
        graphdef, params = nnx.split(mha)
        loss = lambda p: jnp.sum(nnx.merge(graphdef, p)(x, x, mask=mask))
        return float_shapes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)

    def is_square(shape):
        return len(shape) == 4 and shape[-2:] == (L, L)

    assert any(map(is_square, shapes(0)))
    chunked = shapes(3)
    assert not any(map(is_square, chunked)) and (B, H, 3, L) in chunked


def test_chunked_kv_cache_decode_matches_full():
    """decode of 4 positions at a time runs the chunked core (4 queries > chunk 2)."""
    mha, x = make_attention(2, rotary=True), inputs()
    full = make_attention(0, rotary=True)(x, x, mask=MASKS["causal_and_padding"])
    cache, outs = mha.init_cache(B, L), []
    for start in (0, 4):
        out, cache = mha.decode(x[:, start:start + 4], x[:, start:start + 4], cache, mask=PADDING)
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)


def test_chunk_i_drops_out_with_fold_in_key_i():
    """With v = identity the core returns its dropped weights: chunk i's rows are exactly the
    unchunked core's rows of that chunk dropped with the byte-dropout of fold_in(key, i)."""
    rate, chunk, key = 0.3, 3, jax.random.key(5)
    q = jax.random.normal(jax.random.key(1), (B, H, L, L))
    k = jax.random.normal(jax.random.key(2), (B, H, L, L))
    v = jnp.broadcast_to(jnp.eye(L), (B, H, L, L))
    mask = MASKS["causal_and_padding"]
    core = functools.partial(attention_core, rate=rate, scale=0.5)
    dropped = chunked_attention_core(q, k, v, mask, key, core=core, chunk=chunk)
    _, weights = core(q, k, v, mask, None)
    num_chunks = -(-L // chunk)  # 3: the last chunk's padded row draws bytes too
    padded = jnp.pad(weights, ((0, 0), (0, 0), (0, num_chunks * chunk - L), (0, 0)))
    expected = jnp.concatenate(
        [dropout(padded[:, :, i * chunk:(i + 1) * chunk], rate, jax.random.fold_in(key, i))
         for i in range(num_chunks)], axis=2)[:, :, :L]
    np.testing.assert_allclose(dropped, expected, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(dropped[:, :, :3] != 0, dropped[:, :, 3:6] != 0)


def test_chunked_dropout_is_deterministic_per_key_and_unbiased():
    mha, x, mask = make_attention(3, dropout_rate=0.3), inputs(), MASKS["causal_and_padding"]
    call = jax.jit(lambda key: mha(x, x, mask=mask, key=key))
    a = call(jax.random.key(0))
    np.testing.assert_array_equal(a, call(jax.random.key(0)))
    eager = mha(x, x, mask=mask, key=jax.random.key(0))  # same masks, other rounding
    np.testing.assert_allclose(a, eager, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, call(jax.random.key(1)))
    # The output is affine in the dropped weights, so E[output] over keys = the no-dropout one.
    n = 4000
    outs = np.asarray(jax.vmap(call)(jax.random.split(jax.random.key(3), n)), np.float64)
    reference = np.asarray(mha(x, x, mask=mask), np.float64)
    assert not np.allclose(outs.std(axis=0), 0)
    bound = 5 * outs.std(axis=0) / np.sqrt(n) + 1e-6
    assert (np.abs(outs.mean(axis=0) - reference) <= bound).all()


def model_cfg(name, chunk):
    cfg = base_config().model
    cfg.update(name=name, max_len=L, d_model=D, num_heads=H, d_ff=16, dropout=0.0,
               attention_dropout=0.0, init_std=0.3, positions="rotary", attention_chunk=chunk)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_model_loss_and_gradients_match_unchunked(name):
    """Through config: the training loss of a causal and a bidirectional model, and its grads."""
    num_items, seq = 12, jnp.asarray(np.c_[TOKENS, [8, 9]], jnp.int32)
    loss_cfg = base_config().loss

    def loss_and_grads(chunk):
        model = build_model(model_cfg(name, chunk), num_items, rngs=nnx.Rngs(0))

        def loss(model):
            hidden, targets, weights = model.training_forward(seq, key=jax.random.key(4))
            W, b = model.output_table()
            return compute_loss(loss_cfg, hidden, targets, weights, W, b, None)[0]

        return nnx.value_and_grad(loss)(model)

    assert_trees_close(loss_and_grads(3), loss_and_grads(0))
