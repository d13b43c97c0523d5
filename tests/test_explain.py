"""Explanations (transrec_jax/explain.py): occlusion against removing each item one at a time,
gradient x input against jax.grad of an unbatched model, scores equal to serving's, the
planted predecessor found on synthetic data, and `recommend --explain`: its output, its plot
and its one-line errors."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import explain, train
from transrec_jax.data.batching import gather_windows
from transrec_jax.models import Ensemble, build_model
from transrec_jax.models.item_tower import ItemFeatureArrays
from transrec_jax.models.user_tower import UserFeatureArrays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS = 12
MAX_LEN = 6


def tiny_model(name="sasrec", **overrides):
    c = config_lib.base_config()
    c.model.update({**dict(name=name, max_len=MAX_LEN, d_model=8, num_layers=2, num_heads=2,
                           d_ff=16, dropout=0.0, attention_dropout=0.0), **overrides})
    features = None
    if c.model.item_tower != "off":  # genres and a dense vector per item
        rng = np.random.default_rng(0)
        genres = rng.integers(1, 5, size=(NUM_ITEMS + 1, 2)).astype(np.int32)
        genres[0] = 0
        features = ItemFeatureArrays(
            categorical={"genres": genres}, vocab_sizes={"genres": 5},
            dense={"text": rng.normal(size=(NUM_ITEMS + 1, 3)).astype(np.float32)},
            known=np.ones(NUM_ITEMS + 1, bool))
    users = None
    if c.model.user_features != "off":  # a categorical feature per user number (0: unknown)
        users = UserFeatureArrays(
            categorical={"group": np.array([[1], [2], [3], [2], [4], [3], [2], [4], [3]], np.int32)},
            vocab_sizes={"group": 5}, dense={})
    return build_model(c.model, NUM_ITEMS, rngs=nnx.Rngs(1), item_features=features,
                       user_features=users)


def histories():
    """Lengths 1 .. MAX_LEN (every width bucket), a repeated item, right-aligned."""
    rng = np.random.default_rng(0)
    lengths = np.array([1, 2, 3, 4, 5, 6, 6, 3])
    hist = np.zeros((len(lengths), MAX_LEN), np.int32)
    for row, n in enumerate(lengths):
        hist[row, MAX_LEN - n :] = rng.integers(1, NUM_ITEMS + 1, size=n)
    hist[6, 2] = hist[6, 4]
    items = rng.integers(1, NUM_ITEMS + 1, size=(len(lengths), 3)).astype(np.int32)
    return hist, items


def reference_score(model, history, items, user=None):
    """float64 scores of items after one history (of dense user index `user`), unbatched."""
    weight, bias = model.output_table()
    who = {} if user is None else {"users": jnp.asarray([user + 1])}
    user = np.asarray(model.user_representation(jnp.asarray(history[None]), **who))[0].astype(np.float64)
    scores = np.asarray(weight, np.float64)[items] @ user
    return scores if bias is None else scores + np.asarray(bias, np.float64)[items]


@pytest.mark.parametrize("name,overrides", [("sasrec", {}), ("bert4rec", {}),
                                            ("transformer_recommender", {}), ("hstu", {}),
                                            ("bert4rec", {"user_features": "input"})],
                         ids=["sasrec", "bert4rec", "transformer_recommender", "hstu", "user_features"])
def test_occlusion_equals_removing_each_item_one_at_a_time(name, overrides):
    model = tiny_model(name, **overrides)
    hist, items = histories()
    users = np.arange(len(hist)) if overrides else None  # (each row its own user)
    got = explain.occlusion(model, hist, items, users)
    np.testing.assert_array_equal(got.history, hist)
    for row in range(len(hist)):
        user = None if users is None else users[row]
        base = reference_score(model, hist[row], items[row], user)
        np.testing.assert_allclose(got.scores[row], base, rtol=1e-5, atol=1e-5)
        for j in range(MAX_LEN):
            if hist[row, j] == 0:
                assert np.all(got.attributions[row, :, j] == 0)
                continue
            dropped = np.concatenate([[0], np.delete(hist[row], j)]).astype(np.int32)
            want = base - reference_score(model, dropped, items[row], user)
            np.testing.assert_allclose(got.attributions[row, :, j], want, rtol=1e-4, atol=1e-5)


def timed_histories():
    """histories() with each item's time (gaps of 1 s to ~1 day: many time buckets) and a
    query time after the last item."""
    hist, items = histories()
    rng = np.random.default_rng(3)
    times = np.cumsum(np.exp(rng.uniform(0, 11, size=hist.shape)), axis=1).astype(np.int32)
    query = times[:, -1] + rng.integers(0, 50_000, size=len(hist)).astype(np.int32)
    return hist, items, times, query


def timed_scores(model, history, times, query, items):
    """float64 scores [N, K] of items [N, K] after each history [N, W] with its times."""
    weight, _ = model.output_table()
    user = model.user_representation(jnp.asarray(history), times=jnp.asarray(times),
                                      query_time=jnp.asarray(query))
    return np.einsum("nkd,nd->nk", np.asarray(weight, np.float64)[items], np.asarray(user, np.float64))


@pytest.mark.parametrize("time_query", ["target", "last_item"])
def test_a_time_model_is_explained_with_its_times(time_query):
    """Occlusion drops an item with its time; grad is the unbatched derivative with the times
    fixed; the query time reaches the attributions of a "target" model only."""
    model = tiny_model("hstu", time_buckets=128, time_query=time_query)
    for i, layer in enumerate(model.layers):  # biases large enough to move the scores
        layer.time_bias.weight[...] = jax.random.normal(jax.random.key(i), (129,))
    hist, items, times, query = timed_histories()
    got = explain.occlusion(model, hist, items, times=times, query_time=query)
    base = timed_scores(model, hist, times, query, items)
    np.testing.assert_allclose(got.scores, base, rtol=1e-5, atol=1e-5)
    rows, positions = np.nonzero(hist)  # every real item, dropped with its time (np.delete)
    dropped, dropped_times = (np.stack([np.concatenate([[0], np.delete(a[r], j)]) for r, j in
                                        zip(rows, positions)]).astype(np.int32) for a in (hist, times))
    want = base[rows] - timed_scores(model, dropped, dropped_times, query[rows], items[rows])
    np.testing.assert_allclose(got.attributions[rows, :, positions], want, rtol=1e-4, atol=1e-5)
    assert np.all(got.attributions.transpose(0, 2, 1)[hist == 0] == 0)
    grads = explain.grad_input(model, hist, items, times=times, query_time=query)
    weight, _ = model.output_table()

    @jax.jit
    def reference(history, times, query, items):  # d score / d input scale at 1, one history
        def score(scale, item):
            user = model.user_representation(history[None], times=times[None],
                                             query_time=query[None], input_scale=scale[None])
            return user[0] @ weight[item]
        return jax.vmap(lambda item: jax.grad(score)(jnp.ones(history.shape), item))(items)

    for row in range(len(hist)):
        want = np.where(hist[row] != 0, np.asarray(reference(hist[row], times[row], query[row], items[row])), 0)
        np.testing.assert_allclose(grads.attributions[row], want, rtol=1e-4, atol=1e-6)
    later = explain.occlusion(model, hist, items, times=times, query_time=query + 10**7)
    assert np.allclose(later.attributions, got.attributions) == (time_query == "last_item")
    with pytest.raises(config_lib.ConfigError, match="pass times"):
        explain.occlusion(model, hist, items)
    with pytest.raises(config_lib.ConfigError, match="without a time bias"):
        explain.occlusion(tiny_model("hstu"), hist, items, times=times)
    with pytest.raises(config_lib.ConfigError, match="without a time bias"):
        explain.explain(tiny_model("hstu"), hist, items, "grad", query_time=query)


def reference_grad_input(model):
    """history [W], items [K] -> [K, W] by jax.grad of one history's score, the input vectors
    replaced by an argument (jitted once: eager grads are slow)."""
    model = nnx.clone(model)
    members = list(model.members) if hasattr(model, "members") else [model]
    weight, bias = model.output_table()
    bert = members[0].has_mask_token

    def tokens_of(history):  # what `encode` embeds: BERT4Rec reads history[1:] and [MASK]
        return jnp.concatenate([history[1:], jnp.array([NUM_ITEMS + 1])])[None] if bert else history[None]

    def score(vectors, history, item):
        for m, v in zip(members, vectors):
            object.__setattr__(m, "embed_items", lambda tokens, key=None, v=v: v)
        user = model.user_representation(history[None])[0]
        return user @ weight[item] + (0.0 if bias is None else bias[item])

    @jax.jit
    def attribute(history, items):
        inputs = [m.embed_items(tokens_of(history)) for m in members]

        def one(item):
            grads = jax.grad(score)(inputs, history, item)
            return sum((g * x).sum(-1)[0] for g, x in zip(grads, inputs))

        per_token = jax.lax.map(one, items)
        if bert:
            per_token = jnp.pad(per_token[:, :-1], ((0, 0), (1, 0)))
        return jnp.where(history != 0, per_token, 0.0)

    return lambda history, items: np.asarray(attribute(jnp.asarray(history), jnp.asarray(items)))


@pytest.mark.parametrize("name,overrides", [("sasrec", {}), ("bert4rec", {}),
                                            ("sasrec", {"item_tower": "sum"}),
                                            ("sasrec", {"ensemble_size": 2})],
                         ids=["sasrec", "bert4rec", "item_tower", "ensemble"])
def test_grad_input_equals_unbatched_jax_grad(name, overrides):
    model = tiny_model(name, **overrides)
    hist, items = histories()
    got = explain.grad_input(model, hist, items)
    reference = reference_grad_input(model)
    for row in range(len(hist)):
        np.testing.assert_allclose(got.scores[row], reference_score(model, hist[row], items[row]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.attributions[row], reference(hist[row], items[row]),
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_integrated_gradients_add_up_to_the_score_change(name):
    """Completeness: the attributions sum to score(history) - score(history vectors at 0)."""
    model = tiny_model(name)
    hist, items = histories()
    got = explain.integrated_gradients(model, hist, items, steps=64)
    zeroed = nnx.clone(model)
    original = zeroed.embed_items

    def at_zero(tokens, key=None):  # history items' vectors at 0; padding and [MASK] as they are
        keep = (tokens == 0) | (tokens == NUM_ITEMS + 1)
        return original(tokens, key=key) * keep[..., None]

    object.__setattr__(zeroed, "embed_items", at_zero)
    for row in range(len(hist)):
        change = reference_score(model, hist[row], items[row]) - reference_score(zeroed, hist[row], items[row])
        np.testing.assert_allclose(got.attributions[row].sum(-1), change, rtol=2e-2, atol=2e-3)


def test_an_ensemble_of_different_models_is_explained_through_its_members():
    """An ensemble scores by its members' sum (serving's `ensemble_of` sums runs of different
    models), so its occlusion, grad and ig attributions are the sums of its members' own; its
    rollout and attention rows are their mean, each member's [MASK] layout mapped first (here
    SASRec's and BERT4Rec's differ); a member that cannot be explained refuses the ensemble."""
    members = [tiny_model("sasrec"), tiny_model("bert4rec", num_layers=1), tiny_model("hstu")]
    hist, items = histories()
    ensemble = Ensemble(members)
    for method in ("occlusion", "grad", "ig"):
        got = explain.explain(ensemble, hist, items, method)
        alone = [explain.explain(m, hist, items, method) for m in members]
        np.testing.assert_allclose(got.scores, sum(a.scores for a in alone), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.attributions, sum(a.attributions for a in alone),
                                   rtol=1e-4, atol=1e-5)
    softmax = Ensemble(members[:2])
    for method, rolled in (("rollout", True), ("attention", False)):
        got = explain.explain(softmax, hist, items, method)
        want = (expected_rows(members[0], hist, rolled) + expected_rows(members[1], hist, rolled)) / 2
        for k in range(items.shape[1]):
            np.testing.assert_allclose(got.attributions[:, k], want, rtol=1e-5, atol=1e-6)
        with pytest.raises(config_lib.ConfigError, match="pointwise SiLU"):
            explain.explain(ensemble, hist, items, method)


def test_top_lists_real_positions_best_first():
    history = np.array([[0, 0, 5, 6, 7]], np.int32)
    attributions = np.array([[[0.0, 0.0, 0.5, -1.0, 2.0]]], np.float32)
    e = explain.Explanation(history, np.array([[1]]), np.array([[1.0]]), attributions)
    positions, values = e.top(4)
    assert positions.tolist() == [[[4, 2, 3, -1]]]
    np.testing.assert_array_equal(values[0, 0, :3], [2.0, 0.5, -1.0])
    assert np.isnan(values[0, 0, 3])


def test_models_that_cannot_be_explained_are_refused():
    c = config_lib.base_config()
    assert explain.unsupported(c.model, "occlusion") is None
    assert explain.unsupported(c.model, "rollout") is None
    assert "expected one of occlusion, grad, ig, rollout, attention" in explain.unsupported(c.model, "shap")
    c.model.name = "encdec"
    assert "encdec generates its list" in explain.unsupported(c.model, "grad")
    c.model.update(name="hstu", time_buckets=8)
    assert explain.unsupported(c.model, "occlusion") is None  # (times passed through)
    assert "pointwise SiLU" in explain.unsupported(c.model, "rollout")
    c.model.update(name="sasrec", time_buckets=0, user_features="input")
    assert explain.unsupported(c.model, "occlusion") is None  # (`users` passed through)
    c = config_lib.base_config()
    c.model.update(name="encdec", max_len=MAX_LEN, d_model=8, num_layers=1, num_heads=2, d_ff=8, next_k=2)
    encdec = build_model(c.model, NUM_ITEMS, rngs=nnx.Rngs(0))
    with pytest.raises(config_lib.ConfigError, match="encdec generates"):
        explain.occlusion(encdec, *histories())


# --- a trained run: serving's scores, `recommend --explain` ----------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with titles (a few training steps: explanations need a model, not a good one)."""
    tmp = tmp_path_factory.mktemp("explain_run")
    rng = np.random.default_rng(0)
    lines = [f"{u} {rng.integers(1, 21)}" for u in range(1, 41) for _ in range(7)]
    (tmp / "data.txt").write_text("\n".join(lines) + "\n")
    (tmp / "titles.csv").write_text("id,title\n" + "".join(f"{i},Film {i}\n" for i in range(1, 21)))
    c = config_lib.base_config()
    c.dataset.update(name="local", source="local", format="user_item", path=str(tmp / "data.txt"),
                     item_titles=str(tmp / "titles.csv"), cache_dir=str(tmp / "cache"))
    c.model.update(max_len=8, d_model=16, num_layers=1, num_heads=2, d_ff=16)
    c.train.update(num_epochs=0, num_steps=4, batch_size=16, eval_every_steps=4, log_every=4)
    c.eval.update(batch_size=64, ks=(5, 10))
    workdir = str(tmp / "run")
    train.train_and_evaluate(c, workdir)
    return workdir


