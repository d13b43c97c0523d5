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
                   draws them, or with loss.sample_per='position' one per position, as
                   HSTU's code does. One draw for the whole batch costs no less and learns far
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
from jax.sharding import PartitionSpec as P

from transrec_jax import negatives as samplers
from transrec_jax import sharding


def compute_loss(loss_cfg, hidden, targets, weights, W, b, key, *, num_items: int | None = None,
                 item_log_probs=None, window=None, segments=None, mesh=None, trainable_items=None):
    """(scalar loss, {'loss', 'num_targets'}) for the loss named by loss_cfg.name.

    hidden [..., D], targets / weights [...]; W [rows, D], b [rows] or None, row i scoring item
    id i (rows past num_items -- None: rows - 1 -- pad a table split over devices); key
    draws the negatives (unused by 'ce'); item_log_probs [num_items + 1] feeds the popularity
    sampler and its log q; window [R, W] (the batch's training rows) feeds the 'unseen'
    sampler and exclude_window, with segments [R, W] when the rows are packed. The P
    positions of a row score the targets in its window's last P columns (SASRec's inputs
    predict seq[:, 1:], BERT4Rec's tokens are seq[:, 1:]), so a position belongs to the
    segment of its window column. mesh: the (data, model) mesh whose `model` axis splits W
    (sharding.py); the full softmax then runs per item shard. trainable_items: bool [rows] or
    None (all): the items that exist for training; the others (dataset.split=cold_items'
    withheld items) are no competitor of any target, in every loss.
    """
    lo = loss_cfg
    num_items = W.shape[0] - 1 if num_items is None else num_items
    if trainable_items is not None:  # (as long as the table: its padding rows are no items)
        trainable_items = jnp.pad(jnp.asarray(trainable_items, bool), (0, W.shape[0] - len(trainable_items)))
    h = hidden.reshape(-1, hidden.shape[-1])
    targets, weights = targets.reshape(-1), weights.reshape(-1)
    real = (targets != 0) & (weights > 0)
    w = jnp.where(real, weights, 0.0).astype(jnp.float32)
    t = jnp.where(real, targets, 1).astype(jnp.int32)  # a harmless stand-in id at padding
    batch = dict(num_items=num_items, item_log_probs=item_log_probs, targets=t, weights=w)
    draws = dict(batch, window=window)
    if lo.name == "ce":
        columns = None
        if lo.exclude_window and segments is not None:  # each position's own segment
            columns = segments[:, -(h.shape[0] // window.shape[0]):]
        per_position = cross_entropy(
            h, t, W, b, num_items=num_items, label_smoothing=lo.label_smoothing,
            chunk_size=lo.ce_chunk_size, window=window if lo.exclude_window else None,
            segments=segments if lo.exclude_window else None, columns=columns, mesh=mesh,
            trainable_items=trainable_items,
        )
    elif lo.name == "sampled_softmax":
        per_sequence = hidden.ndim > 2 and lo.sample_per == "sequence"
        rows = hidden.shape[0] if per_sequence else h.shape[0]  # sequences, or positions
        negatives = samplers.sample(lo.sampler, key, (rows, lo.num_negatives), **draws)
        log_q = None
        if lo.sampler != "unseen":
            # The stand-in id at padding may be one the sampler never draws (log q = -inf).
            target_log_q = jnp.where(real, samplers.log_q(lo.sampler, t, **batch), 0.0)
            log_q = (target_log_q.reshape(rows, -1), samplers.log_q(lo.sampler, negatives, **batch))
        per_position = sampled_softmax(
            h.reshape(rows, -1, h.shape[-1]), t.reshape(rows, -1), W, b, negatives,
            log_q=log_q, trainable_items=trainable_items,
        ).reshape(-1)
    elif lo.name in ("bce", "gbce"):
        negatives = samplers.sample(lo.sampler, key, (t.shape[0], lo.num_negatives), **batch)
        beta = gbce_beta(lo.num_negatives, num_items, lo.gbce_t) if lo.name == "gbce" else 1.0
        per_position = binary_cross_entropy(h, t, W, b, negatives, positive_weight=beta,
                                            trainable_items=trainable_items)
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


def cross_entropy(h, t, W, b, *, num_items: int, label_smoothing: float, chunk_size: int,
                  window=None, segments=None, columns=None, mesh=None, trainable_items=None):
    """Per-position softmax cross-entropy [N] over items 1..num_items, vocab-parallel.

    h [N, D], t [N]; W [rows, D], b [rows] or None. Each item shard (`mesh`'s model axis, or
    the whole table without a mesh) scores only its block of rows and keeps a running max and
    sum of exponentials; the blocks' log-sum-exps are combined with one max and one sum over
    the shards, so the [N, items] logits never exist on one device. chunk_size > 0 streams
    each block in chunks under jax.checkpoint (`_block_logsumexp`).

    window [R, W] (+ segments [R, W], columns [R, P] when packed; the N positions are R rows
    of P): `loss.exclude_window`, each position's softmax leaves out the other items of its
    row's window (segment), its own target excepted. trainable_items bool [rows]: the softmax
    runs over these items only (None: all).
    """
    leave_out = window is not None
    packed = columns is not None
    if b is None:  # (a zero bias adds exactly nothing)
        b = jnp.zeros(W.shape[0], jnp.float32)
    if trainable_items is None:
        trainable_items = jnp.ones(W.shape[0], bool)

    def per_shard(h, t, W, b, window, segments, columns, trainable, *, axis):
        first_id = sharding.row_offset(W.shape[0], axis)
        ids = first_id + jnp.arange(W.shape[0])
        exists = (ids >= 1) & (ids <= num_items) & trainable
        rankable = jnp.broadcast_to(exists, (1, 1, W.shape[0]))
        if leave_out:  # [R, P or 1, rows]: the ids of this block each position leaves out
            seen = samplers.block_items(window, first_id, W.shape[0], segments if packed else None)
            if packed:
                seen = seen[jnp.arange(window.shape[0])[:, None], columns]
            rankable = rankable & ~seen
        # The target's score: from the shard that holds its row, 0 from the others.
        local = t - first_id
        mine = (local >= 0) & (local < W.shape[0])
        row = jnp.clip(local, 0, W.shape[0] - 1)
        target = jnp.einsum("nd,nd->n", h, W[row].astype(h.dtype), preferred_element_type=jnp.float32)
        target = sharding.over_items(jnp.where(mine, target + b[row], 0.0), axis)
        running_max, running_sum = _block_logsumexp(h, W, b, rankable, chunk_size, axis)
        # Combine the shards: a shared max (no gradient flows through it; lse does not depend
        # on it), then the sum of each shard's rescaled exponentials.
        top = sharding.over_items(jax.lax.stop_gradient(running_max), axis, jax.lax.pmax)
        lse = top + jnp.log(sharding.over_items(running_sum * jnp.exp(running_max - top), axis))
        if leave_out:
            return jnp.logaddexp(lse, target) - target  # the target back among its competitors
        if label_smoothing == 0.0:
            return lse - target
        # Mean score over all items, without materialising them: h · mean(W) + mean(b).
        count = sharding.over_items(exists.sum(), axis)
        mean_row = sharding.over_items(jnp.where(exists[:, None], W, 0.0).sum(axis=0), axis) / count
        mean_bias = sharding.over_items(jnp.where(exists, b, 0.0).sum(), axis) / count
        mean_score = _scores(h, mean_row[None, :], None)[:, 0] + mean_bias
        return lse - (1.0 - label_smoothing) * target - label_smoothing * mean_score

    data, items = P(sharding.DATA), P(sharding.MODEL)
    run = sharding.item_parallel(per_shard, mesh,
                                 in_specs=(data, data, items, items, data, data, data, items),
                                 out_specs=data)
    return run(h, t, W, b, window, segments, columns, trainable_items)


def _block_logsumexp(h, W, b, rankable, chunk_size: int, axis=None):
    """(max, sum of exp(score - max)) per row of h over the rows of W that are `rankable`.

    rankable: bool [R, P or 1, rows] broadcast over the N = R * P positions of h (R = 1: the
    same for all). chunk_size > 0 streams the rows in chunks; the scan body is checkpointed,
    so the backward pass saves only the running (max, sum) carries and recomputes each
    [N, chunk] block: memory O(N · chunk) instead of O(N · rows).
    """
    floor = jnp.finfo(jnp.float32).min  # a running max over no item yet (never -inf: inf - inf)

    def block(rows, bias, ok):
        scores = _scores(h, rows, bias)
        scores = jnp.where(ok, scores.reshape(ok.shape[0], -1, scores.shape[-1]), -jnp.inf)
        scores = scores.reshape(h.shape[0], -1)
        # The max only keeps exp() in range: the log-sum-exp does not depend on it, so no
        # gradient flows through it (its own would be an [N, rows] compare and select).
        top = jax.lax.stop_gradient(jnp.maximum(scores.max(axis=-1), floor))
        return top, jnp.exp(scores - top[:, None]).sum(axis=-1)

    if chunk_size <= 0 or chunk_size >= W.shape[0]:
        return block(W, b, rankable)
    num, dim = W.shape
    num_chunks = -(-num // chunk_size)
    padding = num_chunks * chunk_size - num
    chunks = jnp.pad(W, ((0, padding), (0, 0))).reshape(num_chunks, chunk_size, dim)
    bias_chunks = jnp.pad(b.astype(jnp.float32), (0, padding)).reshape(num_chunks, chunk_size)
    ok = jnp.pad(rankable, ((0, 0), (0, 0), (0, padding)))  # padded rows: never rankable
    ok = jnp.moveaxis(ok.reshape(*ok.shape[:2], num_chunks, chunk_size), 2, 0)

    @jax.checkpoint
    def step(carry, chunk):
        running_max, running_sum = carry
        top, total = block(*chunk)
        new_max = jnp.maximum(running_max, top)
        new_sum = running_sum * jnp.exp(running_max - new_max) + total * jnp.exp(top - new_max)
        return (new_max, new_sum), None

    rows = h.shape[0]
    start = sharding.varying((jnp.full((rows,), floor), jnp.zeros((rows,), jnp.float32)), axis)
    (running_max, running_sum), _ = jax.lax.scan(step, start, (chunks, bias_chunks, ok))
    return running_max, running_sum


def sampled_softmax(h, t, W, b, negatives, *, log_q, trainable_items=None):
    """Per-position -log softmax of the positive among [positive, its row's negatives], a
    negative equal to the positive, or not among `trainable_items` (bool [rows]), left out.

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
    left_out = negatives[:, None, :] == t[..., None]
    if trainable_items is not None:
        left_out = left_out | ~trainable_items[negatives][:, None, :]
    negative = jnp.where(left_out, -jnp.inf, negative)
    logits = jnp.concatenate([positive[..., None], negative], axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - positive


def binary_cross_entropy(h, t, W, b, negatives, *, positive_weight: float, trainable_items=None):
    """Per-position positive_weight · softplus(-s⁺) + Σ_k softplus(s⁻_k), negatives [N, K], a
    negative equal to the positive, or not among `trainable_items` (bool [rows]), left out.

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
    left_out = negatives == t[:, None]
    if trainable_items is not None:
        left_out = left_out | ~trainable_items[negatives]
    negative_terms = jnp.where(left_out, 0.0, jax.nn.softplus(negative))
    return positive_weight * jax.nn.softplus(-positive) + negative_terms.sum(axis=-1)
