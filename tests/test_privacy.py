"""User-level DP-SGD (transrec_jax/privacy/): accounting, per-user clipping, the user batcher,
held-out users, the membership attack's AUC, config errors and a tiny private run."""

import functools
import json
import os

import jax
import numpy as np
import optax
import pytest

dp_accounting = pytest.importorskip("dp_accounting")  # the optional extra `privacy`
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from transrec_jax import config as config_lib
from transrec_jax import train
from transrec_jax.data import splits
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.privacy import accounting, dp_sgd, federated, membership
from transrec_jax.privacy.batching import UserBatcher

NUM_ITEMS, MAX_LEN = 30, 8


# --- accounting --------------------------------------------------------------------------

def test_epsilon_is_dp_accountings_own():
    """Poisson: PLD of the truncated subsampled Gaussian; fixed: RDP of sampling without
    replacement under replace-one neighbours, with the noise over a sensitivity of 2C."""
    sigma, q, steps, delta, population = 1.1, 0.05, 40, 1e-4, 600
    ours = accounting.epsilon(sigma, q, steps, delta, population=population, capacity=45)
    pld = PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                        value_discretization_interval=1e-3)
    pld.compose(dp_accounting.TruncatedSubsampledGaussianDpEvent(population, q, 45, sigma), steps)
    assert ours == pld.get_epsilon(delta)
    ours = accounting.epsilon(sigma, q, steps, delta, population=population, capacity=30, sampling="fixed")
    rdp = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    rdp.compose(dp_accounting.SampledWithoutReplacementDpEvent(
        population, 30, dp_accounting.GaussianDpEvent(sigma / 2)), steps)
    assert ours == rdp.get_epsilon(delta)
    assert accounting.epsilon(0.0, q, steps, delta, population=population, capacity=45) == np.inf
    assert accounting.epsilon(sigma, q, 0, delta, population=population, capacity=45) == 0.0
    # next to no noise (a clipping-only diagnostic): inf at once, not a PLD grid past all memory
    assert accounting.epsilon(1e-6, q, steps, delta, population=population, capacity=45) == np.inf


@pytest.mark.parametrize("sampling", ["poisson", "fixed"])
def test_noise_for_epsilon_round_trips(sampling, monkeypatch):
    """The noise found meets the target, and twice the search's tolerance less does not (PLD
    discretized coarsely: the property holds at any interval, and this one is quick)."""
    monkeypatch.setattr(accounting, "DISCRETIZATION", 1e-2)
    q, steps, delta, target, tol = 0.1, 10, 1e-4, 4.0, 0.02
    common = dict(population=200, capacity=34 if sampling == "poisson" else 20, sampling=sampling)
    sigma = accounting.noise_for_epsilon(target, q, steps, delta, tol=tol, **common)
    assert accounting.epsilon(sigma, q, steps, delta, **common) <= target
    assert accounting.epsilon(sigma - 2 * tol, q, steps, delta, **common) > target


def test_plan_defaults_and_capacity():
    c = config_lib.base_config().privacy
    c.update(users_per_step=32, noise_multiplier=1.0)
    plan = accounting.make_plan(c, 600, 20, row_multiple=4)
    assert plan.delta == 1 / 600 and plan.capacity % 4 == 0 and plan.capacity >= 32 + 4 * 32 ** 0.5
    assert plan.target_epsilon is None and plan.report(20)["epsilon"] == plan.epsilon(20) > 0
    c.users_per_step = 600
    with pytest.raises(config_lib.ConfigError, match="privacy.users_per_step"):
        accounting.make_plan(c, 600, 20)


# --- the user batcher and held-out users ------------------------------------------------

