"""Several processes, one run: cluster keys fail in one line, a missing coordinator or peer fails
within the timeout, and two processes killed mid-run and relaunched finish with the numbers of
one process (process 0 alone writing the workdir); another process count is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest

from transrec_jax import cluster
from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPLICIT = {"launch": "explicit", "coordinator_address": "127.0.0.1:1234", "num_processes": 2,
            "process_id": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- (a) the keys -----------------------------------------------------------------------

@pytest.mark.parametrize("overrides, named", [
    ({"launch": "slurm"},
     "config.cluster.launch='slurm': expected one of ('single', 'auto', 'explicit')"),
    ({"timeout_s": 0}, "config.cluster.timeout_s=0"),
    ({**EXPLICIT, "coordinator_address": ""},
     "config.cluster.coordinator_address='': launch='explicit' needs host:port"),
    ({**EXPLICIT, "coordinator_address": "10.0.0.1"}, "config.cluster.coordinator_address='10.0.0.1'"),
    ({**EXPLICIT, "coordinator_address": "10.0.0.1:x"}, "config.cluster.coordinator_address='10.0.0.1:x'"),
    ({**EXPLICIT, "num_processes": 0}, "config.cluster.num_processes=0"),
    ({**EXPLICIT, "process_id": 2},
     "config.cluster.process_id=2: expected 0 <= process_id < cluster.num_processes=2"),
    ({**EXPLICIT, "process_id": -1}, "config.cluster.process_id=-1"),
])
def test_bad_cluster_keys_are_one_line_naming_the_key(overrides, named):
    c = config_lib.base_config()
    c.cluster.update(overrides)
    for call in (lambda: config_lib.validate(c), lambda: cluster.initialize(c.cluster)):
        with pytest.raises(ConfigError) as err:
            call()
        assert named in str(err.value) and "\n" not in str(err.value)


def test_single_launch_joins_nothing():
    cluster.initialize(config_lib.base_config().cluster)  # (this process's JAX is already running)
    assert cluster.is_chief() and cluster.all_agree(True) and not cluster.all_agree(False)
    cluster.barrier("alone")


# --- (b) a coordinator or peer that never comes -------------------------------------------

def main_command(workdir, *overrides, config="configs/sasrec.py:debug"):
    return [sys.executable, "-m", "transrec_jax.main", f"--config={config}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in overrides)]


def cluster_flags(port, process_id, num_processes=2, timeout_s=60):
    return [("cluster.launch", "explicit"), ("cluster.coordinator_address", f"127.0.0.1:{port}"),
            ("cluster.num_processes", num_processes), ("cluster.process_id", process_id),
            ("cluster.timeout_s", timeout_s)]


def test_missing_coordinator_or_peer_fails_in_one_line_within_the_timeout(tmp_path):
    port, taken = free_port(), socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = {  # (process_id, port) → what the one line says
        "no coordinator": (1, port, f"error: config.cluster.coordinator_address='127.0.0.1:{port}': "
                                    "no coordinator answered within 2 s (process 1 of 2"),
        "no peer": (0, free_port(), "error: config.cluster.num_processes=2: not all 2 processes "
                                    "joined the coordinator at 127.0.0.1:"),
        "port taken": (0, taken.getsockname()[1], f"error: config.cluster.coordinator_address="
                                                  f"'127.0.0.1:{taken.getsockname()[1]}': port "
                                                  f"{taken.getsockname()[1]} is in use on this host"),
    }
    started, procs = time.monotonic(), {}
    for name, (process_id, p, _) in cases.items():
        procs[name] = subprocess.Popen(
            main_command(tmp_path / name, *cluster_flags(p, process_id, timeout_s=2)),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs["auto"] = subprocess.Popen(  # here JAX detects no cluster (no SLURM, no TPU pod)
        main_command(tmp_path / "auto", ("cluster.launch", "auto"), ("cluster.timeout_s", 2)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_COORDINATOR"))})
    cases["auto"] = (None, None, "error: config.cluster.launch='auto': JAX found no cluster to join")
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 1, (name, err[-2000:])
        assert lines[-1].startswith(cases[name][2]), (name, err[-2000:])
        assert len(lines) == 1, (name, err[-2000:])
        assert not os.path.exists(tmp_path / name)  # nothing written
    taken.close()
    # Four processes side by side on 2 cores: the start (imports, ~5 s) plus 2 s each.
    assert time.monotonic() - started < 30


# --- (c) two processes, killed after a checkpoint, relaunched ----------------------------

RUN = [("dataset.cache_dir", "{cache}"), ("dataset.synthetic.num_users", 128),
       ("dataset.synthetic.num_items", 60), ("train.checkpoint_every_steps", 5),
       ("train.eval_every_steps", 10), ("train.log_every", 5), ("eval.batch_size", 32)]
# Records each file a process opens for writing, or renames to, under the workdir (Python audit
# events): the test checks that process 1 writes only its share of the Orbax checkpoints.
AUDIT = """
import faulthandler, os, runpy, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung process's stacks, on request
log, workdir = open(os.environ["WRITES_LOG"], "a", buffering=1), os.environ["AUDIT_WORKDIR"]
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(workdir) and (
            (isinstance(args[1], str) and any(m in args[1] for m in "wax+")) or
            (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR))):
        log.write(os.path.relpath(args[0], workdir) + "\\n")
    elif event == "os.rename" and str(args[1]).startswith(workdir):
        log.write(os.path.relpath(str(args[1]), workdir) + "\\n")
