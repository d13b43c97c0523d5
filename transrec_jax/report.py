r"""A sweep's results as a paper-ready table and figures (transrec_jax/studies/report.py).

  python -m transrec_jax.report --sweep=experiments/ablations/loss.py
  python -m transrec_jax.report --sweep=experiments/ablations/loss.py \
      --out=experiments/ablations/results/loss
  python -m transrec_jax.report --regenerate=experiments/ablations/results

Takes the same --sweep/--set/--seeds/--workdir_root as `transrec_jax.sweep` (they name the
runs) and writes report.md, report.csv, runs.csv, the figures and results.json (the runs'
records: what the report uses) to --out (default: the sweep's directory). A run whose workdir
is missing is read from --out's results.json, so a committed report regenerates on a fresh
checkout; one written for other sweep settings is refused.

--regenerate=DIR rewrites every report under DIR (each DIR/<study>/ with a results.json) from
its results.json alone: the sweep file, --set items and metrics it records.
"""

from __future__ import annotations

import glob
import os

from absl import flags

from transrec_jax import cli
from transrec_jax import sweep as sweep_cli
from transrec_jax.studies import report

_OUT = flags.DEFINE_string("out", "", "Directory for the report (default: the sweep's directory).")
_METRICS = flags.DEFINE_list("metrics", ["hr@10", "ndcg@10", "hr@20", "ndcg@20"], "Table's test metrics.")
_CURVE = flags.DEFINE_string("curve_metric", "ndcg@10", "Validation metric of the curves plot.")
_REGENERATE = flags.DEFINE_string(
    "regenerate", "", "Rewrite every report under this directory from its results.json "
    "(no --sweep): e.g. experiments/ablations/results.")
for _name in ("sweep", "set", "seeds", "workdir_root"):
    flags.declare_key_flag(_name)


def main(argv):
    del argv
    if _REGENERATE.value:
        if flags.FLAGS.sweep:
            raise cli.UsageError("--regenerate takes the sweep from each results.json: drop --sweep")
        paths = sorted(glob.glob(os.path.join(_REGENERATE.value, "*", report.RESULTS)))
        if not paths:
            raise cli.UsageError(f"--regenerate={_REGENERATE.value}: no <study>/{report.RESULTS} in it")
        for path in paths:
            report.regenerate(path)
            print(f"regenerated {os.path.dirname(path)}")
        return
    if not flags.FLAGS.sweep:
        raise cli.UsageError("--sweep is required (or --regenerate=DIR)")
    sweep = sweep_cli.load_from_flags()
    out = _OUT.value or sweep.root
    print(report.write_report(sweep, out, _METRICS.value, _CURVE.value))
    print(f"written to {out}")


if __name__ == "__main__":
    cli.run(main)
