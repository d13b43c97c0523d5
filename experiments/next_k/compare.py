"""Next-K comparison: encdec's generated list vs SASRec's top-K, same next_k split, wall times.

Both models train as study runs (`transrec_jax.studies.runner`: `python -m transrec_jax.main`
in their workdirs, loaded back with `transrec_jax.serving.load_run`) on `dataset.split=next_k` (each
user's last K items are test, the K before them validation, the rest train; checkpoints are
chosen by next-item NDCG@10 on the first validation item). Each best checkpoint then lists K
items per test user, scored with set Recall@K / NDCG@K against the K held-out items (history
excluded for every row):

  sasrec   top_k        the K best items of SASRec's full ranking
  encdec   top_k        the K best items of encdec's first decoding step (no list conditioning)
  encdec   beam=W       encdec's generated list, for each W in --beam_widths (1 = greedy)

Run (relaunching resumes each run; finished runs are only re-evaluated):
  python experiments/next_k/compare.py --dataset=ml-1m --out=experiments/next_k/results/ml-1m.json
  # one model with its own budget (encdec sees one window, i.e. K targets, per user and epoch):
  python experiments/next_k/compare.py --dataset=ml-1m --models=encdec --workdir=/tmp/nk40 \
      --arg=train.num_epochs=40,train.eval_every_epochs=4
  python experiments/next_k/compare.py --dataset=synthetic --arg=debug --out=/tmp/next_k.json

The README's results table is written from the committed results files (readme_table.py; no
training, no runs needed):
  python experiments/next_k/compare.py --markdown_only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax

import readme_table  # next to this script
from transrec_jax import evaluate, host_memory, sharding
from transrec_jax.serving import load_run
from transrec_jax.studies import runner
from transrec_jax.studies.study import Run, StudyError

REPO = pathlib.Path(__file__).resolve().parents[2]


def train_run(model: str, arg: str, root: str) -> dict:
    """Train (or resume) the model's run; its results.json. A finished run is not relaunched."""
    run = Run(model, {"model": model}, model, 0, f"{REPO / 'configs' / model}.py:{arg}", {},
              os.path.join(root, model))
    runner.check_workdirs([run])
    if run.status() != "done":
        outcome, message = runner.launch(run)
        print(f"{model}: {outcome} ({message})", flush=True)
        if outcome == "failed":
            sys.exit(f"error: {model}: {message} ({run.path('error.txt')})")
    return runner.results(run)


def timed(fn):
    """(result of a first call, seconds with compilation, seconds of a second, warm call)."""
    start = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    fn()
    return result, cold, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="a dataset preset word, e.g. ml-1m")
    parser.add_argument("--k", type=int, default=5, help="held-out items per user = list length")
    parser.add_argument("--arg", default="", help="extra config arg words for both models, e.g. debug")
    parser.add_argument("--models", default="sasrec,encdec", help="comma-separated, from sasrec,encdec")
    parser.add_argument("--beam_widths", default="1,4", help="comma-separated encdec beam widths")
    parser.add_argument("--workdir", default="", help="default: experiments/next_k/runs/<dataset>")
    parser.add_argument("--out", default="", help="JSON file for the table (default: <workdir>/compare.json)")
    parser.add_argument("--markdown_only", action="store_true",
                        help="only rewrite README.md's generated table from the committed results "
                             "files (readme_table.TABLES); no training")
    args = parser.parse_args()
    if args.markdown_only:
        readme_table.main([])
        return
    host_memory.keep_freed_memory()  # as transrec_jax.main does, before JAX starts its threads
    root = args.workdir or str(REPO / "experiments" / "next_k" / "runs" / args.dataset)
    arg = f"{args.dataset},dataset.split=next_k,dataset.next_k={args.k},model.next_k={args.k}"
    arg += f",{args.arg}" if args.arg else ""

    rows = []
    for model in args.models.split(","):
        if model not in ("sasrec", "encdec"):
            parser.error(f"--models: {model!r} is not one of sasrec, encdec")
        try:
            results = train_run(model, arg, root)
        except StudyError as e:
            sys.exit(f"error: {e}")
        run = load_run(os.path.join(root, model))
        config, dataset, split, graphdef, params = (run.config, run.dataset, run.split(),
                                                    run.graphdef, run.params)
        mesh = sharding.make_mesh(config.mesh)
        methods = [("top_k", None)]
        if model == "encdec":
            methods += [("generate", int(w)) for w in args.beam_widths.split(",")]
        for method, beam_width in methods:
            evaluator = evaluate.NextKEvaluator(config, dataset, split, "test", graphdef, mesh,
                                                method=method, beam_width=beam_width)
            values, cold, warm = timed(lambda: evaluator(params))
            rows.append({
                "model": model,
                "list": "top_k" if method == "top_k" else f"beam={beam_width}",
                **values,
                "next_item_ndcg@10": results["test"].get("ndcg@10"),
                "train_s": results["train_time_s"],
                "run_s": results["wall_time_s"],
                "eval_s": cold,
                "eval_warm_s": warm,
                "best_step": results["best_step"],
                "num_params": results["num_params"],
            })

    k = args.k
    columns = ["model", "list", f"recall@{k}", f"ndcg@{k}", "next_item_ndcg@10", "train_s",
               "eval_s", "eval_warm_s"]
    print(f"\nNext-{k} test on {args.dataset} (split next_k, history excluded, {jax.devices()[0].device_kind})")
    print("  ".join(c.rjust(18) for c in columns))
    for row in rows:
        print("  ".join((f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])).rjust(18)
                        for c in columns))
    out = args.out or os.path.join(root, "compare.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"dataset": args.dataset, "k": k, "arg": arg, "device": jax.devices()[0].device_kind,
                   "rows": rows}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
