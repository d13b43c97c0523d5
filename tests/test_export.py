"""Export: the artifact, loaded where neither flax nor transrec_jax is imported, answers as
`Recommender.top_k` does at any batch size; the vectors score as the model does; the runs it
refuses are refused before anything loads."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from ml_like import ml_like_config

from transrec_jax import config as config_lib
from transrec_jax import train
from transrec_jax.config import ConfigError
from transrec_jax.data.batching import gather_windows
from transrec_jax.serving import Recommender, export, exported, load_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run whose items are renumbered (an id map) and titled, exported with vectors (a
    few training steps: the comparison needs a model, not a good one)."""
    tmp = tmp_path_factory.mktemp("export")
    workdir, output = _tiny_run(tmp, seed=0), str(tmp / "export")
    manifest = export.export_run(workdir, output, k=10, vectors=True)
    return workdir, output, manifest


def _tiny_run(tmp, seed: int, **model) -> str:
    """Train the fixture's tiny run (model config overridden by `model`) in tmp/run."""
    c, _ = ml_like_config(tmp, users=60)
    c.model.update(max_len=6, d_model=16, num_layers=1, num_heads=2, d_ff=16, head_bias=True)
    c.model.update(model)
    c.train.update(num_epochs=0, num_steps=3, batch_size=16, eval_every_steps=3, log_every=3)
    c.eval.update(batch_size=64, ks=(10,))
    c.seed = seed
    train.train_and_evaluate(c, str(tmp / "run"))
    return str(tmp / "run")


def _histories(rec, n, rng):
    """n histories of 1..9 items (longer than max_len: the model reads the last 6, every item is
    excluded) from the dataset's sequences, as (starts, ends, internal ids)."""
    ds = rec.dataset
    users = rng.integers(0, ds.num_users, n)
    lengths = np.minimum(rng.integers(1, 10, n), ds.lengths[users])
    ends = ds.offsets[users] + lengths
    return ends - lengths, ends, ds.items


_LOAD_AND_RECOMMEND = """
import json, sys
import numpy as np
directory, histories, out = sys.argv[1:]
sys.path.insert(0, directory)
import exported  # the copy export wrote next to the artifact
model = exported.load(directory)
histories = json.load(open(histories))
one_items, one_scores = model.recommend(histories[:1], 10)
items, scores = model.recommend(histories, 10)  # 1,000 rows: the same artifact, no re-export
three_items, _ = model.recommend(histories[:5], 3)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("flax", "transrec_jax"))
json.dump({"items": items, "scores": scores.tolist(), "one_items": one_items,
           "one_scores": one_scores.tolist(), "three_items": three_items, "loaded": loaded,
           "titles": model.titles}, open(out, "w"))
"""


def test_artifact_in_a_fresh_process_equals_recommender(run, tmp_path):
    """Batch sizes 1 and 1,000 from one artifact, in a process without flax or transrec_jax:
    the ids `Recommender.top_k` gives, its scores to 1e-5, original ids and titles."""
    workdir, output, _ = run
    rec = Recommender(workdir)
    starts, ends, items = _histories(rec, 1000, np.random.default_rng(1))
    originals = [rec.catalog.ids[items[s:e]].tolist() for s, e in zip(starts, ends)]
    (tmp_path / "histories.json").write_text(json.dumps(originals))
    subprocess.run([sys.executable, "-c", _LOAD_AND_RECOMMEND, output, str(tmp_path / "histories.json"),
                    str(tmp_path / "out.json")], check=True, cwd=str(tmp_path))
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["loaded"] == []
    want_items, want_scores = rec.top_k(starts, ends, items, 10)
    assert got["items"] == rec.catalog.ids[want_items].tolist()
    np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-5, atol=1e-5)
    assert got["one_items"] == got["items"][:1]
    np.testing.assert_allclose(got["one_scores"], want_scores[:1], rtol=1e-5, atol=1e-5)
    assert got["three_items"] == [row[:3] for row in got["items"][:5]]
    assert got["titles"][1:] == rec.catalog.titles[1:].tolist() and got["titles"][1].startswith("Film ")