def test_explained_scores_are_serving_scores(run):
    """Every method's scores of the top-K are the scores `serving` ranked them by."""
    from transrec_jax.serving import Recommender

    rec = Recommender(run)
    ds = rec.dataset
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    items, scores = rec.top_k(starts, ends, ds.items, 5)
    history = gather_windows(ds.items, starts, ends, rec.config.model.max_len)
    for method in explain.METHODS:
        got = explain.explain(rec.run.model(), history, items, method)
        np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-5)


_DRIVER = """
import importlib, json, os, sys
module = importlib.import_module("transrec_jax.recommend")
results = {}
for name, args in json.loads(sys.argv[1]).items():
    out, err = (os.path.join(sys.argv[2], name + ext) for ext in (".stdout", ".stderr"))
    pid = os.fork()
    if pid == 0:
        for path, fd in ((out, 1), (err, 2)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = [module.__file__, *args]
        try:
            module.cli.run(module.main)
        except SystemExit as e:
            if isinstance(e.code, str):
                sys.stderr.write(e.code + "\\n")
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(1 if isinstance(e.code, str) else (e.code or 0))
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(99)
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    results[name] = {"returncode": os.waitstatus_to_exitcode(status),
                     "stdout": open(out).read(), "stderr": open(err).read()}
print(json.dumps(results))
"""


