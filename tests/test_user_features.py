"""User features (models/user_tower.py, model.user_features): off leaves every model as it was;
the arrays follow the dataset's users whatever the file's order, an unlisted user is the unknown
user; packed rows train as unpacked; `input` and `output` against numpy; the evaluator reads each
user's own features; bad files and settings fail in one line; a tiny run end to end, served as its users."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import cli, evaluate, recommend, sharding, train
from transrec_jax.data import side_info, splits
from transrec_jax.data.batching import TrainBatcher, pack_windows
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError
from transrec_jax.losses import compute_loss
from transrec_jax.models import build_model
from transrec_jax.models.item_tower import FeatureTable
from transrec_jax.models.user_tower import UserFeatureArrays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS, MAX_LEN = 12, 8
MODELS = ["sasrec", "bert4rec", "transformer_recommender", "hstu"]


def model_config(name="sasrec", placement="input", **overrides):
    c = config_lib.base_config()
    c.model.update(name=name, max_len=MAX_LEN, d_model=8, num_layers=1, num_heads=2, d_ff=16,
                   dropout=0.0, attention_dropout=0.0, init_std=0.3, user_features=placement)
    c.model.update(overrides)
    return c.model


def features(num_users=7) -> UserFeatureArrays:
    """Row 0 the unknown user, then users 1..num_users: a multi-valued categorical and a vector."""
    rng = np.random.default_rng(0)
    tags = rng.integers(2, 6, size=(num_users + 1, 2)).astype(np.int32)
    tags[1::3, 1] = 0  # some users one value
    tags[0] = [1, 0]
    vectors = rng.normal(size=(num_users + 1, 3)).astype(np.float32)
    vectors[0] = 0
    return UserFeatureArrays(categorical={"tags": tags}, vocab_sizes={"tags": 6},
                             dense={"vec": vectors})


def numpy_user_vectors(model, users):
    """The tower's user vectors recomputed in numpy from its parameters."""
    t = model.user_tower
    tags = np.asarray(t.categorical[0][...])[users]
    table = np.asarray(t.value_embeddings[0].embedding[...])
    pooled = np.stack([table[[g for g in row if g]].mean(0) for row in tags])
    lin = t.projections[0]
    dense = np.asarray(t.dense[0][...])[users] @ np.asarray(lin.kernel[...]) + np.asarray(lin.bias[...])
    return pooled + dense


def flat(model):
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))}


# --- off: nothing changes -------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_off_keeps_params_outputs_and_random_draws(name):
    off = build_model(model_config(name, "off"), NUM_ITEMS, rngs=nnx.Rngs(0))
    on = build_model(model_config(name, "output"), NUM_ITEMS, rngs=nnx.Rngs(0), user_features=features())
    assert off.user_tower is None
    off_params, on_params = flat(off), flat(on)
    assert not any("user_tower" in str(p) for p in off_params)
    # the tower is built last: every other parameter draws exactly what it draws without it
    assert {p for p in on_params if "user_tower" not in str(p)} == set(off_params)
    for path, value in off_params.items():
        np.testing.assert_array_equal(on_params[path], value, err_msg=str(path))
    # a model without user features ignores `users`, and its state holds parameters only
    seq = jnp.asarray(np.random.default_rng(1).integers(0, NUM_ITEMS + 1, (2, MAX_LEN + 1)), jnp.int32)
    users = jnp.ones_like(seq)
    key = jax.random.key(2)
    np.testing.assert_array_equal(np.asarray(off.training_forward(seq, key=key)[0]),
                                  np.asarray(off.training_forward(seq, key=key, users=users)[0]))
    kinds = {type(v) for v in jax.tree.leaves(nnx.state(off), is_leaf=lambda x: isinstance(x, nnx.Variable))}
    assert kinds == {nnx.Param}


