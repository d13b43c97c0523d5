"""rank_full / rank_sampled / sample_eval_negatives / popularity against hand cases and a numpy argsort reference."""

import numpy as np
import pytest

from transrec_jax import ranking


def reference_rank_full(user_repr, W, b, targets, exclude, kmax):
    """Plain numpy: sort each user's rankable items by (score desc, id asc); the target goes after its ties."""
    scores = user_repr.astype(np.float64) @ W.T.astype(np.float64)
    if b is not None:
        scores = scores + b
    ranks, top_items, top_scores = [], [], []
    for u, target in enumerate(targets):
        banned = set(exclude[u].tolist()) - {int(target)} | {0}
        ids = np.array([i for i in range(W.shape[0]) if i not in banned])
        s = scores[u, ids]
        pessimistic = ids[np.lexsort((ids == target, -s))]
        ranks.append(int(np.nonzero(pessimistic == target)[0][0]))
        order = np.lexsort((ids, -s))[:kmax]
        pad = kmax - len(order)
        top_items.append(np.concatenate([ids[order], np.zeros(pad, int)]))
        top_scores.append(np.concatenate([s[order], np.full(pad, -np.inf)]))
    return np.array(ranks), np.array(top_items), np.array(top_scores)


def random_case(rng, batch, num_ids, dim, history, integer_valued):
    """Integer-valued embeddings make float32 scores exact, so ties are real and must match exactly."""
    if integer_valued:
        user_repr = rng.integers(-2, 3, (batch, dim)).astype(np.float32)
        W = rng.integers(-2, 3, (num_ids, dim)).astype(np.float32)
        b = rng.integers(-1, 2, num_ids).astype(np.float32)
    else:
        user_repr = rng.normal(size=(batch, dim)).astype(np.float32)
        W = rng.normal(size=(num_ids, dim)).astype(np.float32)
        b = rng.normal(size=num_ids).astype(np.float32)
    targets = rng.integers(1, num_ids, batch).astype(np.int32)
    exclude = rng.integers(0, num_ids, (batch, history)).astype(np.int32)  # 0 = padding
    return user_repr, W, b, targets, exclude


def assert_matches_reference(case, kmax, item_chunk):
    user_repr, W, b, targets, exclude = case
    ranks, items, scores = ranking.rank_full(
        user_repr, W, b, targets, exclude, kmax=kmax, item_chunk=item_chunk
    )
    ref_ranks, ref_items, ref_scores = reference_rank_full(user_repr, W, b, targets, exclude, kmax)
    np.testing.assert_array_equal(ranks, ref_ranks)
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("integer_valued", [True, False])
@pytest.mark.parametrize("item_chunk", [0, 1, 4, 7, 37, 64])
def test_rank_full_matches_numpy_reference(integer_valued, item_chunk):
    # V = 37: chunk 4 and 7 do not divide it, 37 is one exact chunk, 64 is larger than the catalog.
    case = random_case(np.random.default_rng(item_chunk), 9, 37, 4, 6, integer_valued)
    assert_matches_reference(case, kmax=10, item_chunk=item_chunk)


def test_ties_are_pessimistic():
    # Scores by id: 0 (padding), 1 -> 1, 2 -> 2, 3 -> 2, 4 -> 0.
    W = np.array([[9.0], [1.0], [2.0], [2.0], [0.0]], np.float32)
    user_repr = np.ones((2, 1), np.float32)
    ranks, items, _ = ranking.rank_full(
        user_repr, W, None, np.array([2, 3]), np.zeros((2, 1), np.int32), kmax=4
    )
    np.testing.assert_array_equal(ranks, [1, 1])  # each tied item ranks behind the other
    np.testing.assert_array_equal(items, [[2, 3, 1, 4]] * 2)  # top-k ties go to the lower id


def test_constant_scores_rank_target_last():
    W = np.ones((11, 3), np.float32)
    for item_chunk in (0, 3):
        ranks, _, _ = ranking.rank_full(
            np.ones((2, 3), np.float32), W, None, np.array([1, 10]), np.array([[5, 0], [0, 0]]),
            kmax=3, item_chunk=item_chunk,
        )
        np.testing.assert_array_equal(ranks, [8, 9])  # 9 / 10 rankable items, target behind them all


def test_nan_target_score_ranks_last():
    W = np.arange(6, dtype=np.float32)[:, None]
    W[3] = np.nan
    ranks, _, _ = ranking.rank_full(
        np.ones((1, 1), np.float32), W, None, np.array([3]), np.zeros((1, 1), np.int32), kmax=2
    )
    np.testing.assert_array_equal(ranks, [4])