ERRORS = {  # case -> the text of its error line
    "unknown_method": "--explain='shap': expected one of occlusion, grad, ig, rollout, attention",
    "hstu_rollout": "--explain=rollout: HSTU's attention is a pointwise SiLU, not a softmax",
    "encdec": "encdec generates its list",
    "plot_without_explain": "--explain_plot goes with --explain=METHOD",
    "plot_folder_missing": "is not a writable directory",
    "plot_not_png": "expected a file ending in .png",
    "top_zero": "--explain_top=0: expected a positive integer",
    "user_with_history": "--explain_user picks the plotted user",
    "unknown_user": "--explain_user='999': not a user of this dataset",
    "ensemble_hstu_rollout": "hstu_run: --explain=rollout: HSTU's attention is a pointwise SiLU",
}


def error_cases(run, tmp):
    """case -> recommend's arguments. The encdec workdir has a config.json and nothing else:
    its refusal comes before anything loads."""
    encdec = tmp / "encdec_run"
    encdec.mkdir()
    (encdec / "config.json").write_text(json.dumps({"model": {"name": "encdec"}}))
    hstu = tmp / "hstu_run"
    hstu.mkdir()
    (hstu / "config.json").write_text(json.dumps({"model": {"name": "hstu"}}))
    hist, grad = "--history=3,4,5", "--explain=grad"
    return {
        "unknown_method": [f"--workdir={run}", hist, "--explain=shap"],
        "encdec": [f"--workdir={encdec}", hist, "--explain=occlusion"],
        "hstu_rollout": [f"--workdir={hstu}", hist, "--explain=rollout"],
        "plot_without_explain": [f"--workdir={run}", hist, f"--explain_plot={tmp}/p.png"],
        "plot_folder_missing": [f"--workdir={run}", hist, grad, f"--explain_plot={tmp}/no/p.png"],
        "plot_not_png": [f"--workdir={run}", hist, grad, f"--explain_plot={tmp}/p.txt"],
        "top_zero": [f"--workdir={run}", hist, grad, "--explain_top=0"],
        "user_with_history": [f"--workdir={run}", hist, grad, "--explain_user=3", f"--explain_plot={tmp}/p.png"],
        "unknown_user": [f"--workdir={run}", "--users=all", f"--output={tmp}/o.csv", grad,
                         "--explain_user=999", f"--explain_plot={tmp}/p.png"],
        "ensemble_hstu_rollout": [f"--workdir={run}", f"--workdir={hstu}", hist, "--explain=rollout"],
    }


