"""The Run every study launches, and the checks of config keys every study file shares."""

from __future__ import annotations

import dataclasses
import os
import re
import runpy
from typing import Any

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

MAIN = "transrec_jax.main"  # the entry point every run's command calls
SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")  # names that end up in directory names


class StudyError(ConfigError):
    """A study file or a flag is malformed; the message names the culprit."""


@dataclasses.dataclass
class Run:
    name: str
    labels: dict[str, str]  # axis (or "row") → level label
    point: str  # the labels without the seed: the run's grid point or table row
    seed: int
    config: str  # --config value: "file.py:arg"
    overrides: dict[str, Any]  # config key → value, as --config.key=value flags
    workdir: str

    def command(self) -> list[str]:
        """The launch command; argv[0] is `python` (the runner uses its own interpreter)."""
        return ["python", "-m", MAIN, f"--workdir={self.workdir}", *self.config_args()]

    def config_args(self) -> list[str]:
        return [f"--config={self.config}"] + [
            f"--config.{key}={flag_value(value)}" for key, value in self.overrides.items()
        ]

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def status(self) -> str:
        """done | failed | unfinished (a workdir without results: interrupted or running) | not run."""
        if os.path.exists(self.path("results.json")):
            return "done"
        if os.path.exists(self.path("error.txt")):
            return "failed"
        return "unfinished" if os.path.isdir(self.workdir) else "not run"


def base_config(config: str, where: str):
    """The ConfigDict a "file.py:arg" config string names; StudyError naming `where` if not."""
    config_file, _, arg = config.partition(":")
    if not os.path.isfile(config_file):
        raise StudyError(f"{where}: config file {config_file!r} not found (run from the repository root)")
    try:
        return runpy.run_path(config_file)["get_config"](arg)
    except ConfigError as e:
        raise StudyError(f"{where}: config {config!r}: {e}") from None


def get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def set_value(config, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def check_value(base, key: str, value, where: str) -> None:
    """Unknown key or a value of the wrong type → StudyError naming both."""
    node = base
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise StudyError(f"{where}: config key {key!r} unknown")
        node = node[part]
    if hasattr(node, "keys"):
        raise StudyError(f"{where}: config key {key!r} is a group, not a value")
    if isinstance(node, bool):
        ok = isinstance(value, bool)
    elif isinstance(node, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(node, tuple):
        ok = isinstance(value, (tuple, list))
    else:
        ok = type(value) is type(node)
    if not ok:
        raise StudyError(f"{where}: config key {key}={value!r}: expected a {type(node).__name__}")


def plain(value):
    """Lists become tuples: config sequences are tuples, and grid values must compare equal."""
    return tuple(value) if isinstance(value, list) else value


def flag_value(value) -> str:
    return repr(value) if isinstance(value, tuple) else str(value)


def parse_seeds(seeds: str, default, where: str) -> tuple[int, ...]:
    """"0,1,2" (a flag) when given, else the file's own seeds, as ints; `where` prefixes the error."""
    try:
        return tuple(int(s) for s in (seeds.split(",") if seeds else default))
    except (TypeError, ValueError):
        raise StudyError(f"{where}{seeds or default!r}: expected integers") from None


def flat_settings(config: dict) -> dict[str, Any]:
    """A config dict as {"a.b": value} in JSON types (tuples become lists), without the seed."""
    return {k: v for k, v in config_lib.flatten(config).items() if k != "seed"}
