"""Checkpoints that survive damage, never hold a non-finite state and lose at most one
evaluation interval; metrics.jsonl and TensorBoard consistent after a kill and a resume.

The damage and kill tests end with the same run as an uninterrupted one: the same losses at the
same steps, the same test metrics, results.json, and each (kind, step, metric) once in both logs.
"""

import collections
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_train import REPO, tiny_config
from transrec_jax import checkpoint, train
from transrec_jax.checkpoint import Checkpoints
from transrec_jax.data import load
from transrec_jax.metric_log import MetricLog, read_metrics


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: checkpoints/{40,80}, best/80 (validation at 40 and 80)."""
    tmp = tmp_path_factory.mktemp("straight")
    workdir = str(tmp / "run")
    return workdir, train.train_and_evaluate(tiny_config(tmp), workdir)


def _cache_parent(straight_dir, tmp_path):
    return type(tmp_path)(os.path.dirname(straight_dir))  # reuse the dataset cache


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(workdir) if r["kind"] == "train"]


def _tensorboard_points(workdir) -> collections.Counter:
    """(kind, step, metric) → how often the TensorBoard event files hold it (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    points = collections.Counter()
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        data, i = open(path, "rb").read(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                kind, name = value.tag.split("/", 1)
                points[(kind, event.step, name)] += 1
    return points


def _jsonl_points(workdir) -> collections.Counter:
    return collections.Counter((r["kind"], r["step"], k.replace("@", "_at_"))
                               for r in read_metrics(workdir) for k in r if k not in ("step", "kind"))


def assert_logs_consistent(workdir, straight_dir):
    jsonl, tb = _jsonl_points(workdir), _tensorboard_points(workdir)
    assert max(jsonl.values()) == 1 and max(tb.values()) == 1
    assert set(jsonl) == set(tb) == set(_jsonl_points(straight_dir))


def assert_same_run(workdir, results, straight):
    straight_dir, straight_results = straight
    assert _losses(workdir) == _losses(straight_dir)  # bitwise: same steps, same losses
    for k, v in straight_results["test"].items():
        assert results["test"][k] == pytest.approx(v, rel=1e-6, abs=1e-7), k
    assert results["best_step"] == straight_results["best_step"]
    assert os.path.exists(os.path.join(workdir, "results.json"))
    assert_logs_consistent(workdir, straight_dir)


def _restores_intact(workdir, config, step, *, best=False) -> bool:
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda *_: None)
    _, _, state = train.init_state(config, dataset.num_items, 1, jax.random.key(0))
    checkpoints = Checkpoints(workdir, 2)
    try:
        restored, _ = checkpoints.restore(state, best=best, step=step)
    finally:
        checkpoints.close()
    return restored is not None and not checkpoints.skipped


def _damage(path, how):
    data = open(path, "rb").read()
    if how == "truncate":
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "flip":  # one bit in the middle
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        open(path, "wb").write(bytes(flipped))
    elif how == "edit_batch":  # valid JSON that resumes elsewhere in the data
        text = data.decode()
        assert '"batch": 4' in text
        open(path, "w").write(text.replace('"batch": 4', '"batch": 3', 1))
    elif how == "delete":
        os.remove(path)
    else:
        raise ValueError(how)


def _relaunch_copy(straight_dir, tmp_path, damage):
    """A copy of the finished run without results.json (a run killed after its last checkpoint),
    with `damage` [(glob under the workdir, how)] done to the largest file each glob matches."""
    workdir = str(tmp_path / "damaged")
    shutil.copytree(straight_dir, workdir)
    os.remove(os.path.join(workdir, "results.json"))
    for pattern, how in damage:
        paths = glob.glob(os.path.join(workdir, pattern))
        assert paths, pattern
        _damage(max(paths, key=os.path.getsize), how)
    return workdir


_ARRAYS = "state/ocdbt.process_0/d/*"  # the array data files


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no traceback noise
@pytest.mark.parametrize("target,how", [
    # The default tier damages the array data and the meta; `-m slow` every other file and way.
    (_ARRAYS, "flip"), ("meta/metadata", "edit_batch"),
    *[pytest.param(target, how, marks=pytest.mark.slow) for target, how in [
        (_ARRAYS, "truncate"), (_ARRAYS, "delete"),
        ("state/_METADATA", "truncate"), ("state/_METADATA", "delete"),
        ("state/manifest.ocdbt", "flip"), ("state/manifest.ocdbt", "delete"),
        ("meta/metadata", "truncate"), ("meta/metadata", "delete")]],
])
def test_damaged_newest_checkpoint_is_skipped(tmp_path, capsys, straight, target, how):
    straight_dir, _ = straight
    workdir = _relaunch_copy(straight_dir, tmp_path, [(f"checkpoints/80/{target}", how)])
    config = tiny_config(_cache_parent(straight_dir, tmp_path))
    capsys.readouterr()
    results = train.train_and_evaluate(config, workdir)
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if "checkpoints/80" in line]
    assert len(skipped) == 1 and "skipped" in skipped[0], out
    assert "resumed from step 40" in out
    assert_same_run(workdir, results, straight)
    # The damaged step was moved aside, and the relaunch saved step 80 again, intact.
    assert os.path.isdir(os.path.join(workdir, "damaged_checkpoints", "checkpoints", "80"))
    assert _restores_intact(workdir, config, 80)


