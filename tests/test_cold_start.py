"""Cold-start protocols: the cold_items split (items withheld from training) and max_history."""

import dataclasses
import json
import os

import numpy as np
import pytest
from flax import nnx
from test_evaluate import _numpy_ranks

from transrec_jax import config as config_lib
from transrec_jax import evaluate, metrics, sharding, train
from transrec_jax.data import preprocess, splits, synthetic
from transrec_jax.data.batching import EvalBatcher, TrainBatcher, relative_times
from transrec_jax.data.dataset import SequenceDataset, ragged_from_sorted
from transrec_jax.models import build_model

# Item 7 has no interaction: it can never be withheld. Users 3 and 6 are too short to evaluate.
SEQS = [[1, 2, 3, 4, 5, 6], [2, 8, 9, 10], [11, 12, 13, 14, 15, 1, 2], [3, 4],
        [16, 17, 18, 19, 20, 5, 6, 8], [9, 10, 11, 12], [20]]


def _ds(seqs, with_times=False):
    users = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    items = np.concatenate([np.asarray(s) for s in seqs]).astype(np.int32)
    times = 1_000 + 10 * np.arange(len(items), dtype=np.int64) if with_times else None
    return SequenceDataset(
        offsets=ragged_from_sorted(users, len(seqs)), items=items, num_items=int(items.max()),
        user_ids=np.arange(len(seqs)), item_ids=np.arange(items.max() + 1), timestamps=times,
        name="toy",
    )


def _dataset_cfg(**kv):
    c = config_lib.base_config()
    c.dataset.split = "cold_items"
    c.dataset.update(kv)
    return c.dataset


def test_withheld_items_are_seeded_uniform_and_counted():
    ds = _ds(SEQS)
    draws = [splits.cold_items(ds, 0.25, seed).withheld for seed in range(6)]
    np.testing.assert_array_equal(draws[0], splits.cold_items(ds, 0.25, 0).withheld)
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])
    present = set(np.unique(ds.items).tolist())  # 19 items: 1..20 but 7
    for d in draws:
        assert len(d) == round(0.25 * 19) and set(d.tolist()) <= present and list(d) == sorted(d)
    sp = splits.make_split(ds, _dataset_cfg(cold_item_fraction=0.25), seed=3)
    withheld = set(sp.withheld.tolist())
    loo = splits.leave_one_out(ds)
    for key in ("train_end", "val_pos", "test_pos"):  # leave-one-out positions
        np.testing.assert_array_equal(getattr(sp, key), getattr(loo, key))
    kept = [[x for x in s[: loo.train_end[u]] if x not in withheld] for u, s in enumerate(SEQS)]
    val_targets = [s[-2] for s in SEQS if len(s) >= 3]
    test_targets = [s[-1] for s in SEQS if len(s) >= 3]
    assert sp.summary() == {
        "split": "cold_items", "train_interactions": sum(map(len, kept)),
        "train_users": sum(len(k) >= 2 for k in kept), "val_users": 5, "test_users": 5,
        "withheld_items": 5,
        "val_users_withheld_target": sum(t in withheld for t in val_targets),
        "test_users_withheld_target": sum(t in withheld for t in test_targets),
    }
    with pytest.raises(ValueError, match="seed=config.seed"):
        splits.make_split(ds, _dataset_cfg())


def test_training_view_drops_withheld_items_and_counts_them_zero():
    ds = _ds(SEQS, with_times=True)
    sp = splits.cold_items(ds, 0.25, 3)
    withheld = set(sp.withheld.tolist())
    view, train_end = splits.training_view(ds, sp)
    for u, s in enumerate(SEQS):
        expected = [x for x in s[: sp.train_end[u]] if x not in withheld]
        assert view.sequence(u).tolist() == expected and train_end[u] == len(expected)
    # each kept interaction keeps its own time
    pairs = set(zip(ds.items.tolist(), ds.timestamps.tolist()))
    assert set(zip(view.items.tolist(), view.timestamps.tolist())) <= pairs
    counts = evaluate.train_item_counts(ds, sp)
    assert counts[sp.withheld].sum() == 0 and counts.sum() == sp.summary()["train_interactions"]
    plain = splits.leave_one_out(ds)
    assert splits.training_view(ds, plain) == (ds, plain.train_end)


