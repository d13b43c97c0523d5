"""The encoder-decoder recommender: teacher forcing, KV-cached generation, next-K evaluation."""

import importlib.util
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import metrics, train
from transrec_jax.data import splits
from transrec_jax.data.batching import EvalBatcher, TrainBatcher
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.models import build_model, encdec, training_window

NUM_ITEMS, MAX_LEN, NEXT_K = 30, 8, 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_cfg(**overrides):
    cfg = config_lib.base_config().model
    cfg.update(name="encdec", max_len=MAX_LEN, next_k=NEXT_K, d_model=16, num_heads=2, d_ff=32,
               num_layers=1, num_decoder_layers=2, dropout=0.0, attention_dropout=0.0,
               init_std=0.3)
    cfg.update(overrides)
    return cfg


def make(seed=0, num_items=NUM_ITEMS, **overrides):
    return build_model(model_cfg(**overrides), num_items, rngs=nnx.Rngs(seed))


def histories(seed=0, batch=3, num_items=NUM_ITEMS):
    """[batch, MAX_LEN] right-aligned histories; row 0 left-padded."""
    rng = np.random.default_rng(seed)
    history = rng.integers(1, num_items + 1, size=(batch, MAX_LEN))
    history[0, :5] = 0
    return jnp.asarray(history, jnp.int32)


@pytest.fixture(scope="module")
def model():
    return make()


def test_state_is_params_only_and_splits_in_tree_mode(model):
    kinds = {type(v) for v in jax.tree.leaves(nnx.state(model),
                                              is_leaf=lambda x: isinstance(x, nnx.Variable))}
    assert kinds == {nnx.Param}
    graphdef, state = nnx.split(model, graph=False)
    history = histories()
    np.testing.assert_allclose(nnx.merge(graphdef, state).user_representation(history),
                               model.user_representation(history), atol=1e-6)
    assert model.output_table()[0].shape == (NUM_ITEMS + 1, 16)  # [START] is not an output row


def test_training_forward_teacher_forces_the_last_next_k_items(model):
    rng = np.random.default_rng(1)
    seq = jnp.asarray(rng.integers(1, NUM_ITEMS + 1, size=(2, MAX_LEN + NEXT_K)), jnp.int32)
    forward = jax.jit(lambda seq: model.training_forward(seq, key=None))  # jit: fewer compiles
    hidden, targets, weights = forward(seq)
    assert hidden.shape == (2, NEXT_K, 16)
    np.testing.assert_array_equal(targets, seq[:, MAX_LEN:])
    np.testing.assert_array_equal(weights, np.ones((2, NEXT_K)))
    # Teacher forcing: output j reads targets before j only; the last target is never an input.
    changed = seq.at[:, MAX_LEN + 2].set(seq[:, MAX_LEN + 2] % NUM_ITEMS + 1)
    changed_hidden, _, _ = forward(changed)
    np.testing.assert_allclose(changed_hidden[:, :3], hidden[:, :3], atol=1e-6)
    assert not np.allclose(changed_hidden[:, 3], hidden[:, 3])
    last_changed = seq.at[:, -1].set(seq[:, -1] % NUM_ITEMS + 1)
    np.testing.assert_allclose(forward(last_changed)[0], hidden, atol=1e-6)
    # The first step is the next-item protocol's user vector.
    np.testing.assert_allclose(hidden[:, 0], jax.jit(model.user_representation)(seq[:, :MAX_LEN]),
                               atol=1e-5)


def test_short_rows_keep_one_history_item():
    seq = jnp.asarray([[0, 0, 0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8]], jnp.int32)
    shifted = encdec.history_first(seq, 3)  # needs 4 items for a full row
    np.testing.assert_array_equal(shifted, [[0, 0, 0, 0, 7, 8, 9, 0], [1, 2, 3, 4, 5, 6, 7, 8]])
    model = make(max_len=5, next_k=3)
    _, targets, weights = jax.jit(lambda seq: model.training_forward(seq, key=None))(seq)
    np.testing.assert_array_equal(targets, [[8, 9, 0], [6, 7, 8]])
    np.testing.assert_array_equal(weights, [[1, 1, 0], [1, 1, 1]])


@pytest.mark.parametrize("overrides", [dict(), dict(positions="rotary", norm_placement="sasrec"),
                                       dict(positions="sinusoidal", norm_placement="post")])
def test_cached_decoding_equals_full_recomputation(overrides):
    model = make(**overrides)
    history = histories()
    encoded = model.encode(history)
    tokens = jnp.concatenate([jnp.full((3, 1), NUM_ITEMS + 1), histories(seed=5)[:, :NEXT_K - 1]],
                             axis=1).astype(jnp.int32)
    full = model.decode(tokens, encoded, history != 0)
    caches = model.init_decoder_cache(3, NEXT_K)
    cross_mask = (history != 0)[:, None, None, :]
    for t in range(NEXT_K):
        step, caches = model.decode_step(tokens[:, t], jnp.int32(t), encoded, cross_mask, caches)
        np.testing.assert_allclose(step, full[:, t], atol=1e-5)