def test_harmless_damage_resumes_from_the_verified_newest_checkpoint(tmp_path, capsys, straight):
    """Without _CHECKPOINT_METADATA Orbax still restores every array; the fingerprints in meta
    prove them unchanged, so nothing is skipped."""
    straight_dir, _ = straight
    workdir = _relaunch_copy(straight_dir, tmp_path, [("checkpoints/80/_CHECKPOINT_METADATA", "delete")])
    capsys.readouterr()
    results = train.train_and_evaluate(tiny_config(_cache_parent(straight_dir, tmp_path)), workdir)
    out = capsys.readouterr().out
    assert "resumed from step 80" in out and "skipped" not in out
    assert_same_run(workdir, results, straight)


@pytest.mark.slow
def test_all_checkpoints_damaged_starts_fresh(tmp_path, capsys, straight):
    straight_dir, _ = straight
    workdir = _relaunch_copy(straight_dir, tmp_path, [("checkpoints/80/meta/metadata", "truncate"),
                                                      (f"checkpoints/40/{_ARRAYS}", "flip")])
    capsys.readouterr()
    results = train.train_and_evaluate(tiny_config(_cache_parent(straight_dir, tmp_path)), workdir)
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("checkpoint ") and "skipped" in line]) == 2
    assert [line for line in out if line.startswith("warning:")] == [
        "warning: no checkpoint restores (2 skipped); starting from step 0"]
    assert not any(line.startswith("resumed") for line in out)
    assert_same_run(workdir, results, straight)


def test_damaged_best_checkpoint_tests_the_periodic_one_of_its_step(tmp_path, capsys, straight):
    straight_dir, _ = straight
    workdir = _relaunch_copy(straight_dir, tmp_path, [(f"best/80/{_ARRAYS}", "flip")])
    capsys.readouterr()
    results = train.train_and_evaluate(tiny_config(_cache_parent(straight_dir, tmp_path)), workdir)
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if "best/80" in line and "skipped" in line]) == 1
    assert "no best checkpoint restores: testing the periodic checkpoint of step 80 instead" in out
    assert_same_run(workdir, results, straight)


@pytest.mark.parametrize("part,bad_step,kept_step", [
    ("params", 30, 20), pytest.param("opt_state", 80, 70, marks=pytest.mark.slow)])
def test_non_finite_state_behind_a_finite_loss_is_never_saved(tmp_path, monkeypatch, straight, part,
                                                             bad_step, kept_step):
    """The step's loss comes from the previous parameters, so it is finite while the new state is
    not; step 80 would have been a periodic and a best save."""
    real_step = train.train_step

    def poisoned_step(state, batch, key, **kwargs):
        new, metrics = real_step(state, batch, key, **kwargs)
        leaves, treedef = jax.tree.flatten(new[part])
        i = next(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.floating))
        leaves[i] = jnp.where(new["step"] >= bad_step, jnp.nan, leaves[i]).astype(leaves[i].dtype)
        return {**new, part: jax.tree.unflatten(treedef, leaves)}, metrics

    monkeypatch.setattr(train, "train_step", poisoned_step)
    config = tiny_config(_cache_parent(straight[0], tmp_path), **{"train.checkpoint_every_steps": 10})
    workdir = str(tmp_path / "nan")
    with pytest.raises(train.NonFiniteLossError) as err:
        train.train_and_evaluate(config, workdir)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"non-finite parameters or optimizer state at step {bad_step} ")
    assert message.endswith(f"the last good checkpoint is kept (step {kept_step})")
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert saved and max(saved) == kept_step
    best = [int(s) for s in os.listdir(os.path.join(workdir, "best")) if s.isdigit()]
    assert all(b < bad_step for b in best)
    assert _restores_intact(workdir, config, kept_step)
    val_steps = [r["step"] for r in read_metrics(workdir) if r["kind"] == "val"]
    assert all(s < bad_step for s in val_steps)  # no validation of a non-finite state


def test_checkpoint_inspect_fingerprint_sees_every_single_bit():
    state = {"w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4), "h": jnp.ones(5, jnp.bfloat16),
             "n": jnp.array(7, jnp.int32)}
    finite, prints = checkpoint.inspect(state)
    assert finite and len(prints) == 3
    bits = np.asarray(state["w"]).view(np.uint32).copy()
    for index in (0, 5, 11):
        for bit in (0, 17, 31):
            flipped = bits.copy()
            flipped.flat[index] ^= np.uint32(1 << bit)
            other = {**state, "w": jnp.asarray(flipped.view(np.float32))}
            assert checkpoint.inspect(other)[1] != prints
    assert checkpoint.inspect({**state, "h": state["h"].at[2].set(jnp.inf)})[0] is False


