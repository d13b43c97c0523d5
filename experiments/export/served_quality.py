"""Is what we serve what we measured? An exported artifact's test NDCG@10 beside the evaluator's.

The artifact (`transrec_jax.export`: one run, or an ensemble of runs) lists its top K after each
evaluated user's history as a server would (exported.load: jax and numpy only), and numpy scores
those lists against the split's targets: NDCG@K = 1 / log2(rank + 1) for a target at rank <= K,
HR@K = the share of targets in the list. Beside it, in the same process, the evaluator's figures
for the same runs (transrec_jax.evaluate, the tables' protocol: full ranking, history masked,
pessimistic ties), read from the workdirs the manifest names. They differ in two places: where
scores tie at the target (the artifact breaks ties to the lower id), and where the target
repeats an item of its history: the evaluator keeps such a target rankable (ranking.py), a
served list never holds a history item, so those users count as misses here (`repeat_targets`
counts them; none in ML-1M, whose users rate a movie once).

  python -m transrec_jax.export --workdir=RUN1 --workdir=RUN2 --output=/tmp/ens
  python experiments/export/served_quality.py --export=/tmp/ens --name="..."

Writes its record to served_quality.json (replacing the same name's) and regenerates README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import evaluate, hardware, sharding
from transrec_jax.serving import Recommender, export, exported
from transrec_jax.studies import runner

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "served_quality.json")


def served_metrics(model: exported.ExportedModel, dataset, split, part: str, k: int,
                   max_history: int = 0) -> dict:
    """NDCG@k and HR@k of the artifact's lists after each of the split's `part` users' histories
    (the last max_history items when > 0), their whole history excluded; how many targets
    repeat a history item (which no served list can hold)."""
    if k > model.k:
        raise SystemExit(f"error: the artifact lists at most {model.k} items; --k={k}")
    users = split.eval_users(part)
    positions = split.test_pos if part == "test" else split.val_pos
    histories = []
    for u in users:
        start, end = dataset.offsets[u], dataset.offsets[u] + positions[u]
        first = max(start, end - max_history) if max_history else start
        histories.append(dataset.items[first:end])
    targets = dataset.items[dataset.offsets[users] + positions[users]]
    repeats = sum(int(t in h) for t, h in zip(targets, histories))
    started = time.perf_counter()
    lists, _ = model.top_k(histories, k)
    seconds = time.perf_counter() - started
    hit = lists == targets[:, None]
    rank = np.argmax(hit, axis=1)  # 0-based, where found
    found = hit.any(axis=1)
    ndcg = np.where(found, 1 / np.log2(rank + 2), 0.0)
    return {"users": len(users), f"ndcg@{k}": float(ndcg.mean()), f"hr@{k}": float(found.mean()),
            "repeat_targets": repeats, "served_seconds": seconds}


def evaluator_metrics(rec: Recommender, part: str, k: int) -> dict:
    """transrec_jax.evaluate's NDCG@k and HR@k of the same model (one run, or their ensemble)."""
    config = rec.config
    graphdef, params = nnx.split(rec.run.model())
    mesh = sharding.make_mesh(config.mesh)
    values = evaluate.Evaluator(config, rec.dataset, rec.run.split(), part, graphdef, mesh)(params)
    if f"ndcg@{k}" not in values:
        raise SystemExit(f"error: the runs evaluate at eval.ks={tuple(config.eval.ks)}; --k={k} "
                         "is not among them")
    return {f"ndcg@{k}": float(values[f"ndcg@{k}"]), f"hr@{k}": float(values[f"hr@{k}"])}


def measure(export_dir: str, name: str, part: str = "test", k: int = 10) -> dict:
    """One record: the artifact's figures and the evaluator's, side by side."""
    model = exported.load(export_dir)
    manifest = model.manifest
    if manifest.get("time_query") is not None or manifest.get("user_features") is not None:
        raise SystemExit(f"error: {export_dir}: a model that reads times or users; this check "
                         "sends histories alone")
    sources = manifest.get("members", [manifest])
    for source in sources:
        recorded = config_lib.recorded_config(os.path.join(source["workdir"], "config.json"))
        if export.config_hash(recorded) != source["config_sha256"]:
            raise SystemExit(f"error: {source['workdir']}: its config.json is not the one "
                             f"{export_dir} was exported from")
    workdirs = [s["workdir"] for s in sources]
    rec = Recommender(workdirs[0] if len(workdirs) == 1 else workdirs)
    if not rec.config.eval.mask_history:
        raise SystemExit("error: the runs evaluate with eval.mask_history=False; the artifact "
                         "always excludes the history")
    if rec.catalog.ids[1:].tolist() != model.ids[1:]:
        raise SystemExit(f"error: {export_dir}: its catalogue is not its runs' dataset's")
    load = os.getloadavg()[0]  # (other work on the machine slows served_seconds)
    served = served_metrics(model, rec.dataset, rec.run.split(), part, k,
                            rec.config.dataset.max_history)
    measured = evaluator_metrics(rec, part, k)
    return {"model": name, "architecture": manifest["model"], "members": len(sources),
            "dataset": manifest["dataset"], "num_items": manifest["num_items"], "part": part,
            "k": k, "users": served["users"], "repeat_targets": served["repeat_targets"],
            **{f"served_{m}": served[f"{m}@{k}"] for m in ("ndcg", "hr")},
            **{f"evaluator_{m}": measured[f"{m}@{k}"] for m in ("ndcg", "hr")},
            "served_seconds": served["served_seconds"], "load_avg_1min": load,
            "hardware": hardware.host(),
            "date": datetime.date.today().isoformat()}


def save(records: list[dict]) -> None:
    """served_quality.json's records with these models' replaced."""
    names = {r["model"] for r in records}
    kept = [r for r in runner.read_records(RESULTS) if r["model"] not in names]
    runner.write_records(RESULTS, kept + records)


def table(records: list[dict]) -> str:
    lines = ["| model | runs | items | part | users | targets in history | NDCG@K served | "
             "NDCG@K evaluator | HR@K served | HR@K evaluator | K | served s |", "|" + " --- |" * 12]
    for r in records:
        lines.append(f"| {r['model']} | {r['members']} | {r['num_items']:,} | {r['part']} | "
                     f"{r['users']:,} | {r['repeat_targets']:,} | {r['served_ndcg']:.4f} | "
                     f"{r['evaluator_ndcg']:.4f} | {r['served_hr']:.4f} | {r['evaluator_hr']:.4f} | "
                     f"{r['k']} | {r['served_seconds']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, help="a directory written by transrec_jax.export")
    parser.add_argument("--name", help="the model's name in the records (default: the export's directory)")
    parser.add_argument("--part", choices=("test", "val"), default="test")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.export, exported.MANIFEST)):
        raise SystemExit(f"error: --export={args.export!r}: no {exported.MANIFEST}; expected a "
                         "directory written by transrec_jax.export")
    name = args.name or os.path.basename(os.path.normpath(args.export))
    try:
        record = measure(args.export, name, args.part, args.k)
    except config_lib.ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    save([record])
    print(table([record]))
    print(json.dumps({k: v for k, v in record.items() if k != "hardware"}))
    print(f"wrote {RESULTS}")
    sys.path.insert(0, HERE)
    import readme  # (beside this file) the README's tables from the records

    readme.write()


if __name__ == "__main__":
    main()