def test_off_batches_carry_no_users_and_on_batches_align_them():
    ds = _dataset([[1, 2, 3, 4, 5], [2, 3, 4], [5, 6, 7, 8, 1, 2], [3, 4, 5, 6]], user_ids=[9, 8, 7, 6])
    sp = splits.leave_one_out(ds)
    for pack in (0, 2):
        plain = TrainBatcher(ds, sp, max_len=4, batch_size=3, seed=0, pack_row_multiple=pack)
        with_users = TrainBatcher(ds, sp, max_len=4, batch_size=3, seed=0, pack_row_multiple=pack,
                                  with_users=True)
        for _ in range(3):
            a, b = next(plain), next(with_users)
            assert set(b) == set(a) | {"users"}
            for key in a:
                np.testing.assert_array_equal(b[key], a[key])
            segments = b.get("segments", (b["seq"] != 0).any(1, keepdims=True) * np.ones_like(b["seq"]))
            for r in range(len(b["seq"])):
                for s in np.unique(segments[r][segments[r] > 0]):
                    items = b["seq"][r][(segments[r] == s)]
                    owner = set(b["users"][r][segments[r] == s])
                    assert len(owner) == 1  # one user per window, padding slot included
                    u = owner.pop() - 1
                    history = ds.sequence(u)[: sp.train_end[u]]
                    real = items[items != 0]
                    assert any(np.array_equal(real, history[i:i + len(real)])
                               for i in range(len(history) - len(real) + 1))


# --- alignment and the unknown user ----------------------------------------------------------------


def _dataset(seqs, user_ids):
    lengths = [len(s) for s in seqs]
    return SequenceDataset(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           items=np.concatenate(seqs).astype(np.int32), num_items=8,
                           user_ids=np.array(user_ids), item_ids=np.arange(9))


def _dataset_cfg(path, **overrides):
    c = config_lib.base_config()
    settings = dict(user_features=str(path), user_features_format="table",
                    user_features_columns="job:categorical,tags:multi:|,score:numeric")
    c.dataset.update({**settings, **overrides})
    return c.dataset


ROWS = [("10", "a", "x|y", "1.5"), ("30", "b", "y", "2.5"), ("20", "a", "", "-1"), ("99", "c", "z", "0")]


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 0, 1]])
def test_table_rows_in_any_order_give_the_same_arrays(tmp_path, order):
    ds = _dataset([[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]], user_ids=[20, 10, 40, 30])
    path = tmp_path / f"users{order[0]}.csv"
    path.write_text("id,job,tags,score\n" + "".join(",".join(ROWS[i]) + "\n" for i in order))
    info = side_info.read_user_features(_dataset_cfg(path), ds, str(tmp_path / "c"), log=lambda *_: None)
    arrays = side_info.user_tower_inputs(info)
    # vocabularies sorted: job <pad> <unknown> a b c; tags <pad> <unknown> x y z
    np.testing.assert_array_equal(arrays.categorical["job"][:, 0], [1, 2, 2, 1, 3])
    np.testing.assert_array_equal(arrays.categorical["tags"], [[1, 0], [1, 0], [2, 3], [1, 0], [3, 0]])
    # numeric standardised over the dataset's listed users (user 99 is none); user 40 unlisted: 0
    raw = np.array([1.5, 2.5, -1.0])
    z = (np.array([-1.0, 1.5, 2.5]) - raw.mean()) / raw.std()
    np.testing.assert_allclose(arrays.dense["score"][:, 0], [0, z[0], z[1], 0, z[2]], rtol=1e-6)
    assert info.features["job"].missing.tolist() == [False, False, True, False]


def test_an_unlisted_user_is_the_unknown_user():
    f = features()
    cat, dense = dict(f.categorical), dict(f.dense)
    cat["tags"] = cat["tags"].copy()
    dense["vec"] = dense["vec"].copy()
    cat["tags"][3], dense["vec"][3] = [1, 0], 0  # what side_info gives a user the file lacks
    f = UserFeatureArrays(categorical=cat, vocab_sizes=f.vocab_sizes, dense=dense)
    model = build_model(model_config("sasrec", "input"), NUM_ITEMS, rngs=nnx.Rngs(0), user_features=f)
    history = jnp.asarray([[0, 0, 3, 4, 5, 6, 7, 8]] * 3, jnp.int32)
    got = np.asarray(model.user_representation(history, users=jnp.asarray([3, 0, 2])))
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.user_representation(history[:1])), got[1:2], atol=1e-6)
    assert not np.allclose(got[0], got[2])