@pytest.fixture(scope="module")
def outcomes(run, tmp_path_factory):
    """Every recommend case in one process: imported once, a fork per case."""
    tmp = tmp_path_factory.mktemp("explain_cli")
    logs = tmp_path_factory.mktemp("explain_logs")
    cases = error_cases(run, tmp)
    cases.update({
        "history": [f"--workdir={run}", "--history=3,4,5,3,6", "--k=4", "--explain=occlusion",
                    "--explain_top=2", f"--explain_plot={tmp}/history.png"],
        "ensemble_history": [f"--workdir={run}", f"--workdir={run}", "--history=3,4,5,3,6", "--k=4",
                             "--explain=occlusion", "--explain_top=2"],
        "all_parquet": [f"--workdir={run}", "--users=all", "--k=3", "--explain=grad",
                        f"--output={tmp}/all.parquet", "--explain_user=7", f"--explain_plot={tmp}/user7.png"],
        "all_csv": [f"--workdir={run}", "--users=all", "--k=3", "--explain=occlusion",
                    f"--output={tmp}/all.csv"],
        "history_rollout": [f"--workdir={run}", "--history=3,4,5,3,6", "--k=4", "--explain=rollout",
                            "--explain_top=3", f"--explain_plot={tmp}/rollout.png"],
        "all_attention": [f"--workdir={run}", "--users=all", "--k=3", "--explain=attention",
                          f"--output={tmp}/attention.parquet"],
    })
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(cases), str(logs)],
                          capture_output=True, text=True, cwd=REPO, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), tmp


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_explain_arguments_are_one_line_errors(outcomes, name):
    results, tmp = outcomes
    out = results[name]
    assert out["returncode"] == 1, out["stderr"][-2000:]
    lines = [line for line in out["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out["stderr"][-2000:]
    assert ERRORS[name] in lines[0], lines[0]
    assert not os.path.exists(tmp / "p.png") and not os.path.exists(tmp / "o.csv")


def test_recommend_explain_history_prints_because_and_plots(outcomes):
    results, tmp = outcomes
    out = results["history"]
    assert out["returncode"] == 0 and out["stderr"] == "", out["stderr"][-2000:]
    header, *rows = [line.split("\t") for line in out["stdout"].splitlines()]
    assert header == ["rank", "item", "score", "title", "because"] and len(rows) == 4
    for row in rows:
        pairs = [p.split(":") for p in row[4].split(";")]
        assert len(pairs) == 2 and all(i in {"3", "4", "5", "6"} for i, _ in pairs)
        values = [float(v) for _, v in pairs]
        assert values == sorted(values, reverse=True)
    assert os.path.getsize(tmp / "history.png") > 1000


def test_recommend_explains_an_ensemble_of_runs(outcomes):
    """A run summed with itself: the same list, every score and attribution doubled."""
    results, _ = outcomes
    single, double = (results[name] for name in ("history", "ensemble_history"))
    assert double["returncode"] == 0 and double["stderr"] == "", double["stderr"][-2000:]
    rows = [[line.split("\t") for line in out["stdout"].splitlines()[1:]] for out in (single, double)]
    for one, two in zip(*rows):
        assert one[1] == two[1] and float(two[2]) == pytest.approx(2 * float(one[2]), abs=2e-4)
        pairs = [[p.split(":") for p in row[4].split(";")] for row in (one, two)]
        assert [i for i, _ in pairs[0]] == [i for i, _ in pairs[1]]
        np.testing.assert_allclose([float(v) for _, v in pairs[1]],
                                   [2 * float(v) for _, v in pairs[0]], rtol=2e-3)


def test_recommend_explain_all_users_writes_lists(outcomes, run):
    import pyarrow.csv
    import pyarrow.parquet

    results, tmp = outcomes
    for name in ("all_parquet", "all_csv"):
        assert results[name]["returncode"] == 0, results[name]["stderr"][-2000:]
    table = pyarrow.parquet.read_table(tmp / "all.parquet").to_pydict()
    assert len(table["because_items"]) == 40 * 3
    for ids, values in zip(table["because_items"], table["because_scores"]):
        assert 1 <= len(ids) == len(values) <= 5 and values == sorted(values, reverse=True)
    assert os.path.getsize(tmp / "user7.png") > 1000
    csv = pyarrow.csv.read_csv(tmp / "all.csv").to_pydict()
    assert len(csv["because"]) == 40 * 3 and all(":" in cell for cell in csv["because"])


# --- sanity: the planted predecessor ----------------------------------------------------------


@pytest.mark.slow
def test_explanations_find_the_planted_predecessor(tmp_path):
    """The synthetic data plants "item a is often followed by one of a's few successors". For
    users whose top recommendation is a successor of their last item (by the data's bigram
    counts) and of no other item in their window, that last item should be the most
    attributed far more often than a random position is (1 / history length)."""
    from test_train import tiny_config

    from transrec_jax.serving import Recommender

    workdir = str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(tmp_path), workdir)
    rec = Recommender(workdir)
    ds, cfg = rec.dataset, rec.config.dataset.synthetic
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    items, _ = rec.top_k(starts, ends, ds.items, 1)
    history = gather_windows(ds.items, starts, ends, rec.config.model.max_len)
    bigrams = np.zeros((ds.num_items + 1, ds.num_items + 1))
    for user in range(ds.num_users):
        seq = ds.sequence(user)
        np.add.at(bigrams, (seq[:-1], seq[1:]), 1)
    successors = np.argsort(-bigrams, axis=1)[:, : cfg.successors]
    follows = (successors[history] == items[:, 0, None, None]).any(-1) & (history != 0)  # [N, W]
    planted = follows[:, -1] & (follows.sum(1) == 1)
    assert planted.sum() >= 50
    random_hit = float(np.mean(1 / (history[planted] != 0).sum(1)))
    for method in explain.METHODS:
        top = explain.explain(rec.run.model(), history, items, method).top(1)[0][:, 0, 0]
        hit = float(np.mean(top[planted] == history.shape[1] - 1))
        assert hit > max(0.5, 5 * random_hit), (method, hit, random_hit)


def test_faithfulness_deletes_positions_and_keeps_order():
    import importlib.util

    path = os.path.join(REPO, "experiments", "explain", "faithfulness.py")
    spec = importlib.util.spec_from_file_location("faithfulness", path)
    faithfulness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faithfulness)
    history = np.array([[0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6]], np.int32)
    got = faithfulness.delete(history, np.array([[3, 5], [0, 4]]))
    assert got.tolist() == [[0, 0, 0, 0, 4, 6], [0, 0, 2, 3, 4, 6]]
    assert "No results yet" in faithfulness.markdown([])


