"""metrics.py against hand cases and plain-python references."""

import math

import jax
import numpy as np
import pytest

from transrec_jax import metrics

# The per-batch metrics run under jit in the evaluator; testing them jitted is also faster.
metrics_from_ranks = jax.jit(metrics.metrics_from_ranks, static_argnames="ks")
next_k_metrics = jax.jit(metrics.next_k_metrics, static_argnames="ks")


def reference_single_target(rank, k):
    hit = rank < k
    return {
        "hr": float(hit),
        "ndcg": 1 / math.log2(rank + 2) if hit else 0.0,
        "mrr": 1 / (rank + 1) if hit else 0.0,
        "recall": float(hit),
    }


def reference_next_k(ranked, targets, k):
    targets = set(targets) - {0}
    hits = [i for i, item in enumerate(ranked[:k]) if item in targets]
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(targets))))
    return len(hits) / len(targets), sum(1 / math.log2(i + 2) for i in hits) / ideal


def test_single_target_hand_case():
    values = metrics.metrics_from_ranks(np.array([0, 1, 4, 10]), np.ones(4, bool), ks=(1, 5))
    assert list(values) == ["hr@1", "hr@5", "ndcg@1", "ndcg@5", "mrr@1", "mrr@5", "recall@1", "recall@5"]
    np.testing.assert_allclose(values["hr@1"], [1, 0, 0, 0])
    np.testing.assert_allclose(values["hr@5"], [1, 1, 1, 0])
    np.testing.assert_allclose(values["ndcg@5"], [1, 1 / math.log2(3), 1 / math.log2(6), 0], rtol=1e-6)
    np.testing.assert_allclose(values["mrr@5"], [1, 1 / 2, 1 / 5, 0], rtol=1e-6)
    np.testing.assert_allclose(values["recall@5"], values["hr@5"])


def test_single_target_random_against_reference():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 60, 200)
    valid = rng.random(200) < 0.8
    ks = (1, 3, 10, 50)
    values = metrics_from_ranks(ranks, valid, ks=ks)
    for k in ks:
        for name in ("hr", "ndcg", "mrr", "recall"):
            expected = [reference_single_target(r, k)[name] if v else 0.0 for r, v in zip(ranks, valid)]
            np.testing.assert_allclose(values[f"{name}@{k}"], expected, rtol=1e-6)


def test_padded_users_contribute_nothing_and_do_not_change_means():
    ranks, ks = np.array([0, 3, 7]), (1, 5)
    alone = metrics_from_ranks(ranks, np.ones(3, bool), ks=ks)
    padded = metrics_from_ranks(np.array([0, 3, 7, 0, 0]), np.array([1, 1, 1, 0, 0], bool), ks=ks)
    for name in alone:
        np.testing.assert_array_equal(padded[name][3:], 0.0)
    means_alone = metrics.summarize({n: v.sum() for n, v in alone.items()}, 3)
    means_padded = metrics.summarize({n: v.sum() for n, v in padded.items()}, 3)
    assert means_alone == means_padded
    assert means_alone["hr@5"] == pytest.approx(2 / 3)


def test_summarize_needs_valid_users():
    with pytest.raises(ValueError, match="count"):
        metrics.summarize({"hr@1": 0.0}, 0)


@pytest.mark.parametrize("ks", [(), (0,), (5, -1), (1.5,), (True,), 10])
def test_bad_ks_raise(ks):
    with pytest.raises(ValueError, match="ks="):
        metrics.metrics_from_ranks(np.zeros(2, int), np.ones(2, bool), ks)


def test_coverage_hand_case():
    topk = np.array([[1, 2, 3], [1, 4, 0], [5, 6, 7]])
    valid = np.array([True, True, False])  # the third user is padding
    coverage = metrics.coverage_at_k(topk, valid, num_items=8, ks=(1, 2, 3))
    assert coverage == {"coverage@1": 1 / 8, "coverage@2": 3 / 8, "coverage@3": 4 / 8}  # id 0 is no item
    with pytest.raises(ValueError, match="ks="):
        metrics.coverage_at_k(topk, valid, num_items=8, ks=(4,))


def test_next_k_hand_case():
    topk = np.array([[5, 1, 9, 2], [3, 4, 6, 7], [1, 2, 3, 4]])
    target_sets = np.array([[1, 2, 0], [8, 0, 0], [1, 0, 0]])
    valid = np.array([True, True, False])
    values = next_k_metrics(topk, target_sets, valid, ks=(2, 4))
    ideal = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(values["recall@2"], [0.5, 0, 0])
    np.testing.assert_allclose(values["recall@4"], [1.0, 0, 0])
    np.testing.assert_allclose(values["ndcg@2"], [(1 / math.log2(3)) / ideal, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(values["ndcg@4"], [(1 / math.log2(3) + 1 / math.log2(5)) / ideal, 0, 0], rtol=1e-6)


def test_next_k_random_against_reference_and_single_target():
    rng = np.random.default_rng(1)
    batch, width, num_items = 64, 12, 30
    topk = np.stack([rng.choice(np.arange(1, num_items + 1), width, replace=False) for _ in range(batch)])
    sizes = rng.integers(1, 5, batch)
    target_sets = np.zeros((batch, 4), int)
    for u, size in enumerate(sizes):
        target_sets[u, :size] = rng.choice(np.arange(1, num_items + 1), size, replace=False)
    valid = np.ones(batch, bool)
    ks = (1, 5, 12)
    values = next_k_metrics(topk, target_sets, valid, ks=ks)
    for k in ks:
        expected = np.array([reference_next_k(topk[u].tolist(), target_sets[u].tolist(), k) for u in range(batch)])
        np.testing.assert_allclose(values[f"recall@{k}"], expected[:, 0], rtol=1e-6)
        np.testing.assert_allclose(values[f"ndcg@{k}"], expected[:, 1], rtol=1e-6)

    # One held-out item: the set metrics equal the leave-one-out ones.
    single = target_sets[:, :1]
    ranks = np.array([list(topk[u]).index(single[u, 0]) if single[u, 0] in topk[u] else width for u in range(batch)])
    from_ranks = metrics_from_ranks(ranks, valid, ks=ks)
    from_sets = next_k_metrics(topk, single, valid, ks=ks)
    for name in from_sets:
        np.testing.assert_allclose(from_sets[name], from_ranks[name], rtol=1e-6)
