"""The Evaluator end to end: a numpy golden computation, batch-size independence, sampled mode."""

import numpy as np
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import evaluate, metrics, sharding
from transrec_jax.data import preprocess, splits, synthetic
from transrec_jax.models import build_model


@pytest.fixture(scope="module")
def setup():
    c = config_lib.base_config()
    c.dataset.synthetic.update(num_users=150, num_items=40, min_len=4, max_len=25)
    c.model.update(max_len=10, d_model=16, num_layers=1, num_heads=2, d_ff=32, init_std=0.5)
    c.eval.ks = (1, 5, 10)
    ds = preprocess.preprocess(synthetic.generate(c.dataset.synthetic, 0), c.dataset)
    split = splits.leave_one_out(ds)
    graphdef, params = nnx.split(build_model(c.model, ds.num_items, rngs=nnx.Rngs(0)))
    mesh = sharding.make_mesh(c.mesh)
    return c, ds, split, graphdef, params, mesh


def _numpy_metrics(c, ds, split, graphdef, params, part):
    ranks = _numpy_ranks(c, ds, split, graphdef, params, part)
    return float(np.mean(ranks < 10)), float(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2), 0)))


def _numpy_ranks(c, ds, split, graphdef, params, part):
    """Independent reference: score every item in numpy, mask the history, pessimistic ranks
    (one per evaluated user, in split.eval_users order)."""
    model = nnx.merge(graphdef, params)
    W, b = (np.asarray(x) if x is not None else None for x in model.output_table())
    users = split.eval_users(part)
    pos = (split.val_pos if part == "val" else split.test_pos)[users]
    histories = np.zeros((len(users), c.model.max_len), np.int32)
    for history, u, p in zip(histories, users, pos):
        recent = ds.sequence(u)[max(0, p - c.model.max_len) : p]
        history[len(history) - len(recent) :] = recent
    reps = np.asarray(model.user_representation(histories), np.float64)  # one call, all users
    ranks = []
    for u, p, rep in zip(users, pos, reps):
        seq = ds.sequence(u)
        scores = W.astype(np.float64) @ rep + (0 if b is None else b)
        target = seq[p]
        rankable = np.ones(len(scores), bool)
        rankable[0] = False
        rankable[seq[:p]] = False
        rankable[target] = True
        others = rankable.copy()
        others[target] = False
        ranks.append(int((scores[others] >= scores[target]).sum()))
    return np.asarray(ranks)


@pytest.mark.parametrize("part", ["val", "test"])
def test_matches_numpy_reference(setup, part):
    c, ds, split, graphdef, params, mesh = setup
    got = evaluate.Evaluator(c, ds, split, part, graphdef, mesh)(params)
    hr, ndcg = _numpy_metrics(c, ds, split, graphdef, params, part)
    assert got["hr@10"] == pytest.approx(hr, abs=1e-6)
    assert got["ndcg@10"] == pytest.approx(ndcg, abs=1e-5)
    assert 0 < got["coverage@10"] <= 1


def test_the_test_pass_runs_the_programs_validation_compiled(setup):
    """Validation and test share one jitted step and their batch shapes: the test pass
    compiles nothing new (on a GPU each eval compile costs seconds)."""
    c, ds, split, graphdef, params, mesh = setup
    c2 = config_lib.base_config()
    c2.update(c)
    c2.eval.update(length_buckets=3, batch_size=32)
    val = evaluate.Evaluator(c2, ds, split, "val", graphdef, mesh)
    val(params)
    compiled = val._step._cache_size()
    assert 1 <= compiled <= 3  # one program per history-width bucket
    test = evaluate.Evaluator(c2, ds, split, "test", graphdef, mesh)
    assert test(params) == evaluate.Evaluator(c2, ds, split, "test", graphdef, mesh)(params)
    assert test._step is val._step and val._step._cache_size() == compiled