# --- rollout and last-block attention ---------------------------------------------------------


def test_recommend_explain_rollout_and_attention(outcomes):
    """The same history items, with the same shares, for every recommended item; an all-users
    attention run writes its lists."""
    import pyarrow.parquet

    results, tmp = outcomes
    out = results["history_rollout"]
    assert out["returncode"] == 0 and out["stderr"] == "", out["stderr"][-2000:]
    header, *rows = [line.split("\t") for line in out["stdout"].splitlines()]
    assert header[-1] == "because" and len(rows) == 4
    assert len({row[-1] for row in rows}) == 1
    shares = [float(p.split(":")[1]) for p in rows[0][-1].split(";")]
    assert len(shares) == 3 and all(0 < v <= 1 for v in shares) and shares == sorted(shares, reverse=True)
    assert os.path.getsize(tmp / "rollout.png") > 1000
    assert results["all_attention"]["returncode"] == 0, results["all_attention"]["stderr"][-2000:]
    table = pyarrow.parquet.read_table(tmp / "attention.parquet").to_pydict()
    assert len(table["because_items"]) == 40 * 3
    for first in range(0, 40 * 3, 3):  # a user's rows: one list
        assert table["because_items"][first] == table["because_items"][first + 2]


def encoded(model, tokens, **kwargs):
    return model.encode(jnp.asarray(tokens), **kwargs)


