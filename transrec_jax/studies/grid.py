r"""Ablation sweep files → a grid of named runs (the file format: transrec_jax/sweep.py).

Every run's overrides are BUDGET, then --set, then its axis levels, then its seed (--set may
not touch a swept key). An axis's base level is the one the base config already has (else its
first). A run is named `axis=label,...,seed=N` with the axes sorted by name, so the same grid
gives the same names, and a one_at_a_time run has the name it has in the full product.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import re
import runpy
from typing import Any

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError
from transrec_jax.studies import study
from transrec_jax.studies.study import Run, StudyError

RUNS_ROOT = os.path.join("experiments", "ablations", "runs")
FILE_NAMES = ("BASE", "AXES", "ZIP", "GRID", "SEEDS", "BUDGET")


@dataclasses.dataclass
class Sweep:
    name: str
    doc: str
    config: str  # BASE after --set dataset=...
    axes: dict[str, list[str]]  # axis → level labels, in AXES order
    reference: dict[str, str]  # axis → the level equal to the base config, else its first
    every_run: dict[str, Any]  # BUDGET and --set config overrides: what every run shares
    seeds: tuple[int, ...]
    root: str
    runs: list[Run]
    path: str = ""  # the sweep file, as given
    sets: tuple[str, ...] = ()  # the --set items, as given


def load(path: str, sets: list[str] = (), seeds: str = "", root: str = "") -> Sweep:
    """Read a sweep file and expand it into runs (`sets`: --set items; `seeds`: "0,1,2")."""
    if not os.path.isfile(path):
        raise StudyError(f"--sweep={path}: no such file")
    name = os.path.splitext(os.path.basename(path))[0]
    spec = runpy.run_path(path)
    unknown = [k for k in spec if k.isupper() and k not in FILE_NAMES]
    if unknown:
        raise StudyError(f"{path}: unknown name {unknown[0]}; a sweep file sets {FILE_NAMES}")
    for required in ("BASE", "AXES"):
        if required not in spec:
            raise StudyError(f"{path}: {required} is missing")
    config_file, _, arg = spec["BASE"].partition(":")
    words, set_overrides = _parse_sets(sets)
    if "dataset" in words:
        arg = _with_dataset(arg, words["dataset"])
    config = f"{config_file}:{arg}" if arg else config_file
    base = study.base_config(config, f"{path}: BASE")

    budget = {key: study.plain(value) for key, value in spec.get("BUDGET", {}).items()}
    for key, value in budget.items():
        study.check_value(base, key, value, f"{path}: BUDGET")
    typed_sets = {key: _parse_set(base, key, value) for key, value in set_overrides.items()}
    every_run = {**budget, **typed_sets}
    scratch = copy.deepcopy(base)
    for key, value in every_run.items():
        study.set_value(scratch, key, value)

    axes = {axis: _levels(axis, levels, scratch, path) for axis, levels in spec["AXES"].items()}
    keys_by_axis = {axis: {k for _, o in levels for k in o} for axis, levels in axes.items()}
    for (a, ka), (b, kb) in itertools.combinations(keys_by_axis.items(), 2):
        if ka & kb:
            raise StudyError(f"{path}: axes {a!r} and {b!r} both set {sorted(ka & kb)[0]}")
    for key in typed_sets:
        owner = [a for a, ks in keys_by_axis.items() if key in ks]
        if owner:
            raise StudyError(f"--set {key}: axis {owner[0]!r} of {path} sweeps that key")
    if "seed" in axes or "seed" in every_run or any("seed" in ks for ks in keys_by_axis.values()):
        raise StudyError(f"{path}: config.seed is set by SEEDS (or --seeds) only")
    reference = {axis: _reference(levels, scratch) for axis, levels in axes.items()}
    points = _grid(axes, spec.get("ZIP", ()), spec.get("GRID", "product"), reference, path)
    seed_list = study.parse_seeds(seeds, spec.get("SEEDS", (0,)), "seeds ")
    if not root:
        root = os.path.join(RUNS_ROOT, re.sub(r"[^\w.+=,-]", "_", ",".join([name, *sorted(sets)])))
    return Sweep(name, (spec.get("__doc__") or "").strip(), config,
                 {axis: [label for label, _ in levels] for axis, levels in axes.items()},
                 {axis: axes[axis][i][0] for axis, i in reference.items()},
                 every_run, seed_list, root, _runs(points, seed_list, config, every_run, root),
                 path, tuple(sets))


def _runs(points, seeds, config: str, every_run: dict, root: str) -> list[Run]:
    """Every grid point once per seed, seed by seed (a partial sweep covers the grid first)."""
    runs = []
    for seed in seeds:
        for point in points:
            labels = {axis: label for axis, (label, _) in point.items()}
            overrides = dict(every_run)
            for _, level in point.values():
                overrides.update(level)
            overrides["seed"] = seed
            grid_point = ",".join(f"{axis}={labels[axis]}" for axis in sorted(labels))
            name = ",".join(filter(None, [grid_point, f"seed={seed}"]))
            workdir = os.path.join(root, name)
            runs.append(Run(name, labels, grid_point, seed, config, overrides, workdir))
    return runs


def _levels(axis: str, levels, base, path: str) -> list[tuple[str, dict]]:
    """An axis in either form → [(label, {key: value})], checked against the base config."""
    where = f"{path}: axis {axis!r}"
    if not study.SAFE.match(axis):
        raise StudyError(f"{where}: names may use letters, digits and _ . + - only")
    if isinstance(levels, (tuple, list)) and len(levels) == 2 and isinstance(levels[0], str):
        key, values = levels
        levels = [(str(v), {key: v}) for v in values]
    try:
        levels = [(str(label), {k: study.plain(v) for k, v in dict(overrides).items()})
                  for label, overrides in levels]
    except (TypeError, ValueError):
        raise StudyError(f"{where}: expected (key, [values]) or [(label, {{key: value}}), ...]") from None
    if not levels:
        raise StudyError(f"{where}: no levels")
    labels = [label for label, _ in levels]
    for label, overrides in levels:
        if not study.SAFE.match(label):
            raise StudyError(f"{where}: level {label!r}: labels may use letters, digits and _ . + -")
        if labels.count(label) > 1:
            raise StudyError(f"{where}: level {label!r} appears twice")
        for key, value in overrides.items():
            study.check_value(base, key, value, f"{where} level {label!r}")
    return levels


def _reference(levels: list[tuple[str, dict]], base) -> int:
    """Index of the level the base config already has; the first level when none (or several) do."""
    same = [i for i, (_, o) in enumerate(levels) if all(study.get(base, k) == v for k, v in o.items())]
    return same[0] if len(same) == 1 else 0


def _grid(axes, zip_groups, mode, reference, path) -> list[dict[str, tuple[str, dict]]]:
    """Grid points, each {axis: (label, overrides)}; ZIP groups count as one dimension."""
    group_of = {}
    for group in zip_groups:
        for axis in group:
            if axis not in axes or axis in group_of:
                raise StudyError(f"{path}: ZIP names axis {axis!r}, which is unknown or already zipped")
            group_of[axis] = tuple(group)
        if len({len(axes[a]) for a in group}) > 1:
            raise StudyError(f"{path}: ZIP group {tuple(group)} has axes of different lengths")
    dims, seen = [], set()
    for axis in axes:
        group = group_of.get(axis, (axis,))
        if axis in seen:
            continue
        seen.update(group)
        dims.append([{a: axes[a][i] for a in group} for i in range(len(axes[axis]))])
    if mode == "product":
        combos = itertools.product(*dims)
    elif mode == "one_at_a_time":
        ref = [reference[next(iter(dim[0]))] for dim in dims]
        base = [dim[r] for dim, r in zip(dims, ref)]
        combos = [base]
        for d, dim in enumerate(dims):
            combos += [base[:d] + [level] + base[d + 1:] for i, level in enumerate(dim) if i != ref[d]]
    else:
        raise StudyError(f"{path}: GRID={mode!r}: expected 'product' or 'one_at_a_time'")
    return [{axis: level for part in combo for axis, level in part.items()} for combo in combos]


def _parse_sets(sets) -> tuple[dict[str, str], dict[str, str]]:
    """--set items → ({'dataset': name}, {config key: raw value})."""
    words, overrides = {}, {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise StudyError(f"--set {item!r}: expected dataset=NAME or a config key a.b=value")
        if key == "dataset":
            words["dataset"] = value
        else:
            overrides[key] = value
    return words, overrides


def _with_dataset(arg: str, dataset: str) -> str:
    """The config arg with its dataset preset word replaced."""
    if dataset not in config_lib.DATASETS:
        raise StudyError(f"--set dataset={dataset}: expected one of {config_lib.DATASETS}")
    words = [w for w in arg.split(",") if w.strip() and w.strip() not in config_lib.DATASETS]
    return ",".join([dataset, *words])


def _parse_set(base, key: str, value: str):
    """A --set string parsed to the type of the config key it overrides."""
    scratch = copy.deepcopy(base)
    try:
        config_lib.set_by_path(scratch, key, value)
    except ConfigError as e:
        raise StudyError(f"--set {key}={value}: {e}") from None
    return study.get(scratch, key)