def make_dataset(lengths, seed=0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    items = rng.integers(1, NUM_ITEMS + 1, lengths.sum()).astype(np.int32)
    return SequenceDataset(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           items=items, num_items=NUM_ITEMS, user_ids=np.arange(len(lengths)),
                           item_ids=np.arange(NUM_ITEMS + 1), name="tiny")


def test_user_batches_have_static_shapes_and_tile_each_history():
    ds = make_dataset([40] + [12] * 99)
    split = splits.leave_one_out(ds)
    common = dict(users_per_step=10, capacity=20, windows_per_user=3, max_len=MAX_LEN, seed=0)
    batcher = UserBatcher(ds, split, sampling="poisson", **common)
    drawn = []
    for _ in range(30):
        batch = next(batcher)
        assert batch["seq"].shape == (20, 3, MAX_LEN + 1) and batch["valid"].shape == (20,)
        drawn.append(batch["valid"].sum())
        assert not batch["seq"][~batch["valid"]].any()
    assert 5 < np.mean(drawn) < 15  # q * users = 10 expected
    fixed = UserBatcher(ds, split, sampling="fixed", **{**common, "capacity": 10})
    batch = next(fixed)
    assert batch["valid"].all() and batch["seq"].shape[0] == 10
    # 'last': user 0's 38 training items tile into windows ending 0, 8, 16 items before the end.
    everyone = UserBatcher(ds, split, sampling="fixed", with_users=True,
                           **{**common, "users_per_step": 100, "capacity": 100})
    batch = next(everyone)
    train_items = ds.items[:38]
    for k in range(3):
        end = 38 - k * MAX_LEN
        np.testing.assert_array_equal(batch["seq"][0, k], train_items[end - MAX_LEN - 1 : end])
    assert (batch["users"][0] == 1).all()  # (user 0's id + 1 in every column of a real window)
    # User 1's 10 training items: a window of the last 9, one of the first 2, then padding.
    np.testing.assert_array_equal(batch["seq"][1, 1, -2:], ds.items[40:42])
    assert (batch["users"][1, :2] == 2).all()
    assert not batch["users"][1, 2].any() and not batch["seq"][1, 2].any()
    # Resuming from state() draws the same next batch.
    state, expected = batcher.state(), next(batcher)
    again = UserBatcher(ds, split, sampling="poisson", **common)
    again.restore(state)
    for name, value in next(again).items():
        np.testing.assert_array_equal(value, expected[name])


def test_held_out_users_neither_train_nor_evaluate():
    ds = make_dataset([12] * 100)
    cfg = config_lib.base_config().dataset
    cfg.holdout_users = 0.1
    split = splits.make_split(ds, cfg, seed=3)
    assert len(split.held_out) == 10 and split.summary()["held_out_users"] == 10
    np.testing.assert_array_equal(split.held_out, splits.make_split(ds, cfg, seed=3).held_out)
    assert (split.train_end[split.held_out] == 0).all() and (split.held_out_end == 10).all()
    assert (split.val_pos[split.held_out] == -1).all() and (split.test_pos[split.held_out] == -1).all()
    batcher = UserBatcher(ds, split, users_per_step=10, capacity=20, windows_per_user=1,
                          sampling="poisson", max_len=MAX_LEN, seed=0)
    assert not np.isin(batcher.users, split.held_out).any() and len(batcher.users) == 90


# --- the private step ---------------------------------------------------------------------

def model_config():
    c = config_lib.base_config()
    c.model.update(max_len=MAX_LEN, d_model=16, num_layers=1, num_heads=2, d_ff=32, dropout=0.0,
                   attention_dropout=0.0)
    return c


SLOTS, WINDOWS = 6, 4  # every step below: one batch shape, one compile of each step


@pytest.fixture(scope="module")
def steps():
    """(state, private(state, batch, key, clip, noise, denominator), ordinary(state, batch, key),
    fedavg(state, batch, key): one local step at rate 0.5, mean over 4 users, not private):
    SGD at rate 1, so an update is minus the gradient and no optimizer normalisation amplifies
    rounding; the ordinary step takes [WINDOWS, width] batches."""
    c, tx = model_config(), optax.sgd(1.0)
    graphdef, _, state = train.init_state(c, NUM_ITEMS, 10, jax.random.key(0))
    state = {"step": state["step"], "params": state["params"],
             "opt_state": tx.init(train.trainable(state["params"])[0])}
    private = jax.jit(lambda state, batch, key, clip, noise, denominator: dp_sgd.dp_train_step(
        state, batch, key, graphdef=graphdef, tx=tx, loss_cfg=c.loss, clip_norm=clip,
        noise_multiplier=noise, denominator=denominator))
    ordinary = jax.jit(functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=c.loss,
                                         item_log_probs=None))
    fedavg = jax.jit(lambda state, batch, key: federated.fedavg_round(
        state, batch, key, graphdef=graphdef, tx=tx, loss_cfg=c.loss, local_steps=1,
        client_learning_rate=0.5, clip_norm=float("inf"), noise_multiplier=0.0, denominator=4.0))
    return state, private, ordinary, fedavg


def flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(train.trainable(params)[0])])


def test_each_user_contributes_at_most_clip_norm(steps):
    """With no noise and denominator 1 the update is minus the sum of the clipped per-user
    gradients; each user's gradient, from the ordinary step on their windows alone, clipped in
    numpy, gives the same sum. A slot not marked valid contributes nothing."""
    state, private, ordinary, _ = steps
    rng = np.random.default_rng(1)
    seq = np.zeros((SLOTS, WINDOWS, MAX_LEN + 1), np.int32)
    seq[:3] = rng.integers(1, NUM_ITEMS + 1, (3, WINDOWS, MAX_LEN + 1))
    seq[1, 1:] = 0  # user 1: one window; user 2: data in a slot that is not valid
    valid = np.arange(SLOTS) < 2
    key, before = jax.random.key(0), flat(state["params"])
    grads = [before - flat(ordinary(state, {"seq": seq[u]}, key)[0]["params"]) for u in range(2)]
    norms = np.array([np.linalg.norm(g) for g in grads])
    clip = 0.5 * norms.max()
    expected = sum(g * min(1.0, clip / n) for g, n in zip(grads, norms))
    new_state, metrics = private(state, {"seq": seq, "valid": valid}, key, clip, 0.0, 1.0)
    np.testing.assert_allclose(before - flat(new_state["params"]), expected, rtol=1e-4, atol=1e-6)
    assert float(metrics["users"]) == 2 and float(metrics["clipped"]) >= 0.5
    assert np.linalg.norm(expected) <= 2 * clip + 1e-5