sys.addaudithook(hook)
sys.argv = ["transrec_jax.main", *sys.argv[1:]]
runpy.run_module("transrec_jax.main", run_name="__main__", alter_sys=True)
"""


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ, **extra)
    # Single-threaded Eigen: two processes' collectives on 2 busy cores can time out otherwise.
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                        f" --xla_force_host_platform_device_count={devices}")
    env.pop("JAX_PLATFORMS", None)
    return env


def _launch(workdir, tmp_path, process_id, port, tag):
    log = tmp_path / f"writes_{tag}_{process_id}.txt"
    cmd = main_command(workdir, *[(k, str(v).format(cache=tmp_path / "cache")) for k, v in RUN],
                       *cluster_flags(port, process_id))
    cmd[1:3] = ["-c", AUDIT]  # python -c AUDIT ... == python -m transrec_jax.main, audited
    with open(tmp_path / f"out_{tag}_{process_id}.txt", "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=_env(2, WRITES_LOG=str(log), AUDIT_WORKDIR=str(workdir))), log


def _finish(procs, outs, timeout=240, hang_fails=True) -> str | None:
    """Waits for the processes. A hung one is killed, and the test fails with each process's
    main-thread stack (faulthandler, SIGUSR1) and last output; with hang_fails=False those are
    returned instead (None: no hang)."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        return None
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        where = f"hung for {timeout} s:\n" + "\n".join(_where(out) for out in outs)
        if hang_fails:
            pytest.fail(where)
        return where


def _where(out) -> str:
    """A hung process's last output before its stack dump, then its main thread's stack (the
    thread that runs transrec_jax): short enough that neither process's is cut off."""
    text = out.read_text()
    found = re.search(r"(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\)", text)
    if not found:
        return f"--- {out.name} (no stack dump): ...{text[-1500:]}"
    threads = text[found.start():].split("\n\n")
    main = next((t for t in threads if "transrec_jax" in t), "(no transrec_jax thread)")
    return f"--- {out.name}: ...{text[:found.start()][-1200:]}\n{main[-3000:]}"


