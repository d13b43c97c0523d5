"""How far does averaging finished runs' scores go? Test the sum-of-logits ensemble of K runs.

Separately trained runs, each at its best-validation checkpoint, become the members of one
transrec_jax.models.Ensemble (item i scored by the sum of the members' scores), which the
unchanged evaluator ranks under the table's protocol (full ranking, history masked,
pessimistic ties). Members must rank one catalogue and read the same inputs (serving/run.py
`ensemble_of`); they may differ in anything else. (model.ensemble_size trains such an
ensemble in one run instead; `python -m transrec_jax.export --workdir=A --workdir=B` serves
one.)

Run (from the repository root, on run directories that still hold their checkpoints):
  python experiments/reproduce/ensemble.py --json=/tmp/ensemble.json \
      experiments/reproduce/runs/ml1m/best_dff256,seed=0 experiments/reproduce/runs/ml1m/best_dff256,seed=1
Output: validation and test metrics of every member alone and of the ensemble (with
--all_subsets, of every ensemble of two or more of them too); --json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import evaluate, sharding
from transrec_jax.serving import ensemble_of, load_run

METRICS = ("ndcg@10", "hr@10", "mrr@10")


def evaluate_model(config, dataset, split, model) -> dict:
    mesh = sharding.make_mesh(config.mesh)
    graphdef, params = nnx.split(model)
    out = {}
    for part in ("val", "test"):
        values = evaluate.Evaluator(config, dataset, split, part, graphdef, mesh)(params)
        out.update({f"{part}_{m}": float(values[m]) for m in METRICS})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdirs", nargs="+", help="finished run directories (two or more)")
    parser.add_argument("--all_subsets", action="store_true",
                        help="also test every smaller ensemble of two or more of the runs")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    try:
        runs = [load_run(workdir) for workdir in args.workdirs]
        ensemble_of(runs)  # members rank one catalogue and read the same inputs
    except config_lib.ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    results = {os.path.basename(run.workdir.rstrip("/")):
               evaluate_model(run.config, run.dataset, run.split(), run.model()) for run in runs}
    config, dataset, split = runs[0].config, runs[0].dataset, runs[0].split()  # the ensembles'
    names = list(results)
    sizes = range(2, len(runs) + 1) if args.all_subsets else [len(runs)]
    for size in sizes:
        for subset in itertools.combinations(range(len(runs)), size):
            name = "ensemble" if size == len(runs) else "ensemble of " + " + ".join(
                names[i] for i in subset)
            model = ensemble_of([runs[i] for i in subset]).model()
            results[name] = evaluate_model(config, dataset, split, model)
    width = max(len(name) for name in results)
    print(f"{'model':{width}s} {'val ndcg':>9s} {'test ndcg':>9s} {'test hr':>8s}")
    for name, m in results.items():
        print(f"{name:{width}s} {m['val_ndcg@10']:9.4f} {m['test_ndcg@10']:9.4f} {m['test_hr@10']:8.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"members": args.workdirs, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