def test_manifest_names_the_run_and_the_signature(run):
    workdir, output, manifest = run
    config = config_lib.recorded_config(os.path.join(workdir, "config.json"))
    assert json.load(open(os.path.join(output, "manifest.json"))) == manifest
    assert manifest["config_sha256"] == export.config_hash(config)
    shape = manifest["model"], manifest["k"], manifest["max_len"], manifest["num_items"]
    assert shape == ("sasrec", 10, 6, 30) and manifest["protocol"]["history_masked"]
    assert set(manifest["versions"]) >= {"jax", "flax", "transrec_jax"}
    assert "int32[b, 6]" in manifest["inputs"]["history"] and "[b, e]" in manifest["inputs"]["exclude"]
    assert all(os.path.exists(os.path.join(output, name)) for name in manifest["files"])


def test_loader_refuses_what_it_cannot_answer(run):
    model = exported.load(run[1])
    known = model.ids[1:4]
    for histories, k, match in [([["no-such-id"]], 5, "not in the catalogue"),
                                ([known], 11, "from 1 to 10"), ([known], 0, "from 1 to 10"),
                                ([known], True, "from 1 to 10"), ([[]], 5, "empty history"),
                                ([], 5, "no history"), ([model.ids[1:25]], 10, "leaves 6")]:
        with pytest.raises(exported.RequestError, match=match):
            model.recommend(histories, k)