def test_without_noise_or_clipping_the_private_step_is_the_ordinary_step(steps):
    """Users with one full window each (the same number of targets): the mean of their mean
    losses is the batch's mean loss."""
    state, private, ordinary, _ = steps
    rows = np.random.default_rng(2).integers(1, NUM_ITEMS + 1, (WINDOWS, MAX_LEN + 1)).astype(np.int32)
    key = jax.random.key(0)
    plain, plain_metrics = ordinary(state, {"seq": rows}, key)
    seq = np.zeros((SLOTS, WINDOWS, MAX_LEN + 1), np.int32)
    seq[:WINDOWS, 0] = rows  # user u: row u as their one window
    batch = {"seq": seq, "valid": np.arange(SLOTS) < WINDOWS}
    mine, my_metrics = private(state, batch, key, 1e6, 0.0, float(WINDOWS))
    np.testing.assert_allclose(flat(mine["params"]), flat(plain["params"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(my_metrics["loss"], plain_metrics["loss"], rtol=1e-6)


def test_noise_has_the_calibrated_scale(steps):
    """No valid user: the update is the noise alone, std σC / denominator."""
    state, private, _, _ = steps
    batch = {"seq": np.zeros((SLOTS, WINDOWS, MAX_LEN + 1), np.int32), "valid": np.zeros(SLOTS, bool)}
    new_state, _ = private(state, batch, jax.random.key(0), 2.0, 1.5, 10.0)
    noise = flat(state["params"]) - flat(new_state["params"])
    assert np.std(noise) == pytest.approx(1.5 * 2.0 / 10.0, rel=0.05)


def test_fedavg_with_one_local_step_is_a_scaled_sgd_step(steps):
    """One local SGD step at rate η per client, updates averaged: the server's SGD step at rate
    1 moves by η times the mean per-user gradient, the unclipped noiseless private step's."""
    state, private, _, fedavg = steps
    rng = np.random.default_rng(3)
    seq = np.zeros((SLOTS, WINDOWS, MAX_LEN + 1), np.int32)
    seq[:4, :2] = rng.integers(1, NUM_ITEMS + 1, (4, 2, MAX_LEN + 1))
    batch = {"seq": seq, "valid": np.arange(SLOTS) < 4}
    key, before = jax.random.key(0), flat(state["params"])
    sgd_update = before - flat(private(state, batch, key, 1e6, 0.0, 4.0)[0]["params"])
    round_update = before - flat(fedavg(state, batch, key)[0]["params"])
    np.testing.assert_allclose(round_update, 0.5 * sgd_update, rtol=1e-4, atol=1e-7)


# --- the membership attack ----------------------------------------------------------------

def test_auc_is_the_pairwise_probability():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pos, neg = rng.integers(0, 6, 17).astype(float), rng.integers(0, 6, 11).astype(float)
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        assert membership.auc(pos, neg) == pytest.approx(pairs.mean())
    assert membership.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


# --- config errors and a private run -----------------------------------------------------

@pytest.mark.parametrize("key,value,devices", [
    ("privacy.epsilon", 0.0, 1), ("privacy.epsilon", -1.0, 1), ("privacy.delta", 1.0, 1),
    ("privacy.delta", -0.1, 1), ("privacy.clip_norm", 0.0, 1), ("privacy.sampling", "shuffle", 1),
    ("privacy.noise_multiplier", -1.0, 1), ("privacy.users_per_step", 0, 1),
    ("train.pack_rows", True, 1), ("loss.sampler", "in_batch", 1), ("loss.sampler", "popularity", 1),
    ("model.ensemble_size", 2, 1), ("mesh.model", 2, 2), ("dataset.holdout_users", 1.0, 1),
])
def test_bad_private_configs_are_one_line_errors(key, value, devices):
    c = config_lib.base_config()
    c.privacy.mode = "dp_sgd"
    if key == "loss.sampler":
        c.loss.name = "sampled_softmax"
    config_lib.set_by_path(c, key, str(value))
    with pytest.raises(config_lib.ConfigError, match=key.replace(".", r"\.")) as error:
        config_lib.validate(c, devices)
    assert "\n" not in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dp_sgd", "dp_fedavg", "fedavg"])
def test_a_tiny_run_of_each_mode_reports_its_privacy(tmp_path, mode):
    """(fedavg, not private: no clipping, no noise and no epsilon)"""
    c = model_config()
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=200, num_items=NUM_ITEMS, min_len=8, max_len=16)
    c.dataset.holdout_users = 0.1
    c.train.update(num_epochs=0, num_steps=12, eval_every_steps=6, log_every=6, checkpoint_every_steps=6)
    c.eval.update(batch_size=64, ks=(5, 10))
    c.privacy.update(mode=mode, epsilon=4.0, users_per_step=16, windows_per_user=2)
    workdir = str(tmp_path / "run")
    results = train.train_and_evaluate(c, workdir)
    on_disk = json.load(open(os.path.join(workdir, "results.json")))
    privacy = on_disk["privacy"]
    assert privacy["mode"] == mode and privacy["steps"] == 12 and privacy["population"] == 180
    if mode == "fedavg":
        assert not privacy["private"] and "epsilon" not in privacy
    else:
        assert privacy["private"] and 0 < privacy["epsilon"] <= 4.0 and privacy["noise_multiplier"] > 0
    if mode != "dp_sgd":
        assert privacy["rounds"] == 12
        assert privacy["upload_bytes_per_client_round"] == 4 * on_disk["num_params"]  # float32
    assert results["dataset"]["split"]["held_out_users"] == 20
    assert 0.0 <= membership.attack(workdir)["auc"] <= 1.0


# --- the study's arms (experiments/privacy/privacy.py) ------------------------------------


def privacy_study():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "privacy", "privacy.py")
    spec = importlib.util.spec_from_file_location("privacy_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode,epsilon,expected_mode", [
    ("dp_sgd", "8", "dp_sgd"), ("dp_sgd", "inf", "off"), ("dp_sgd", "clip", "dp_sgd"),
    ("fedavg", "8", "dp_fedavg"), ("fedavg", "inf", "fedavg")])
def test_privacy_study_arms_are_valid_configs(mode, epsilon, expected_mode, monkeypatch):
    """Each arm's overrides name real keys and pass validation; ∞ arms carry no ε (nor does the
    clipping-only diagnostic, whose noise is fixed), and the DP-SGD arms keep the workdir names
    of the runs made before the federated arms existed."""
    from transrec_jax.studies import study

    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    module = privacy_study()
    args = module.argparse.Namespace(epochs=2, max_len=20, users_per_step=64, clip_norm=1.0, learning_rate=0.0,
                                     local_steps=3, client_learning_rate=0.05, workdir_root="/tmp/r",
                                     overrides="model.d_ff=32")
    run = module.make_run("synthetic", mode, epsilon, 1, args)
    c = study.base_config(run.config, "test")
    for key, value in run.overrides.items():
        study.check_value(c, key, value, "test")
        study.set_value(c, key, value)
    config_lib.validate(c)
    assert c.privacy.mode == expected_mode and c.seed == 1 and c.model.max_len == 20 and c.model.d_ff == 32
    assert ("privacy.epsilon" in run.overrides) == (epsilon not in ("inf", "clip"))
    assert c.privacy.noise_multiplier == (module.CLIP_ONLY_NOISE if epsilon == "clip" else 0.0)
    assert run.name == (f"epsilon={epsilon},seed=1" if mode == "dp_sgd" else f"fedavg,epsilon={epsilon},seed=1")
    if mode == "fedavg":
        assert c.privacy.local_steps == 3 and c.privacy.client_learning_rate == 0.05


def test_privacy_study_content_model_adds_public_item_features_in_its_own_workdirs(monkeypatch):
    """--model=content: the item_features config word (an item tower over the preset's item
    file), in workdirs apart from the ids model's runs."""
    from transrec_jax.studies import study

    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    module = privacy_study()
    args = module.argparse.Namespace(epochs=2, max_len=20, users_per_step=64, clip_norm=1.0, learning_rate=0.0,
                                     local_steps=3, client_learning_rate=0.05, workdir_root="/tmp/r",
                                     overrides="")
    ids, content = (module.make_run("ml-1m", "dp_sgd", "8", 0, args, m) for m in ("ids", "content"))
    c = study.base_config(content.config, "test")
    for key, value in content.overrides.items():
        study.set_value(c, key, value)
    config_lib.validate(c)
    assert c.model.item_tower == "sum" and c.dataset.item_features.endswith("movies.dat")
    assert content.name == ids.name and content.workdir != ids.workdir


def test_privacy_study_overrides_parse_values_and_reject_malformed_items():
    module = privacy_study()
    assert module.parse_overrides("model.d_model=16,model.item_tower=sum,train.bf16=True") == {
        "model.d_model": 16, "model.item_tower": "sum", "train.bf16": True}
    for bad in ("model.d_model", "d_model=16"):
        with pytest.raises(SystemExit, match="--overrides: expected comma-separated section.key=value"):
            module.parse_overrides(bad)


def test_privacy_study_tables_summarise_seeds_with_an_infinite_epsilon():
    """The clipping-only arm spends ε = inf in every seed: its cell is inf, not a crash."""
    module = privacy_study()
    assert module.mean_std([float("inf"), float("inf")], 2) == "inf"
    assert module.mean_std([1.0, 3.0], 1) == "2.0 ± 1.4"
    assert module.mean_std([0.5], 3) == "0.500" and module.mean_std([]) == "–"
