"""A workdir is bound to its config: refused, finished and restarted runs, checked before any write."""

import json
import os

import pytest

from transrec_jax import config as config_lib
from transrec_jax import train, workdir
from transrec_jax.config import ConfigError
from transrec_jax.data.errors import DataError


def tiny(tmp_path, **overrides):
    c = config_lib.base_config()
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=100, num_items=40, min_len=5, max_len=10)
    c.model.update(max_len=8, d_model=16, num_layers=1, num_heads=2, d_ff=16)
    c.train.update(num_epochs=0, num_steps=4, batch_size=16, eval_every_steps=2, log_every=2)
    c.eval.update(batch_size=64, ks=(5, 10))
    for key, value in overrides.items():
        config_lib.set_by_path(c, key, str(value))
    return c


def snapshot(path):
    """{relative path: bytes} of every file under `path`."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def bound_workdir(tmp_path, config, results=None):
    """A workdir as a run of `config` leaves it (a finished one when `results` is given)."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text(config.to_json(indent=2))
    (d / "metrics.jsonl").write_text('{"step": 2, "kind": "val", "ndcg@10": 0.1}\n')
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
    return str(d)


@pytest.mark.parametrize("key, value, named", [
    ("model.d_model", 32, "model.d_model: 16 there, 32 here"),
    ("train.learning_rate", 0.01, "train.learning_rate: 0.001 there, 0.01 here"),
    ("eval.ks", "1+5+10", "eval.ks: [5, 10] there, [1, 5, 10] here"),
    ("dataset.synthetic.num_items", 50, "dataset.synthetic.num_items: 40 there, 50 here"),
])
def test_another_config_is_refused_before_anything_is_written(tmp_path, key, value, named):
    run = bound_workdir(tmp_path, tiny(tmp_path))
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        train.train_and_evaluate(tiny(tmp_path, **{key: value}), run)
    message = str(err.value)
    assert "\n" not in message and named in message and "--restart" in message
    assert snapshot(run) == before
    assert not os.path.exists(tmp_path / "cache")  # refused before the data loaded


def test_an_old_run_with_removed_keys_at_their_values_is_this_config(tmp_path):
    config = tiny(tmp_path)
    old = json.loads(config.to_json())
    for key, value in config_lib.REMOVED.items():  # written before the keys were removed
        section, leaf = key.split(".")
        old[section][leaf] = value
    run = bound_workdir(tmp_path, config, results={"test": {"ndcg@10": 0.5}})
    (tmp_path / "run" / "config.json").write_text(json.dumps(old, indent=2))
    assert workdir.check(run, config) == {"test": {"ndcg@10": 0.5}}
    old["train"]["optimizer"] = "adamw"
    (tmp_path / "run" / "config.json").write_text(json.dumps(old, indent=2))
    with pytest.raises(ConfigError, match=r"train.optimizer='adamw': this version no longer"):
        workdir.check(run, config)


def test_keys_that_change_no_result_do_not_bind(tmp_path):
    run = bound_workdir(tmp_path, tiny(tmp_path), results={"test": {"ndcg@10": 0.5}})
    moved = tiny(tmp_path, **{"dataset.cache_dir": str(tmp_path / "elsewhere"),
                              "dataset.item_titles": "titles.csv"})
    assert train.train_and_evaluate(moved, run) == {"test": {"ndcg@10": 0.5}}


def test_finished_run_returns_its_results_without_rerunning(tmp_path):
    stored = {"test": {"ndcg@10": 0.25}, "best_step": 2}
    run = bound_workdir(tmp_path, tiny(tmp_path), results=stored)
    before = snapshot(run)
    assert train.train_and_evaluate(tiny(tmp_path), run) == stored
    assert snapshot(run) == before  # no re-test, no new metrics row, timings untouched


def test_restart_discards_the_old_run_and_keeps_other_files(tmp_path):
    run = bound_workdir(tmp_path, tiny(tmp_path), results={"test": {}})
    (tmp_path / "run" / "launch.json").write_text("{}")  # a sweep's file: not the run's
    (tmp_path / "run" / "checkpoints" / "7").mkdir(parents=True)
    config = tiny(tmp_path, **{"model.d_model": 32})
    results = train.train_and_evaluate(config, run, restart=True)
    assert results["steps"] == 4 and results["config"]["model"]["d_model"] == 32
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "7")
    assert os.path.exists(tmp_path / "run" / "launch.json")
    recorded = config_lib.recorded_config(os.path.join(run, "config.json"))
    assert workdir.config_differences(recorded, config) == []


def test_missing_dataset_creates_no_workdir(tmp_path):
    c = tiny(tmp_path, **{"dataset.source": "local", "dataset.path": str(tmp_path / "none.csv")})
    with pytest.raises(DataError, match="no such file"):
        train.train_and_evaluate(c, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("make, expected", [
    (lambda p: (p / "file").write_text("x") and str(p / "file"), "exists and is not a directory"),
    (lambda p: (p / "file").write_text("x") and str(p / "file" / "run"), "is a file, not a directory"),
])
def test_unwritable_workdir_is_one_line_before_work(tmp_path, make, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        train.train_and_evaluate(tiny(tmp_path), make(tmp_path))
    assert "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "cache")


def test_the_process_count_binds_and_the_cluster_keys_do_not(tmp_path):
    config = tiny(tmp_path)
    run = str(tmp_path / "run")
    workdir.bind(run, config, num_processes=2)
    assert json.loads((tmp_path / "run" / "processes.json").read_text()) == {"num_processes": 2}
    other_process = tiny(tmp_path, **{"cluster.launch": "explicit", "cluster.process_id": 1,
                                      "cluster.num_processes": 2, "cluster.timeout_s": 5,
                                      "cluster.coordinator_address": "10.0.0.1:1234"})
    assert workdir.check(run, other_process, num_processes=2) is None
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        workdir.check(run, config, num_processes=1)
    assert str(err.value).startswith(f"config.cluster.num_processes: the run in {run} was started "
                                     "with 2 processes, this launch has 1") and "\n" not in str(err.value)
    assert workdir.check(run, config, num_processes=1, restart=True) is None
    assert snapshot(run) == before
    os.remove(tmp_path / "run" / "processes.json")  # a run written before the file: one process
    assert workdir.check(run, config) is None
    with pytest.raises(ConfigError, match="started with 1 process, this launch has 3"):
        workdir.check(run, config, num_processes=3)
