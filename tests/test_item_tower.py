"""The item tower (models/item_tower.py) against numpy: content pooling, the three combinations,
the unknown id for never-trained items and under id dropout, the tied output table; constants
that the train step never changes; the models with the tower off keep their parameters."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import train
from transrec_jax.data import synthetic
from transrec_jax.models import build_model
from transrec_jax.models.item_tower import FeatureTable, ItemFeatureArrays

NUM_ITEMS = 6


def features(known=None) -> ItemFeatureArrays:
    # genres: item 1 {2, 3}, item 2 {3}, item 3 unknown, items 4-6 {4}; row 0 padding
    genres = np.array([[0, 0], [2, 3], [3, 0], [1, 0], [4, 0], [4, 0], [4, 0]], np.int32)
    vectors = np.arange(7 * 3, dtype=np.float32).reshape(7, 3) / 10
    vectors[5] = vectors[4]  # items 4 and 5: the same content
    return ItemFeatureArrays(
        categorical={"genres": genres}, vocab_sizes={"genres": 5}, dense={"text": vectors},
        known=np.ones(NUM_ITEMS + 1, bool) if known is None else known)


def model_config(name="sasrec", combine="sum", id_dropout=0.0):
    c = config_lib.base_config()
    c.model.update(name=name, max_len=5, d_model=8, num_layers=1, num_heads=2, d_ff=16,
                   item_tower=combine, id_dropout=id_dropout, dropout=0.0, attention_dropout=0.0)
    return c.model


def numpy_items(model, ids, use_id):
    """The tower's item vectors recomputed in numpy from its parameters."""
    t = model.item_tower
    emb = np.asarray(model.item_embedding.embedding[...])
    id_part = np.where(use_id[:, None], emb[ids], np.asarray(t.unknown_id[...]))
    genres = np.asarray(t.categorical[0][...])[ids]
    table = np.asarray(t.value_embeddings[0].embedding[...])
    pooled = np.stack([table[[g for g in row if g]].mean(0) for row in genres])
    lin = t.projections[0]
    dense = np.asarray(t.dense[0][...])[ids] @ np.asarray(lin.kernel[...]) + np.asarray(lin.bias[...])
    if t.combine == "concat":
        return np.concatenate([id_part, pooled, dense], 1) @ np.asarray(t.mix.kernel[...]) + np.asarray(t.mix.bias[...])
    content = pooled + dense
    if t.combine == "sum":
        return id_part + content
    gate = 1 / (1 + np.exp(-(np.concatenate([id_part, content], 1) @ np.asarray(t.mix.kernel[...])
                             + np.asarray(t.mix.bias[...]))))
    return gate * id_part + (1 - gate) * content


@pytest.mark.parametrize("combine", ["sum", "gated", "concat"])
def test_item_vectors_and_output_table_match_numpy(combine):
    known = np.array([1, 1, 1, 1, 0, 0, 1], bool)  # items 4, 5 never trained
    model = build_model(model_config(combine=combine), NUM_ITEMS, rngs=nnx.Rngs(0),
                        item_features=features(known))
    ids = np.arange(1, NUM_ITEMS + 1)
    want = numpy_items(model, ids, known[ids])
    np.testing.assert_allclose(np.asarray(model.embed_items(jnp.asarray(ids))), want, rtol=1e-5, atol=1e-6)
    W, _ = model.output_table()
    np.testing.assert_allclose(np.asarray(W)[1:], want, rtol=1e-5, atol=1e-6)
    if combine != "concat":  # never-trained items 4 and 5 share content: content alone places them
        np.testing.assert_allclose(np.asarray(W)[4], np.asarray(W)[5], rtol=1e-6)
        assert not np.allclose(np.asarray(W)[4], np.asarray(W)[6])  # item 6 keeps its id row


def test_id_dropout_replaces_id_rows_while_training_only():
    model = build_model(model_config(id_dropout=0.5), NUM_ITEMS, rngs=nnx.Rngs(0),
                        item_features=features())
    ids = jnp.asarray(np.tile(np.arange(1, NUM_ITEMS + 1), 400))
    ids_np = np.asarray(ids)
    kept = numpy_items(model, ids_np, np.ones(len(ids_np), bool))
    dropped = numpy_items(model, ids_np, np.zeros(len(ids_np), bool))
    got = np.asarray(model.embed_items(ids, key=jax.random.key(3)))
    is_dropped = np.all(np.isclose(got, dropped, atol=1e-6), axis=1)
    assert np.all(is_dropped | np.all(np.isclose(got, kept, atol=1e-6), axis=1))
    assert 0.45 < is_dropped.mean() < 0.55
    np.testing.assert_allclose(np.asarray(model.embed_items(ids)), kept, rtol=1e-5, atol=1e-6)