def test_beam_width_one_equals_greedy(model):
    history = histories()
    greedy_items, greedy_scores = jax.jit(lambda h: model.greedy(h, h, k=NEXT_K))(history)
    beam_items, beam_scores = jax.jit(
        lambda h: model.beam_search(h, h, k=NEXT_K, beam_width=1))(history)
    np.testing.assert_array_equal(beam_items, greedy_items)
    np.testing.assert_allclose(beam_scores, greedy_scores, atol=1e-5)
    # Greedy's first pick is the best allowed item of the next-item ranking.
    log_p = np.array(model.log_probs(model.user_representation(history)))
    for row, hist in enumerate(np.asarray(history)):
        log_p[row, hist] = -np.inf
    np.testing.assert_array_equal(greedy_items[:, 0], log_p.argmax(axis=1))
    np.testing.assert_allclose(greedy_scores[:, 0], log_p.max(axis=1), atol=1e-5)


def test_beam_search_with_every_item_is_exact():
    """A beam as wide as the catalog at k=2 keeps every first pick: it finds the best pair."""
    num_items = 6
    model = make(num_items=num_items, next_k=2)
    history = histories(num_items=num_items)[1:2]
    exclude = history[:, -2:]
    items, scores = jax.jit(
        lambda h, e: model.beam_search(h, e, k=2, beam_width=num_items))(history, exclude)
    allowed = sorted(set(range(1, num_items + 1)) - set(np.asarray(exclude[0]).tolist()))
    pairs = list(itertools.permutations(allowed, 2))
    tokens = jnp.asarray([[num_items + 1, a] for a, _ in pairs], jnp.int32)

    @jax.jit
    def teacher_forced_log_probs(history, tokens):
        encoded = jnp.repeat(model.encode(history), len(pairs), axis=0)
        valid = jnp.repeat(history != 0, len(pairs), axis=0)
        return model.log_probs(model.decode(tokens, encoded, valid))

    log_p = teacher_forced_log_probs(history, tokens)
    totals = [log_p[i, 0, a] + log_p[i, 1, b] for i, (a, b) in enumerate(pairs)]
    assert tuple(np.asarray(items[0])) == pairs[int(np.argmax(totals))]
    assert float(scores[0, 1]) == pytest.approx(float(max(totals)), abs=1e-5)


@pytest.mark.parametrize("beam_width", [1, 3])
def test_generate_never_repeats_excludes_history_and_is_deterministic(model, beam_width):
    graphdef, params = nnx.split(model)
    history = histories(seed=2, batch=4)
    items, scores = encdec.generate(graphdef, params, history, history, k=NEXT_K,
                                    beam_width=beam_width)
    again = encdec.generate(graphdef, params, history, history, k=NEXT_K, beam_width=beam_width)
    np.testing.assert_array_equal(again[0], items)
    np.testing.assert_array_equal(again[1], scores)
    for row, hist in zip(np.asarray(items), np.asarray(history)):
        assert len(set(row)) == NEXT_K and 0 not in row and not set(row) & set(hist)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)
    # Without an exclusion list history items may come back; the list still has no repeats.
    free, _ = encdec.generate(graphdef, params, history, None, k=NEXT_K, beam_width=beam_width)
    assert all(len(set(row)) == NEXT_K for row in np.asarray(free))


@pytest.mark.parametrize("beam_width", [1, 2])
def test_an_exhausted_catalog_leaves_empty_slots(beam_width):
    model = make(num_items=4)
    history = jnp.asarray([[0, 0, 0, 0, 0, 0, 1, 2]], jnp.int32)
    items, scores = jax.jit(lambda h: model.generate(h, h, k=NEXT_K, beam_width=beam_width))(history)
    assert sorted(np.asarray(items[0, :2]).tolist()) == [3, 4]
    np.testing.assert_array_equal(items[0, 2:], [0, 0])
    assert np.isfinite(scores[0, :2]).all() and np.all(np.asarray(scores[0, 2:]) == -np.inf)


def test_generate_compiles_once_per_shape():
    graphdef, params = nnx.split(make(seed=3))
    before = encdec.generate._cache_size()
    for seed in range(3):  # new values, same shapes: no new compile
        encdec.generate(graphdef, params, histories(seed), histories(seed), k=2, beam_width=1)
    assert encdec.generate._cache_size() == before + 1
    encdec.generate(graphdef, params, histories(0, batch=5), histories(0, batch=5), k=2,
                    beam_width=1)
    assert encdec.generate._cache_size() == before + 2


def test_generate_rejects_lists_longer_than_trained(model):
    with pytest.raises(ValueError, match="model.next_k"):
        model.generate(histories(), k=NEXT_K + 1)
    with pytest.raises(ValueError, match="model.beam_width"):
        model.generate(histories(), k=2, beam_width=0)


