"""Does picking the checkpoint on validation pick a better test checkpoint?

Every run of the tables reports test metrics of its best-validation checkpoint. With 80 or more
validation evaluations per run, the best validation figure is a maximum over noisy values and
reads high, and the validation target is one item before the test target. This script evaluates
the last checkpoint a finished run kept beside its best one, on validation and on test, so the
two selections can be compared run by run: if validation and test move together, the
best-validation checkpoint should also test better than the last one.

Run (from the repository root, on run directories that still hold their checkpoints):
  python experiments/reproduce/last_vs_best.py --json=/tmp/last_vs_best.json \
      experiments/reproduce/runs/ml1m/best,seed=0 experiments/reproduce/runs/ml1m/best_dff256,seed=0
Output: a table on stdout (validation and test NDCG@10 / HR@10 of both checkpoints) and --json.
"""

from __future__ import annotations

import argparse
import json
import os


from transrec_jax import config as config_lib
from transrec_jax import evaluate, sharding
from transrec_jax.serving import load_run

METRICS = ("ndcg@10", "hr@10")


def checkpoint_metrics(workdir: str) -> dict:
    """{'best': {...}, 'last': {...}}: step, val and test metrics of both kept checkpoints."""
    out = {}
    for name in ("best", "last"):
        run = load_run(workdir, checkpoint=name)
        if name == "best":
            mesh = sharding.make_mesh(run.config.mesh)
            split = run.split()
            evaluators = {part: evaluate.Evaluator(run.config, run.dataset, split, part,
                                                   run.graphdef, mesh) for part in ("val", "test")}
        out[name] = {"step": run.step}
        for part, evaluator in evaluators.items():
            values = evaluator(run.params)
            out[name].update({f"{part}_{m}": float(values[m]) for m in METRICS})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdirs", nargs="+", help="finished run directories")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    results = {}
    header = f"{'run':32s} {'ckpt':4s} {'step':>5s} {'val ndcg':>9s} {'test ndcg':>9s} {'test hr':>8s}"
    print(header)
    for workdir in args.workdirs:
        name = os.path.basename(workdir.rstrip("/"))
        try:
            results[name] = checkpoint_metrics(workdir)
        except config_lib.ConfigError as e:
            raise SystemExit(f"error: {e}") from None
        for ckpt, m in results[name].items():
            print(f"{name:32s} {ckpt:4s} {m['step']:5d} {m['val_ndcg@10']:9.4f} "
                  f"{m['test_ndcg@10']:9.4f} {m['test_hr@10']:8.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