def test_vectors_score_as_the_model(run):
    """user . W + b, ranked with the user's sequence excluded, is `recommend --users=all`."""
    workdir, output, _ = run
    rec = Recommender(workdir)
    ds = rec.dataset
    W, b = np.load(os.path.join(output, "item_vectors.npy")), np.load(os.path.join(output, "item_bias.npy"))
    users = np.load(os.path.join(output, "user_vectors.npy"))
    assert W.shape[0] == ds.num_items + 1 and users.shape == (ds.num_users, W.shape[1])
    assert json.load(open(os.path.join(output, "users.json")))["ids"] == ds.user_ids.tolist()
    want_items, want_scores = rec.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, 10)
    scores = users @ W.T + b
    scores[:, 0] = -np.inf
    for u in range(ds.num_users):
        scores[u, ds.sequence(u)] = -np.inf
    np.testing.assert_allclose(np.take_along_axis(scores, want_items, 1), want_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(-np.sort(-scores, 1)[:, :10], want_scores, rtol=1e-5, atol=1e-5)


def test_a_time_model_exports_and_answers_from_unix_seconds(tmp_path):
    """An HSTU with a time bias: the loader, given the users' unix times and query times, lists
    what `Recommender.top_k` lists from the dataset's relative seconds; its user vectors are
    those at each user's last item's time (`recommend --users=all`)."""
    from test_hstu import timed_table_config

    workdir, output = str(tmp_path / "run"), str(tmp_path / "export")
    train.train_and_evaluate(timed_table_config(tmp_path), workdir)
    manifest = export.export_run(workdir, output, k=5, vectors=True, platforms=("cpu",))
    assert manifest["time_query"] == "target" and set(manifest["inputs"]) == {
        "history", "exclude", "times", "query_time"}
    rec, model = Recommender(workdir), exported.load(output)
    ds = rec.dataset
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    later = rec.times[ends - 1] + np.arange(ds.num_users, dtype=np.int32) * 3_600
    want_items, want_scores = rec.top_k(starts, ends, ds.items, 5, rec.times, query_times=later)
    raw = ds.timestamps
    items, scores = model.recommend(
        [rec.catalog.ids[ds.items[s:e]].tolist() for s, e in zip(starts, ends)], 5,
        times=[raw[s:e].tolist() for s, e in zip(starts, ends)],
        query_times=(raw[ends - 1] + np.arange(ds.num_users) * 3_600).tolist())
    assert items == rec.catalog.ids[want_items].tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    for times, query, match in [(None, None, "give each history item's time"),
                                (5, None, "for each of the 1 histories"),
                                ([raw[:1].tolist()], None, "times for"),
                                ([raw[starts[0] : ends[0]].tolist()], 7, "for each of the 1")]:
        with pytest.raises(exported.RequestError, match=match):
            model.recommend([items[0]], 5, times=times, query_times=query)
    _assert_vectors_give_the_top_scores(output, ds, rec.top_k(starts, ends, ds.items, 5, rec.times)[1])


def _assert_vectors_give_the_top_scores(output, ds, top_scores):
    """user_vectors . item_vectors (+ item_bias where written), each user's sequence excluded,
    gives `top_scores` [users, k] (`recommend --users=all`'s) as its best k."""
    W, users = np.load(os.path.join(output, "item_vectors.npy")), np.load(os.path.join(output, "user_vectors.npy"))
    bias = os.path.join(output, "item_bias.npy")
    scores = users @ W.T + (np.load(bias) if os.path.exists(bias) else 0)
    scores[:, 0] = -np.inf
    for u in range(ds.num_users):
        scores[u, ds.sequence(u)] = -np.inf
    k = top_scores.shape[1]
    np.testing.assert_allclose(-np.sort(-scores, 1)[:, :k], top_scores, rtol=1e-5, atol=1e-5)


def test_a_user_feature_model_exports_and_reads_whose_history_each_is(tmp_path):
    """An HSTU with a time bias and user features (all three extra inputs, in the artifact's
    order): the loader, given each history's user id, lists what `Recommender.top_k` lists for
    those users; a user given as None, or not given, is the unknown user; a user the table
    leaves out reads as the unknown user either way; a user given by raw feature values reads
    as the listed user with those values; user vectors use each user's features."""
    from test_hstu import timed_table_config

    c = timed_table_config(tmp_path)
    table = tmp_path / "users.csv"  # every fourth user left out
    ages = {u: 18 + (u * 7) % 40 for u in range(40)}
    table.write_text("id,group,age\n" + "".join(f"u{u},g{u % 3},{ages[u]}\n"
                                                  for u in range(40) if u % 4))
    c.dataset.update(user_features=str(table),
                     user_features_columns="group:categorical,age:numeric")
    c.model.user_features = "input"
    workdir, output = str(tmp_path / "run"), str(tmp_path / "export")
    train.train_and_evaluate(c, workdir)
    manifest = export.export_run(workdir, output, k=5, vectors=True, platforms=("cpu",))
    assert manifest["user_features"] == "input" and list(manifest["inputs"]) == [
        "history", "exclude", "times", "query_time", "user.group", "user.age"]
    assert "user_features.npz" in manifest["files"]
    rec, model = Recommender(workdir), exported.load(output)
    ds = rec.dataset
    assert model.user_ids == ds.user_ids.tolist() and "users.json" in manifest["files"]
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    histories = [rec.catalog.ids[ds.items[s:e]].tolist() for s, e in zip(starts, ends)]
    times = [ds.timestamps[s:e].tolist() for s, e in zip(starts, ends)]
    users = np.arange(ds.num_users)
    want_items, want_scores = rec.top_k(starts, ends, ds.items, 5, rec.times, users)
    items, scores = model.recommend(histories, 5, times=times, users=ds.user_ids.tolist())
    assert items == rec.catalog.ids[want_items].tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    _, unknown_scores = rec.top_k(starts, ends, ds.items, 5, rec.times)
    for given in (None, [None] * ds.num_users):
        np.testing.assert_allclose(model.recommend(histories, 5, times=times, users=given)[1],
                                   unknown_scores, rtol=1e-5, atol=1e-5)
    listed = np.array([int(u[1:]) % 4 != 0 for u in ds.user_ids.tolist()])
    np.testing.assert_allclose(scores[~listed], unknown_scores[~listed], rtol=1e-5, atol=1e-5)
    assert not np.allclose(scores[listed], unknown_scores[listed])
    # The same users as new ones, by their raw values (the age as the file has it, before the
    # standardisation export records); a user without features as an empty dict
    raw = [{"group": f"g{int(u[1:]) % 3}", "age": ages[int(u[1:])]} if int(u[1:]) % 4 else {}
           for u in ds.user_ids.tolist()]
    by_values = model.recommend(histories, 5, times=times, users=raw)
    assert by_values[0] == items
    np.testing.assert_allclose(by_values[1], scores, rtol=1e-5, atol=1e-5)
    for bad, match in [(["nobody"], "not users of the run's dataset"),
                       (["u1", "u2"], "for each of the 1 histories"), ("u1", "for each of the 1"),
                       ({"group": "g1"}, "for each of the 1"),
                       ([{"group": "g9"}], r"'group': \['g9'\] not in its vocabulary \('g0', 'g1', 'g2'; "),
                       ([{"group": "<unknown>"}], "not in its vocabulary"),
                       ([{"group": ["g1", "g2"]}], "2 values, the model reads at most 1"),
                       ([{"group": 1.5}], "expected a value"),
                       ([{"age": "old"}], "'age': expected a number"),
                       ([{"age": float("nan")}], "'age': expected a number"),
                       ([{"height": 180}], r"\['height'\] are not the model's")]:
        with pytest.raises(exported.RequestError, match=match):
            model.recommend(histories[:1], 5, times=times[:1], users=bad)
    for bad in ([-1], [len(ds.user_ids) + 1], [0.5], [True]):
        with pytest.raises(exported.RequestError, match="user numbers must be integers"):
            model.top_k([ds.items[starts[0] : ends[0]]], 5, times[:1], users=bad)
    _assert_vectors_give_the_top_scores(output, ds, want_scores)
    # A feature file changed since training (the same vocabulary, other users' groups): refused
    table.write_text("id,group,age\n" + "".join(f"u{u},g{(u + 1) % 3},{ages[u]}\n"
                                                  for u in range(40) if u % 4))
    with pytest.raises(ConfigError, match="no longer gives the users the features"):
        export.export_run(workdir, str(tmp_path / "again"), k=5, platforms=("cpu",))
    assert not (tmp_path / "again").exists()
    # One that changed its vocabulary builds a model the checkpoints do not fit: said so
    table.write_text("id,group,age\n" + "".join(f"u{u},g{u % 5},{ages[u]}\n" for u in range(40)))
    with pytest.raises(ConfigError, match=r"no checkpoint restores into the model .*shape"):
        export.export_run(workdir, str(tmp_path / "again"), k=5, platforms=("cpu",))
    assert not (tmp_path / "again").exists()


# A user table's three kinds as users.json describes them, with each table's row 0 (a user
# without features: categorical "unknown", numeric and dense 0) and one listed user
_KINDS = [{"name": "genres", "kind": "categorical", "vocab": ["<pad>", "<unknown>", "a", "b", "c"]},
          {"name": "age", "kind": "numeric", "mean": 30.0, "std": 8.0},
          {"name": "embedding", "kind": "dense"}]
_KIND_TABLES = [np.array([[1, 0, 0], [2, 4, 0]], np.int32), np.array([[0.0], [0.5]], np.float32),
                np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)]