def test_config_validation_and_training_window():
    c = config_lib.base_config()
    c.model.name = "encdec"
    config_lib.validate(c)
    assert training_window(c.model) == c.model.max_len + 5
    c.model.name = "sasrec"
    assert training_window(c.model) == c.model.max_len + 1
    for key, value, match in [("loss.name", "bce", "cannot train model.name='encdec'"),
                              ("model.beam_width", "0", "model.beam_width"),
                              ("model.next_k", "0", "model.next_k"),
                              ("dataset.next_k", "0", "dataset.next_k")]:
        bad = config_lib.base_config()
        bad.model.name = "encdec"
        config_lib.set_by_path(bad, key, value)
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.validate(bad)
    bad = config_lib.base_config()
    bad.model.name, bad.dataset.split, bad.dataset.next_k = "encdec", "next_k", 6
    with pytest.raises(config_lib.ConfigError, match="dataset.next_k=6 > model.next_k=5"):
        config_lib.validate(bad)


def load_config(arg):
    spec = importlib.util.spec_from_file_location("encdec_cfg", os.path.join(REPO, "configs", "encdec.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.parametrize("arg", ["", "ml-1m,next_k,beam", "beauty,debug"])
def test_config_file_validates(arg):
    c = load_config(arg or None)
    config_lib.validate(c)
    assert c.model.name == "encdec" and c.train.window == "random"
    if "beam" in arg:
        assert (c.dataset.split, c.model.beam_width, c.model.max_len) == ("next_k", 4, 200)


def tiny_dataset():
    """Users of lengths 12, 9 and 4 (items 1..20, no repeats except user 1)."""
    seqs = [np.arange(1, 13), np.array([3, 4, 5, 6, 7, 8, 9, 9, 2]), np.array([1, 2, 3, 4])]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return SequenceDataset(offsets=offsets, items=np.concatenate(seqs).astype(np.int32),
                           num_items=20, user_ids=np.arange(3), item_ids=np.arange(21))


def test_next_k_split_and_batches():
    ds = tiny_dataset()
    split = splits.next_k(ds, 3)
    np.testing.assert_array_equal(split.train_end, [6, 3, 4])
    np.testing.assert_array_equal(split.test_pos, [9, 6, -1])
    np.testing.assert_array_equal(split.val_pos, [6, 3, -1])
    assert split.summary()["num_targets"] == 3
    batch = next(iter(EvalBatcher(ds, split, "test", 5, 4, next_k=3)))
    np.testing.assert_array_equal(batch["targets"][:3], [[10, 11, 12], [9, 0, 2], [0, 0, 0]])
    np.testing.assert_array_equal(batch["history"][1], [4, 5, 6, 7, 8])
    np.testing.assert_array_equal(batch["exclude"][1], [0, 0, 0, 3, 4, 5, 6, 7, 8])
    rows = next(TrainBatcher(ds, split, max_len=4, batch_size=2, seed=0, width=7))["seq"]
    assert rows.shape == (2, 7)


def test_next_k_metrics_hand_case():
    topk = jnp.asarray([[3, 5, 7], [1, 2, 4]])
    targets = jnp.asarray([[5, 9, 0], [8, 9, 6]])
    got = metrics.next_k_metrics(topk, targets, jnp.asarray([True, True]), (3,))
    d = 1 / np.log2(np.arange(2, 5))
    np.testing.assert_allclose(got["recall@3"], [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(got["ndcg@3"], [d[1] / (d[0] + d[1]), 0.0], atol=1e-6)


@pytest.mark.slow
def test_end_to_end_next_k_run_and_recommend(tmp_path):
    c = load_config("debug,next_k")
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=200, num_items=60, min_len=12, max_len=30)
    c.model.update(max_len=10, num_decoder_layers=1, next_k=3)
    c.dataset.next_k = 3
    c.train.update(num_steps=6, eval_every_steps=6, batch_size=32)
    c.eval.update(ks=(5, 10), batch_size=64)
    workdir = str(tmp_path / "run")
    results = train.train_and_evaluate(c, workdir)
    on_disk = json.load(open(os.path.join(workdir, "results.json")))
    assert on_disk["test_next_k"]["method"] == "generate"
    for name in ("recall@3", "ndcg@3"):
        assert 0.0 <= results["test_next_k"][name] <= 1.0
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0 and results["dataset"]["split"]["num_targets"] == 3

    from transrec_jax.config import ConfigError
    from transrec_jax.recommend import Recommender

    rec = Recommender(workdir)
    seq = rec.dataset.sequence(0)
    items, scores = rec.top_k(np.array([0]), np.array([len(seq)]), seq, 3)
    assert len(set(items[0])) == 3 and not set(items[0]) & set(rec.dataset.item_ids[seq])
    assert np.all(np.diff(scores[0]) <= 0)
    with pytest.raises(ConfigError, match="model.next_k=3"):
        rec.top_k(np.array([0]), np.array([len(seq)]), seq, 4)
