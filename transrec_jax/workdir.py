"""A workdir belongs to one config: relaunching resumes it, a finished run is reported, not rerun.

`check` runs before anything is written or loaded: it refuses a workdir that holds a run of
another config (naming the keys that differ) or that cannot be written, and returns the stored
results of a finished run. `bind` then creates the workdir and records its config.

With several processes (cluster.py) every process calls `check` and `bind` alike: all check,
process 0 alone writes, and `bind` returns once it has. The process count is recorded beside
the config (processes.json): a run resumes only with as many processes as it started with.
"""

from __future__ import annotations

import json
import os
import shutil

import jax

from transrec_jax import cluster
from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

# What a run writes into its workdir; `restart` removes exactly these (a sweep's launch.json
# and log.txt, or anything else the user keeps there, stay).
RUN_FILES = ("config.json", "processes.json", "results.json", "metrics.jsonl", "checkpoints", "best",
             "tensorboard", "damaged_checkpoints")
_SHOWN_DIFFERENCES = 4
# Keys that change no result: where the cache lives, the ids and titles `recommend` shows, and
# how the processes find each other (each process has its own process_id; the count is checked
# against processes.json instead).
_UNBOUND_KEYS = ("dataset.cache_dir", "dataset.item_map", "dataset.item_titles",
                 "cluster.launch", "cluster.coordinator_address", "cluster.num_processes",
                 "cluster.process_id", "cluster.timeout_s")


def check(workdir: str, config, *, restart: bool = False,
          num_processes: int | None = None) -> dict | None:
    """The results of a finished run of this config in `workdir`, else None (nothing written).

    `num_processes`: this launch's process count (default jax.process_count())."""
    _check_writable(workdir)
    recorded_path = os.path.join(workdir, "config.json")
    if restart or not os.path.exists(recorded_path):
        return None
    _check_process_count(workdir, jax.process_count() if num_processes is None else num_processes)
    differences = config_differences(config_lib.recorded_config(recorded_path), config)
    if differences:
        shown = "; ".join(differences[:_SHOWN_DIFFERENCES])
        more = len(differences) - _SHOWN_DIFFERENCES
        raise ConfigError(
            f"{workdir} holds a run of another config ({shown}{f'; {more} more' if more > 0 else ''}): "
            "relaunch with --restart to discard it and start over, or use another --workdir"
        )
    results_path = os.path.join(workdir, "results.json")
    if not os.path.exists(results_path):
        return None
    try:
        with open(results_path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: the resumed run re-tests and rewrites it


def bind(workdir: str, config, *, restart: bool = False, num_processes: int | None = None) -> None:
    """Create `workdir` (after `check`) and write its config.json and processes.json; `restart`
    clears a previous run. Process 0 writes; every process returns once it has."""
    error = None
    if cluster.is_chief():
        try:
            _write_run_files(workdir, config, restart,
                             jax.process_count() if num_processes is None else num_processes)
        except ConfigError as e:
            error = e
    if not cluster.all_agree(error is None):  # (also the barrier: the files exist once it returns)
        raise error or ConfigError(f"--workdir={workdir}: process 0 cannot write there")


def _write_run_files(workdir: str, config, restart: bool, num_processes: int) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        if restart:
            for name in RUN_FILES:
                path = os.path.join(workdir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        for name, text in (("processes.json", json.dumps({"num_processes": num_processes})),
                           ("config.json", config.to_json(indent=2))):  # config.json last: it binds
            tmp = os.path.join(workdir, name + ".tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(workdir, name))
    except OSError as e:
        raise ConfigError(f"--workdir={workdir}: cannot write there ({e.strerror or e})") from None


def config_differences(recorded, config) -> list[str]:
    """'key: recorded → new' for every leaf that differs (tuples and lists compare equal)."""
    old, new = config_lib.flatten(recorded.to_dict()), config_lib.flatten(config.to_dict())
    return [f"{key}: {old.get(key, '(absent)')!r} there, {new.get(key, '(absent)')!r} here"
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and key not in _UNBOUND_KEYS]


def _check_process_count(workdir: str, num_processes: int) -> None:
    """A run resumes with as many processes as it started with (a workdir without
    processes.json was written by one process)."""
    try:
        with open(os.path.join(workdir, "processes.json")) as f:
            recorded = json.load(f).get("num_processes", 1)
    except FileNotFoundError:
        recorded = 1
    except (OSError, ValueError, AttributeError):
        return  # unreadable: bind rewrites it
    if recorded != num_processes:
        raise ConfigError(
            f"config.cluster.num_processes: the run in {workdir} was started with {recorded} "
            f"process{'es' if recorded != 1 else ''}, this launch has {num_processes}: relaunch it "
            "with as many, or with --restart to discard it and start over")


def _check_writable(workdir: str) -> None:
    """Fail now, not after the data loads, when `workdir` cannot be created or written."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--workdir={workdir}: exists and is not a directory")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--workdir={workdir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir={workdir}: {existing} is not writable")
