"""Entry points on bad input: one `error: ...` line, exit code 1, nothing written; and `recommend`
speaking the dataset's own ids and titles.

All cases run in a module fixture (one process per entry point, a fork per case) and each
test reads its own outcome.
"""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest
from ml_like import ml_like_config

from transrec_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SASREC = "--config=configs/sasrec.py:debug"


@pytest.fixture(scope="module")
def ml_like_run(tmp_path_factory):
    """A tiny run on files in the SASRec ML-1M layout: renumbered items, an id map, titles."""
    tmp = tmp_path_factory.mktemp("ml_like")
    c, movie_ids = ml_like_config(tmp, users=80)
    c.model.update(max_len=10, d_model=16, num_layers=1, num_heads=2, d_ff=16)
    c.train.update(num_epochs=0, num_steps=6, batch_size=16, eval_every_steps=3, log_every=3)
    c.eval.update(batch_size=64, ks=(5, 10))
    workdir = str(tmp / "run")
    train.train_and_evaluate(c, workdir)
    return workdir, movie_ids


def _cases(run, tmp):
    """name → (module, args, expected text of the error line)."""
    recommend = ("transrec_jax.recommend", f"--workdir={run}")
    return {
        # main: config syntax, values, paths, workdirs
        "unknown_key_flag": ("transrec_jax.main", [SASREC, "--config.train.foo=3", f"--workdir={tmp}/w"],
                             "config key 'train.foo' unknown"),
        "unknown_section_flag": ("transrec_jax.main", [SASREC, "--config.foo.bar=3", f"--workdir={tmp}/w"],
                                 "config key 'foo.bar' unknown"),
        "unknown_word": ("transrec_jax.main", [SASREC + ",fast", f"--workdir={tmp}/w"],
                         "config arg word 'fast' unknown"),
        "unknown_key_in_arg": ("transrec_jax.main", [SASREC + ",train.foo=1", f"--workdir={tmp}/w"],
                               "config key 'train.foo' unknown"),
        "bad_value_flag": ("transrec_jax.main", [SASREC, "--config.train.batch_size=abc", f"--workdir={tmp}/w"],
                           "--config.train.batch_size=abc"),
        "bad_value_in_arg": ("transrec_jax.main", [SASREC + ",train.batch_size=abc", f"--workdir={tmp}/w"],
                             "config key train.batch_size='abc': expected a int"),
        "bad_choice": ("transrec_jax.main", [SASREC, "--config.loss.name=mse", f"--workdir={tmp}/w"],
                       "config.loss.name='mse': expected one of"),
        "zero_interval": ("transrec_jax.main", [SASREC, "--config.train.checkpoint_every_steps=0",
                                                f"--workdir={tmp}/w"],
                          "config.train.checkpoint_every_steps=0: expected a positive integer"),
        "negative_log_every": ("transrec_jax.main", [SASREC, "--config.train.log_every=-5", f"--workdir={tmp}/w"],
                               "config.train.log_every=-5"),
        "missing_config_file": ("transrec_jax.main", ["--config=configs/nope.py", f"--workdir={tmp}/w"],
                                "no such config file (relative to the working directory"),
        "missing_workdir_flag": ("transrec_jax.main", [SASREC], "--workdir"),
        "extra_argument": ("transrec_jax.main", [SASREC, f"--workdir={tmp}/w", "now"], "unexpected arguments"),
        "workdir_under_file": ("transrec_jax.main", [SASREC, f"--workdir={REPO}/README.md/run"],
                               "is a file, not a directory"),
        "missing_dataset": ("transrec_jax.main", ["--config=configs/sasrec.py:local,debug",
                                                  "--config.dataset.path=no/such.txt", f"--workdir={tmp}/w"],
                            "no such file (relative paths"),
        "another_config": ("transrec_jax.main", [SASREC, "--config.model.d_model=32", f"--workdir={run}"],
                           "holds a run of another config"),
        # recommend: every argument
        "k_zero": (recommend[0], [recommend[1], "--history=1", "--k=0"], "--k=0: expected a positive integer"),
        "k_negative": (recommend[0], [recommend[1], "--history=1", "--k=-1"], "--k=-1"),
        "k_over_catalogue": (recommend[0], [recommend[1], "--history={m}", "--k=30"],
                             "--k=30: the catalogue has 30 items"),
        "k_over_catalogue_all": (recommend[0], [recommend[1], "--users=all", "--k=30"],
                                 "--k=30: the catalogue has 30 items"),
        "empty_history": (recommend[0], [recommend[1], "--history="], "--history='': expected item ids"),
        "blank_history_item": (recommend[0], [recommend[1], "--history={m},,{m}"], "expected item ids"),
        "unknown_history_item": (recommend[0], [recommend[1], "--history={m},4242424"],
                                 "item ids ['4242424'] are not in the dataset's catalogue"),
        "padding_id": (recommend[0], [recommend[1], "--history=0"], "item ids ['0']"),
        "neither_history_nor_users": (recommend[0], [recommend[1]], "give exactly one of"),
        "both_history_and_users": (recommend[0], [recommend[1], "--history={m}", "--users=all"],
                                   "give exactly one of"),
        "bad_output_extension": (recommend[0], [recommend[1], "--users=all", f"--output={tmp}/top.txt"],
                                 "expected a file ending in one of"),
        "output_folder_missing": (recommend[0], [recommend[1], "--users=all", f"--output={tmp}/no/top.csv"],
                                  "is not a writable directory"),
        "output_with_history": (recommend[0], [recommend[1], "--history={m}", f"--output={tmp}/x.csv"],
                                "--output goes with --users=all"),
        "not_a_workdir": (recommend[0], [f"--workdir={tmp}", "--history=1"], "config.json not found"),
        "bad_users_value": (recommend[0], [recommend[1], "--users=some"], "--users"),
        "item_shards_not_a_divisor": (recommend[0], [recommend[1], "--history={m}", "--item_shards=2"],
                                      "--item_shards=2: expected a divisor of the 1 devices"),
        "item_shards_zero": (recommend[0], [recommend[1], "--history={m}", "--item_shards=0"],
                             "--item_shards=0: expected a divisor"),
        "history_times_without_a_time_bias": (recommend[0], [recommend[1], "--history={m}",
                                                             "--history_times=5"],
                                              "--history_times: this run's model has no time bias"),
        "history_times_with_users_all": (recommend[0], [recommend[1], "--users=all",
                                                        "--history_times=5"],
                                         "--history_times goes with --history"),
        "query_time_without_history_times": (recommend[0], [recommend[1], "--history={m}",
                                                            "--query_time=5"],
                                             "--query_time goes with --history_times"),
        "query_time_for_a_model_without_one": (recommend[0], [recommend[1], "--users=all",
                                                              "--query_time=5"],
                                               "--query_time: this run's model reads no query time"),
        "user_without_user_features": (recommend[0], [recommend[1], "--history={m}", "--user=1"],
                                       "--user: this run's model has no user features"),
        "user_with_users_all": (recommend[0], [recommend[1], "--users=all", "--user=1"],
                                "--user goes with --history"),
        "user_features_without_user_features": (
            recommend[0], [recommend[1], "--history={m}", '--user_features={{"a": 1}}'],
            "--user_features: this run's model has no user features"),
        "user_features_not_an_object": (recommend[0], [recommend[1], "--history={m}",
                                                       "--user_features=[1]"],
                                        "--user_features='[1]': expected a JSON object"),
        "user_features_not_json": (recommend[0], [recommend[1], "--history={m}",
                                                  "--user_features={{gender: F}}"],
                                   "--user_features='{gender: F}': not JSON"),
        "user_and_user_features": (recommend[0], [recommend[1], "--history={m}", "--user=1",
                                                  '--user_features={{"a": 1}}'],
                                   "give at most one of --user"),
        "user_features_with_users_all": (recommend[0], [recommend[1], "--users=all",
                                                        '--user_features={{"a": 1}}'],
                                         "--user_features goes with --history"),
        "user_features_for_an_ensemble": (recommend[0], [recommend[1], recommend[1], "--history={m}",
                                                         '--user_features={{"a": 1}}'],
                                          "--user_features reads one run's model: give one "
                                          "--workdir, not an ensemble of 2"),
        "ensemble_with_a_non_run": (recommend[0], [recommend[1], f"--workdir={tmp}", "--history={m}"],
                                    "config.json not found"),
        # prepare, sweep, report
        "prepare_unknown_key": ("transrec_jax.prepare", [SASREC, "--config.dataset.foo=1"],
                                "config key 'dataset.foo' unknown"),
        "prepare_missing_file": ("transrec_jax.prepare", ["--config=configs/sasrec.py:local",
                                                          "--config.dataset.path=/no/such.csv"],
                                 "no such file"),
        "prepare_empty_path": ("transrec_jax.prepare", ["--config=configs/sasrec.py:local"],
                               "config.dataset.path is empty"),
        "sweep_missing_file": ("transrec_jax.sweep", ["--sweep=no_such_sweep.py"], "no_such_sweep.py"),
        "report_missing_file": ("transrec_jax.report", ["--sweep=no_such_sweep.py"], "no_such_sweep.py"),
    }