@pytest.mark.parametrize("values, want", [
    ({}, [[1, 0, 0], [0.0], [0.0, 0.0]]),
    ({"genres": ["c", "a", "c"], "age": 34, "embedding": [0.25, 2]}, [[4, 2, 0], [0.5], [0.25, 2.0]]),
    ({"genres": "b"}, [[3, 0, 0], [0.0], [0.0, 0.0]]),
    ({"genres": [], "age": 22.0}, [[1, 0, 0], [-1.0], [0.0, 0.0]]),
])
def test_a_new_users_raw_values_encode_as_the_data_reader_encodes_them(values, want):
    """Categorical values become vocabulary indices, distinct, in the order given, 0-padded
    (none: [unknown]); a number is standardised with the file's mean and std; a dense vector
    is as given; a feature left out is row 0's."""
    rows = exported.encode_user(_KINDS, _KIND_TABLES, values)
    assert [r.dtype for r in rows] == [t.dtype for t in _KIND_TABLES]
    for row, expected in zip(rows, want):
        np.testing.assert_array_equal(row, np.array(expected, row.dtype))
    np.testing.assert_array_equal(_KIND_TABLES[0][0], [1, 0, 0])  # the tables stay as they were


@pytest.mark.parametrize("values, match", [
    ({"genres": ["a", "b", "c", "a", "d"]}, r"\['d'\] not in its vocabulary \('a', 'b', 'c'; "),
    ({"genres": ["a", "b", "c", 1]}, r"\['1'\] not in its vocabulary"),
    ({"genres": {"a": 1}}, "expected a value"),
    ({"age": True}, "'age': expected a number"),
    ({"age": [30]}, "'age': expected a number"),
    ({"embedding": [1.0]}, "'embedding': expected 2 numbers"),
    ({"embedding": [1.0, float("inf")]}, "'embedding': expected 2 numbers"),
    ({"Age": 30}, r"\['Age'\] are not the model's: expected some of \['genres', 'age', 'embedding'\]"),
])
def test_a_new_users_bad_values_are_request_errors(values, match):
    with pytest.raises(exported.RequestError, match=match):
        exported.encode_user(_KINDS, _KIND_TABLES, values)