def test_kmax_larger_than_catalog_pads_with_id_0_and_minus_inf():
    W = np.array([[0.0], [3.0], [2.0], [1.0]], np.float32)  # 3 items
    for item_chunk in (0, 2):
        ranks, items, scores = ranking.rank_full(
            np.ones((1, 1), np.float32), W, None, np.array([3]), np.array([[1, 0]]),
            kmax=6, item_chunk=item_chunk,
        )
        np.testing.assert_array_equal(ranks, [1])
        np.testing.assert_array_equal(items, [[2, 3, 0, 0, 0, 0]])
        np.testing.assert_array_equal(scores, [[2.0, 1.0] + [-np.inf] * 4])


def test_target_in_history_stays_rankable_other_history_does_not():
    W = np.array([[0.0], [5.0], [4.0], [3.0], [2.0]], np.float32)
    ranks, items, _ = ranking.rank_full(
        np.ones((1, 1), np.float32), W, None, np.array([3]), np.array([[1, 3, 3, 0]]), kmax=4
    )
    np.testing.assert_array_equal(ranks, [1])  # item 1 is history; only item 2 is ahead
    np.testing.assert_array_equal(items, [[2, 3, 4, 0]])


def test_excluded_items_never_in_top_k():
    rng = np.random.default_rng(1)
    user_repr, W, b, targets, exclude = random_case(rng, 16, 30, 4, 12, integer_valued=False)
    for item_chunk in (0, 8):
        _, items, _ = ranking.rank_full(
            user_repr, W, b, targets, exclude, kmax=29, item_chunk=item_chunk
        )
        for u in range(16):
            banned = set(exclude[u].tolist()) - {int(targets[u])}
            shown = set(items[u].tolist()) - {0}
            assert not shown & banned
            assert len(shown) == 29 - len(banned - {0})  # every rankable item, once


def test_results_do_not_depend_on_batch_padding():
    rng = np.random.default_rng(2)
    user_repr, W, b, targets, exclude = random_case(rng, 3, 25, 4, 5, integer_valued=True)
    junk = random_case(rng, 5, 25, 4, 5, integer_valued=True)
    padded = [np.concatenate([a, j]) for a, j in zip((user_repr, targets, exclude), (junk[0], junk[3], junk[4]))]
    alone = ranking.rank_full(user_repr, W, b, targets, exclude, kmax=5, item_chunk=6)
    in_padded_batch = ranking.rank_full(padded[0], W, b, padded[1], padded[2], kmax=5, item_chunk=6)
    for a, p in zip(alone, in_padded_batch):
        np.testing.assert_array_equal(a, np.asarray(p)[:3])


def test_rank_full_compiles_once_per_shape():
    rng = np.random.default_rng(3)
    before = ranking.rank_full._cache_size()
    for _ in range(3):
        ranking.rank_full(*random_case(rng, 4, 13, 5, 3, integer_valued=False), kmax=7, item_chunk=5)
    assert ranking.rank_full._cache_size() == before + 1


@pytest.mark.parametrize("kwargs, bad", [({"kmax": 0}, "kmax"), ({"kmax": 2, "item_chunk": -1}, "item_chunk")])
def test_rank_full_rejects_bad_static_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        ranking.rank_full(*random_case(np.random.default_rng(0), 2, 5, 2, 1, False), **kwargs)


def test_rank_sampled_hand_case():
    W = np.array([[0.0], [1.0], [2.0], [3.0], [2.0]], np.float32)
    b = np.array([0.0, 0.0, 0.0, 0.0, 0.0], np.float32)
    negatives = np.array([[1, 3, 4], [1, 2, 4], [2, 3, 4]])
    ranks = ranking.rank_sampled(np.ones((3, 1), np.float32), W, b, np.array([2, 3, 1]), negatives)
    # target 2 (score 2): 3 beats it, 4 ties -> 2; target 3: best -> 0; target 1: all ahead -> 3.
    np.testing.assert_array_equal(ranks, [2, 0, 3])


