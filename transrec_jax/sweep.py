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

How the grid expands and how runs are named: transrec_jax/studies/grid.py. A run is one
command, `python -m transrec_jax.main --workdir=<root>/<name> --config=BASE --config.key=value
...`. --dry_run prints the commands of the runs not finished yet, one a
line, for a cluster scheduler; otherwise this process runs them, --parallel at a time, with
its own interpreter, output to <run>/log.txt. Rerunning a sweep skips runs that have
results.json and relaunches the others in place, so an interrupted run resumes from its last
checkpoint; a failed run gets <run>/error.txt (exit code, end of its output), the sweep goes
on and exits 1 at the end (transrec_jax/studies/runner.py). The root defaults to
experiments/ablations/runs/<sweep name>, with the --set items appended, so each --set variant
keeps its own runs.
"""

from __future__ import annotations

import sys

from absl import flags

from transrec_jax import cli
from transrec_jax.studies import grid, runner
from transrec_jax.studies.study import StudyError

SweepError = StudyError  # the name this module's callers knew


def run_sweep(sweep: grid.Sweep, parallel: int = 1) -> int:
    """Launch every unfinished run (`parallel` at a time); the number that failed."""
    runner.check_workdirs(sweep.runs)
    status = [run.status() for run in sweep.runs]
    counts = {s: status.count(s) for s in ("done", "unfinished", "failed", "not run")}
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs in {sweep.root}: {counts['done']} finished "
          f"(skipped), {counts['unfinished']} to resume, {counts['failed']} failed before (retried), "
          f"{counts['not run']} new", flush=True)
    return runner.run_all(runner.todo(sweep.runs), parallel)


_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, e.g. experiments/ablations/loss.py.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Change the base of every run: dataset=NAME (a preset) or a config key a.b=value."
)
_SEEDS = flags.DEFINE_string("seeds", "", "Comma-separated seeds replacing the file's SEEDS.")
_ROOT = flags.DEFINE_string("workdir_root", "", f"Where the runs go (default {grid.RUNS_ROOT}/<sweep>).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands of unfinished runs; run nothing.")


def load_from_flags() -> grid.Sweep:
    """The sweep named by --sweep, --set, --seeds, --workdir_root (shared with `report`)."""
    return grid.load(_SWEEP.value, _SET.value, _SEEDS.value, _ROOT.value)


def main(argv):
    del argv
    sweep = load_from_flags()
    if _DRY_RUN.value:
        runner.dry_run(sweep.runs)
        return
    failed = run_sweep(sweep, _PARALLEL.value)
    if failed:
        sys.exit(f"{failed} of {len(sweep.runs)} runs failed (<run>/error.txt says why); "
                 "rerun the same command to retry them")


if __name__ == "__main__":
    flags.mark_flag_as_required("sweep")
    cli.run(main)
