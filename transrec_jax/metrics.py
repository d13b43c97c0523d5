"""Where every ranking metric is defined.

One held-out target (leave-one-out), from its 0-based pessimistic rank r (see `ranking.py`):
  hr@K     = 1 if r < K else 0
  ndcg@K   = 1 / log2(r + 2) if r < K else 0
  mrr@K    = 1 / (r + 1)     if r < K else 0
  recall@K = hr@K             (one relevant item; the set definition is below)
A held-out SET T of items against the model's ranked list L (`next_k_metrics`):
  recall@K = |L[:K] ∩ T| / |T|
  ndcg@K   = DCG / IDCG,  DCG = Σ_{i<K, L[i] ∈ T} 1 / log2(i + 2),
                          IDCG = Σ_{i<min(K, |T|)} 1 / log2(i + 2)
Slices (`slice_metrics`): the same per-user values averaged over each group of users, e.g. by
the target's training popularity or by history length (`popularity_groups`, `length_groups`),
or by whether the target is an item withheld from training (`withheld` / `warm`).
Catalog coverage (`coverage_at_k`):
  coverage@K = |union of L[:K] over valid users| / num_items

Evaluation batches are padded to a fixed size with a `valid` mask. The per-batch functions are
jnp-based (jit-able, `ks` static) and return per-user values zeroed for padded users, so an
evaluator sums them on device and divides once by the number of valid users (`summarize`):
results never depend on the eval batch size.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def hit(ranks, k):
    """1 where the target is in the top k."""
    return (ranks < k).astype(jnp.float32)


def ndcg(ranks, k):
    """Discounted gain of the single relevant item (its ideal DCG is 1)."""
    return jnp.where(ranks < k, 1.0 / jnp.log2(ranks + 2.0), 0.0).astype(jnp.float32)


def reciprocal_rank(ranks, k):
    """1 / (1-based rank) of the target, cut off at k."""
    return jnp.where(ranks < k, 1.0 / (ranks + 1.0), 0.0).astype(jnp.float32)


SINGLE_TARGET_METRICS = {"hr": hit, "ndcg": ndcg, "mrr": reciprocal_rank, "recall": hit}


def _is_positive_int(k) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1


def _checked_ks(ks) -> tuple[int, ...]:
    if not isinstance(ks, (tuple, list)) or not ks or not all(_is_positive_int(k) for k in ks):
        raise ValueError(f"ks={ks!r}: expected a non-empty tuple of positive integers")
    return tuple(int(k) for k in ks)


def _checked_width(ks, width: int) -> None:
    if max(ks) > width:
        raise ValueError(f"ks={ks!r}: K={max(ks)} exceeds the {width} ranked items given")


def metrics_from_ranks(ranks, valid, ks) -> dict:
    """Per-user single-target metrics {'hr@K', 'ndcg@K', 'mrr@K', 'recall@K': f32[B]}, 0 if not valid."""
    ks = _checked_ks(ks)
    ranks, valid = jnp.asarray(ranks), jnp.asarray(valid, bool)
    return {
        f"{name}@{k}": jnp.where(valid, metric(ranks, k), 0.0)
        for name, metric in SINGLE_TARGET_METRICS.items()
        for k in ks
    }


def summarize(sums: dict, count) -> dict[str, float]:
    """Means over valid users, from per-metric sums of per-user values and the valid-user count."""
    count = float(count)
    if count <= 0:
        raise ValueError(f"count={count}: no valid users to average over")
    return {name: float(total) / count for name, total in sums.items()}


POPULARITY_GROUPS = ("head", "torso", "tail", "cold")
LENGTH_BINS = ((1, 1), (2, 4), (5, 9), (10, 19), (20, None))  # history lengths, inclusive


def popularity_groups(targets, item_counts) -> np.ndarray:
    """Each target's popularity group: the items seen in training, ranked by training count
    (more first, ties to the lower id), cut into three equal thirds: head, torso, tail; items
    never seen in training are `cold`."""
    targets, item_counts = np.asarray(targets), np.asarray(item_counts)
    seen = np.flatnonzero(item_counts[1:] > 0) + 1
    order = seen[np.lexsort((seen, -item_counts[seen]))]
    group = np.full(len(item_counts), POPULARITY_GROUPS.index("cold"))
    group[order] = np.arange(len(order)) * 3 // max(len(order), 1)
    return np.asarray(POPULARITY_GROUPS)[group[targets]]


def length_groups(history_lengths) -> np.ndarray:
    """Each user's history-length bin: "1", "2-4", "5-9", "10-19", "20+" ("0": no history)."""
    lengths = np.asarray(history_lengths)
    labels = np.full(len(lengths), "0", dtype=object)
    for lo, hi in LENGTH_BINS:
        name = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        labels[(lengths >= lo) & (lengths <= (hi if hi is not None else np.inf))] = name
    return labels.astype(str)


