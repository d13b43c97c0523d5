"""Losses and negative samplers against numpy references on small random cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transrec_jax import negatives
from transrec_jax.config import ConfigError, base_config
from transrec_jax.losses import binary_cross_entropy, compute_loss

NUM_ITEMS, D, K = 12, 8, 3
TARGETS = np.array([[0, 0, 3, 5, 5, 1, 12, 7], [2, 9, 9, 4, 11, 6, 3, 8]])
WEIGHTS = (TARGETS != 0).astype(np.float32)
WEIGHTS[1, 0] = 0.0  # a real id with weight 0 counts as padding too
POPULARITY = np.arange(NUM_ITEMS + 1, dtype=np.float64)  # item i drawn ∝ i; padding never
with np.errstate(divide="ignore"):
    LOG_PROBS = np.log(POPULARITY / POPULARITY.sum())  # entry 0 = -inf


def loss_cfg(name, **overrides):
    cfg = base_config().loss
    cfg.update({"name": name, "num_negatives": K, **overrides})
    return cfg


def case(seed=0, bias=True):
    keys = jax.random.split(jax.random.key(seed), 3)
    hidden = jax.random.normal(keys[0], TARGETS.shape + (D,))
    W = 0.5 * jax.random.normal(keys[1], (NUM_ITEMS + 1, D))
    b = 0.5 * jax.random.normal(keys[2], (NUM_ITEMS + 1,)) if bias else None
    return hidden, jnp.asarray(TARGETS), jnp.asarray(WEIGHTS), W, b


def np_scores(hidden, W, b):
    s = np.asarray(hidden, np.float64).reshape(-1, D) @ np.asarray(W, np.float64).T
    return s if b is None else s + np.asarray(b, np.float64)


def np_average(per_position):
    w = WEIGHTS.reshape(-1).astype(np.float64)
    return (np.where(w > 0, per_position, 0) * w).sum() / w.sum()


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_ce(hidden, W, b, smoothing):
    s = np_scores(hidden, W, b)[:, 1:]  # items 1..num_items
    lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
    t = np.maximum(TARGETS.reshape(-1), 1) - 1
    target = s[np.arange(len(t)), t]
    return np_average(lse - (1 - smoothing) * target - smoothing * s.mean(1))


def np_binary(hidden, W, b, negs, beta):
    s = np_scores(hidden, W, b)
    t = TARGETS.reshape(-1)
    rows = np.arange(len(t))
    positive = s[rows, t]
    negative = np.where(negs == t[:, None], 0.0, np_softplus(s[rows[:, None], negs]))  # no hits
    return np_average(beta * np_softplus(-positive) + negative.sum(1))


@pytest.mark.parametrize("smoothing,bias", [(0.0, True), (0.1, False)])
def test_cross_entropy_matches_numpy(smoothing, bias):
    hidden, targets, weights, W, b = case(bias=bias)
    loss, aux = compute_loss(
        loss_cfg("ce", label_smoothing=smoothing), hidden, targets, weights, W, b, None
    )
    np.testing.assert_allclose(loss, np_ce(hidden, W, b, smoothing), rtol=1e-5)
    assert aux["num_targets"] == WEIGHTS.sum()


@pytest.mark.parametrize("chunk_size", [5, 12])  # 12 items: a ragged last chunk, then exact chunks
def test_chunked_cross_entropy_equals_full_in_value_and_gradient(chunk_size):
    hidden, targets, weights, W, b = case()

    def loss(chunk):
        cfg = loss_cfg("ce", label_smoothing=0.1, ce_chunk_size=chunk)
        return jax.jit(
            jax.value_and_grad(
                lambda h, W, b: compute_loss(cfg, h, targets, weights, W, b, None)[0],
                argnums=(0, 1, 2),
            )
        )

    full, full_grads = loss(0)(hidden, W, b)
    chunked, chunked_grads = loss(chunk_size)(hidden, W, b)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-5)
    for g_chunked, g_full in zip(chunked_grads, full_grads, strict=True):
        np.testing.assert_allclose(g_chunked, g_full, atol=1e-5)
    np.testing.assert_array_equal(full_grads[1][0], 0.0)  # the padding row is not a class


@pytest.mark.parametrize("exclude_window,chunk_size,scale", [
    (False, 0, 1.0), (False, 5, 1.0), (True, 0, 1.0), (False, 0, 40.0), (True, 0, 40.0)])
def test_cross_entropy_gradient_is_softmax_minus_target(exclude_window, chunk_size, scale):
    """dL/ds = (softmax over the position's competitors - one-hot target) · w / Σw, carried to
    hidden, W and b by the chain rule: the log-sum-exp's stabilising max takes no part, and
    scores far from 0 (scale 40) neither overflow nor lose the gradient."""
    hidden, targets, weights, W, b = case()
    hidden = hidden * scale
    window = np.concatenate([[[4], [1]], TARGETS], axis=1)
    cfg = loss_cfg("ce", exclude_window=exclude_window, ce_chunk_size=chunk_size)
    grads = jax.jit(jax.grad(
        lambda h, W, b: compute_loss(cfg, h, targets, weights, W, b, None,
                                     window=jnp.asarray(window) if exclude_window else None)[0],
        argnums=(0, 1, 2)))(hidden, W, b)
    s = np_scores(hidden, W, b)
    w = WEIGHTS.reshape(-1).astype(np.float64)
    g = np.zeros_like(s)
    for n, (row, t) in enumerate(zip(np.repeat([0, 1], TARGETS.shape[1]), TARGETS.reshape(-1))):
        if w[n] == 0:
            continue
        kept = [j for j in range(1, NUM_ITEMS + 1)
                if not exclude_window or j == t or j not in window[row]]
        p = np.exp(s[n, kept] - s[n, kept].max())
        g[n, kept] = p / p.sum()
        g[n, t] -= 1.0
        g[n] *= w[n] / w.sum()
    h64, W64 = np.asarray(hidden, np.float64).reshape(-1, D), np.asarray(W, np.float64)
    want = ((g @ W64).reshape(hidden.shape), g.T @ h64, g.sum(0))
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def _largest_intermediate(jaxpr) -> int:
    largest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            largest = max(largest, int(np.prod(getattr(var.aval, "shape", ()))))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    largest = max(largest, _largest_intermediate(inner))
    return largest


def test_chunked_cross_entropy_never_builds_full_logits():
    rows, items, dim, chunk = 64, 1000, 4, 100
    hidden = jnp.ones((1, rows, dim))
    targets, weights = jnp.ones((1, rows), jnp.int32), jnp.ones((1, rows))
    W, b = jnp.ones((items + 1, dim)), jnp.zeros((items + 1,))

    def largest(chunk_size):
        cfg = loss_cfg("ce", ce_chunk_size=chunk_size)
        grad = jax.grad(
            lambda h, W: compute_loss(cfg, h, targets, weights, W, b, None)[0], argnums=(0, 1)
        )
        return _largest_intermediate(jax.make_jaxpr(grad)(hidden, W).jaxpr)

    assert largest(0) >= rows * items  # the check sees the full logits when they exist
    assert largest(chunk) < rows * items // 4


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_bce_matches_numpy(sampler):
    hidden, targets, weights, W, b = case()
    key = jax.random.key(5)
    cfg = loss_cfg("bce", sampler=sampler)
    loss, _ = compute_loss(
        cfg, hidden, targets, weights, W, b, key, item_log_probs=jnp.asarray(LOG_PROBS, jnp.float32)
    )
    negs = negatives.sample(
        sampler,
        key,
        (TARGETS.size, K),
        num_items=NUM_ITEMS,
        item_log_probs=jnp.asarray(LOG_PROBS, jnp.float32),
    )
    np.testing.assert_allclose(
        loss, np_binary(hidden, W, b, np.asarray(negs), 1.0), rtol=1e-5
    )


def test_binary_cross_entropy_with_explicit_negatives_matches_numpy():
    hidden, targets, _, W, b = case()
    negs = np.random.default_rng(0).integers(1, NUM_ITEMS + 1, size=(TARGETS.size, K))
    negs[2, 0] = TARGETS.reshape(-1)[2]  # an accidental hit
    h, t = hidden.reshape(-1, D), jnp.maximum(targets.reshape(-1), 1)
    per_position = binary_cross_entropy(h, t, W, b, jnp.asarray(negs), positive_weight=0.3)
    s = np_scores(hidden, W, b)
    rows = np.arange(TARGETS.size)
    negative = np.where(negs == np.asarray(t)[:, None], 0.0, np_softplus(s[rows[:, None], negs]))
    expected = 0.3 * np_softplus(-s[rows, np.asarray(t)]) + negative.sum(1)
    np.testing.assert_allclose(per_position, expected, rtol=1e-5)


@pytest.mark.parametrize("num_negatives", [2, 4])  # 40 table rows: gathered rows, then all scores
def test_binary_cross_entropy_paths_match_reference_in_value_and_gradient(num_negatives):
    keys = jax.random.split(jax.random.key(3), 4)
    h, W = jax.random.normal(keys[0], (6, D)), jax.random.normal(keys[1], (40, D))
    b = jax.random.normal(keys[2], (40,))
    t = jnp.arange(1, 7)
    negs = jax.random.randint(keys[3], (6, num_negatives), 7, 40)  # never a target: no hits

    def reference(h, W, b):  # the textbook formula: gather each negative's row
        negative = jnp.einsum("nd,nkd->nk", h, W[negs]) + b[negs]
        positive = jnp.einsum("nd,nd->n", h, W[t]) + b[t]
        return (0.7 * jax.nn.softplus(-positive) + jax.nn.softplus(negative).sum(-1)).sum()

    def ours(h, W, b):
        return binary_cross_entropy(h, t, W, b, negs, positive_weight=0.7).sum()

    np.testing.assert_allclose(ours(h, W, b), reference(h, W, b), rtol=1e-5)
    for got, want in zip(jax.grad(ours, (0, 1, 2))(h, W, b), jax.grad(reference, (0, 1, 2))(h, W, b)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gbce_matches_paper_formula_and_reduces_to_bce_at_t0():
    hidden, targets, weights, W, b = case()
    key = jax.random.key(6)
    negs = np.asarray(negatives.sample("uniform", key, (TARGETS.size, K), num_items=NUM_ITEMS))
    t = 0.75
    alpha = K / (NUM_ITEMS - 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    gbce, _ = compute_loss(loss_cfg("gbce", gbce_t=t), hidden, targets, weights, W, b, key)
    np.testing.assert_allclose(gbce, np_binary(hidden, W, b, negs, beta), rtol=1e-5)
    at_zero, _ = compute_loss(loss_cfg("gbce", gbce_t=0.0), hidden, targets, weights, W, b, key)
    bce, _ = compute_loss(loss_cfg("bce"), hidden, targets, weights, W, b, key)
    np.testing.assert_allclose(at_zero, bce, rtol=1e-6)


def np_gsasrec_pytorch_loss(s_pos, s_neg, mask, num_items, t):
    """gSASRec-pytorch train_gsasrec.py lines 59-72, in numpy float64: the positive's logit
    becomes log(1 / (σ(s⁺)^-β - 1)) (so its BCE term is -β log σ(s⁺)), with the authors'
    clamps; BCE-with-logits over the 1 + K logits, `.mean(-1)`, then averaged over the mask."""
    k = s_neg.shape[-1]
    alpha = k / (num_items - 1)
    beta = alpha * ((1 - 1 / alpha) * t + 1 / alpha)
    eps, big = 1e-10, np.finfo(np.float64).max
    p = np.clip(1 / (1 + np.exp(-s_pos)), eps, 1 - eps)
    to_log = np.clip(1 / (np.clip(p ** -beta, 1 + eps, big) - 1), eps, big)
    logits = np.concatenate([np.log(to_log)[:, None], s_neg], axis=1)
    labels = np.zeros_like(logits)
    labels[:, 0] = 1
    bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    return (bce.mean(-1) * mask).sum() / mask.sum()


def test_gbce_is_gsasrec_pytorch_loss_times_one_plus_k():
    """Ours sums the K negatives' terms where the authors' code means over the 1 + K logits:
    the same loss times 1 + K (a constant Adam does not see), golden value from their code."""
    rng = np.random.default_rng(7)
    num_items, k, n, t = 40, 5, 9, 0.75
    h = rng.normal(size=(n, D)).astype(np.float32)
    W = (2.0 * rng.normal(size=(num_items + 1, D))).astype(np.float32)  # logits up to ~±20
    targets = rng.integers(1, num_items + 1, size=n)
    negs = (targets[:, None] + rng.integers(1, num_items, size=(n, k)) - 1) % num_items + 1
    assert not (negs == targets[:, None]).any()  # no accidental hit: the codes then agree
    weights = np.ones(n, np.float32)
    weights[[0, 4]] = 0.0  # padding positions
    s = h.astype(np.float64) @ W.astype(np.float64).T
    rows = np.arange(n)
    theirs = np_gsasrec_pytorch_loss(s[rows, targets], s[rows[:, None], negs], weights, num_items, t)
    beta = (k / (num_items - 1)) * (t * (1 - (num_items - 1) / k) + (num_items - 1) / k)
    per_position = binary_cross_entropy(jnp.asarray(h), jnp.asarray(targets), jnp.asarray(W), None,
                                        jnp.asarray(negs), positive_weight=beta)
    ours = (np.asarray(per_position, np.float64) * weights).sum() / weights.sum()
    np.testing.assert_allclose(ours, (1 + k) * theirs, rtol=1e-5)


# logQ-corrected, accidental hits dropped; 'unseen' (equally likely candidates) skips the correction;
# one draw per sequence (SASRec+) or per position (HSTU)
@pytest.mark.parametrize("sampler,per", [("uniform", "sequence"), ("popularity", "sequence"),
                                         ("in_batch", "sequence"), ("unseen", "sequence"),
                                         ("uniform", "position"), ("popularity", "position")])
def test_sampled_softmax_matches_numpy(sampler, per):
    hidden, _, _, W, b = case()
    flat = np.where(TARGETS == 0, 4, TARGETS).reshape(
        -1
    )  # in-batch draws depend on the batch: all real here
    # The rows' training windows: a first input item, then the targets (width 9 of 12 items).
    window = jnp.asarray(np.concatenate([[[1], [10]], flat.reshape(TARGETS.shape)], axis=1))
    k = 3 if sampler == "unseen" else 6
    key = jax.random.key(7)
    cfg = loss_cfg("sampled_softmax", sampler=sampler, num_negatives=k, sample_per=per)
    item_log_probs = jnp.asarray(LOG_PROBS, jnp.float32)
    targets = jnp.asarray(flat.reshape(TARGETS.shape))
    loss, _ = compute_loss(
        cfg, hidden, targets, jnp.ones(TARGETS.shape), W, b, key, item_log_probs=item_log_probs,
        window=window,
    )
    negs = np.asarray(
        negatives.sample(
            sampler,
            key,
            (TARGETS.shape[0] if per == "sequence" else flat.size, k),
            num_items=NUM_ITEMS,
            item_log_probs=item_log_probs,
            targets=jnp.asarray(flat),
            weights=jnp.ones(flat.shape),
            window=window,
        )
    )
    log_q = {
        "uniform": lambda ids: np.full(np.shape(ids), -np.log(NUM_ITEMS)),
        "popularity": lambda ids: LOG_PROBS[ids],
        "in_batch": lambda ids: np.log((np.asarray(ids)[..., None] == flat).sum(-1) / flat.size),
        "unseen": lambda ids: np.zeros(np.shape(ids)),
    }[sampler]
    s = np_scores(hidden, W, b)
    positive = s[np.arange(flat.size), flat] - log_q(flat)
    # each position gets its row's draw, or its own
    row_negs = np.repeat(negs, TARGETS.shape[1], axis=0) if per == "sequence" else negs
    negative = np.take_along_axis(s, row_negs, 1) - log_q(row_negs)
    negative = np.where(row_negs == flat[:, None], -np.inf, negative)
    logits = np.concatenate([positive[:, None], negative], 1)
    expected = (
        np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1) - positive
    ).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_unseen_sampler_draws_distinct_items_outside_the_row_uniformly():
    window = np.array([[0, 0, 3, 5, 5, 1], [2, 9, 9, 4, 11, 6], [0, 0, 0, 0, 0, 0]])
    draws = np.asarray(jax.vmap(
        lambda key: negatives.unseen(key, (3, 4), NUM_ITEMS, jnp.asarray(window))
    )(jax.random.split(jax.random.key(0), 4000)))  # [draw, row, K]
    for row, items in enumerate(window):
        candidates = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), items)
        got = draws[:, row]
        assert all(len(set(d)) == 4 for d in got[:50])  # without replacement
        assert np.isin(got, candidates).all()  # never the row's own items, never padding
        # Each candidate is in a draw with probability K / len(candidates).
        freq = np.array([(got == c).any(axis=1).mean() for c in candidates])
        np.testing.assert_allclose(freq, 4 / len(candidates), atol=0.03)


def test_unseen_sampler_needs_room_outside_the_row():
    with pytest.raises(ConfigError, match=r"loss.num_negatives=7 .* at most 6"):
        negatives.unseen(jax.random.key(0), (1, 7), NUM_ITEMS, jnp.zeros((1, 6), jnp.int32))


@pytest.mark.parametrize(
    "name,sampler",
    [
        ("ce", "uniform"),
        ("bce", "uniform"),
        ("gbce", "popularity"),
        ("sampled_softmax", "popularity"),
        ("sampled_softmax", "in_batch"),
    ],
)
def test_padding_contributes_nothing_and_gradients_are_finite(name, sampler):
    hidden, targets, weights, W, b = case()
    # Item 1 (a possible stand-in id for padding rows) has zero popularity: log q = -inf.
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.r_[0.0, 0.0, np.ones(NUM_ITEMS - 1)] / (NUM_ITEMS - 1))
    cfg = loss_cfg(name, sampler=sampler, ce_chunk_size=5)
    real_targets = targets.at[0, 5].set(2)  # keep every real target drawable by the sampler
    padded = np.asarray(weights == 0)

    def loss(h):
        return compute_loss(
            cfg,
            h,
            real_targets,
            weights,
            W,
            b,
            jax.random.key(0),
            item_log_probs=jnp.asarray(log_probs, jnp.float32),
        )[0]

    value, grad = jax.value_and_grad(loss)(hidden)
    garbage = jnp.where(padded[..., None], 1e3, hidden)
    np.testing.assert_allclose(loss(garbage), value, rtol=1e-6)
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_array_equal(np.asarray(grad)[padded], 0.0)
    assert np.abs(np.asarray(grad)[~padded]).sum() > 0


def test_popularity_sampler_needs_log_probs():
    hidden, targets, weights, W, b = case()
    with pytest.raises(ValueError, match="loss.sampler"):
        compute_loss(
            loss_cfg("bce", sampler="popularity"), hidden, targets, weights, W, b, jax.random.key(0)
        )


def test_uniform_sampler_draws_real_items():
    ids = np.asarray(negatives.uniform(jax.random.key(0), (5000,), NUM_ITEMS))
    assert ids.min() == 1 and ids.max() == NUM_ITEMS and len(np.unique(ids)) == NUM_ITEMS


def test_popularity_sampler_follows_the_probabilities():
    ids = np.asarray(
        negatives.popularity(jax.random.key(0), (20000,), jnp.asarray(LOG_PROBS, jnp.float32))
    )
    frequencies = np.bincount(ids, minlength=NUM_ITEMS + 1) / ids.size
    assert frequencies[0] == 0
    np.testing.assert_allclose(frequencies, np.exp(LOG_PROBS), atol=0.01)
    np.testing.assert_allclose(
        negatives.log_q(
            "popularity", jnp.array([3]), num_items=NUM_ITEMS, item_log_probs=jnp.asarray(LOG_PROBS)
        ),
        LOG_PROBS[[3]],
        rtol=1e-6,
    )


def test_in_batch_sampler_draws_real_targets_by_frequency():
    targets = jnp.array([5, 5, 5, 2, 7, 7])
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # item 7 only at weight-0 positions
    ids = np.asarray(negatives.in_batch(jax.random.key(0), (20000,), targets, weights))
    assert set(np.unique(ids)) == {2, 5}
    np.testing.assert_allclose((ids == 5).mean(), 0.75, atol=0.015)
    log_q = negatives.log_q(
        "in_batch", jnp.array([5, 2]), num_items=NUM_ITEMS, targets=targets, weights=weights
    )
    np.testing.assert_allclose(log_q, np.log([0.75, 0.25]), rtol=1e-6)


def test_exclude_window_leaves_each_rows_other_items_out_of_the_softmax():
    hidden, targets, weights, W, b = case()
    window = np.concatenate([[[4], [1]], TARGETS], axis=1)  # a first input item, then the targets
    loss, _ = compute_loss(loss_cfg("ce", exclude_window=True), hidden, targets, weights, W, b,
                           None, window=jnp.asarray(window))
    s = np_scores(hidden, W, b)
    expected = np.zeros(TARGETS.size)
    for n, (row, t) in enumerate(zip(np.repeat([0, 1], TARGETS.shape[1]), TARGETS.reshape(-1))):
        kept = [j for j in range(1, NUM_ITEMS + 1) if j == t or j not in window[row]]
        expected[n] = np.log(np.exp(s[n, kept]).sum()) - s[n, max(t, 1)]
    np.testing.assert_allclose(loss, np_average(expected), rtol=1e-5)
    plain, _ = compute_loss(loss_cfg("ce"), hidden, targets, weights, W, b, None)
    assert loss < plain  # fewer competitors for every target


# Item 10 withheld from training (dataset.split=cold_items); no target is one.
TRAINABLE = np.ones(NUM_ITEMS + 1, bool)
TRAINABLE[[0, 10]] = False


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_over_trainable_items_only(smoothing):
    hidden, targets, weights, W, b = case()
    loss, _ = compute_loss(loss_cfg("ce", label_smoothing=smoothing), hidden, targets, weights,
                           W, b, None, trainable_items=jnp.asarray(TRAINABLE))
    s = np_scores(hidden, W, b)[:, TRAINABLE]
    ids = np.flatnonzero(TRAINABLE)
    lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
    t = np.searchsorted(ids, np.maximum(TARGETS.reshape(-1), 1))
    target = s[np.arange(len(t)), t]
    np.testing.assert_allclose(loss, np_average(lse - (1 - smoothing) * target - smoothing * s.mean(1)),
                               rtol=1e-5)


def test_binary_and_sampled_losses_leave_untrainable_negatives_out():
    hidden, targets, _, W, b = case()
    negs = np.random.default_rng(1).integers(1, NUM_ITEMS + 1, size=(TARGETS.size, K))
    negs[:, 0] = 10  # every row draws a withheld item
    h, t = hidden.reshape(-1, D), jnp.maximum(targets.reshape(-1), 1)
    got = binary_cross_entropy(h, t, W, b, jnp.asarray(negs), positive_weight=1.0,
                               trainable_items=jnp.asarray(TRAINABLE))
    s = np_scores(hidden, W, b)
    rows = np.arange(TARGETS.size)
    left_out = (negs == np.asarray(t)[:, None]) | ~TRAINABLE[negs]
    negative = np.where(left_out, 0.0, np_softplus(s[rows[:, None], negs]))
    np.testing.assert_allclose(got, np_softplus(-s[rows, np.asarray(t)]) + negative.sum(1), rtol=1e-5)
    from transrec_jax.losses import sampled_softmax
    got = sampled_softmax(hidden, jnp.maximum(targets, 1), W, b, jnp.asarray(negs[:2]), log_q=None,
                          trainable_items=jnp.asarray(TRAINABLE))
    for r in range(2):  # per sequence: positions share their row's negatives
        for p in range(TARGETS.shape[1]):
            target = max(TARGETS[r, p], 1)
            score = s[r * TARGETS.shape[1] + p]
            kept = [n for n in negs[r] if TRAINABLE[n] and n != target]
            logits = np.array([score[target], *score[kept]])
            want = np.log(np.exp(logits - logits.max()).sum()) + logits.max() - score[target]
            np.testing.assert_allclose(got[r, p], want, rtol=1e-5)
