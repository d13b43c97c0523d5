"""Launching a study's runs: one `python -m transrec_jax.main` process per run, resumed in
place, skipped when finished, and one record per run for the study's results file.

A run with results.json is skipped (as is one the study's results file records as finished
with the settings it would run with now); an interrupted one resumes from its checkpoint; a
failed one is retried. A failure leaves <run>/error.txt (exit code, end of its output) and
never stops the other runs. <run>/launch.json keeps the command: a workdir launched with other
settings is an error, never skipped or resumed as this run. <run>/hardware.json notes the
machine that launched it. Stopping the driver (Ctrl-C, or SIGTERM from `kill` or a scheduler)
stops the training processes it started: none runs on, orphaned, into a workdir.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

from transrec_jax import hardware
from transrec_jax.config import REMOVED
from transrec_jax.metric_log import read_metrics
from transrec_jax.studies.study import Run, StudyError, flat_settings


def check_workdirs(runs: list[Run]) -> None:
    """A workdir launched with other settings must not be skipped or resumed as this run."""
    for run in runs:
        if os.path.exists(run.path("launch.json")):
            with open(run.path("launch.json")) as f:
                before = json.load(f)["config_args"]
            if before != run.config_args():
                changed = sorted(set(before) ^ set(run.config_args()))
                raise StudyError(
                    f"{run.workdir} was launched with other settings ({' '.join(changed)}): "
                    "delete it, or give the study another root directory"
                )


def todo(runs: list[Run], done_before: dict[str, dict] | None = None) -> list[Run]:
    """The runs neither finished here nor recorded as finished in `done_before`."""
    return [run for run in runs if run.status() != "done" and run.name not in (done_before or {})]


def dry_run(runs: list[Run], done_before: dict[str, dict] | None = None) -> None:
    """Print the commands of the unfinished runs, one a line, for a cluster scheduler."""
    check_workdirs(runs)
    left = todo(runs, done_before)
    for run in left:
        print(shlex.join(run.command()))
    print(f"# {len(runs) - len(left)} finished runs left out", file=sys.stderr)


_children: set[subprocess.Popen] = set()  # the training processes launch() is waiting on


def _exit(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit in this (main-thread) driver, so that launch() and run_all()
    stop their children on the way out; by default SIGTERM ends Python without cleanup."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def stop_children() -> None:
    for process in list(_children):
        process.terminate()


def start(run: Run, env: dict | None = None, log=None) -> subprocess.Popen:
    """Start one run's command with this interpreter (output to `log`), noting its command and
    machine in its workdir; the caller waits."""
    os.makedirs(run.workdir, exist_ok=True)
    write_atomic(run.path("launch.json"),
                 json.dumps({"command": run.command(), "config_args": run.config_args()}, indent=2))
    write_atomic(run.path("hardware.json"), json.dumps(hardware.host()) + "\n")
    if os.path.exists(run.path("error.txt")):
        os.remove(run.path("error.txt"))
    return subprocess.Popen([sys.executable, *run.command()[1:]], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def launch(run: Run, env: dict | None = None) -> tuple[str, str]:
    """Run one command to completion: ('done', summary), ('failed', first line of error.txt) or,
    when SIGTERM ended it (e.g. `timeout` on the whole process group), ('stopped', ...) with its
    workdir left unfinished for a rerun to resume."""
    began = time.time()
    os.makedirs(run.workdir, exist_ok=True)
    exit_on_sigterm()
    with open(run.path("log.txt"), "ab") as log:
        offset = log.tell()
        process = start(run, env, log)
        _children.add(process)
        try:
            rc = process.wait()
        except BaseException:  # the driver is stopping: so does its child (it resumes later)
            process.terminate()
            process.wait()
            raise
        finally:
            _children.discard(process)
    if rc == -signal.SIGTERM:  # stopped from outside (a time limit, a scheduler): unfinished
        return "stopped", "stopped by SIGTERM; a rerun resumes it"
    if rc == 0 and os.path.exists(run.path("results.json")):
        test = results(run)["test"]
        scores = " ".join(f"{k}={test[k]:.4f}" for k in ("hr@10", "ndcg@10") if k in test)
        return "done", f"{time.time() - began:.0f} s, {scores}"
    with open(run.path("log.txt"), "rb") as f:
        f.seek(max(offset, os.path.getsize(run.path("log.txt")) - 65536))  # this attempt's end
        lines = [line.strip() for line in re.split(r"[\r\n]+", f.read().decode(errors="replace"))]
    tail = [line for line in lines if line][-40:]
    if rc == 0:
        first = "exit code 0 but no results.json"
    else:
        cause = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        first = f"{cause}: {tail[-1] if tail else 'no output'}"
    with open(run.path("error.txt"), "w") as f:
        f.write(first + "\n\n" + "\n".join(tail) + "\n")
    return "failed", first


def finished(run: Run) -> dict:
    """The record of `run` (`record`), launched first unless it has finished; StudyError when
    it fails (rerunning the caller retries it)."""
    check_workdirs([run])
    if run.status() != "done":
        outcome, message = launch(run)
        if outcome != "done":
            what = "was stopped" if outcome == "stopped" else "failed"
            raise StudyError(f"{run.workdir}: the run {what} ({message}); rerun to retry it")
    return record(run)


def run_all(runs: list[Run], parallel: int = 1) -> int:
    """Launch `runs` (`parallel` at a time), printing each outcome; the number that failed."""
    exit_on_sigterm()
    env = dict(os.environ)
    if parallel > 1:  # several runs on one accelerator: no run may grab most of its memory
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    failed = 0
    pool = concurrent.futures.ThreadPoolExecutor(max(parallel, 1))
    try:
        futures = {pool.submit(launch, run, env): run for run in runs}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            outcome, message = future.result()
            print(f"[{i}/{len(runs)}] {futures[future].name}: {outcome} ({message})", flush=True)
            failed += outcome == "failed"
    finally:  # stopped (Ctrl-C, SIGTERM): start nothing more, and stop the runs under way
        stop_children()
        pool.shutdown(cancel_futures=True)
    return failed


# --- results records --------------------------------------------------------------------------


def results(run: Run) -> dict:
    """The run's results.json (a finished run)."""
    with open(run.path("results.json")) as f:
        return json.load(f)