def test_a_model_without_user_features_refuses_users_and_takes_none(run):
    model = exported.load(run[1])
    assert model.user_features is None and model.manifest["user_features"] is None
    histories = [model.ids[1:4], model.ids[2:6]]
    for users in (["1", None], [None, 1]):
        with pytest.raises(exported.RequestError, match="has no user features"):
            model.recommend(histories, 5, users=users)
    with pytest.raises(exported.RequestError, match="for each of the 2 histories"):
        model.recommend(histories, 5, users=[None])
    want = model.recommend(histories, 5)
    got = model.recommend(histories, 5, users=[None, None])
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


@pytest.fixture(scope="module")
def ensemble(run, tmp_path_factory):
    """The fixture run and a second one on the same data (seed 1, d_model 8, no head bias: the
    members may differ in anything but their catalogue and inputs), exported as one ensemble."""
    tmp = tmp_path_factory.mktemp("ensemble")
    other = _tiny_run(tmp, seed=1, d_model=8, d_ff=8, head_bias=False)
    output = str(tmp / "export")
    manifest = export.export_run([run[0], other], output, k=10, vectors=True, platforms=("cpu",))
    return [run[0], other], output, manifest


def _member_scores(workdir, histories) -> np.ndarray:
    """One run's score of every item after each history window int32[n, max_len]."""
    model = load_run(workdir).model()
    W, b = model.output_table()
    scores = np.asarray(model.user_representation(jnp.asarray(histories))) @ np.asarray(W).T
    return scores + (0 if b is None else np.asarray(b))


def test_an_ensemble_artifact_lists_the_best_items_by_the_sum_of_its_runs_scores(ensemble):
    """Each member's scores computed alone and summed in numpy, history and padding excluded,
    sorted: the artifact's top 5 (ids and scores), which differ from either member's alone;
    its user and item vectors score the same sums."""
    (first, second), output, manifest = ensemble
    rec, model = Recommender(first), exported.load(output)
    ds = rec.dataset
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    windows = gather_windows(ds.items, starts, ends, 6)
    alone = [_member_scores(w, windows)[:, : ds.num_items + 1] for w in (first, second)]
    summed = alone[0] + alone[1]
    for member in [summed, *alone]:
        member[:, 0] = -np.inf
        for u in range(ds.num_users):
            member[u, ds.sequence(u)] = -np.inf
    want_items = np.argsort(-summed, axis=1, kind="stable")[:, :5]
    items, scores = model.recommend([rec.catalog.ids[ds.items[s:e]].tolist()
                                     for s, e in zip(starts, ends)], 5)
    assert items == rec.catalog.ids[want_items].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(summed, want_items, 1), rtol=1e-5, atol=1e-5)
    for member in alone:
        assert not np.array_equal(np.argsort(-member, axis=1, kind="stable")[:, :5], want_items)
    _assert_vectors_give_the_top_scores(output, ds, np.asarray(scores))
    assert np.load(os.path.join(output, "user_vectors.npy")).shape == (ds.num_users, 16 + 8)