def test_rank_sampled_matches_rank_full_restricted_to_candidates():
    rng = np.random.default_rng(4)
    user_repr, W, b, targets, _ = random_case(rng, 6, 40, 4, 1, integer_valued=True)
    negatives = np.stack([rng.choice(np.setdiff1d(np.arange(1, 40), [t]), 8, replace=False) for t in targets])
    ranks = np.asarray(ranking.rank_sampled(user_repr, W, b, targets, negatives))
    for u in range(6):
        everything_else = np.setdiff1d(np.arange(40), np.append(negatives[u], targets[u]))
        ref, _, _ = reference_rank_full(user_repr[u:u + 1], W, b, targets[u:u + 1], everything_else[None], 1)
        assert ranks[u] == ref[0]


def make_histories(rng, num_users, num_items, max_len):
    return [rng.choice(np.arange(1, num_items + 1), rng.integers(1, max_len), replace=False) for _ in range(num_users)]


def test_sample_eval_negatives_avoids_history_and_target_and_is_seeded():
    rng = np.random.default_rng(5)
    num_items = 60
    histories = make_histories(rng, 50, num_items, 40)
    targets = rng.integers(1, num_items + 1, 50)
    negatives = ranking.sample_eval_negatives(histories, targets, num_items, 15, np.random.default_rng(7))
    assert negatives.shape == (50, 15) and negatives.dtype == np.int32
    for u in range(50):
        row = negatives[u].tolist()
        assert len(set(row)) == 15
        assert all(1 <= i <= num_items for i in row)
        assert not set(row) & (set(histories[u].tolist()) | {int(targets[u])})
    again = ranking.sample_eval_negatives(histories, targets, num_items, 15, np.random.default_rng(7))
    other = ranking.sample_eval_negatives(histories, targets, num_items, 15, np.random.default_rng(8))
    np.testing.assert_array_equal(negatives, again)
    assert (negatives != other).any()


def test_sample_eval_negatives_accepts_csr_histories():
    rng = np.random.default_rng(6)
    histories = make_histories(rng, 20, 30, 10)
    targets = rng.integers(1, 31, 20)
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])])
    csr = (offsets, np.concatenate(histories))
    from_list = ranking.sample_eval_negatives(histories, targets, 30, 5, np.random.default_rng(0))
    from_csr = ranking.sample_eval_negatives(csr, targets, 30, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(from_list, from_csr)


def test_sample_eval_negatives_follows_popularity():
    num_items = 10
    popularity = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 50, 0], np.float64)  # items 1 and 10 never drawn
    histories = [np.array([2])] * 400
    negatives = ranking.sample_eval_negatives(
        histories, np.full(400, 3), num_items, 2, np.random.default_rng(0), popularity=popularity
    )
    counts = np.bincount(negatives.ravel(), minlength=num_items + 1)
    assert counts[[0, 1, 2, 3, 10]].sum() == 0
    assert counts[9] >= 390  # P(item 9 in a pair) = 1 - (5/55)(4/50) > 0.99


def test_sample_eval_negatives_full_ml1m_scale():
    rng = np.random.default_rng(9)
    num_users, num_items = 6040, 3706
    lengths = np.minimum(rng.geometric(1 / 160, num_users) + 20, 2300)
    sequences = [rng.choice(num_items, n + 1, replace=False) + 1 for n in lengths]
    histories, targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    negatives = ranking.sample_eval_negatives(histories, targets, num_items, 100, np.random.default_rng(0))
    u = int(np.argmax(lengths))
    assert not set(negatives[u].tolist()) & set(histories[u].tolist())
    assert (np.sort(negatives, axis=1)[:, 1:] != np.sort(negatives, axis=1)[:, :-1]).all()


def test_sample_eval_negatives_rejects_impossible_request():
    with pytest.raises(ValueError, match="n=3"):
        ranking.sample_eval_negatives([np.array([1, 2])], np.array([3]), 4, 3, np.random.default_rng(0))


def test_popularity_ranks_by_count_with_pessimistic_ties():
    counts = np.array([0, 5, 9, 5, 1, 5])
    scores = ranking.popularity_scores(counts)
    assert scores.dtype == np.float32
    targets = np.array([1, 2, 4])
    exclude = np.array([[0, 0], [3, 2], [2, 0]])
    for item_chunk in (0, 4):
        ranks, items, _ = ranking.rank_popularity(scores, targets, exclude, kmax=3, item_chunk=item_chunk)
        # user 0: 2 ahead, 3 and 5 tie -> 3; user 1: 3 is history -> 0; user 2: 2 is history, 1/3/5 ahead -> 3.
        np.testing.assert_array_equal(ranks, [3, 0, 3])
        np.testing.assert_array_equal(items, [[2, 1, 3], [2, 1, 5], [1, 3, 5]])