def slice_metrics(ranks, groups, ks) -> dict[str, dict[str, float]]:
    """{group: {'users': n, 'hr@K', 'ndcg@K', ...}}: single-target metrics averaged over the
    users of each group (`groups[i]`: user i's label), groups in order of first appearance in
    sorted label order."""
    ranks, groups = np.asarray(ranks), np.asarray(groups)
    per_user = {k: np.asarray(v) for k, v in
                metrics_from_ranks(ranks, np.ones(len(ranks), bool), ks).items()}
    out = {}
    for label in sorted(set(groups.tolist()), key=_label_order):
        members = groups == label
        out[label] = {"users": int(members.sum()),
                      **{k: float(v[members].mean()) for k, v in per_user.items()}}
    return out


WITHHELD_GROUPS = ("withheld", "warm")


def _label_order(label: str):
    """head, torso, tail, cold; withheld, warm; length bins by their lower bound."""
    for i, named in enumerate((POPULARITY_GROUPS, WITHHELD_GROUPS)):
        if label in named:
            return (i, named.index(label), "")
    bound = label.rstrip("+").split("-")[0]
    return (2, int(bound), "") if bound.isdigit() else (3, 0, label)


def coverage_at_k(topk_items, valid, num_items: int, ks) -> dict[str, float]:
    """Fraction of the catalog (ids 1..num_items) in some valid user's top-K; id 0 (empty) is no item.

    Takes every user's top-k at once (U x kmax ids is small), since coverage is a union, not a mean.
    """
    ks = _checked_ks(ks)
    topk_items, valid = np.asarray(topk_items), np.asarray(valid, bool)
    _checked_width(ks, topk_items.shape[1])
    if num_items < 1:
        raise ValueError(f"num_items={num_items!r}: expected a positive integer")
    coverage = {}
    for k in ks:
        seen = np.zeros(num_items + 1, bool)
        seen[topk_items[valid, :k]] = True
        coverage[f"coverage@{k}"] = float(seen[1:].sum()) / num_items
    return coverage


def next_k_metrics(topk_items, target_sets, valid, ks) -> dict:
    """Per-user {'recall@K', 'ndcg@K': f32[B]} against a held-out SET of distinct items (0-padded).

    Users that are not valid or have an empty target set get 0.
    """
    ks = _checked_ks(ks)
    topk_items, target_sets = jnp.asarray(topk_items), jnp.asarray(target_sets)
    _checked_width(ks, topk_items.shape[1])
    is_target = target_sets > 0
    is_hit = jnp.any(
        (topk_items[:, :, None] == target_sets[:, None, :]) & is_target[:, None, :], axis=-1
    )  # bool[B, width]
    num_targets = is_target.sum(axis=1)
    counted = jnp.asarray(valid, bool) & (num_targets > 0)
    discount = 1.0 / jnp.log2(jnp.arange(topk_items.shape[1]) + 2.0)
    metrics = {}
    for k in ks:
        hits = is_hit[:, :k]
        recall = hits.sum(axis=1) / jnp.maximum(num_targets, 1)
        dcg = (hits * discount[:k]).sum(axis=1)
        ideal_dcg = (discount[:k] * (jnp.arange(k) < num_targets[:, None])).sum(axis=1)
        metrics[f"recall@{k}"] = jnp.where(counted, recall, 0.0).astype(jnp.float32)
        ndcg_k = dcg / jnp.maximum(ideal_dcg, 1.0)  # IDCG >= 1 whenever the set is non-empty
        metrics[f"ndcg@{k}"] = jnp.where(counted, ndcg_k, 0.0).astype(jnp.float32)
    return metrics
