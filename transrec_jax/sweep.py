r"""Ablation sweeps: a sweep file → a grid of named runs, launched here or printed for a cluster.

  python -m transrec_jax.sweep --sweep=experiments/ablations/loss.py
  python -m transrec_jax.sweep --sweep=experiments/ablations/loss.py --set=dataset=ml-100k \
      --set=train.num_epochs=50 --seeds=0,1,2 --parallel=2
  python -m transrec_jax.sweep --sweep=experiments/ablations/loss.py --dry_run > jobs.txt
  python -m transrec_jax.report --sweep=experiments/ablations/loss.py      # table and plots

A sweep file is plain Python that sets these names (only BASE and AXES are required):

  BASE = "configs/sasrec.py:ml-1m"      config file and arg every run starts from (--config)
  AXES = {                               named axes, crossed (cartesian product); an axis is
      "loss": [                          either labelled levels, each setting any config keys,
          ("bce_1neg", {"loss.name": "bce", "loss.num_negatives": 1}),
          ("ce_full", {"loss.name": "ce"}),
      ],
      "max_len": ("model.max_len", [50, 100, 200]),   or one config key and its values
  }
  ZIP = [("blocks", "heads")]            axes that advance together instead of crossing
  GRID = "product"                       or "one_at_a_time": the base config plus every
                                         axis varied alone (other axes at their base level)
  SEEDS = (0, 1, 2)                      config.seed; every grid point runs once per seed
  BUDGET = {"train.num_epochs": 200}     overrides of every run: state the training budget

and a docstring saying what the sweep studies and how to run it.

Every run's overrides are BUDGET, then --set, then its axis levels, then its seed (--set may
not touch a swept key). An axis's base level is the one the base config already has (else its
first). A run is named `axis=label,...,seed=N` with the axes sorted by name, so the same grid
gives the same names, and a one_at_a_time run has the name it has in the full product.

A run is one command, `python -m transrec_jax.main --workdir=<root>/<name> --config=BASE
--config.key=value ...`. --dry_run prints the commands of the runs not finished yet, one a
line, for a cluster scheduler; otherwise this process runs them, --parallel at a time, with
its own interpreter, output to <run>/log.txt. Rerunning a sweep skips runs that have
results.json and relaunches the others in place, so an interrupted run resumes from its last
checkpoint; a failed run gets <run>/error.txt (exit code, end of its output), the sweep goes
on and exits 1 at the end. <run>/launch.json keeps the command: a workdir launched with other
settings is an error, never skipped or resumed as this run. The root defaults to
experiments/ablations/runs/<sweep name>, with the --set items appended, so each --set variant
keeps its own runs.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import itertools
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from typing import Any

from absl import flags

from transrec_jax import cli
from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

MAIN = "transrec_jax.main"  # the entry point every run's command calls
RUNS_ROOT = os.path.join("experiments", "ablations", "runs")
FILE_NAMES = ("BASE", "AXES", "ZIP", "GRID", "SEEDS", "BUDGET")
_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")  # labels and axis names end up in directory names


class SweepError(ConfigError):
    """The sweep file or a flag is malformed; the message names the culprit."""


@dataclasses.dataclass
class Run:
    name: str
    labels: dict[str, str]  # axis → level label, in AXES order
    point: str  # the labels without the seed: the run's grid point
    seed: int
    config: str  # --config value: "file.py:arg"
    overrides: dict[str, Any]  # config key → value, as --config.key=value flags
    workdir: str

    def command(self) -> list[str]:
        """The launch command; argv[0] is `python` (the runner uses its own interpreter)."""
        return ["python", "-m", MAIN, f"--workdir={self.workdir}", *self.config_args()]

    def config_args(self) -> list[str]:
        return [f"--config={self.config}"] + [
            f"--config.{key}={_flag_value(value)}" for key, value in self.overrides.items()
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


def load(path: str, sets: list[str] = (), seeds: str = "", root: str = "") -> Sweep:
    """Read a sweep file and expand it into runs (`sets`: --set items; `seeds`: "0,1,2")."""
    if not os.path.isfile(path):
        raise SweepError(f"--sweep={path}: no such file")
    name = os.path.splitext(os.path.basename(path))[0]
    spec = runpy.run_path(path)
    unknown = [k for k in spec if k.isupper() and k not in FILE_NAMES]
    if unknown:
        raise SweepError(f"{path}: unknown name {unknown[0]}; a sweep file sets {FILE_NAMES}")
    for required in ("BASE", "AXES"):
        if required not in spec:
            raise SweepError(f"{path}: {required} is missing")
    config_file, _, arg = spec["BASE"].partition(":")
    if not os.path.isfile(config_file):
        raise SweepError(f"{path}: BASE file {config_file!r} not found (run from the repository root)")
    words, set_overrides = _parse_sets(sets)
    if "dataset" in words:
        arg = _with_dataset(arg, words["dataset"])
    config = f"{config_file}:{arg}" if arg else config_file
    try:
        base = runpy.run_path(config_file)["get_config"](arg)
    except ConfigError as e:
        raise SweepError(f"{path}: BASE {config!r}: {e}") from None

    budget = {key: _plain(value) for key, value in spec.get("BUDGET", {}).items()}
    for key, value in budget.items():
        _check_value(base, key, value, f"{path}: BUDGET")
    typed_sets = {key: _parse_set(base, key, value) for key, value in set_overrides.items()}
    every_run = {**budget, **typed_sets}
    scratch = copy.deepcopy(base)
    for key, value in every_run.items():
        _set(scratch, key, value)

    axes = {axis: _levels(axis, levels, scratch, path) for axis, levels in spec["AXES"].items()}
    keys_by_axis = {axis: {k for _, o in levels for k in o} for axis, levels in axes.items()}
    for (a, ka), (b, kb) in itertools.combinations(keys_by_axis.items(), 2):
        if ka & kb:
            raise SweepError(f"{path}: axes {a!r} and {b!r} both set {sorted(ka & kb)[0]}")
    for key in typed_sets:
        owner = [a for a, ks in keys_by_axis.items() if key in ks]
        if owner:
            raise SweepError(f"--set {key}: axis {owner[0]!r} of {path} sweeps that key")
    if "seed" in axes or "seed" in every_run or any("seed" in ks for ks in keys_by_axis.values()):
        raise SweepError(f"{path}: config.seed is set by SEEDS (or --seeds) only")
    reference = {axis: _reference(levels, scratch) for axis, levels in axes.items()}
    points = _grid(axes, spec.get("ZIP", ()), spec.get("GRID", "product"), reference, path)
    try:
        seed_list = tuple(int(s) for s in (seeds.split(",") if seeds else spec.get("SEEDS", (0,))))
    except ValueError:
        raise SweepError(f"seeds {seeds or spec['SEEDS']!r}: expected integers") from None
    if not root:
        root = os.path.join(RUNS_ROOT, re.sub(r"[^\w.+=,-]", "_", ",".join([name, *sorted(sets)])))
    return Sweep(name, (spec.get("__doc__") or "").strip(), config,
                 {axis: [label for label, _ in levels] for axis, levels in axes.items()},
                 {axis: axes[axis][i][0] for axis, i in reference.items()},
                 every_run, seed_list, root, _runs(points, seed_list, config, every_run, root))


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
    if not _SAFE.match(axis):
        raise SweepError(f"{where}: names may use letters, digits and _ . + - only")
    if isinstance(levels, (tuple, list)) and len(levels) == 2 and isinstance(levels[0], str):
        key, values = levels
        levels = [(str(v), {key: v}) for v in values]
    try:
        levels = [(str(label), {k: _plain(v) for k, v in dict(overrides).items()})
                  for label, overrides in levels]
    except (TypeError, ValueError):
        raise SweepError(f"{where}: expected (key, [values]) or [(label, {{key: value}}), ...]") from None
    if not levels:
        raise SweepError(f"{where}: no levels")
    labels = [label for label, _ in levels]
    for label, overrides in levels:
        if not _SAFE.match(label):
            raise SweepError(f"{where}: level {label!r}: labels may use letters, digits and _ . + -")
        if labels.count(label) > 1:
            raise SweepError(f"{where}: level {label!r} appears twice")
        for key, value in overrides.items():
            _check_value(base, key, value, f"{where} level {label!r}")
    return levels


def _reference(levels: list[tuple[str, dict]], base) -> int:
    """Index of the level the base config already has; the first level when none (or several) do."""
    same = [i for i, (_, o) in enumerate(levels) if all(_get(base, k) == v for k, v in o.items())]
    return same[0] if len(same) == 1 else 0


def _grid(axes, zip_groups, mode, reference, path) -> list[dict[str, tuple[str, dict]]]:
    """Grid points, each {axis: (label, overrides)}; ZIP groups count as one dimension."""
    group_of = {}
    for group in zip_groups:
        for axis in group:
            if axis not in axes or axis in group_of:
                raise SweepError(f"{path}: ZIP names axis {axis!r}, which is unknown or already zipped")
            group_of[axis] = tuple(group)
        if len({len(axes[a]) for a in group}) > 1:
            raise SweepError(f"{path}: ZIP group {tuple(group)} has axes of different lengths")
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
        raise SweepError(f"{path}: GRID={mode!r}: expected 'product' or 'one_at_a_time'")
    return [{axis: level for part in combo for axis, level in part.items()} for combo in combos]


def _parse_sets(sets) -> tuple[dict[str, str], dict[str, str]]:
    """--set items → ({'dataset': name}, {config key: raw value})."""
    words, overrides = {}, {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SweepError(f"--set {item!r}: expected dataset=NAME or a config key a.b=value")
        if key == "dataset":
            words["dataset"] = value
        else:
            overrides[key] = value
    return words, overrides


def _with_dataset(arg: str, dataset: str) -> str:
    """The config arg with its dataset preset word replaced."""
    if dataset not in config_lib.DATASETS:
        raise SweepError(f"--set dataset={dataset}: expected one of {config_lib.DATASETS}")
    words = [w for w in arg.split(",") if w.strip() and w.strip() not in config_lib.DATASETS]
    return ",".join([dataset, *words])


def _parse_set(base, key: str, value: str):
    """A --set string parsed to the type of the config key it overrides."""
    scratch = copy.deepcopy(base)
    try:
        config_lib.set_by_path(scratch, key, value)
    except ConfigError as e:
        raise SweepError(f"--set {key}={value}: {e}") from None
    return _get(scratch, key)


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _set(config, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def _check_value(base, key: str, value, where: str) -> None:
    """Unknown key or a value of the wrong type → SweepError naming both."""
    node = base
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise SweepError(f"{where}: config key {key!r} unknown")
        node = node[part]
    if hasattr(node, "keys"):
        raise SweepError(f"{where}: config key {key!r} is a group, not a value")
    if isinstance(node, bool):
        ok = isinstance(value, bool)
    elif isinstance(node, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(node, tuple):
        ok = isinstance(value, (tuple, list))
    else:
        ok = type(value) is type(node)
    if not ok:
        raise SweepError(f"{where}: config key {key}={value!r}: expected a {type(node).__name__}")


def _plain(value):
    """Lists become tuples: config sequences are tuples, and grid values must compare equal."""
    return tuple(value) if isinstance(value, list) else value


def _flag_value(value) -> str:
    return repr(value) if isinstance(value, tuple) else str(value)


# --- running --------------------------------------------------------------------------------


def check_workdirs(runs: list[Run]) -> None:
    """A workdir launched with other settings must not be skipped or resumed as this run."""
    for run in runs:
        if os.path.exists(run.path("launch.json")):
            with open(run.path("launch.json")) as f:
                before = json.load(f)["config_args"]
            if before != run.config_args():
                changed = sorted(set(before) ^ set(run.config_args()))
                raise SweepError(
                    f"{run.workdir} was launched with other settings ({' '.join(changed)}): "
                    "delete it or use another --workdir_root"
                )


def launch(run: Run, env: dict) -> tuple[str, str]:
    """Run one command to completion: ('done', summary) or ('failed', first line of error.txt)."""
    os.makedirs(run.workdir, exist_ok=True)
    with open(run.path("launch.json"), "w") as f:
        json.dump({"command": run.command(), "config_args": run.config_args()}, f, indent=2)
    if os.path.exists(run.path("error.txt")):
        os.remove(run.path("error.txt"))
    start = time.time()
    with open(run.path("log.txt"), "ab") as log:
        offset = log.tell()
        rc = subprocess.run([sys.executable, *run.command()[1:]], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode
    if rc == 0 and os.path.exists(run.path("results.json")):
        with open(run.path("results.json")) as f:
            test = json.load(f)["test"]
        scores = " ".join(f"{k}={test[k]:.4f}" for k in ("hr@10", "ndcg@10") if k in test)
        return "done", f"{time.time() - start:.0f} s, {scores}"
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


def run_sweep(sweep: Sweep, parallel: int = 1) -> int:
    """Launch every unfinished run (`parallel` at a time); the number that failed."""
    check_workdirs(sweep.runs)
    status = {run.name: run.status() for run in sweep.runs}
    todo = [run for run in sweep.runs if status[run.name] != "done"]
    counts = {s: list(status.values()).count(s) for s in ("done", "unfinished", "failed", "not run")}
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs in {sweep.root}: {counts['done']} finished "
          f"(skipped), {counts['unfinished']} to resume, {counts['failed']} failed before (retried), "
          f"{counts['not run']} new", flush=True)
    env = dict(os.environ)
    if parallel > 1:  # several runs on one accelerator: no run may grab most of its memory
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    failed = []
    pool = concurrent.futures.ThreadPoolExecutor(max(parallel, 1))
    try:
        futures = {pool.submit(launch, run, env): run for run in todo}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            run, (outcome, message) = futures[future], future.result()
            print(f"[{i}/{len(todo)}] {run.name}: {outcome} ({message})", flush=True)
            if outcome == "failed":
                failed.append(run)
    finally:  # on Ctrl-C, start nothing more (the running children get the SIGINT too)
        pool.shutdown(cancel_futures=True)
    return len(failed)


_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, e.g. experiments/ablations/loss.py.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Change the base of every run: dataset=NAME (a preset) or a config key a.b=value."
)
_SEEDS = flags.DEFINE_string("seeds", "", "Comma-separated seeds replacing the file's SEEDS.")
_ROOT = flags.DEFINE_string("workdir_root", "", f"Where the runs go (default {RUNS_ROOT}/<sweep>).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands of unfinished runs; run nothing.")


def load_from_flags() -> Sweep:
    """The sweep named by --sweep, --set, --seeds, --workdir_root (shared with `report`)."""
    return load(_SWEEP.value, _SET.value, _SEEDS.value, _ROOT.value)


def main(argv):
    del argv
    sweep = load_from_flags()
    if _DRY_RUN.value:
        check_workdirs(sweep.runs)
        todo = [run for run in sweep.runs if run.status() != "done"]
        for run in todo:
            print(shlex.join(run.command()))
        print(f"# {len(sweep.runs) - len(todo)} finished runs left out", file=sys.stderr)
        return
    failed = run_sweep(sweep, _PARALLEL.value)
    if failed:
        sys.exit(f"{failed} of {len(sweep.runs)} runs failed (<run>/error.txt says why); "
                 "rerun the same command to retry them")


if __name__ == "__main__":
    flags.mark_flag_as_required("sweep")
    cli.run(main)