def test_id_dropout_draws_output_table_rows_once_a_step():
    """Training's output table (a key) scores some items by their content alone, as a new item
    is scored; without a key, or without a tower, the table is the whole one."""
    model = build_model(model_config(id_dropout=0.5), NUM_ITEMS, rngs=nnx.Rngs(0),
                        item_features=features())
    ids = np.arange(1, NUM_ITEMS + 1)  # (row 0, padding, has no content to pool)
    kept = numpy_items(model, ids, np.ones(len(ids), bool))
    dropped = numpy_items(model, ids, np.zeros(len(ids), bool))
    np.testing.assert_allclose(np.asarray(model.output_table()[0])[1:], kept, rtol=1e-5, atol=1e-6)
    fractions = []
    for seed in range(200):
        got = np.asarray(model.output_table(key=jax.random.key(seed))[0])[1:]
        is_dropped = np.all(np.isclose(got, dropped, atol=1e-6), axis=1)
        assert np.all(is_dropped | np.all(np.isclose(got, kept, atol=1e-6), axis=1))
        fractions.append(is_dropped.mean())
    assert 0.45 < np.mean(fractions) < 0.55 and len(set(fractions)) > 2  # drawn anew each key
    plain = build_model(model_config(combine="off"), NUM_ITEMS, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(plain.output_table(key=jax.random.key(1))[0]),
                                  np.asarray(plain.output_table()[0]))


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "encdec"])
def test_a_train_step_trains_the_tower_and_keeps_its_constants(name):
    c = config_lib.base_config()
    c.model.update(model_config(name=name, combine="gated", id_dropout=0.2))
    c.model.next_k = 2
    model = build_model(c.model, NUM_ITEMS, rngs=nnx.Rngs(0), item_features=features())
    graphdef, params = nnx.split(model)
    tx = optax.adam(1e-2)
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt_state": tx.init(train.trainable(params)[0])}
    seq = jnp.asarray([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 2, 4, 6, 1]], jnp.int32)[:, -(c.model.max_len + 1):]
    batch = {"seq": seq}
    if name == "encdec":
        batch = {"seq": jnp.asarray([[1, 2, 3, 4, 5, 6, 1], [0, 0, 2, 4, 6, 1, 3]], jnp.int32)}
    new, metrics = train.train_step(state, batch, jax.random.key(0), graphdef=graphdef, tx=tx,
                                    loss_cfg=c.loss, item_log_probs=None)
    assert np.isfinite(float(metrics["loss"]))
    before, after = nnx.to_flat_state(params), nnx.to_flat_state(new["params"])
    for (path, old), (path2, now) in zip(before, after, strict=True):
        assert path == path2
        if isinstance(old, FeatureTable):
            np.testing.assert_array_equal(np.asarray(old[...]), np.asarray(now[...]))
    changed = {path for (path, old), (_, now) in zip(before, after)
               if not isinstance(old, FeatureTable) and not np.array_equal(np.asarray(old[...]), np.asarray(now[...]))}
    for part in ("unknown_id", "value_embeddings", "projections", "mix"):
        assert any(part in path for path in changed), part


def test_tower_off_adds_nothing_and_needs_no_features():
    off = build_model(model_config(combine="off"), NUM_ITEMS, rngs=nnx.Rngs(0))
    assert off.item_tower is None
    paths = {path for path, _ in nnx.to_flat_state(nnx.state(off))}
    assert not any("item_tower" in path for path in paths)
    with pytest.raises(ValueError, match="needs item features exactly when"):
        build_model(model_config(combine="off"), NUM_ITEMS, rngs=nnx.Rngs(0), item_features=features())
    with pytest.raises(ValueError, match="needs item features exactly when"):
        build_model(model_config(combine="sum"), NUM_ITEMS, rngs=nnx.Rngs(0))