@pytest.mark.parametrize("length_buckets", [1, 4])  # 4: users visited shortest history first
def test_slices_match_numpy_reference(setup, length_buckets):
    c, ds, split, graphdef, params, mesh = setup
    c2 = config_lib.base_config()
    c2.update(c)
    c2.eval.update(length_buckets=length_buckets, batch_size=32)
    counts = evaluate.train_item_counts(ds, split)
    ev = evaluate.Evaluator(c2, ds, split, "test", graphdef, mesh)
    overall = ev(params)
    got = ev.slices(counts)
    ranks = _numpy_ranks(c, ds, split, graphdef, params, "test")
    users = split.eval_users("test")
    targets = np.array([ds.sequence(u)[p] for u, p in zip(users, split.test_pos[users])])
    groups = {"target_popularity": metrics.popularity_groups(targets, counts),
              "history_length": metrics.length_groups(split.test_pos[users])}
    for name, labels in groups.items():
        assert sorted(got[name]) == sorted(set(labels.tolist()))
        assert sum(g["users"] for g in got[name].values()) == len(users)
        for label, g in got[name].items():
            r = ranks[labels == label]
            assert g["users"] == len(r)
            assert g["hr@10"] == pytest.approx(np.mean(r < 10), abs=1e-6)
            assert g["ndcg@10"] == pytest.approx(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0)), abs=1e-5)
        # the users-weighted mean of the slices is the overall figure
        assert sum(g["users"] * g["ndcg@10"] for g in got[name].values()) / len(users) == \
            pytest.approx(overall["ndcg@10"], abs=1e-5)
    assert list(got["target_popularity"])[:1] == ["head"]
    pop = ev.popularity(counts)
    pop_slices = ev.slices(counts)  # now the popularity baseline's
    assert sum(g["users"] * g["hr@10"] for g in pop_slices["target_popularity"].values()) / len(users) \
        == pytest.approx(pop["hr@10"], abs=1e-6)


def test_popularity_groups_and_length_bins_golden():
    counts = np.array([0, 5, 3, 3, 0, 1, 9])  # item 4 never trained: cold
    # seen items by count, ties to the lower id: 6, 1, 2, 3, 5 -> thirds of 5: 0,0,1,1,2
    assert metrics.popularity_groups(np.array([6, 1, 2, 3, 5, 4]), counts).tolist() == \
        ["head", "head", "torso", "torso", "tail", "cold"]
    assert metrics.length_groups(np.array([0, 1, 2, 4, 5, 9, 10, 19, 20, 500])).tolist() == \
        ["0", "1", "2-4", "2-4", "5-9", "5-9", "10-19", "10-19", "20+", "20+"]
    ranks = np.array([0, 3, 20, 1])
    sliced = metrics.slice_metrics(ranks, np.array(["tail", "head", "tail", "cold"]), (1, 5))
    assert list(sliced) == ["head", "tail", "cold"]
    assert sliced["tail"] == pytest.approx({"users": 2, "hr@1": 0.5, "hr@5": 0.5, "ndcg@1": 0.5,
                                            "ndcg@5": 0.5, "mrr@1": 0.5, "mrr@5": 0.5,
                                            "recall@1": 0.5, "recall@5": 0.5})
    assert sliced["head"]["ndcg@5"] == pytest.approx(1 / np.log2(5))


def test_results_do_not_depend_on_eval_batch_size(setup):
    c, ds, split, graphdef, params, mesh = setup
    results = []
    for batch_size, chunk in ((7, 0), (64, 0), (512, 16)):
        c2 = config_lib.base_config()
        c2.update(c)
        c2.eval.update(batch_size=batch_size, item_chunk=chunk)
        results.append(evaluate.Evaluator(c2, ds, split, "test", graphdef, mesh)(params))
    for other in results[1:]:
        for k, v in results[0].items():
            assert other[k] == pytest.approx(v, abs=1e-6), k