def test_metric_log_survives_a_torn_last_line_and_replays_tensorboard(tmp_path):
    workdir = str(tmp_path)
    rows = [{"step": s, "kind": "train", "loss": 1.0 / s} for s in (10, 20, 30)]
    rows.append({"step": 20, "kind": "val", "hr@10": 0.5})
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write('{"step": 40, "kind": "tra')  # a kill mid-write
    assert read_metrics(workdir) == rows
    log = MetricLog(workdir, 20)  # resuming from step 20
    log.write(30, "train", {"loss": 0.25})
    log.close()
    expected = [rows[0], rows[1], rows[3], {"step": 30, "kind": "train", "loss": 0.25}]
    assert read_metrics(workdir) == expected
    assert _tensorboard_points(workdir) == _jsonl_points(workdir)
    log = MetricLog(workdir, 30)  # a second resume replays again: still one point each
    log.write(30, "test", {"hr@10": 0.7})
    log.close()
    log = MetricLog(workdir, 30)  # test rows are written again by every launch
    log.close()
    assert read_metrics(workdir) == expected
    assert _tensorboard_points(workdir) == _jsonl_points(workdir)
    assert len(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))) == 1



def test_metric_log_of_a_process_that_does_not_write_touches_nothing(tmp_path):
    workdir = str(tmp_path)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write('{"step": 10, "kind": "train", "loss": 1.0}\n{"step": 20, "kind": "train", "loss": 0.5}\n')
    before = os.listdir(workdir), open(os.path.join(workdir, "metrics.jsonl")).read()
    log = MetricLog(workdir, 10, write=False)  # resuming from 10 would drop the step-20 row
    log.write(20, "train", {"loss": 0.25})
    log.close()
    assert (os.listdir(workdir), open(os.path.join(workdir, "metrics.jsonl")).read()) == before
    assert MetricLog(workdir, 10).writes  # by default process 0 writes: this process

_KILLED_RUN = textwrap.dedent("""
    import json, os, pathlib, signal, sys, time
    sys.path.insert(0, {tests!r})
    from transrec_jax import checkpoint, train
    from transrec_jax.data import batching
    from test_train import tiny_config
    workdir, cache_parent, point, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    overrides = json.loads(sys.argv[5])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid_step":  # inside step `at`: its batch drawn, nothing of it logged or saved
        real_next, calls = batching.TrainBatcher.__next__, [0]
        landed = os.path.join(workdir, "checkpoints", sys.argv[6])
        def next_or_die(self):
            calls[0] += 1
            batch = real_next(self)
            if calls[0] == at:
                for _ in range(600):  # the asynchronous save before it has committed (on a busy machine)
                    if os.path.isdir(landed):
                        break
                    time.sleep(0.05)
                die()
            return batch
        batching.TrainBatcher.__next__ = next_or_die
    else:
        real_save = checkpoint.Checkpoints.save
        def save_or_die(self, step, state, meta, *, best=False, **kwargs):
            real_save(self, step, state, meta, best=best, **kwargs)
            if step != at or best != (point != "after_periodic_save"):
                return
            if point != "mid_best_save":  # else: its commit still in flight
                self.wait()
            die()
        checkpoint.Checkpoints.save = save_or_die
    train.train_and_evaluate(tiny_config(pathlib.Path(cache_parent), **overrides), workdir)
""")


@pytest.mark.parametrize("point,at,resume_step", [
    ("mid_best_save", 80, 40),        # the best save of step 80 half-written
    pytest.param("mid_step", 60, 40, marks=pytest.mark.slow),  # between validations
    pytest.param("after_periodic_save", 40, 40, marks=pytest.mark.slow),  # after a validation's save
    pytest.param("after_best_save", 80, 40, marks=pytest.mark.slow),  # its periodic save never started
])
def test_kill_resumes_from_the_last_validation(tmp_path, capsys, straight, point, at, resume_step):
    """checkpoint_every_steps beyond the run: validations alone checkpoint (every 40 steps)."""
    straight_dir, _ = straight
    overrides = {"train.checkpoint_every_steps": 1000}
    cache_parent = os.path.dirname(straight_dir)
    workdir = str(tmp_path / "killed")
    script = _KILLED_RUN.format(tests=os.path.join(REPO, "tests"))
    proc = subprocess.run([sys.executable, "-c", script, workdir, cache_parent, point, str(at),
                           json.dumps(overrides), str(resume_step)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    with open(os.path.join(workdir, "checkpoints", str(resume_step), "meta", "metadata")) as f:
        killed_s = json.load(f)["elapsed_s"]  # the killed attempt's wall time at that save
    capsys.readouterr()
    results = train.train_and_evaluate(tiny_config(type(tmp_path)(cache_parent), **overrides), workdir)
    out = capsys.readouterr().out
    assert f"resumed from step {resume_step}" in out and "skipped" not in out
    # The run's wall time counts both attempts: the killed one's up to the checkpoint resumed from
    assert 0 < killed_s and results["wall_time_all_attempts"] is True
    assert results["wall_time_s"] == pytest.approx(killed_s + results["attempt_wall_time_s"], abs=0.5)
    if point == "after_best_save":
        assert "discarded best/80: newer than step 40, this run recomputes them" in out
    assert_same_run(workdir, results, straight)