# --- placement against numpy ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "hstu"])
def test_output_placement_adds_the_user_vector_to_the_scoring_hidden(name):
    """scores = (h + u) · W, h the hidden state of the same model without user features."""
    on = build_model(model_config(name, "output"), NUM_ITEMS, rngs=nnx.Rngs(0), user_features=features())
    off = build_model(model_config(name, "off"), NUM_ITEMS, rngs=nnx.Rngs(0))
    history = jnp.asarray(np.random.default_rng(3).integers(1, NUM_ITEMS + 1, (3, MAX_LEN)), jnp.int32)
    users = np.array([1, 5, 0])
    u = numpy_user_vectors(on, users)
    h = np.asarray(off.user_representation(history))
    got = np.asarray(on.user_representation(history, users=jnp.asarray(users)))
    np.testing.assert_allclose(got, h + u, rtol=1e-5, atol=1e-6)
    W, _ = on.output_table()
    np.testing.assert_allclose(np.asarray(on.score_all(jnp.asarray(got))), (h + u) @ np.asarray(W).T,
                               rtol=1e-5, atol=1e-5)


def test_input_placement_adds_the_user_vector_to_every_input():
    """No layers: hidden = LayerNorm(item + position + u) at every position, in numpy."""
    model = build_model(model_config("sasrec", "input", num_layers=0), NUM_ITEMS, rngs=nnx.Rngs(0),
                        user_features=features())
    tokens = np.random.default_rng(4).integers(0, NUM_ITEMS + 1, (2, MAX_LEN))
    users = np.array([[2] * MAX_LEN, [6] * 3 + [4] * (MAX_LEN - 3)])  # the second row: two users
    u = numpy_user_vectors(model, users.reshape(-1)).reshape(*users.shape, -1)
    x = (np.asarray(model.item_embedding.embedding[...])[tokens]
         + np.asarray(model.positions.embedding.embedding[...])[np.arange(MAX_LEN)[::-1]] + u)
    norm = model.final_norm
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mean) / np.sqrt(var + norm.epsilon) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
    got = np.asarray(model.encode(jnp.asarray(tokens, jnp.int32), users=jnp.asarray(users, jnp.int32)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_input_placement_reaches_every_position_through_the_layers():
    model = build_model(model_config("sasrec", "input"), NUM_ITEMS, rngs=nnx.Rngs(0), user_features=features())
    tokens = jnp.asarray([[0, 0, 3, 4, 5, 6, 7, 8]], jnp.int32)
    a = np.asarray(model.encode(tokens, users=jnp.full((1, MAX_LEN), 2, jnp.int32)))
    b = np.asarray(model.encode(tokens, users=jnp.full((1, MAX_LEN), 3, jnp.int32)))
    assert np.all(np.abs(a - b).max(-1) > 1e-4)


# --- packed rows ----------------------------------------------------------------------------------


def packed_with_users(lengths=(3, 9, 1, 5, 8, 2, 6)):
    rng = np.random.default_rng(0)
    windows = np.zeros((len(lengths), MAX_LEN + 1), np.int32)
    for row, n in zip(windows, lengths):
        row[MAX_LEN + 1 - n:] = rng.integers(1, NUM_ITEMS + 1, size=n)
    users = np.repeat(np.arange(1, len(lengths) + 1, dtype=np.int32)[:, None], MAX_LEN + 1, 1)
    packed = pack_windows(windows, 1, {"users": users})
    assert packed["seq"].shape[0] < len(lengths)
    return jnp.asarray(windows), jnp.asarray(users), {k: jnp.asarray(v) for k, v in packed.items()}


@pytest.mark.parametrize("name, placement", [("sasrec", "input"), ("sasrec", "output"),
                                             ("hstu", "input")])
def test_packed_rows_give_the_unpacked_loss(name, placement):
    model = build_model(model_config(name, placement), NUM_ITEMS, rngs=nnx.Rngs(0),
                        user_features=features())
    windows, users, packed = packed_with_users()
    plain = model.training_forward(windows, key=None, users=users)
    packed_out = model.training_forward(packed["seq"], key=None, segments=packed["segments"],
                                        positions=packed["positions"], users=packed["users"])
    cfg = config_lib.base_config().loss
    plain_loss = compute_loss(cfg, *plain, *model.output_table(), None, window=windows)[0]
    packed_loss = compute_loss(cfg, *packed_out, *model.output_table(), None,
                               window=packed["seq"], segments=packed["segments"])[0]
    np.testing.assert_allclose(packed_loss, plain_loss, rtol=1e-5)
    # and the users matter: everyone as the unknown user trains another loss
    unknown = model.training_forward(windows, key=None, users=jnp.zeros_like(users))
    assert abs(float(compute_loss(cfg, *unknown, *model.output_table(), None)[0]) - float(plain_loss)) > 1e-4


def test_packed_bert4rec_rows_encode_with_their_own_users():
    from test_models import packed_places

    model = build_model(model_config("bert4rec", "input"), NUM_ITEMS, rngs=nnx.Rngs(0),
                        user_features=features())
    windows, users, packed = packed_with_users()
    plain = model.encode(windows[:, 1:], users=users[:, 1:])
    got = model.encode(packed["seq"][:, 1:], segments=packed["segments"][:, 1:],
                       positions=packed["positions"][:, 1:], users=packed["users"][:, 1:])
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=True)
    np.testing.assert_allclose(np.asarray(got)[packed_idx], np.asarray(plain)[plain_idx], atol=1e-5)


# --- training and evaluation ----------------------------------------------------------------------


@pytest.mark.parametrize("name, placement", [("sasrec", "input"), ("bert4rec", "output")])
def test_a_train_step_trains_the_tower_and_keeps_its_constants(name, placement):
    c = config_lib.base_config()
    c.model.update(model_config(name, placement))
    model = build_model(c.model, NUM_ITEMS, rngs=nnx.Rngs(0), user_features=features())
    graphdef, params = nnx.split(model)
    tx = optax.adam(1e-2)
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt_state": tx.init(train.trainable(params)[0])}
    seq = jnp.asarray([[0, 0, 1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 2, 4, 6, 1, 8, 9]], jnp.int32)
    batch = {"seq": seq, "users": jnp.asarray([[3] * 9, [5] * 9], jnp.int32)}
    new, metrics = train.train_step(state, batch, jax.random.key(0), graphdef=graphdef, tx=tx,
                                    loss_cfg=c.loss, item_log_probs=None)
    assert np.isfinite(float(metrics["loss"]))
    before, after = nnx.to_flat_state(params), nnx.to_flat_state(new["params"])
    changed = set()
    for (path, old), (path2, now) in zip(before, after, strict=True):
        assert path == path2
        same = np.array_equal(np.asarray(old[...]), np.asarray(now[...]))
        if isinstance(old, FeatureTable):
            assert same, path
        elif not same:
            changed.add(str(path))
    for part in ("value_embeddings", "projections"):
        assert any("user_tower" in p and part in p for p in changed), part


def test_the_evaluator_reads_each_users_own_features():
    """Users 0 and 1 have the same history and target; their feature pulls the target up for
    one and down for the other. Swapping the two users' feature rows swaps their ranks."""
    c = config_lib.base_config()
    c.model.update(model_config("sasrec", "output"))
    c.eval.update(ks=(1, 5), batch_size=4, length_buckets=1)
    ds = _dataset([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [6, 7, 8, 1, 2], [8, 7, 6, 5, 4]], user_ids=[1, 2, 3, 4])
    split = splits.leave_one_out(ds)
    groups = np.array([[1, 0], [2, 0], [3, 0], [4, 0], [4, 0]], np.int32)  # unknown, a, b, c, c
    f = UserFeatureArrays(categorical={"group": groups}, vocab_sizes={"group": 5}, dense={})
    model = build_model(c.model, ds.num_items, rngs=nnx.Rngs(0), user_features=f)
    W = np.asarray(model.output_table()[0])
    table = np.asarray(model.user_tower.value_embeddings[0].embedding[...]).copy()
    table[2], table[3] = 100 * W[5], -100 * W[5]  # a: towards the target 5, b: away from it
    model.user_tower.value_embeddings[0].embedding[...] = jnp.asarray(table)
    mesh = sharding.make_mesh(c.mesh)
    graphdef, params = nnx.split(model)
    evaluator = evaluate.Evaluator(c, ds, split, "test", graphdef, mesh)
    evaluator(params)
    ranks = evaluator._ranks.copy()
    assert ranks[0] < ranks[1], ranks
    swapped = groups.copy()
    swapped[[1, 2]] = swapped[[2, 1]]
    model.user_tower.categorical[0][...] = jnp.asarray(swapped)
    evaluator(nnx.split(model)[1])
    np.testing.assert_array_equal(evaluator._ranks[[1, 0, 2, 3]], ranks)


# --- bad files and settings -----------------------------------------------------------------------


@pytest.mark.parametrize("name, text, fmt, named", [
    ("users.dat", "1::M::25::4::12345\n2::X::25::4::12345\n", "auto", "users.dat:2: Gender is 'X'"),
    ("u.user", "1|24|M|technician|85711\n2|fifty|F|other|94043\n", "auto", "u.user:2: age 'fifty'"),
    ("users.csv", "id,job\n1,a\n1,b\n", "table", "users.csv:3: id '1' listed again"),
])
def test_a_malformed_user_file_fails_in_one_line_and_leaves_no_cache(tmp_path, name, text, fmt, named):
    (tmp_path / name).write_text(text)
    d = _dataset_cfg(tmp_path / name, user_features_format=fmt, user_features_columns="job:categorical")
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError) as err:
        side_info.read_user_features(d, _dataset([[1, 2]], [1]), str(cache / "x"), log=lambda *_: None)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert os.listdir(cache) == []