CASES = sorted(_cases("RUN", "TMP"))


# Imports an entry point once, then forks a child per case that runs it as `python -m` would
# (cli.run with that argv): the import, not the case, is what costs seconds.
_DRIVER = """
import importlib, json, os, sys
module = importlib.import_module(sys.argv[1])
results = {}
for name, args in json.loads(sys.argv[2]).items():
    err = os.path.join(sys.argv[3], name + ".stderr")
    pid = os.fork()
    if pid == 0:
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        sys.argv = [module.__file__, *args]
        try:
            module.cli.run(module.main)
        except SystemExit as e:
            code = e.code
            if isinstance(code, str):
                sys.stderr.write(code + "\\n")
                code = 1
            sys.stderr.flush()
            os._exit(code or 0)
        except BaseException:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(99)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    with open(err) as f:
        results[name] = {"returncode": os.waitstatus_to_exitcode(status), "stderr": f.read()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def outcomes(ml_like_run, tmp_path_factory):
    run, movie_ids = ml_like_run
    tmp = tmp_path_factory.mktemp("cases")
    logs = tmp_path_factory.mktemp("stderr")
    cases = _cases(run, tmp)
    by_module = {}
    for name, (module, args, _) in cases.items():
        by_module.setdefault(module, {})[name] = [a.format(m=movie_ids[0]) for a in args]

    def launch(module):
        proc = subprocess.run([sys.executable, "-c", _DRIVER, module, json.dumps(by_module[module]),
                               str(logs)], capture_output=True, text=True, cwd=REPO, timeout=600,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = {name: out for result in pool.map(launch, by_module) for name, out in result.items()}
    return {name: (done[name], cases[name][2]) for name in cases}, tmp


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line(outcomes, name):
    (proc, expected), tmp = outcomes[0][name], outcomes[1]
    assert proc["returncode"] == 1, (proc["returncode"], proc["stderr"][-2000:])
    lines = [line for line in proc["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc["stderr"][-2000:]
    assert expected in lines[0], lines[0]
    assert not os.path.exists(tmp / "w")  # no workdir for a run that never started
    assert not [f for f in os.listdir(tmp) if f.endswith((".csv", ".parquet", ".txt"))]


def test_recommend_speaks_original_ids_and_titles(ml_like_run, tmp_path):
    run, movie_ids = ml_like_run
    history = [str(m) for m in movie_ids[:3]]
    proc = subprocess.run([sys.executable, "-m", "transrec_jax.recommend", f"--workdir={run}",
                           f"--history={','.join(history)}", "--k=5"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]  # no log noise
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["rank", "item", "score", "title"] and len(rows) == 5
    for rank, item, score, title in rows:
        assert int(item) in movie_ids and item not in history
        assert title == f"Film {item} (1999)"
    out = tmp_path / "top.parquet"
    proc = subprocess.run([sys.executable, "-m", "transrec_jax.recommend", f"--workdir={run}",
                           "--users=all", f"--output={out}", "--k=3"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    assert set(table["item"]) <= set(movie_ids.tolist()) and len(table["item"]) == 80 * 3
    assert all(t == f"Film {i} (1999)" for i, t in zip(table["item"], table["title"]))