def _checkpoint_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """(one-process results, two-process workdir, tmp dir, checkpoint steps at the kill): a
    reference run on 4 simulated devices in one process; then 2 processes x 2 devices, both
    killed once two checkpoints exist, the newest damaged (its meta edited), relaunched and
    finished: they must agree to skip it, set it aside and resume from the older one."""
    tmp = tmp_path_factory.mktemp("cluster")
    single = subprocess.run(
        main_command(tmp / "single", *[(k, str(v).format(cache=tmp / "cache")) for k, v in RUN]),
        cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    with open(tmp / "single" / "results.json") as f:
        reference = json.load(f)

    workdir = tmp / "two"
    port = free_port()
    first = [_launch(workdir, tmp, i, port, "first") for i in (0, 1)]
    deadline = time.monotonic() + 240
    while len(_checkpoint_steps(workdir)) < 2 and time.monotonic() < deadline:
        if any(p.poll() is not None for p, _ in first):
            break
        time.sleep(0.05)
    for proc, _ in first:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = _checkpoint_steps(workdir)
    assert len(killed_at) >= 2 and not os.path.exists(workdir / "results.json"), \
        (tmp / "out_first_0.txt").read_text()[-3000:]
    meta_path = workdir / "checkpoints" / str(killed_at[-1]) / "meta" / "metadata"
    meta = json.loads(meta_path.read_text())
    meta["batcher"]["batch"] += 1  # no longer matches its hash: every process must skip it
    meta_path.write_text(json.dumps(meta))
    port = free_port()
    second = [_launch(workdir, tmp, i, port, "second") for i in (0, 1)]
    last, procs = "second", [p for p, _ in second]
    hung = _finish(procs, [tmp / f"out_second_{i}.txt" for i in (0, 1)], hang_fails=False)
    if hung:
        # Two CI runs in about ten saw this pair hang in a collective of its last steps (CPU
        # collectives over loopback, 2 processes x 2 simulated devices on 2 busy cores), never
        # reproduced here. Killed, it is one more preemption: relaunched once, it must resume
        # and still end at the one-process numbers; a second hang fails the test.
        warnings.warn(f"the relaunched pair {hung}\n(killed and relaunched once more)")
        last = "again"
        port = free_port()
        procs = [_launch(workdir, tmp, i, port, last)[0] for i in (0, 1)]
        _finish(procs, [tmp / f"out_again_{i}.txt" for i in (0, 1)])
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp / f"out_{last}_{i}.txt").read_text()[-3000:]
    return reference, workdir, tmp, killed_at


@pytest.mark.slow  # (the three share one module fixture: ~75 s on 2 cores)
def test_two_processes_resume_to_the_numbers_of_one(two_process_run):
    reference, workdir, tmp, killed_at = two_process_run
    out = (tmp / "out_second_0.txt").read_text()
    older, damaged = killed_at[-2:]
    assert f"checkpoint checkpoints/{damaged} does not restore, skipped (moved to " \
           f"damaged_checkpoints/checkpoints/{damaged}): ValueError: meta JSON does not match" in out, out
    assert f"resumed from step {older}" in out, out[-3000:]
    assert os.listdir(workdir / "damaged_checkpoints" / "checkpoints") == [str(damaged)]
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert results["steps"] == reference["steps"] == 30
    assert results["device"]["count"] == reference["device"]["count"] == 4
    assert set(results["test"]) == set(reference["test"])
    for name, value in reference["test"].items():
        assert results["test"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys)), keys
    assert {k for k, _ in keys} == {"train", "val", "test"}
    reference_rows = [json.loads(line) for line in
                      (tmp / "single" / "metrics.jsonl").read_text().splitlines()]
    assert keys == [(r["kind"], r["step"]) for r in reference_rows]


@pytest.mark.slow  # (the three share one module fixture: ~75 s on 2 cores)
def test_only_process_0_writes_the_workdir(two_process_run):
    _, workdir, tmp, _ = two_process_run
    run_files = ("config.json", "processes.json", "results.json", "metrics.jsonl", "tensorboard")
    for tag in ("first", "second", "again"):  # ("again": only after a hang, see two_process_run)
        if tag == "again" and not (tmp / "writes_again_0.txt").exists():
            continue
        written = {line.strip() for line in (tmp / f"writes_{tag}_1.txt").read_text().splitlines()} \
            if (tmp / f"writes_{tag}_1.txt").exists() else set()
        assert not {w for w in written if w.split(os.sep)[0].split(".tmp")[0] in run_files}, written
        chief = (tmp / f"writes_{tag}_0.txt").read_text()
        assert "metrics.jsonl" in chief and "config.json" in chief and "processes.json" in chief
    last = "again" if (tmp / "writes_again_0.txt").exists() else "second"
    assert "results.json" in (tmp / f"writes_{last}_0.txt").read_text()


@pytest.mark.slow  # (the three share one module fixture: ~75 s on 2 cores)
def test_another_process_count_is_refused_in_one_line(two_process_run):
    _, workdir, tmp, _ = two_process_run
    before = {p: os.path.getmtime(p) for p in workdir.rglob("*")}
    one = subprocess.run(
        main_command(workdir, *[(k, str(v).format(cache=tmp / "cache")) for k, v in RUN]),
        cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=120)
    lines = [line for line in one.stderr.splitlines() if line.strip()]
    assert one.returncode == 1 and len(lines) == 1, one.stderr[-2000:]
    assert lines[0].startswith(f"error: config.cluster.num_processes: the run in {workdir} was "
                               "started with 2 processes, this launch has 1"), lines
    assert {p: os.path.getmtime(p) for p in workdir.rglob("*")} == before