@pytest.mark.parametrize("window", ["last", "random", "shifted"])
@pytest.mark.parametrize("pack", [0, 2])
def test_no_training_batch_holds_a_withheld_item(window, pack):
    ds = _ds(SEQS, with_times=True)
    sp = splits.cold_items(ds, 0.25, 3)
    view, train_end = splits.training_view(ds, sp)
    parts = [tuple(view.sequence(u)) for u in range(ds.num_users) if train_end[u] >= 2]
    tb = TrainBatcher(ds, sp, max_len=3, batch_size=4, seed=0, window=window,
                      pack_row_multiple=pack, with_times=True)
    assert tb.steps_per_epoch == -(-len(parts) // 4)
    timed = set(zip(view.items.tolist(), relative_times(view).tolist()))
    for _ in range(6 * tb.steps_per_epoch):
        batch = next(tb)
        assert not np.isin(batch["seq"], sp.withheld).any()
        segments = batch["segments"] if pack else (batch["seq"] > 0).astype(np.int32)
        for row, times, segment in zip(batch["seq"], batch["times"], segments):
            for s in range(1, segment.max(initial=0) + 1):  # each window: a run of its history
                window = tuple(row[(segment == s) & (row > 0)].tolist())
                assert any(_contains(p, window) for p in parts)
            assert all((i, t) in timed for i, t in zip(row.tolist(), times.tolist()) if i)


def _contains(seq, window):
    return any(seq[j : j + len(window)] == window for j in range(len(seq) - len(window) + 1))


def test_evaluation_keeps_withheld_targets_and_histories():
    """Validation and test batches are leave-one-out's: withheld targets are evaluated and
    histories keep withheld items where they happened."""
    ds = _ds(SEQS)
    sp = splits.cold_items(ds, 0.25, 3)
    loo = splits.leave_one_out(ds)
    for part in ("val", "test"):
        got = list(EvalBatcher(ds, sp, part, max_len=4, batch_size=3))
        want = list(EvalBatcher(ds, loo, part, max_len=4, batch_size=3))
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for k in g:
                np.testing.assert_array_equal(g[k], w[k])
        targets = EvalBatcher(ds, sp, part, 4, 3).targets()
        assert np.isin(targets, sp.withheld).sum() == sp.withheld_targets[part] > 0


@pytest.fixture(scope="module")
def tiny():
    c = config_lib.base_config()
    c.dataset.synthetic.update(num_users=150, num_items=60, min_len=4, max_len=25)
    c.dataset.update(split="cold_items", cold_item_fraction=0.2)
    c.model.update(max_len=10, d_model=16, num_layers=1, num_heads=2, d_ff=32, init_std=0.5)
    c.eval.update(ks=(1, 5, 10), batch_size=64, length_buckets=1)
    ds = preprocess.preprocess(synthetic.generate(c.dataset.synthetic, 0), c.dataset)
    graphdef, params = nnx.split(build_model(c.model, ds.num_items, rngs=nnx.Rngs(0)))
    return c, ds, graphdef, params, sharding.make_mesh(c.mesh)


def _check_slices(got, ranks, labels):
    assert sum(g["users"] for g in got.values()) == len(ranks)
    for label, g in got.items():
        r = ranks[labels == label]
        assert g["users"] == len(r)
        assert g["hr@10"] == pytest.approx(np.mean(r < 10), abs=1e-6)
        assert g["ndcg@10"] == pytest.approx(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0)), abs=1e-5)