@pytest.mark.parametrize("name,overrides", [("sasrec", {}), ("bert4rec", {}),
                                            ("sasrec", {"attention_chunk": 2}),
                                            ("sasrec", {"fused_attention": True})],
                         ids=["sasrec", "bert4rec", "chunked", "fused"])
def test_return_attention_leaves_the_hidden_states_alone(name, overrides):
    """Off, encode returns the hidden states alone; on, the same hidden states (bit for bit on
    the explicit core, eager and jitted; the fused and chunked cores switch to the explicit one
    for the weights, so there up to rounding) and one [B, H, L, L] per layer."""
    model = tiny_model(name, **overrides)
    hist, _ = histories()
    default = encoded(model, hist)
    assert isinstance(default, jax.Array)
    hidden, weights = encoded(model, hist, return_attention=True)
    assert len(weights) == 2 and all(w.shape == (len(hist), 2, MAX_LEN, MAX_LEN) for w in weights)
    graphdef, params = nnx.split(model)

    @functools.partial(jax.jit, static_argnames="on")
    def jitted(params, tokens, on):
        out = nnx.merge(graphdef, params).encode(tokens, return_attention=on)
        return out[0] if on else out

    if overrides:  # another core computed the default
        def same(a, b):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:
        same = np.testing.assert_array_equal
    tokens = jnp.asarray(hist)
    same(hidden, default)
    same(jitted(params, tokens, True), jitted(params, tokens, False))
    last, last_weights = encoded(model, hist, last_only=True, return_attention=True)
    same(last, encoded(model, hist, last_only=True))
    assert last_weights[-1].shape == (len(hist), 2, 1, MAX_LEN)