def test_a_run_twice_is_an_ensemble_that_ranks_as_the_run(run):
    """`Recommender([w, w])`: the same lists, every score doubled."""
    alone, twice = Recommender(run[0]), Recommender([run[0], run[0]])
    ds = alone.dataset
    want_items, want_scores = alone.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, 10)
    items, scores = twice.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, 10)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_allclose(scores, 2 * want_scores, rtol=1e-5, atol=1e-5)


def test_an_ensemble_manifest_names_each_member(ensemble):
    workdirs, output, manifest = ensemble
    assert json.load(open(os.path.join(output, "manifest.json"))) == manifest
    assert manifest["model"] == "ensemble" and "workdir" not in manifest
    assert [(m["model"], m["workdir"], m["step"]) for m in manifest["members"]] == [
        ("sasrec", os.path.abspath(w), 3) for w in workdirs]
    assert [m["config_sha256"] for m in manifest["members"]] == [
        export.config_hash(config_lib.recorded_config(os.path.join(w, "config.json")))
        for w in workdirs]


def test_an_ensemble_of_other_catalogues_or_inputs_is_refused(run, tmp_path):
    """Members must rank one catalogue and read the same inputs; nothing is written."""
    (tmp_path / "items").mkdir()
    c, _ = ml_like_config(tmp_path / "items", users=60)
    c.dataset.path = str(tmp_path / "items" / "ml.txt")
    (tmp_path / "items" / "ml.txt").write_text("".join(f"{u} {i}\n" for u in range(1, 61)
                                                         for i in (1, 2, 3, 4, 5, 40, 41, 42)))
    c.model.update(max_len=6, d_model=16, num_layers=1, num_heads=2, d_ff=16)
    c.train.update(num_epochs=0, num_steps=1, batch_size=16, eval_every_steps=1, log_every=1)
    c.eval.update(batch_size=64, ks=(10,))
    train.train_and_evaluate(c, str(tmp_path / "items" / "run"))
    (tmp_path / "len").mkdir()
    longer = _tiny_run(tmp_path / "len", seed=0, max_len=7)
    for other, match in [(str(tmp_path / "items" / "run"), r"items \(dataset.item_ids\) differ"),
                         (longer, r"its inputs \(model.max_len.*\(7, False, None, False\)\) differ")]:
        with pytest.raises(ConfigError, match=match):
            export.export_run([run[0], other], str(tmp_path / "out"), platforms=("cpu",))
        assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="two or more workdirs, got 1"):
        Recommender([run[0]])


