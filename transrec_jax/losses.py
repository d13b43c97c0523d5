"""Training losses over an output table W [num_items + 1, D] (row 0 = padding).

compute_loss flattens hidden [..., D] / targets / weights to N positions. Positions with
target 0 or weight 0 contribute nothing (their target is replaced by a harmless id before
any score is computed, so they cannot inject inf/NaN into values or gradients); the loss is
the weighted sum over positions divided by the sum of weights. Scores are float32 whatever
the compute dtype of `hidden`.

  ce:              softmax over items 1..num_items (row 0 excluded), optional label smoothing
                   (ε spread uniformly over those items). ce_chunk_size > 0 streams the
                   log-sum-exp over item chunks under jax.checkpoint, so neither pass holds
                   the [N, num_items] logits. exclude_window leaves the other items of each
                   training window (a packed row's segment) out of its positions' softmax:
                   evaluation ranks only items outside the history, so training stops
                   pushing those down.
  bce:             -log σ(s⁺) - Σ_k log(1 - σ(s⁻_k)), num_negatives drawn PER POSITION [N, K]
                   (SASRec draws one per position).
  gbce:            gSASRec (Petrov & Macdonald, RecSys 2023):
                   -β log σ(s⁺) - Σ_k log(1 - σ(s⁻_k)) with the same per-position negatives,
                   α = K / (num_items - 1), β = α (t (1 - 1/α) + 1/α); β = 1 at t = 0 (= bce).
  sampled_softmax: softmax over [positive, K negatives], one [K] draw per SEQUENCE (row of
                   hidden), shared by its positions, as SASRec+ (Klenitskiy & Vasilev 2023)
                   draws them. One draw for the whole batch costs no less and learns far
                   worse: each drawn item is then pushed down at every position of the batch
                   at once (measured: experiments/ablations/README.md, the loss ablation's
                   last finding). The logQ correction subtracts log q(item) from the
                   positive's and the negatives' logits (as TensorFlow's sampled_softmax_loss
                   does); with the uniform sampler that is a no-op, and the 'unseen'
                   sampler (K distinct items outside the row's window, SASRec+'s draw),
                   equally likely over a row's candidates, skips it.
sampled_softmax, bce and gbce drop an accidental hit, a negative equal to the position's
positive: -inf logit in the softmax, a zero term in bce / gbce.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transrec_jax import negatives as samplers


def compute_loss(loss_cfg, hidden, targets, weights, W, b, key, *, item_log_probs=None,
                 window=None, segments=None):
    """(scalar loss, {'loss', 'num_targets'}) for the loss named by loss_cfg.name.

    hidden [..., D], targets / weights [...]; W [num_items + 1, D], b [num_items + 1] or None;
    key draws the negatives (unused by 'ce'); item_log_probs [num_items + 1] feeds the
    popularity sampler and its log q; window [R, W] (the batch's training rows) feeds the
    'unseen' sampler and exclude_window, with segments [R, W] when the rows are packed. The P
    positions of a row score the targets in its window's last P columns (SASRec's inputs
    predict seq[:, 1:], BERT4Rec's tokens are seq[:, 1:]), so a position belongs to the
    segment of its window column.
    """
    lo = loss_cfg
    h = hidden.reshape(-1, hidden.shape[-1])
    targets, weights = targets.reshape(-1), weights.reshape(-1)
    real = (targets != 0) & (weights > 0)
    w = jnp.where(real, weights, 0.0).astype(jnp.float32)
    t = jnp.where(real, targets, 1).astype(jnp.int32)  # a harmless stand-in id at padding
    num_items = W.shape[0] - 1
    batch = dict(num_items=num_items, item_log_probs=item_log_probs, targets=t, weights=w)
    draws = dict(batch, window=window)
    if lo.name == "ce":
        seen = None
        if lo.exclude_window:  # each segment's items, left out of its positions' softmax
            seen = samplers.row_items(window, num_items, segments)[..., 1:]  # [R, S, num_items]
            if segments is not None:  # [R, P, num_items]: each position's own segment's
                columns = segments[:, -(h.shape[0] // window.shape[0]):]
                seen = seen[jnp.arange(window.shape[0])[:, None], columns]
        per_position = cross_entropy(
            h, t, W, b, label_smoothing=lo.label_smoothing, chunk_size=lo.ce_chunk_size,
            seen=seen,
        )
    elif lo.name == "sampled_softmax":
        rows = hidden.shape[0] if hidden.ndim > 2 else h.shape[0]  # sequences, or positions
        negatives = samplers.sample(lo.sampler, key, (rows, lo.num_negatives), **draws)
        log_q = None
        if lo.sampler != "unseen":
            # The stand-in id at padding may be one the sampler never draws (log q = -inf).
            target_log_q = jnp.where(real, samplers.log_q(lo.sampler, t, **batch), 0.0)
            log_q = (target_log_q.reshape(rows, -1), samplers.log_q(lo.sampler, negatives, **batch))
        per_position = sampled_softmax(
            h.reshape(rows, -1, h.shape[-1]), t.reshape(rows, -1), W, b, negatives,
            log_q=log_q,
        ).reshape(-1)
    elif lo.name in ("bce", "gbce"):
        negatives = samplers.sample(lo.sampler, key, (t.shape[0], lo.num_negatives), **batch)
        beta = gbce_beta(lo.num_negatives, num_items, lo.gbce_t) if lo.name == "gbce" else 1.0
        per_position = binary_cross_entropy(h, t, W, b, negatives, positive_weight=beta)
    else:
        raise ValueError(
            f"config.loss.name={lo.name!r}: expected ce | bce | gbce | sampled_softmax"
        )
    num_targets = w.sum()
    total = jnp.sum(jnp.where(real, per_position, 0.0) * w)
    loss = total / jnp.where(num_targets > 0, num_targets, 1.0)
    return loss, {"loss": loss, "num_targets": num_targets}


def gbce_beta(num_negatives: int, num_items: int, t: float) -> float:
    """gSASRec's β for K negatives out of num_items - 1 candidates and calibration t."""
    alpha = num_negatives / (num_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def _scores(h, rows, bias):
    """h [N, D] against rows [M, D] -> float32 [N, M] (+ bias [M])."""
    scores = jnp.einsum("nd,md->nm", h, rows.astype(h.dtype), preferred_element_type=jnp.float32)
    return scores if bias is None else scores + bias


def _target_scores(h, t, W, b):
    """float32 [N]: each position's score of its own target."""
    scores = jnp.einsum("nd,nd->n", h, W[t].astype(h.dtype), preferred_element_type=jnp.float32)
    return scores if b is None else scores + b[t]


def cross_entropy(h, t, W, b, *, label_smoothing: float, chunk_size: int, seen=None):
    """Per-position softmax cross-entropy over items 1..num_items.

    seen [R, P or 1, num_items] (the N positions are R rows of P): items each position (or
    each row's positions) leaves out of its softmax, its own target excepted
    (`loss.exclude_window`).
    """
    items, item_bias = W[1:], (None if b is None else b[1:])
    if seen is not None:
        scores = _scores(h, items, item_bias)
        scores = jnp.where(seen, -jnp.inf, scores.reshape(seen.shape[0], -1, scores.shape[-1]))
        target = _target_scores(h, t, W, b)
        lse = jax.nn.logsumexp(scores.reshape(h.shape[0], -1), axis=-1)
        return jnp.logaddexp(lse, target) - target  # the target back among its competitors
    if chunk_size > 0:
        lse = chunked_logsumexp(h, items, item_bias, chunk_size)
    else:
        lse = jax.nn.logsumexp(_scores(h, items, item_bias), axis=-1)
    target = _target_scores(h, t, W, b)
    if label_smoothing == 0.0:
        return lse - target
    # Mean score over all items, without materialising them: h · mean(W) + mean(b).
    mean_score = _scores(h, items.mean(axis=0, keepdims=True), None)[:, 0]
    if item_bias is not None:
        mean_score = mean_score + item_bias.mean()
    return lse - (1.0 - label_smoothing) * target - label_smoothing * mean_score


def chunked_logsumexp(h, items, item_bias, chunk_size: int):
    """logsumexp_j(h · items_j + bias_j) per row of h, streamed over item chunks.

    The scan body is checkpointed: the backward pass saves only the running (max, sum)
    carries and recomputes each [N, chunk] block, so memory stays O(N · chunk).
    """
    num, dim = items.shape
    num_chunks = -(-num // chunk_size)
    padding = num_chunks * chunk_size - num
    chunks = jnp.pad(items, ((0, padding), (0, 0))).reshape(num_chunks, chunk_size, dim)
    bias = jnp.zeros((num,), jnp.float32) if item_bias is None else item_bias.astype(jnp.float32)
    bias_chunks = jnp.pad(bias, (0, padding)).reshape(num_chunks, chunk_size)
    valid = (jnp.arange(num_chunks * chunk_size) < num).reshape(num_chunks, chunk_size)

    @jax.checkpoint
    def step(carry, chunk):
        running_max, running_sum = carry
        rows, row_bias, row_valid = chunk
        scores = jnp.where(row_valid, _scores(h, rows, row_bias), -jnp.inf)
        new_max = jnp.maximum(running_max, scores.max(axis=-1))
        rescaled = running_sum * jnp.exp(running_max - new_max)
        new_sum = rescaled + jnp.exp(scores - new_max[:, None]).sum(axis=-1)
        return (new_max, new_sum), None

    rows = h.shape[0]
    start = (jnp.full((rows,), jnp.finfo(jnp.float32).min), jnp.zeros((rows,), jnp.float32))
    (running_max, running_sum), _ = jax.lax.scan(step, start, (chunks, bias_chunks, valid))
    return running_max + jnp.log(running_sum)


def sampled_softmax(h, t, W, b, negatives, *, log_q):
    """Per-position -log softmax of the positive among [positive, its row's negatives], a
    negative equal to the positive left out.

    h [R, P, D], t [R, P]: R rows (sequences) of P positions; negatives [R, K], shared by
    the positions of a row; log_q: None or (log q of each target [R, P], of each negative
    [R, K]). Returns [R, P].
    """
    positive = _target_scores(h.reshape(-1, h.shape[-1]), t.reshape(-1), W, b).reshape(t.shape)
    rows = W[negatives].astype(h.dtype)  # [R, K, D]
    negative = jnp.einsum("rpd,rkd->rpk", h, rows, preferred_element_type=jnp.float32)
    if b is not None:
        negative = negative + b[negatives][:, None, :]
    if log_q is not None:
        positive = positive - log_q[0]
        negative = negative - log_q[1][:, None, :]
    negative = jnp.where(negatives[:, None, :] == t[..., None], -jnp.inf, negative)
    logits = jnp.concatenate([positive[..., None], negative], axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - positive


def binary_cross_entropy(h, t, W, b, negatives, *, positive_weight: float):
    """Per-position positive_weight · softplus(-s⁺) + Σ_k softplus(s⁻_k), negatives [N, K], a
    negative equal to the positive left out.

    With many negatives from a small catalog (K ≥ table rows / 16, e.g. 256 of ML-1M's
    3,417) scoring every item in one matmul and picking the K columns is far cheaper than
    gathering [N, K, D] embedding rows, whose backward is a scatter-add of N·K·D values;
    both give the same numbers.
    """
    positive = _target_scores(h, t, W, b)
    if W.shape[0] <= 16 * negatives.shape[1]:
        negative = jnp.take_along_axis(_scores(h, W, b), negatives, axis=1)
    else:
        rows = W[negatives].astype(h.dtype)  # [N, K, D]
        negative = jnp.einsum("nd,nkd->nk", h, rows, preferred_element_type=jnp.float32)
        if b is not None:
            negative = negative + b[negatives]
    negative_terms = jnp.where(negatives == t[:, None], 0.0, jax.nn.softplus(negative))
    return positive_weight * jax.nn.softplus(-positive) + negative_terms.sum(axis=-1)