def numpy_softmax_weights(attention, h, kv, allowed):
    """softmax(Q Kᵀ / √d_h + mask) per head in float64 from the layer's projections; rows with
    no allowed key are 0."""
    def project(proj, x):
        return np.asarray(x, np.float64) @ np.asarray(proj.kernel[...], np.float64) + np.asarray(
            proj.bias[...], np.float64)

    heads, dh = attention.num_heads, attention.head_dim
    q = project(attention.query_proj, h).reshape(*h.shape[:2], heads, dh).transpose(0, 2, 1, 3)
    k = project(attention.key_proj, kv).reshape(*kv.shape[:2], heads, dh).transpose(0, 2, 1, 3)
    logits = np.where(allowed, q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh), -np.inf)
    top = np.max(np.where(allowed, logits, -1e300), axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(logits - top), 0.0)
    total = e.sum(-1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)


@pytest.mark.parametrize("name,placement", [("sasrec", "pre"), ("sasrec", "sasrec"),
                                            ("bert4rec", "post")])
def test_attention_weights_are_a_masked_softmax(name, placement):
    """Each layer's weights equal a numpy softmax(Q Kᵀ/√d + mask) of that layer's input, and put
    nothing on padding keys (nor, causal, on later positions); real query rows sum to 1."""
    from transrec_jax.models.layers import sublayer_inputs
    from transrec_jax.models.positions import right_aligned_ids

    model = tiny_model(name, norm_placement=placement)
    hist, _ = histories()
    tokens = jnp.asarray(hist)
    _, weights = encoded(model, hist, return_attention=True)
    real = hist != 0
    allowed = np.broadcast_to(real[:, None, None, :], (len(hist), 1, MAX_LEN, MAX_LEN))
    if name == "sasrec":
        allowed = allowed & np.tril(np.ones((MAX_LEN, MAX_LEN), bool))
    x = model.item_embedding(tokens) * model.embedding_scale + model.positions(right_aligned_ids(MAX_LEN))
    for layer, got in zip(model.layers, weights, strict=True):
        h, kv = sublayer_inputs(layer.placement, layer.attention_norm, x)
        want = numpy_softmax_weights(layer.attention, h, kv, allowed)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = np.asarray(got)
        assert np.all(got[~np.broadcast_to(allowed, got.shape)] == 0)
        rows = got.sum(-1)[np.broadcast_to(allowed.any(-1), got.shape[:3])]
        np.testing.assert_allclose(rows, 1.0, rtol=1e-6)
        x = layer(x, mask=jnp.asarray(allowed))