def test_a_read_is_cached_and_the_cache_is_read_back(tmp_path):
    path = tmp_path / "users.dat"
    path.write_text("1::M::25::4::12345\n2::F::1::10::54321\n")
    d = _dataset_cfg(path, user_features_format="auto")
    ds = _dataset([[1, 2], [2, 3], [3, 4]], [2, 1, 5])
    first = side_info.read_user_features(d, ds, str(tmp_path / "x"), log=lambda *_: None)
    (cached,) = [p for p in os.listdir(tmp_path) if p.startswith("x-users-") and p.endswith(".npz")]
    again = side_info.read_user_features(d, ds, str(tmp_path / "x"), log=lambda *_: None)
    a, b = side_info.user_tower_inputs(first), side_info.user_tower_inputs(again)
    for name in a.categorical:
        np.testing.assert_array_equal(a.categorical[name], b.categorical[name])
    assert a.categorical["gender"][:, 0].tolist() == [1, 2, 3, 1]  # unknown, F, M, unknown (user 5)
    assert os.listdir(tmp_path).count(cached) == 1


@pytest.mark.parametrize("overrides, named", [
    ({"model.user_features": "input"},
     "config.model.user_features='input' with config.dataset.user_features='': the model reads"),
    ({"dataset.user_features": "u.csv"},
     "config.model.user_features='off' with config.dataset.user_features='u.csv'"),
    ({"model.user_features": "token"}, "config.model.user_features='token': expected one of"),
    ({"model.user_features": "input", "dataset.user_features": "u.csv",
      "dataset.user_features_format": "csv"}, "config.dataset.user_features_format='csv'"),
    ({"model.user_features": "input", "dataset.user_features": "u.csv", "model.name": "encdec"},
     "config.model.user_features: not supported for model.name='encdec'"),
])
def test_user_feature_keys_are_one_line_errors(overrides, named):
    c = config_lib.base_config()
    for key, value in overrides.items():
        config_lib.set_by_path(c, key, value)
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.validate(c)
    assert named in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("dataset, file", [("ml-1m", "ml-1m/users.dat"), ("ml-1m-full", "ml-1m/users.dat"),
                                           ("ml-100k", "ml-100k/u.user"), ("beauty", None),
                                           ("synthetic", None)])