def test_withheld_and_warm_slices_match_numpy_reference(tiny):
    c, ds, graphdef, params, mesh = tiny
    sp = splits.make_split(ds, c.dataset, seed=c.seed)
    counts = evaluate.train_item_counts(ds, sp)
    ev = evaluate.Evaluator(c, ds, sp, "test", graphdef, mesh)
    ev(params)
    got = ev.slices(counts)
    ranks = _numpy_ranks(c, ds, sp, graphdef, params, "test")
    withheld = np.isin(ev.batcher.targets(), sp.withheld)
    assert list(got["target_withheld"]) == ["withheld", "warm"]
    assert got["target_withheld"]["withheld"]["users"] == sp.withheld_targets["test"] > 0
    _check_slices(got["target_withheld"], ranks, np.where(withheld, "withheld", "warm"))
    # every withheld target is 'cold' by training popularity (cold may hold more: items only
    # ever met in validation or test)
    assert got["target_popularity"]["cold"]["users"] >= sp.withheld_targets["test"]
    # popularity: a withheld item counts 0 and ranks below every rankable item (ties pessimistic)
    ev.popularity(counts)
    pop = ev.slices(counts)["target_withheld"]["withheld"]
    assert all(v == 0 for k, v in pop.items() if k != "users")


def test_max_history_cuts_history_and_exclude_alike(tiny):
    c, ds, graphdef, params, mesh = tiny
    sp = dataclasses.replace(splits.leave_one_out(ds), max_history=3)
    users = sp.eval_users("test")
    batcher = EvalBatcher(ds, sp, "test", max_len=10, batch_size=32, length_buckets=3)
    assert batcher.exclude_width == 3
    seen = 0
    for batch in batcher:
        for history, exclude, u, valid in zip(batch["history"], batch["exclude"], batch["user"],
                                              batch["valid"]):
            if valid:
                last = ds.sequence(u)[: sp.test_pos[u]][-3:].tolist()
                assert history[history > 0].tolist() == last == exclude[exclude > 0].tolist()
                seen += 1
    assert seen == len(users)
    starts, ends = batcher.histories()
    np.testing.assert_array_equal(ends - starts, np.minimum(sp.test_pos[users], 3))
    # metrics: the numpy reference on a dataset that holds only those histories and targets
    short = _ds([ds.sequence(u)[max(0, p - 3) : p + 1] for u, p in zip(users, sp.test_pos[users])])
    got = evaluate.Evaluator(c, ds, sp, "test", graphdef, mesh)(params)
    ranks = _numpy_ranks(c, short, splits.Split("loo", np.zeros(len(users), np.int64),
                                                np.full(len(users), -1), short.lengths - 1),
                         graphdef, params, "test")
    assert got["ndcg@10"] == pytest.approx(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2), 0)),
                                           abs=1e-5)
    assert sp.summary()["max_history"] == 3


def test_cold_items_run_end_to_end(tmp_path):
    c = config_lib.base_config()
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=200, num_items=80, min_len=6, max_len=20)
    c.dataset.update(split="cold_items", cold_item_fraction=0.2, max_history=6)
    c.model.update(max_len=10, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    c.train.update(num_epochs=0, num_steps=8, batch_size=32, eval_every_steps=8, log_every=4,
                   window="random")
    c.eval.update(batch_size=64, ks=(5, 10), length_buckets=1)
    results = train.train_and_evaluate(c, str(tmp_path / "run"))
    on_disk = json.load(open(os.path.join(tmp_path, "run", "results.json")))
    split = on_disk["dataset"]["split"]
    assert split["split"] == "cold_items" and split["withheld_items"] == 16
    assert split["max_history"] == 6
    assert on_disk["protocol"]["cold_item_fraction"] == 0.2
    for key in ("test_slices", "test_popularity_slices"):
        groups = on_disk[key]["target_withheld"]
        assert set(groups) == {"withheld", "warm"}
        assert sum(g["users"] for g in groups.values()) == split["test_users"]
        assert groups["withheld"]["users"] == split["test_users_withheld_target"]
        assert set(on_disk[key]["history_length"]) <= {"1", "2-4", "5-9"}
    assert on_disk["test_popularity_slices"]["target_withheld"]["withheld"]["hr@10"] == 0
    assert results["test"] == on_disk["test"]


def test_withheld_slices_golden():
    got = metrics.slice_metrics(np.array([0, 3, 20]), np.array(["withheld", "warm", "withheld"]), (1, 5))
    assert list(got) == ["withheld", "warm"]
    assert got["withheld"]["users"] == 2 and got["withheld"]["hr@1"] == 0.5
    assert got["warm"]["ndcg@5"] == pytest.approx(1 / np.log2(5))
    assert list(metrics.slice_metrics(np.array([1]), np.array(["warm"]), (1,))) == ["warm"]