def test_sampled_mode_is_labelled_and_never_harder_than_full_ranking():
    c = config_lib.base_config()
    c.dataset.synthetic.update(num_users=100, num_items=300, min_len=4, max_len=20)
    c.model.update(max_len=10, d_model=16, num_layers=1, num_heads=2, d_ff=32, init_std=0.5)
    ds = preprocess.preprocess(synthetic.generate(c.dataset.synthetic, 0), c.dataset)
    split = splits.leave_one_out(ds)
    graphdef, params = nnx.split(build_model(c.model, ds.num_items, rngs=nnx.Rngs(0)))
    mesh = sharding.make_mesh(c.mesh)
    full = evaluate.Evaluator(c, ds, split, "test", graphdef, mesh)(params)
    c.eval.mode = "sampled100"
    sampled_evaluator = evaluate.Evaluator(c, ds, split, "test", graphdef, mesh)
    sampled = sampled_evaluator(params)
    with pytest.raises(ValueError, match="full-ranking"):  # ranks among 100 items: no slices
        sampled_evaluator.slices(evaluate.train_item_counts(ds, split))
    # The popularity baseline ranks among the same 100 negatives (pessimistic ties), in numpy:
    counts = evaluate.train_item_counts(ds, split)
    pop = sampled_evaluator.popularity(counts)
    targets, negs = sampled_evaluator.batcher.targets(), sampled_evaluator._negatives
    ranks = (counts[negs] >= counts[targets][:, None]).sum(1)
    assert pop["sampled100/hr@10"] == pytest.approx(np.mean(ranks < 10), abs=1e-6)
    assert all(k.startswith("sampled100/") for k in sampled)
    # The 100 negatives are a subset of the rankable items, so no target can rank lower.
    for k in ("hr@1", "hr@10", "ndcg@10"):
        assert sampled[f"sampled100/{k}"] >= full[k]
    assert sampled["sampled100/hr@10"] > full["hr@10"]
    assert evaluate.protocol(c)["ranking"].startswith("sampled")


def test_popularity_baseline_ranks_by_training_counts(setup):
    c, ds, split, graphdef, params, mesh = setup
    counts = evaluate.train_item_counts(ds, split)
    assert counts[0] == 0 and counts.sum() == split.train_end.sum()
    pop = evaluate.Evaluator(c, ds, split, "test", graphdef, mesh).popularity(counts)
    assert set(pop) >= {"hr@10", "ndcg@10", "coverage@10"} and 0 <= pop["hr@10"] <= 1


@pytest.mark.parametrize("model_name, mode", [("sasrec", "full"), ("bert4rec", "full"),
                                              ("encdec", "full"), ("sasrec", "sampled100")])
def test_length_buckets_do_not_change_metrics(model_name, mode):
    """Cutting leading padding columns per length bucket leaves every metric as it was."""
    c = config_lib.base_config()
    c.dataset.synthetic.update(num_users=120, num_items=300, min_len=3, max_len=30)
    c.model.update(name=model_name, max_len=12, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                   init_std=0.5, num_decoder_layers=1, positions="learned")
    c.eval.update(mode=mode, batch_size=16)
    ds = preprocess.preprocess(synthetic.generate(c.dataset.synthetic, 0), c.dataset)
    split = splits.leave_one_out(ds)
    graphdef, params = nnx.split(build_model(c.model, ds.num_items, rngs=nnx.Rngs(0)))
    mesh = sharding.make_mesh(c.mesh)
    results = []
    for buckets in (1, 5):
        c.eval.length_buckets = buckets
        results.append(evaluate.Evaluator(c, ds, split, "test", graphdef, mesh)(params))
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for k, v in results[0].items():
            assert other[k] == pytest.approx(v, abs=1e-6), k


def test_popularity_baseline_follows_eval_item_chunk(setup, monkeypatch):
    c, ds, split, graphdef, params, mesh = setup
    counts = evaluate.train_item_counts(ds, split)
    whole = evaluate.Evaluator(c, ds, split, "test", graphdef, mesh).popularity(counts)
    chunks, rank_popularity = [], evaluate.ranking.rank_popularity

    def spy(*args, item_chunk, **kwargs):
        chunks.append(item_chunk)
        return rank_popularity(*args, item_chunk=item_chunk, **kwargs)

    monkeypatch.setattr(evaluate.ranking, "rank_popularity", spy)
    c2 = config_lib.base_config()
    c2.update(c)
    c2.eval.item_chunk = 16  # 41 ids in 3 chunks, the last one padded
    chunked = evaluate.Evaluator(c2, ds, split, "test", graphdef, mesh).popularity(counts)
    assert chunks and set(chunks) == {16}
    assert chunked == whole  # popularity scores are exact counts: no rounding to differ by
