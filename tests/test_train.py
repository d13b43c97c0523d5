"""train_and_evaluate end to end on tiny synthetic data: learning, resume, devices, errors."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from transrec_jax import checkpoint
from transrec_jax import config as config_lib
from transrec_jax import train
from transrec_jax.metric_log import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(tmp_path, **overrides):
    """SASRec on a small planted-structure dataset: learns in well under a minute on CPU."""
    c = config_lib.base_config()
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=600, num_items=120, min_len=10, max_len=30)
    c.model.update(max_len=20, d_model=32, num_layers=1, num_heads=2, d_ff=64)
    c.train.update(num_epochs=0, num_steps=80, batch_size=32, eval_every_steps=40, log_every=10,
                   checkpoint_every_steps=40, learning_rate=3e-3)
    c.eval.update(batch_size=128, ks=(5, 10))
    for key, value in overrides.items():
        config_lib.set_by_path(c, key, str(value))
    return c


def _reproduce_script(name):
    """experiments/reproduce/<name>.py as a module."""
    import importlib.util

    path = os.path.join(REPO, "experiments", "reproduce", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    workdir = str(tmp / "run")
    results = train.train_and_evaluate(tiny_config(tmp), workdir)
    return workdir, results


def test_end_to_end_loss_falls_and_beats_popularity(trained):
    workdir, results = trained
    losses = [r["loss"] for r in read_metrics(workdir) if r["kind"] == "train"]
    assert len(losses) == 8 and np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2])
    assert results["test"]["ndcg@10"] > results["test_popularity"]["ndcg@10"] + 0.03
    assert results["test"]["hr@10"] > results["test_popularity"]["hr@10"]
    on_disk = json.load(open(os.path.join(workdir, "results.json")))
    assert on_disk["protocol"]["ranking"] == "full (all items)" and on_disk["protocol"]["history_masked"]
    # Slices (tests/test_evaluate.py checks their values): every test user in one group each.
    for key in ("test_slices", "test_popularity_slices"):
        for groups in on_disk[key].values():
            assert sum(g["users"] for g in groups.values()) == on_disk["dataset"]["users"]
    assert set(on_disk["test_slices"]["target_popularity"]) <= {"head", "torso", "tail", "cold"}
    assert on_disk["test_content_knn"] is None  # (no item features: no content baseline)
    assert on_disk["best_step"] in (40, 80) and on_disk["dataset"]["users"] == 600
    assert os.path.isdir(os.path.join(workdir, "tensorboard"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_packed_rows_train_the_same_run(tmp_path, trained, model):
    """train.pack_rows changes the layout, not the run: without dropout (whose masks follow the
    layout) a packed run's losses and test metrics equal the unpacked run's up to rounding."""
    cache_parent = type(tmp_path)(os.path.dirname(trained[0]))
    common = {"model.name": model, "model.dropout": 0.0, "model.attention_dropout": 0.0,
              "train.num_steps": 40}
    runs = {}
    for pack in (False, True):
        workdir = str(tmp_path / f"pack={pack}")
        config = tiny_config(cache_parent, **common, **{"train.pack_rows": pack})
        runs[pack] = (train.train_and_evaluate(config, workdir), _losses(workdir))
    (plain, plain_losses), (packed, packed_losses) = runs[False], runs[True]
    if model == "sasrec":  # BERT4Rec's cloze masks are drawn over the layout too
        np.testing.assert_allclose([l for _, l in packed_losses], [l for _, l in plain_losses],
                                   rtol=2e-4)
        for k in ("hr@10", "ndcg@10"):
            assert packed["test"][k] == pytest.approx(plain["test"][k], abs=2e-3)
    assert packed["test"]["ndcg@10"] > packed["test_popularity"]["ndcg@10"]


def test_last_vs_best_reevaluates_both_kept_checkpoints(trained):
    """experiments/reproduce/last_vs_best.py: the best checkpoint's test metrics are the run's
    reported ones, its validation the best logged; the last checkpoint is the final step."""
    workdir, results = trained
    got = _reproduce_script("last_vs_best").checkpoint_metrics(workdir)
    val = {r["step"]: r["ndcg@10"] for r in read_metrics(workdir) if r["kind"] == "val"}
    assert got["best"]["step"] == results["best_step"] and got["last"]["step"] == 80
    assert got["best"]["test_ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)
    assert got["best"]["test_hr@10"] == pytest.approx(results["test"]["hr@10"], abs=1e-6)
    for ckpt in ("best", "last"):
        assert got[ckpt]["val_ndcg@10"] == pytest.approx(val[got[ckpt]["step"]], abs=1e-6)


def test_run_with_an_epoch_warmup_loads_for_serving(tmp_path, trained):
    """load_run (recommend, export, ensemble.py) restores a run whose warm-up is in epochs
    (train.warmup_epochs, configs/sasrec_best.py's `fast`): its schedule needs no data there."""
    from transrec_jax.serving import load_run

    cache_parent = type(tmp_path)(os.path.dirname(trained[0]))
    workdir = str(tmp_path / "warmup_epochs")
    config = tiny_config(cache_parent, **{"train.warmup_epochs": 0.5, "train.num_steps": 8,
                                          "train.eval_every_steps": 8, "train.checkpoint_every_steps": 8})
    results = train.train_and_evaluate(config, workdir)
    run = load_run(workdir)
    assert run.step == results["best_step"] == 8
    assert run.config.train.warmup_epochs == 0.5


@pytest.mark.slow
def test_ensemble_run_trains_and_serves(tmp_path, trained):
    """model.ensemble_size: one run trains K members, checkpoints them and serves their sum."""
    from transrec_jax.recommend import Recommender

    cache_parent = type(tmp_path)(os.path.dirname(trained[0]))
    workdir = str(tmp_path / "ensemble")
    config = tiny_config(cache_parent, **{"model.ensemble_size": 2, "train.num_steps": 40})
    results = train.train_and_evaluate(config, workdir)
    assert results["test"]["ndcg@10"] > results["test_popularity"]["ndcg@10"] + 0.03
    rec = Recommender(workdir)
    history = rec.dataset.item_ids[rec.dataset.sequence(0)][-5:]
    items, scores = rec.top_k(np.array([0]), np.array([5]), rec.item_index(history), 10)
    assert not set(items[0]) & set(history) and np.all(np.diff(scores[0]) <= 0)


@pytest.mark.slow
def test_ensemble_script_of_a_run_with_itself_equals_the_run(trained):
    """experiments/reproduce/ensemble.py: twice the same scores rank as the scores do."""
    module = _reproduce_script("ensemble")
    workdir, results = trained
    run = module.load_run(workdir)
    split, model = run.split(), run.model()
    alone = module.evaluate_model(run.config, run.dataset, split, model)
    # a second load: members share no modules
    twice = module.evaluate_model(run.config, run.dataset, split,
                                  module.ensemble_of([run, module.load_run(workdir)]).model())
    assert alone["test_ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)
    for key, value in alone.items():
        assert twice[key] == pytest.approx(value, abs=1e-6)


def test_recommend_excludes_history_and_maps_ids(trained):
    from transrec_jax.data.errors import DataError
    from transrec_jax.recommend import Recommender

    rec = Recommender(trained[0])
    history = rec.dataset.item_ids[rec.dataset.sequence(0)][-5:]
    hist_idx = rec.item_index(history)
    items, scores = rec.top_k(np.array([0]), np.array([5]), hist_idx, 10)
    assert items.shape == (1, 10) and not set(items[0]) & set(history)
    assert np.all(np.diff(scores[0]) <= 0)
    with pytest.raises(DataError, match=r"not in (the )?dataset"):
        rec.item_index(["999999"])


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(workdir) if r["kind"] == "train"]


_KILL_AT_STEP = textwrap.dedent("""
    import os, signal, sys, time
    from transrec_jax import train
    from transrec_jax.data import batching
    kill_after, ckpt = int(sys.argv[2]), os.path.join(sys.argv[1], "checkpoints", sys.argv[2])
    real_next, calls = batching.TrainBatcher.__next__, [0]
    def next_or_die(self):
        calls[0] += 1
        if calls[0] == kill_after + 1:  # the checkpoint at `kill_after` was started: let it land, then die
            for _ in range(600):
                if os.path.isdir(ckpt):
                    break
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_next(self)
    batching.TrainBatcher.__next__ = next_or_die
    sys.path.insert(0, {tests!r})
    from test_train import tiny_config
    import pathlib
    train.train_and_evaluate(tiny_config(pathlib.Path(sys.argv[3])), sys.argv[1])
""")


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, trained):
    straight_dir, straight = trained
    workdir = str(tmp_path / "killed")
    cache_parent = os.path.dirname(straight_dir)  # reuse the dataset cache
    script = _KILL_AT_STEP.format(tests=os.path.join(REPO, "tests"))
    proc = subprocess.run([sys.executable, "-c", script, workdir, "40", cache_parent],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = train.train_and_evaluate(tiny_config(type(tmp_path)(cache_parent)), workdir)
    np.testing.assert_allclose([l for _, l in _losses(workdir)], [l for _, l in _losses(straight_dir)],
                               rtol=1e-5)
    assert [s for s, _ in _losses(workdir)] == [s for s, _ in _losses(straight_dir)]
    for k in ("hr@10", "ndcg@10", "mrr@10"):
        assert resumed["test"][k] == pytest.approx(straight["test"][k], abs=1e-6)


_FOUR_DEVICES = textwrap.dedent("""
    import json, os, pathlib, sys
    # Single-threaded Eigen inside each device: on 2 busy cores the 4 device programs' all-reduce
    # rendezvous timed out (XLA aborts after 40 s; 1 run in ~9 under load) with Eigen's pool on.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
                               " --xla_cpu_multi_thread_eigen=false")
    sys.path.insert(0, {tests!r})
    import jax
    from transrec_jax import train
    from test_train import tiny_config
    results = train.train_and_evaluate(tiny_config(pathlib.Path(sys.argv[1])), sys.argv[2])
    print(json.dumps({{"devices": jax.device_count(), "test": results["test"]}}))
""")


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path, trained):
    """The same run on a 4-device data-parallel mesh (batch sharded, params replicated)."""
    one_dir, one = trained
    script = _FOUR_DEVICES.format(tests=os.path.join(REPO, "tests"))
    workdir = str(tmp_path / "four")
    proc = subprocess.run([sys.executable, "-c", script, os.path.dirname(one_dir), workdir],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    four = json.loads(proc.stdout.strip().splitlines()[-1])
    assert four["devices"] == 4
    np.testing.assert_allclose([l for _, l in _losses(workdir)], [l for _, l in _losses(one_dir)],
                               rtol=1e-4)
    for k in ("hr@10", "ndcg@10"):
        assert four["test"][k] == pytest.approx(one["test"][k], abs=2e-3)


def test_train_on_val_item_tests_the_final_state(tmp_path, trained, monkeypatch):
    """dataset.train_on_val_item ([ZL24]'s protocol): the test evaluates the last step's params,
    not the checkpoint validation picked, and the results say so. With eval.test_every_eval
    (their train.py tests every epoch) each validation step's test metrics are recorded, the
    last of them those of the tested state."""
    cache_parent = type(tmp_path)(os.path.dirname(trained[0]))
    workdir = str(tmp_path / "val_trained")
    config = tiny_config(cache_parent, **{"dataset.train_on_val_item": True, "train.patience": 0,
                                          "train.num_steps": 40, "train.eval_every_steps": 20,
                                          "eval.test_every_eval": True})
    restore = checkpoint.Checkpoints.restore

    def never_best(self, state, *args, best=False, **kwargs):
        assert not best, "restored the best-validation checkpoint"
        return restore(self, state, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpoints, "restore", never_best)
    results = train.train_and_evaluate(config, workdir)
    assert results["tested_step"] == 40
    trace = {row.pop("step"): row for row in results["test_every_eval"]}
    assert sorted(trace) == [20, 40]
    assert trace[40] == pytest.approx(results["test"], abs=1e-6)
    assert trace[20]["ndcg@10"] != trace[40]["ndcg@10"]  # scored with step 20's params
    logged = [r["step"] for r in read_metrics(workdir) if r["kind"] == "test_every_eval"]
    assert logged == [20, 40]
    assert results["dataset"]["split"]["val_item_trained"]
    assert "trained on" in results["protocol"]["validation_item"]
    # one more training interaction per validated user than the plain split
    assert (results["dataset"]["split"]["train_interactions"]
            == trained[1]["dataset"]["split"]["train_interactions"] + results["dataset"]["split"]["val_users"])
    # serving loads the tested state too (load_run's default, `best`, is the final one here)
    got = _reproduce_script("last_vs_best").checkpoint_metrics(workdir)
    assert got["last"]["step"] == got["best"]["step"] == 40
    assert got["best"]["test_ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)


def test_non_finite_loss_stops_with_the_step(tmp_path):
    c = tiny_config(tmp_path, **{"train.learning_rate": 1e30, "train.num_steps": 20,
                                 "train.checkpoint_every_steps": 1})
    with pytest.raises(train.NonFiniteLossError, match=r"at step \d+") as err:
        train.train_and_evaluate(c, str(tmp_path / "nan"))
    bad_step, kept_step = map(int, re.findall(r"step (\d+)", str(err.value)))
    assert kept_step < bad_step
    kept = os.listdir(os.path.join(tmp_path, "nan", "checkpoints"))
    assert str(kept_step) in kept and all(int(k) < bad_step for k in kept if k.isdigit())


@pytest.mark.slow
def test_recommend_cli_writes_every_user_and_rejects_unknown_items(trained, tmp_path):
    workdir = trained[0]
    out = tmp_path / "top5.csv"
    proc = subprocess.run([sys.executable, "-m", "transrec_jax.recommend", f"--workdir={workdir}",
                           "--users=all", f"--output={out}", "--k=5"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = np.genfromtxt(out, delimiter=",", names=True, dtype=None, encoding=None)
    assert len(rows) == 600 * 5 and set(np.unique(rows["rank"])) == {1, 2, 3, 4, 5}
    ds = json.load(open(os.path.join(workdir, "results.json")))["dataset"]
    assert len(np.unique(rows["user"])) == ds["users"]
    bad = subprocess.run([sys.executable, "-m", "transrec_jax.recommend", f"--workdir={workdir}",
                          "--history=1,999999"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --history: item ids ['999999']")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_reuses_freed_blocks_without_page_faults():
    """A freed 64 MiB block is re-served from memory already mapped: no page faults per reuse."""
    script = textwrap.dedent("""
        import ctypes, resource, sys
        from transrec_jax import host_memory
        if sys.argv[1] == "keep":
            assert host_memory.keep_freed_memory()
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        def touch_and_free(size=64 << 20):
            block = libc.malloc(size)
            ctypes.memset(block, 1, size)
            libc.free(ctypes.c_void_p(block))
        touch_and_free()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            touch_and_free()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
    """)
    faults = {
        mode: float(subprocess.run([sys.executable, "-c", script, mode], cwd=REPO, check=True,
                                   capture_output=True, text=True).stdout)
        for mode in ("default", "keep")
    }
    assert faults["default"] > 8000  # 16,384 4-KiB pages per fresh mmap
    assert faults["keep"] < 100


def test_release_free_memory_returns_a_kept_block_inside_the_heap():
    """A freed 64 MiB block below a live one stays resident under the keep policy until
    release_free_memory hands its pages back."""
    script = textwrap.dedent("""
        import ctypes
        from transrec_jax import host_memory
        assert host_memory.keep_freed_memory()
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        def rss_kib():
            return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
        block = libc.malloc(64 << 20)
        ctypes.memset(block, 1, 64 << 20)
        guard = libc.malloc(1024)  # keeps the freed block off the top of the heap
        libc.free(ctypes.c_void_p(block))
        kept = rss_kib()
        assert host_memory.release_free_memory()
        print(kept - rss_kib())
    """)
    released_kib = int(subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                                      capture_output=True, text=True).stdout)
    assert released_kib > 60 * 1024