def test_refused_models_before_anything_loads(tmp_path):
    """Only config.json is read (no dataset, no checkpoint here)."""
    (tmp_path / "config.json").write_text(json.dumps({"model": {"name": "encdec"}}))
    with pytest.raises(ConfigError, match="generates its list"):
        export.export_run(str(tmp_path), str(tmp_path / "out"))
    (tmp_path / "features").mkdir()  # an ensemble of user-feature models
    (tmp_path / "features" / "config.json").write_text(json.dumps(
        {"model": {"name": "sasrec", "user_features": "input"}}))
    with pytest.raises(ConfigError, match="export serves ensembles of models without user features"):
        export.export_run([str(tmp_path / "features")] * 2, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # (a process importing the model code: ~3 s)
def test_cli_refusal_is_one_error_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"name": "encdec"}}))
    out = subprocess.run([sys.executable, "-m", "transrec_jax.export", f"--workdir={tmp_path}",
                          f"--output={tmp_path}/out"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        f"error: {tmp_path}: model.name='encdec' generates its list by beam search; export serves "
        "the models that rank every item"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # (a process exporting: ~15 s)
def test_cli_exports_the_ensemble_of_repeated_workdirs(ensemble, tmp_path):
    workdirs, _, manifest = ensemble
    out = subprocess.run([sys.executable, "-m", "transrec_jax.export",
                          *[f"--workdir={w}" for w in workdirs], f"--output={tmp_path}/out", "--k=5",
                          "--platforms=cpu"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("exported ensemble (sasrec step 3, sasrec step 3; top-5 of 30 items)")
    assert json.load(open(tmp_path / "out" / "manifest.json"))["members"] == manifest["members"]


def _experiment(name):
    import importlib.util

    path = os.path.join(REPO, "experiments", "export", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ann_benchmark_recall_is_measured_against_the_exact_top_10():
    """experiments/export/ann.py on a small random catalogue (FAISS: the optional extra)."""
    pytest.importorskip("faiss")
    ann = _experiment("ann")
    items, queries = ann.synthetic_vectors(2000, 8, 50, seed=0)
    records = ann.benchmark(items, queries)
    methods = [r["method"] for r in records]
    assert methods[0] == "exact (flat IP)" and records[0]["recall@10"] == 1.0
    assert {"HNSW", "IVF"} <= set(methods) and all(0 <= r["recall@10"] <= 1 for r in records)
    widest = [r for r in records if r["search_params"] == {"efSearch": max(ann.HNSW_EF_SEARCH)}]
    assert widest[0]["recall@10"] > 0.9  # (2,000 items in 8 dimensions: an easy catalogue)


@pytest.mark.parametrize("part", ["test", "val"])
def test_served_quality_is_the_evaluators_where_no_target_repeats_its_history(tmp_path, part):
    """experiments/export/served_quality.py on a run without repeated (user, item) pairs: the
    artifact's lists scored in numpy give the evaluator's NDCG@10 and HR@10 (the workdir read
    from the manifest)."""
    c, _ = ml_like_config(tmp_path, users=60)
    c.dataset.dedup = True
    c.model.update(max_len=6, d_model=16, num_layers=1, num_heads=2, d_ff=16)
    c.train.update(num_epochs=0, num_steps=3, batch_size=16, eval_every_steps=3, log_every=3)
    c.eval.update(batch_size=64, ks=(10,))
    train.train_and_evaluate(c, str(tmp_path / "run"))
    export.export_run(str(tmp_path / "run"), str(tmp_path / "export"), platforms=("cpu",))
    record = _experiment("served_quality").measure(str(tmp_path / "export"), "tiny", part=part)
    assert record["members"] == 1 and record["repeat_targets"] == 0 and 0 < record["served_hr"] < 1
    assert record["served_ndcg"] == pytest.approx(record["evaluator_ndcg"], abs=1e-6)
    assert record["served_hr"] == pytest.approx(record["evaluator_hr"], abs=1e-6)


def test_served_quality_counts_the_targets_no_served_list_can_hold(ensemble):
    """On data where targets repeat history items (the ensemble fixture's), served lists miss
    them and the evaluator may not: repeat_targets counts them (numpy), and the served hits are
    at most the users left."""
    record = _experiment("served_quality").measure(ensemble[1], "tiny", part="test")
    rec = Recommender(ensemble[0][0])
    ds, split = rec.dataset, rec.run.split()
    repeats = sum(int(ds.items[ds.offsets[u] + split.test_pos[u]] in
                      ds.items[ds.offsets[u] : ds.offsets[u] + split.test_pos[u]])
                  for u in split.eval_users("test"))
    assert record["members"] == 2 and record["repeat_targets"] == repeats > 0
    assert record["served_hr"] * record["users"] <= record["users"] - repeats + 1e-9
    assert record["served_hr"] <= record["evaluator_hr"]