def test_user_features_word_sets_the_presets_file(dataset, file):
    if file is None:
        with pytest.raises(config_lib.ConfigError) as err:
            config_lib.finalize(config_lib.base_config(), f"{dataset},user_features")
        assert f"config arg word 'user_features': dataset {dataset!r}" in str(err.value)
        assert "\n" not in str(err.value)
        return
    c = config_lib.finalize(config_lib.base_config(), f"{dataset},user_features")
    assert c.dataset.user_features.endswith(file) and c.model.user_features == "input"
    config_lib.validate(c)


def test_a_model_that_reads_no_users_refuses_user_features():
    with pytest.raises(ValueError, match="model.name='encdec' does not read user features"):
        build_model(model_config("encdec", "input"), NUM_ITEMS, rngs=nnx.Rngs(0), user_features=features())
    with pytest.raises(ValueError, match="needs user features exactly when"):
        build_model(model_config("sasrec", "input"), NUM_ITEMS, rngs=nnx.Rngs(0))


# --- end to end -----------------------------------------------------------------------------------


def test_a_tiny_run_with_a_users_table_trains_evaluates_and_reloads(tmp_path):
    """Synthetic data, a users table the test writes (a third of the users left out); the
    served model gets its user tables back from the checkpoint. (Packed rows: the batcher and
    model tests above.)"""
    from test_train import tiny_config

    from transrec_jax.data import load
    from transrec_jax.serving import run as serving_run

    overrides = {"train.num_steps": 20, "train.eval_every_steps": 20, "train.checkpoint_every_steps": 20,
                 "dataset.synthetic.num_users": 200, "eval.length_buckets": 1}
    ds = load.load_dataset(tiny_config(tmp_path, **overrides).dataset, 0, log=lambda *_: None)
    path = tmp_path / "users.csv"
    path.write_text("id,group,age\n" + "".join(f"{u},g{i % 4},{20 + i % 30}\n"
                                                for i, u in enumerate(ds.user_ids) if i % 3))
    c = tiny_config(tmp_path, **overrides, **{"dataset.user_features": str(path),
                                              "dataset.user_features_columns": "group:categorical,age:numeric",
                                              "model.user_features": "input"})
    results = train.train_and_evaluate(c, str(tmp_path / "run"))
    assert np.isfinite(results["test"]["ndcg@10"])
    assert any(p.endswith(".npz") and "-users-" in p for p in os.listdir(c.dataset.cache_dir))
    model = serving_run.load_run(str(tmp_path / "run")).model()
    want = side_info.user_tower_inputs(side_info.read_user_features(
        c.dataset, ds, os.path.splitext(load.cache_path(c.dataset, c.seed))[0], log=lambda *_: None))
    np.testing.assert_array_equal(np.asarray(model.user_tower.categorical[0][...]), want.categorical["group"])
    np.testing.assert_array_equal(np.asarray(model.user_tower.dense[0][...]), want.dense["age"])
    # Served lists read each user's features: a listed user's scores move when served as
    # that user; an unlisted one (i % 3 == 0) is the unknown user either way.
    from transrec_jax.serving import Recommender
    rec = Recommender(str(tmp_path / "run"))
    starts, ends = ds.offsets[:6], ds.offsets[1:7]
    _, as_unknown = rec.top_k(starts, ends, ds.items, 5)
    as_themselves_items, as_themselves = rec.top_k(starts, ends, ds.items, 5, users=np.arange(6))
    listed = np.arange(6) % 3 != 0
    np.testing.assert_allclose(as_themselves[~listed], as_unknown[~listed], rtol=1e-5, atol=1e-6)
    assert not np.allclose(as_themselves[listed], as_unknown[listed])
    # `recommend --history=... --user=ID` ranks (and explains) as that user: top_k's user 1.
    history = [str(i) for i in rec.catalog.ids[ds.items[ds.offsets[1] : ds.offsets[2]]]]
    proc = subprocess.run(
        [sys.executable, "-m", "transrec_jax.recommend", f"--workdir={tmp_path / 'run'}", "--k=5",
         f"--history={','.join(history)}", f"--user={ds.user_ids[1]}", "--explain=occlusion"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["rank", "item", "score", "because"]
    assert [r[1] for r in rows] == [str(i) for i in rec.catalog.ids[as_themselves_items[1]]]
    np.testing.assert_allclose([float(r[2]) for r in rows], as_themselves[1], atol=1e-4)
    with pytest.raises(cli.UsageError, match="--user='nobody': not a user of this dataset"):
        recommend._user_index(ds, "nobody", "user")
    # `--user_features` with user 1's raw values (i = 1: group g1, age 21) ranks as user 1; a
    # value outside the file's vocabulary is a one-line error
    proc = subprocess.run(
        [sys.executable, "-m", "transrec_jax.recommend", f"--workdir={tmp_path / 'run'}", "--k=5",
         f"--history={','.join(history)}", '--user_features={"group": "g1", "age": 21}'],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[1] for r in rows] == [str(i) for i in rec.catalog.ids[as_themselves_items[1]]]
    np.testing.assert_allclose([float(r[2]) for r in rows], as_themselves[1], atol=1e-4)
    with pytest.raises(cli.UsageError, match=r"--user_features: user feature 'group': \['g9'\]"):
        recommend._as_new_user(rec, {"group": "g9"})


@pytest.mark.slow
def test_a_planted_user_preference_ranks_better_with_user_features(tmp_path):
    """Each user draws most items from a preferred topic that a user feature names; evaluation
    sees one history item (dataset.max_history=1), so the feature knows more than the history."""
    from test_train import tiny_config

    rng = np.random.default_rng(0)
    num_users, topics, per_topic = 400, 6, 8
    preferred = rng.integers(topics, size=num_users)
    lines = []
    for u in range(num_users):
        own = rng.random(12) < 0.7
        items = np.where(own, preferred[u] * per_topic + rng.integers(per_topic, size=12),
                         rng.integers(topics * per_topic, size=12)) + 1
        lines.append(" ".join(map(str, [u + 1, *items])))
    (tmp_path / "seqs.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "users.csv").write_text("id,topic\n" + "".join(f"{u + 1},t{preferred[u]}\n"
                                                                for u in range(num_users)))
    base = {"dataset.source": "local", "dataset.name": "local", "dataset.format": "user_items",
            "dataset.path": str(tmp_path / "seqs.txt"), "dataset.max_history": 1,
            "train.num_steps": 150, "train.eval_every_steps": 50, "train.checkpoint_every_steps": 50}
    results = {}
    for placement in ("off", "input"):
        extra = {} if placement == "off" else {"dataset.user_features": str(tmp_path / "users.csv"),
                                               "dataset.user_features_columns": "topic:categorical"}
        c = tiny_config(tmp_path, **base, **extra, **{"model.user_features": placement})
        results[placement] = train.train_and_evaluate(c, str(tmp_path / placement))["test"]
    assert results["input"]["hr@10"] > results["off"]["hr@10"] + 0.1, results
