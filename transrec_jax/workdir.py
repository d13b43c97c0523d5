"""A workdir belongs to one config: relaunching resumes it, a finished run is reported, not rerun.

`check` runs before anything is written or loaded: it refuses a workdir that holds a run of
another config (naming the keys that differ) or that cannot be written, and returns the stored
results of a finished run. `bind` then creates the workdir and records its config.
"""

from __future__ import annotations

import json
import os
import shutil

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

# What a run writes into its workdir; `restart` removes exactly these (a sweep's launch.json
# and log.txt, or anything else the user keeps there, stay).
RUN_FILES = ("config.json", "results.json", "metrics.jsonl", "checkpoints", "best", "tensorboard",
             "damaged_checkpoints")
_SHOWN_DIFFERENCES = 4
# Keys that change no result: where the cache lives, and the ids and titles `recommend` shows.
_UNBOUND_KEYS = ("dataset.cache_dir", "dataset.item_map", "dataset.item_titles")


def check(workdir: str, config, *, restart: bool = False) -> dict | None:
    """The results of a finished run of this config in `workdir`, else None (nothing written)."""
    _check_writable(workdir)
    recorded_path = os.path.join(workdir, "config.json")
    if restart or not os.path.exists(recorded_path):
        return None
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


def bind(workdir: str, config, *, restart: bool = False) -> None:
    """Create `workdir` (after `check`) and write its config.json; `restart` clears a previous run."""
    try:
        os.makedirs(workdir, exist_ok=True)
        if restart:
            for name in RUN_FILES:
                path = os.path.join(workdir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        tmp = os.path.join(workdir, "config.json.tmp")
        with open(tmp, "w") as f:
            f.write(config.to_json(indent=2))
        os.replace(tmp, os.path.join(workdir, "config.json"))
    except OSError as e:
        raise ConfigError(f"--workdir={workdir}: cannot write there ({e.strerror or e})") from None


def config_differences(recorded, config) -> list[str]:
    """'key: recorded → new' for every leaf that differs (tuples and lists compare equal)."""
    old, new = config_lib.flatten(recorded.to_dict()), config_lib.flatten(config.to_dict())
    return [f"{key}: {old.get(key, '(absent)')!r} there, {new.get(key, '(absent)')!r} here"
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and key not in _UNBOUND_KEYS]


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