def numpy_rollout(weights):
    """Abnar & Zuidema's recursion in float64: Â = rownorm(mean_heads(A) + I), R = Â_L ... Â_1."""
    rolled = None
    for w in weights:
        a = np.asarray(w, np.float64).mean(1) + np.eye(w.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
    return rolled


def expected_rows(model, hist, rolled):
    """[N, W] the user vector position's row (rollout or last-block attention) mapped to the
    history: the members' mean; BERT4Rec reads history[:, 1:] then [MASK]."""
    members = list(model.members) if hasattr(model, "members") else [model]
    rows = []
    for m in members:
        weights = m.user_attention(jnp.asarray(hist))
        rows.append(numpy_rollout(weights)[:, -1] if rolled
                    else np.asarray(weights[-1], np.float64).mean(1)[:, -1])
    row = np.mean(rows, 0)
    if members[0].has_mask_token:
        row = np.pad(row[:, :-1], ((0, 0), (1, 0)))
    return np.where(hist != 0, row, 0.0)


@pytest.mark.parametrize("name,overrides", [("sasrec", {}), ("bert4rec", {}),
                                            ("transformer_recommender", {"num_layers": 3}),
                                            ("sasrec", {"ensemble_size": 2})],
                         ids=["sasrec", "bert4rec", "transformer_recommender", "ensemble"])
def test_rollout_and_attention_equal_numpy(name, overrides):
    """Against the numpy recursion on the model's own weights, mapped back to the window; the
    same row for every explained item; the scores serving's. SASRec's shares sum to 1 over
    the history; BERT4Rec's [MASK] keeps the rest."""
    model = tiny_model(name, **overrides)
    hist, items = histories()
    weight, bias = model.output_table()
    user = np.asarray(model.user_representation(jnp.asarray(hist)), np.float64)
    scores = np.einsum("nkd,nd->nk", np.asarray(weight, np.float64)[items], user)
    scores = scores if bias is None else scores + np.asarray(bias, np.float64)[items]
    for method, rolled in (("rollout", True), ("attention", False)):
        got = explain.explain(model, hist, items, method)
        want = expected_rows(model, hist, rolled)
        np.testing.assert_array_equal(got.history, hist)
        for k in range(items.shape[1]):
            np.testing.assert_allclose(got.attributions[:, k], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-5)
        assert np.all(got.attributions >= 0) and np.all(got.attributions[np.broadcast_to(
            (hist == 0)[:, None], got.attributions.shape)] == 0)
        sums = got.attributions.sum(-1)
        if name == "bert4rec":
            assert np.all(sums < 1)
        else:
            np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_rollout_rows_sum_to_one():
    """Every row of the rolled-out matrix, padding rows included, for a causal and a
    bidirectional model; it equals the numpy recursion."""
    hist, _ = histories()
    for name in ("sasrec", "bert4rec"):
        weights = tiny_model(name, num_layers=3).user_attention(jnp.asarray(hist))
        rolled = np.asarray(explain.attention_rollout(weights))
        np.testing.assert_allclose(rolled.sum(-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(rolled, numpy_rollout(weights), rtol=1e-5, atol=1e-6)
        for position in (-1, 0, 3):  # the row alone, by vector x matrix products
            np.testing.assert_allclose(explain.rollout_row(weights, position), rolled[:, position],
                                       rtol=1e-5, atol=1e-6)


def test_rollout_reads_user_features():
    """A model with user features at the input: the weights (so the shares) are those of each
    row's user."""
    model = tiny_model("sasrec", user_features="input")
    hist, items = histories()
    users = np.arange(len(hist))
    got = explain.rollout(model, hist, items, users)
    weights = model.user_attention(jnp.asarray(hist), users=jnp.asarray(users + 1))
    want = np.where(hist != 0, numpy_rollout(weights)[:, -1], 0.0)
    np.testing.assert_allclose(got.attributions[:, 0], want, rtol=1e-5, atol=1e-6)
    unknown = explain.rollout(model, hist, items).attributions
    assert not np.allclose(unknown, got.attributions)


def test_attention_methods_refuse_hstu():
    c = config_lib.base_config()
    c.model.name = "hstu"
    for method in ("rollout", "attention"):
        assert "pointwise SiLU, not a softmax" in explain.unsupported(c.model, method)
    assert explain.unsupported(c.model, "occlusion") is None
    c.model.name = "encdec"
    assert "encdec generates its list" in explain.unsupported(c.model, "rollout")
    hstu = tiny_model("hstu")
    with pytest.raises(config_lib.ConfigError, match="pointwise SiLU"):
        explain.rollout(hstu, *histories())
    with pytest.raises(ValueError, match="softmax attention weights"):
        hstu.encode(jnp.asarray(histories()[0]), return_attention=True)
    with pytest.raises(config_lib.ConfigError, match="expected one of"):
        explain.explain(tiny_model(), *histories(), "shap")
