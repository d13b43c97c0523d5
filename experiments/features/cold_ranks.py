r"""Why a withheld item ranks where it does: its content, or its scale against the warm items?

For each trained run with features of the cold protocol (features.py), the test users whose
target is a withheld item: the target's rank among all items (history excluded, as in
evaluation) and among the withheld items only, and the mean norm of the output-table rows of
warm and of withheld items. A target that ranks well among the withheld items but not among
all of them is placed by its content and lost to the warm items' larger scores.
Writes experiments/features/cold_ranks.json.

  python experiments/features/cold_ranks.py     # every finished cold run with features
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import jax.numpy as jnp
import numpy as np

from transrec_jax.data import splits
from transrec_jax.data.batching import gather_windows
from transrec_jax.serving.run import load_run

HERE = os.path.dirname(os.path.abspath(__file__))


def cold_ranks(workdir: str) -> dict:
    run = load_run(workdir)
    ds, cfg, model = run.dataset, run.config, run.model()
    split = splits.make_split(ds, cfg.dataset, seed=cfg.seed)
    withheld = split.withheld
    users = np.flatnonzero(split.test_pos >= 0)
    targets = ds.items[ds.offsets[users] + split.test_pos[users]]
    cold = np.isin(targets, withheld)
    users, targets = users[cold], targets[cold]
    starts, ends = ds.offsets[users], ds.offsets[users] + split.test_pos[users]
    histories = gather_windows(ds.items, starts, ends, cfg.model.max_len)
    weight, bias = (np.asarray(x) if x is not None else None for x in model.output_table())
    among_all, among_withheld = [], []
    for first in range(0, len(users), 256):
        rows = slice(first, first + 256)
        scores = np.asarray(model.user_representation(jnp.asarray(histories[rows]))) @ weight.T
        if bias is not None:
            scores = scores + bias
        scores[:, 0] = -np.inf
        for s, t, a, b in zip(scores, targets[rows], starts[rows], ends[rows]):
            s[ds.items[a:b]] = -np.inf  # the history, as evaluation excludes it
            among_all.append(int((s > s[t]).sum()))
            among_withheld.append(int((s[withheld] > s[t]).sum()))
    warm = np.ones(len(weight), bool)
    warm[withheld] = False
    warm[0] = False
    warm[ds.num_items + 1:] = False
    among_all, among_withheld = np.array(among_all), np.array(among_withheld)
    return {"workdir": os.path.relpath(workdir, HERE), "dataset": cfg.dataset.name, "seed": cfg.seed,
            "arm": os.path.basename(workdir).split(",")[1],
            "withheld_targets": len(users), "items": ds.num_items, "withheld_items": len(withheld),
            "median_rank_among_all": float(np.median(among_all)),
            "median_rank_among_withheld": float(np.median(among_withheld)),
            "hr@10_among_withheld": float(np.mean(among_withheld < 10)),
            "hr@10_among_withheld_at_random": 10 / len(withheld),
            "row_norm_warm": float(np.linalg.norm(weight[warm], axis=1).mean()),
            "row_norm_withheld": float(np.linalg.norm(weight[withheld], axis=1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir_root", default=os.path.join(HERE, "runs"))
    args = parser.parse_args()
    workdirs = sorted(d for d in glob.glob(os.path.join(args.workdir_root, "*", "cold,features*,seed=*"))
                      if os.path.exists(os.path.join(d, "results.json")))
    records = [cold_ranks(d) for d in workdirs]
    for r in records:
        print(json.dumps(r))
    with open(os.path.join(HERE, "cold_ranks.json"), "w") as f:
        json.dump({"records": records}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