def test_config_checks_the_tower_keys():
    c = config_lib.base_config()
    c.model.item_tower = "mean"
    with pytest.raises(config_lib.ConfigError, match=r"config.model.item_tower='mean': expected one of"):
        config_lib.validate(c)
    c = config_lib.base_config()
    c.model.id_dropout = 0.3
    with pytest.raises(config_lib.ConfigError, match=r"config.model.id_dropout=0.3: needs model.item_tower"):
        config_lib.validate(c)


def test_content_ranks_items_training_never_saw(tmp_path):
    """cold_items split on planted data whose items carry their topic: the id-only model cannot
    place a withheld target (its id row never trained), the sum tower places it by its topic;
    the tower also survives a reload through serving (its constants come from the checkpoint)."""
    from test_train import tiny_config

    from transrec_jax.serving import run as serving_run

    c = tiny_config(tmp_path, **{"dataset.split": "cold_items", "dataset.cold_item_fraction": 0.2,
                                 "dataset.synthetic.num_topics": 6})
    s = c.dataset.synthetic
    topic_of = synthetic._TopicSampler(s.num_items, s.num_topics,
                                       np.random.default_rng([c.seed, 20261127])).topic_of
    path = tmp_path / "topics.json"
    path.write_text(json.dumps({str(i + 1): [int(t)] for i, t in enumerate(topic_of)}))
    results = {}
    for tower in ("off", "sum"):
        overrides = {"model.item_tower": tower}
        if tower != "off":
            overrides.update({"dataset.item_features": str(path), "model.id_dropout": 0.3})
        cfg = tiny_config(tmp_path, **{"dataset.split": "cold_items", "dataset.cold_item_fraction": 0.2,
                                       "dataset.synthetic.num_topics": 6}, **overrides)
        results[tower] = train.train_and_evaluate(cfg, str(tmp_path / tower))
    cold = {t: r["test_slices"]["target_withheld"]["withheld"] for t, r in results.items()}
    assert cold["off"]["users"] == cold["sum"]["users"] > 10
    assert cold["sum"]["hr@10"] > cold["off"]["hr@10"] + 0.1, cold
    run = serving_run.load_run(str(tmp_path / "sum"))
    W, _ = run.model().output_table()
    assert np.isfinite(np.asarray(W)).all() and run.model().item_tower is not None


@pytest.mark.parametrize("overrides, named", [
    ({"model.item_tower": "sum"},
     "config.model.item_tower='sum' with config.dataset.item_features='': the tower reads item features"),
    ({"dataset.item_features": "x.json"},
     "config.model.item_tower='off' with config.dataset.item_features='x.json'"),
    ({"model.item_tower": "sum", "dataset.item_features": "x.json", "model.head": "linear"},
     "config.model.item_tower: needs model.head='tied'"),
    ({"model.item_tower": "sum", "dataset.item_features": "x.json",
      "dataset.item_features_format": "csv"}, "config.dataset.item_features_format='csv'"),
])
def test_tower_and_feature_keys_are_one_line_errors(overrides, named):
    c = config_lib.base_config()
    for key, value in overrides.items():
        config_lib.set_by_path(c, key, value)
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.validate(c)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_item_features_word_needs_a_preset_with_features():
    with pytest.raises(config_lib.ConfigError, match="config arg word 'item_features': dataset 'synthetic'"):
        config_lib.finalize(config_lib.base_config(), "synthetic,item_features")
    c = config_lib.finalize(config_lib.base_config(), "ml-100k,item_features")
    assert c.dataset.item_features.endswith("u.item") and c.model.item_tower == "sum"


@pytest.mark.parametrize("features, fmt, columns, named", [
    ("missing.json", "auto", "", "config.dataset.item_features: "),
    ("items.bin", "auto", "", "cannot tell its format from the name; set config.dataset.item_features_format"),
    ("items.csv", "table", "genre", "config.dataset.item_features_columns='genre': 'genre' is not"),
])
def test_item_feature_settings_fail_in_one_line(tmp_path, monkeypatch, features, fmt, columns, named):
    from transrec_jax.data import side_info
    from transrec_jax.data.errors import DataError

    monkeypatch.chdir(tmp_path)
    for name in ("items.bin", "items.csv"):
        (tmp_path / name).write_text("id,genre\n1,a\n")
    c = config_lib.base_config()
    c.dataset.update(item_features=features, item_features_format=fmt, item_features_columns=columns)
    with pytest.raises(DataError) as err:  # (no dataset: the settings fail before one is read)
        side_info.read_item_features(c.dataset, None, str(tmp_path / "cache" / "x"), log=lambda *_: None)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()
