"""The recipe search (studies/tune.py): which run it chooses, when it stops stretching the
schedule, what it records, its one-line refusals; warm-up counted in epochs; one real search."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax import train
from transrec_jax.config import ConfigError
from transrec_jax.studies import runner, study, tune
from transrec_jax.studies.study import StudyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/sasrec_best.py:synthetic"


def fake_runs(monkeypatch, val_by_run: dict[str, float]):
    """runner.launch/record replaced: a run 'trains' by writing results.json, its validation
    value from `val_by_run` (by run name); the launched names are returned in order."""
    launched = []

    def launch(run, env=None):
        os.makedirs(run.workdir, exist_ok=True)
        with open(run.path("results.json"), "w") as f:
            json.dump({}, f)
        launched.append(run.name)
        return "done", ""

    def record(run, details=True):
        v = val_by_run[run.name]
        return {"val": {"ndcg@10": v}, "best_epoch": 3.0, "test": {"ndcg@10": v / 2, "hr@10": v},
                "wall_time_s": 10.0}

    monkeypatch.setattr(runner, "launch", launch)
    monkeypatch.setattr(runner, "record", record)
    monkeypatch.chdir(ROOT)
    return launched


def name(blocks, dropout, epochs):
    return f"blocks={blocks},dropout={dropout},epochs={epochs}"


def test_picks_the_best_shape_then_stretches_while_validation_rises(monkeypatch, tmp_path):
    vals = {name(2, 0.2, 20): 0.10, name(2, 0.5, 20): 0.12, name(4, 0.2, 20): 0.09,
            name(4, 0.5, 20): 0.11, name(2, 0.5, 40): 0.13, name(2, 0.5, 80): 0.125}
    launched = fake_runs(monkeypatch, vals)
    result = tune.search(CONFIG, str(tmp_path), seed=3, log=lambda line: None)
    assert launched == [name(b, p, 20) for b, p in tune.SHAPES] + [name(2, 0.5, 40), name(2, 0.5, 80)]
    assert result["chosen"]["run"] == name(2, 0.5, 40) and result["chosen"]["val"] == 0.13
    assert result["chosen"]["test"] == {"ndcg@10": 0.065, "hr@10": 0.13}
    assert result["cost_s"] == 60.0 and len(result["runs"]) == 6
    with open(tmp_path / "tune.json") as f:
        assert json.load(f) == json.loads(json.dumps(result))
    # The chosen config string trains exactly the chosen run (seed aside).
    chosen = study.base_config(result["chosen_config"], "chosen")
    run = tune.make_run(CONFIG, 3, str(tmp_path), 2, 0.5, 40)
    direct = study.base_config(CONFIG, "base")
    for key, value in run.overrides.items():
        study.set_value(direct, key, value)
    chosen.unlock().seed = 3
    assert chosen.to_dict() == direct.to_dict()


def test_stops_at_the_first_longer_schedule_that_does_not_gain(monkeypatch, tmp_path):
    vals = {name(b, p, 20): 0.1 for b, p in tune.SHAPES} | {name(4, 0.5, 20): 0.2, name(4, 0.5, 40): 0.2}
    launched = fake_runs(monkeypatch, vals)
    result = tune.search(CONFIG, str(tmp_path), log=lambda line: None)
    assert launched[-1] == name(4, 0.5, 40) and len(launched) == 5  # a tie is no gain
    assert result["chosen"]["run"] == name(4, 0.5, 20)


def test_finished_runs_are_not_trained_again(monkeypatch, tmp_path):
    vals = {name(b, p, e): 0.1 + e / 1000 for b, p in tune.SHAPES for e in (20, 40, 80)}
    launched = fake_runs(monkeypatch, vals)
    first = tune.search(CONFIG, str(tmp_path), log=lambda line: None)
    assert first["chosen"]["epochs"] == tune.MAX_EPOCHS  # it stops at the cap
    n = len(launched)
    assert tune.search(CONFIG, str(tmp_path), log=lambda line: None)["chosen"] == first["chosen"]
    assert len(launched) == n


@pytest.mark.parametrize("config, named", [
    ("configs/nope.py:synthetic", "config file 'configs/nope.py' not found"),
    ("configs/hstu.py:synthetic", "the search's settings do not apply: config.model.attention_dropout=0.5"),
    ("configs/sasrec_best.py:synthetic,model.d_model=-1", "config.model.d_model"),
])
def test_unusable_config_is_one_line_before_any_run(monkeypatch, tmp_path, config, named):
    launched = fake_runs(monkeypatch, {})
    with pytest.raises(StudyError) as err:
        tune.search(config, str(tmp_path), log=lambda line: None)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert launched == [] and not os.listdir(tmp_path)


def test_warmup_epochs_scale_with_the_epoch_and_override_warmup_steps():
    c = config_lib.base_config()
    c.train.update(learning_rate=1e-2, warmup_steps=3, warmup_epochs=2.0)
    assert train.warmup_steps(c.train, 5) == 10
    tx = train.make_optimizer(c.train, 100, steps_per_epoch=5)
    params = np.zeros(1, np.float32)
    state, lrs = tx.init(params), []
    for _ in range(12):  # a constant gradient: Adam's step is lr(t) (bias-corrected m/sqrt(v) = 1)
        updates, state = tx.update(np.ones(1, np.float32), state, params)
        lrs.append(-float(updates[0]))
    np.testing.assert_allclose(lrs, [1e-2 * min(t / 10, 1) for t in range(12)], rtol=1e-5, atol=1e-9)
    c.train.warmup_epochs = 0.0
    assert train.warmup_steps(c.train, 5) == 3
    c.train.warmup_epochs = -1.0
    with pytest.raises(ConfigError, match=r"config.train.warmup_epochs=-1.0: expected >= 0"):
        config_lib.validate(c)
    c.train.warmup_epochs = 1.0
    with pytest.raises(ValueError, match="steps per epoch"):
        train.warmup_steps(c.train, 0)


@pytest.mark.slow  # six tiny real runs, one after another (~2 min on 2 cores)
def test_a_real_search_trains_and_records_its_choice(monkeypatch, tmp_path):
    monkeypatch.setattr(tune, "SHAPES", [(1, 0.1), (1, 0.3)])
    monkeypatch.setattr(tune, "FIRST_EPOCHS", 1)
    monkeypatch.setattr(tune, "MAX_EPOCHS", 4)
    monkeypatch.chdir(ROOT)
    config = ("configs/sasrec_best.py:synthetic,model.d_model=16,model.d_ff=16,model.max_len=20,"
              "dataset.synthetic.num_users=200,dataset.synthetic.num_items=50,"
              f"dataset.cache_dir={tmp_path / 'cache'},train.batch_size=32,eval.batch_size=64")
    result = tune.search(config, str(tmp_path / "search"), seed=1, log=lambda line: None)
    assert [r["epochs"] for r in result["runs"][:2]] == [1, 1]
    assert 3 <= len(result["runs"]) <= 4 and result["chosen"]["val"] == max(r["val"] for r in result["runs"])
    for r in result["runs"]:
        with open(tmp_path / "search" / r["run"] / "results.json") as f:
            done = json.load(f)
        assert done["config"]["seed"] == 1 and done["config"]["train"]["warmup_epochs"] == 2
        assert done["config"]["model"]["num_layers"] == r["blocks"] and done["epochs"] == r["epochs"]
        assert r["test"] == done["test"]
    assert result["cost_s"] == pytest.approx(sum(r["wall_time_s"] for r in result["runs"]))