def record(run: Run, details: bool = True) -> dict:
    """One run as its study's results file keeps it: status and error line, and for a finished
    run (unless not `details`) its metrics, epochs, times, hardware, versions, dataset, protocol
    and resolved settings."""
    status = run.status()
    rec = {"row": run.point, "seed": run.seed, "run": run.name, "status": status,
           "workdir": run.workdir, "config": run.config, "config_args": run.config_args()}
    if status == "failed":
        with open(run.path("error.txt")) as f:
            rec["error"] = f.readline().strip()
    if status == "done" and details:
        rec.update(_finished(run))
    return rec


def _finished(run: Run) -> dict:
    r = results(run)
    val = next((row for row in read_metrics(run.workdir)
                if row["kind"] == "val" and row["step"] == r["best_step"]), None)
    # The CPU the run saw: its own results.json (runs since hardware.host() was added there,
    # however they were launched), else what this runner recorded at launch.
    host = {k: r["device"][k] for k in ("cpu", "cpu_cores") if k in r["device"]}
    if not host and os.path.exists(run.path("hardware.json")):
        with open(run.path("hardware.json")) as f:
            host = json.load(f)
    resumed = False
    if os.path.exists(run.path("log.txt")):
        with open(run.path("log.txt"), errors="replace") as f:
            resumed = "resumed from step" in f.read()
    device = {k: v for k, v in r["device"].items() if k != "host"}
    return {
        "test": r["test"],
        "val": {k: v for k, v in val.items() if k not in ("step", "kind")} if val else r["best_validation"],
        "test_popularity": r["test_popularity"],
        "test_slices": r.get("test_slices"),  # (runs from before slices have none)
        "best_step": r["best_step"],
        "best_epoch": r["best_step"] / r["steps_per_epoch"],
        "steps": r["steps"],
        "epochs": r["epochs"],
        "steps_per_epoch": r["steps_per_epoch"],
        "num_params": r["num_params"],
        "train_time_s": r["train_time_s"],
        "wall_time_s": r["wall_time_s"],
        "steps_per_s": r["steps_per_s"],
        "resumed": resumed,  # train time then covers the last attempt only
        # and wall time too, for runs whose checkpoints did not record the earlier attempts'
        "wall_time_all_attempts": r.get("wall_time_all_attempts", not resumed),
        "device": device,
        "hardware": {**host, "accelerator": device["kind"] if device["platform"] != "cpu" else None,
                     "accelerator_count": device["count"] if device["platform"] != "cpu" else 0},
        "versions": r["versions"],
        "dataset": {k: r["dataset"][k] for k in ("name", "users", "items", "interactions")},
        "protocol": r["protocol"],
        "settings": flat_settings(r["config"]),  # what the run resolved its config to
        **({"test_every_eval": r["test_every_eval"]} if "test_every_eval" in r else {}),
    }


def recorded(path: str, runs: list[Run], settings: dict[str, dict]) -> dict[str, dict]:
    """The finished runs that the results file `path` records with the arguments each of `runs`
    has now and the resolved settings (`settings`: by run point) it would run with, by run name.
    A key added since a run was recorded is not compared, a key removed since (config.REMOVED)
    must hold the one value the code still implements; a record from before settings were
    recorded is trusted on its arguments and gets today's settings."""
    if not os.path.exists(path):
        return {}
    by_name = {run.name: run for run in runs}
    try:
        with open(path) as f:
            records = json.load(f)["runs"]
        same = {r["run"]: r for r in records if r["status"] == "done" and r["run"] in by_name
                and r["config_args"] == by_name[r["run"]].config_args()}
        for name, r in list(same.items()):
            now = settings[r["row"]]
            if "settings" not in r:
                same[name] = {**r, "settings": now}
            elif any(value != now.get(key, REMOVED.get(key, value))
                     for key, value in r["settings"].items()):
                del same[name]  # the same arguments resolve to other settings now
        return same
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StudyError(f"{path}: not a study results file ({e!r}); "
                         "move it away to start the study afresh") from None


def collect(runs: list[Run], done_before: dict[str, dict] | None = None) -> list[dict]:
    """One record per run; a run not finished here but in `done_before` keeps that record."""
    done_before = done_before or {}
    return [done_before[run.name] if run.status() != "done" and run.name in done_before
            else record(run) for run in runs]


def read_records(path: str) -> list[dict]:
    """The records of a study's results file (`write_records`); [] when it does not exist yet."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)["records"]


def write_records(path: str, records: list[dict]) -> None:
    """A study's results file: {"updated": now (UTC), "records": records}, written atomically."""
    write_atomic(path, json.dumps(
        {"updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "records": records}, indent=2) + "\n")


def write_atomic(path: str, text: str) -> None:
    """Write via a temporary file and a rename: a reader never sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
