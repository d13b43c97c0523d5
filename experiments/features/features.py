r"""Item features and cold start on ML-1M and Beauty (issue 28, item 5).

Two protocols, two trained arms each, every (dataset, protocol, arm) with seeds 0, 1, 2:
  warm  leave-one-out (the protocol of experiments/reproduce/): `id-only`, configs/sasrec.py:<dataset>
        as it is, against `features`, the same with the config word `item_features` (the preset's
        item file through a sum tower, models/item_tower.py; no id dropout: every item has trained);
  cold  dataset.split=cold_items (10% of the items, drawn with the seed, withheld from training;
        a withheld test target is ranked against the full catalogue): `id-only` against
        `features` with model.id_dropout=0.3 (30% of the input items and of the output table's
        rows each step are represented by the "unknown id" vector and their content, as the
        withheld items always are).
`features-cosine` (a lever tried on the cold protocol, findings.md): `features` scoring items by
cosine / 0.1 (model.score_temperature), so that no item's score grows with its row's norm; the
warm protocol compares it with `id-only`, and `id-only-cosine` (the same scores without
features) separates what the features bring from what the cosine does.
The untrained baselines come with each run under the same protocol: popularity (every run) and
the content-only nearest neighbour of evaluate.py (`test_content_knn`, runs with features).
Budget: 10 epochs (half the config's 20, for a 2-core CPU), validation every epoch, early stop
after 5 validations without an NDCG@10 gain, test on the best checkpoint. Every run also reports the slices of
metrics.py (target popularity, history length and, under `cold`, withheld/warm targets).

Runs go to --workdir_root (resumable: finished runs are skipped); the records go to
experiments/features/results.json; the tables (README.md) and the plot (cold_start.png) are
generated from it, with the hand-written findings in experiments/features/findings.md.

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    python experiments/features/features.py --datasets=ml-1m,beauty --seeds=0,1,2 --parallel=2
  python experiments/features/features.py --markdown_only
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics

from transrec_jax.studies import runner
from transrec_jax.studies.study import Run

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
PLOT = os.path.join(HERE, "cold_start.png")
COLD_RANKS = os.path.join(HERE, "cold_ranks.json")
CONFIG = {"id-only": "configs/sasrec.py:{dataset}", "features": "configs/sasrec.py:{dataset},item_features",
          "features-cosine": "configs/sasrec.py:{dataset},item_features",
          "id-only-cosine": "configs/sasrec.py:{dataset}"}
# A lever (findings.md), and its control without features
COSINE = {"model.score_temperature": 0.1}
ARM_OVERRIDES = {"features-cosine": COSINE, "id-only-cosine": COSINE}
PROTOCOL = {"warm": {}, "cold": {"dataset.split": "cold_items"}}
EPOCHS = 10
ID_DROPOUT = {"warm": 0.0, "cold": 0.3}  # of the `features` arm
POPULARITY_SLICES = ("head", "torso", "tail")
LENGTH_SLICES = ("1", "2-4", "5-9", "10-19", "20+")


def make_run(dataset: str, protocol: str, arm: str, seed: int, root: str) -> Run:
    overrides = {**PROTOCOL[protocol], **ARM_OVERRIDES.get(arm, {}), "train.num_epochs": EPOCHS, "seed": seed}
    if arm.startswith("features") and ID_DROPOUT[protocol]:
        overrides["model.id_dropout"] = ID_DROPOUT[protocol]
    name = f"{protocol},{arm},seed={seed}"
    return Run(name, {"protocol": protocol, "arm": arm}, f"{protocol},{arm}", seed,
               CONFIG[arm].format(dataset=dataset), overrides, os.path.join(root, dataset, name))


def train_arm(dataset: str, protocol: str, arm: str, seed: int, root: str) -> dict:
    run = make_run(dataset, protocol, arm, seed, root)
    rec = runner.finished(run)
    full = runner.results(run)
    return {"dataset": dataset, "protocol": protocol, "arm": arm, "seed": seed,
            "config_args": run.config_args(), "test": rec["test"], "val": rec["val"]["ndcg@10"],
            "test_slices": full["test_slices"], "test_popularity": full["test_popularity"],
            "test_popularity_slices": full["test_popularity_slices"],
            "test_content_knn": full.get("test_content_knn"),
            "test_content_knn_slices": full.get("test_content_knn_slices"),
            "split": full["dataset"]["split"], "cost_s": rec["wall_time_s"],
            "best_epoch": rec["best_epoch"], "epochs": rec["epochs"], "hardware": rec["hardware"]}


# --- tables ------------------------------------------------------------------------------

def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f} (1 seed)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def methods(records: list[dict], dataset: str, protocol: str) -> dict[str, list[dict]]:
    """method → [{'test', 'slices', 'seed'}] for the trained arms and the baselines they carry."""
    out: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if (r["dataset"], r["protocol"]) != (dataset, protocol):
            continue
        out.setdefault(f"SASRec, {r['arm']}", []).append(
            {"test": r["test"], "slices": r["test_slices"], "seed": r["seed"]})
        if r["arm"] == "features" and r["test_content_knn"]:
            out.setdefault("content kNN (untrained)", []).append(
                {"test": r["test_content_knn"], "slices": r["test_content_knn_slices"], "seed": r["seed"]})
        if r["arm"] == "id-only":
            out.setdefault("popularity (untrained)", []).append(
                {"test": r["test_popularity"], "slices": r["test_popularity_slices"], "seed": r["seed"]})
    return out


def sliced(rows: list[dict], slicing: str, label: str, metric: str) -> list[float]:
    return [row["slices"][slicing][label][metric] for row in rows
            if row["slices"] and label in row["slices"].get(slicing, {})]


def users(rows: list[dict], slicing: str, label: str) -> str:
    counts = sorted({row["slices"][slicing][label]["users"] for row in rows
                     if row["slices"] and label in row["slices"].get(slicing, {})})
    return "–" if not counts else (str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}")


def markdown(records: list[dict]) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    lines = ["<!-- generated by experiments/features/features.py from results.json; edit findings.md -->",
             "# Item features and cold start", "",
             "Arms, protocols and budget: [features.py](features.py); words: [findings.md](findings.md), "
             "quoted below the tables. Test figures, mean ± sample std over the seeds; a slice's "
             "`users` is its size (a range when the seeds' splits differ).", ""]
    lines += ["## Cold items (`dataset.split=cold_items`): withheld and warm test targets", "",
              "| dataset | method | seeds | withheld NDCG@10 | withheld HR@10 | withheld users | warm NDCG@10 | overall NDCG@10 |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for dataset in datasets:
        for method, rows in methods(records, dataset, "cold").items():
            lines.append(
                f"| {dataset} | {method} | {','.join(str(r['seed']) for r in rows)} | "
                f"{mean_std(sliced(rows, 'target_withheld', 'withheld', 'ndcg@10'))} | "
                f"{mean_std(sliced(rows, 'target_withheld', 'withheld', 'hr@10'))} | "
                f"{users(rows, 'target_withheld', 'withheld')} | "
                f"{mean_std(sliced(rows, 'target_withheld', 'warm', 'ndcg@10'))} | "
                f"{mean_std([r['test']['ndcg@10'] for r in rows])} |")
    if not any(r["protocol"] == "warm" for r in records):
        lines += ["", "## Warm leave-one-out", "",
                  "Not run yet: `python experiments/features/features.py --protocols=warm`."]
        return finish(lines, records)
    lines += ["", "## Warm leave-one-out: features on and off, by the target's training popularity", "",
              "NDCG@10 overall and on test targets in the head, torso and tail terciles of training counts.", "",
              "| dataset | method | seeds | NDCG@10 | HR@10 | " + " | ".join(POPULARITY_SLICES) + " |",
              "|---|---|---:|---:|---:|" + "---:|" * len(POPULARITY_SLICES)]
    for dataset in datasets:
        for method, rows in methods(records, dataset, "warm").items():
            lines.append(
                f"| {dataset} | {method} | {','.join(str(r['seed']) for r in rows)} | "
                f"{mean_std([r['test']['ndcg@10'] for r in rows])} | "
                f"{mean_std([r['test']['hr@10'] for r in rows])} | " +
                " | ".join(mean_std(sliced(rows, 'target_popularity', s, 'ndcg@10'))
                           for s in POPULARITY_SLICES) + " |")
    lines += ["", "## Warm leave-one-out, by history length (items before the test target)", "",
              "NDCG@10; the second line of each dataset gives the slice sizes.", "",
              "| dataset | method | " + " | ".join(LENGTH_SLICES) + " |",
              "|---|---|" + "---:|" * len(LENGTH_SLICES)]
    for dataset in datasets:
        rows_by = methods(records, dataset, "warm")
        for method, rows in rows_by.items():
            lines.append(f"| {dataset} | {method} | " + " | ".join(
                mean_std(sliced(rows, 'history_length', s, 'ndcg@10')) for s in LENGTH_SLICES) + " |")
        if rows_by:
            first = next(iter(rows_by.values()))
            lines.append(f"| {dataset} | users | " + " | ".join(
                users(first, 'history_length', s) for s in LENGTH_SLICES) + " |")
    return finish(lines, records)


def finish(lines: list[str], records: list[dict]) -> str:
    """The rank table, the plot, the machines and the findings below the result tables."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    lines += cold_rank_lines()
    if os.path.exists(PLOT):
        lines += ["", "![cold-target NDCG@10 by method, and warm NDCG@10 by history length](cold_start.png)"]
    cpus = sorted({r["hardware"].get("cpu", "?") for r in records})
    cost = {d: statistics.mean(r["cost_s"] for r in records if r["dataset"] == d) / 60 for d in datasets}
    lines += ["", f"Machines: {'; '.join(cpus)}. Mean wall time per trained run: "
              + ", ".join(f"{d} {m:.1f} min" for d, m in cost.items()) + ".", ""]
    findings = os.path.join(HERE, "findings.md")
    if os.path.exists(findings):
        with open(findings) as f:
            lines += [f.read().strip(), ""]
    return "\n".join(lines)


def cold_rank_lines() -> list[str]:
    """The table of cold_ranks.json (cold_ranks.py), when it exists."""
    if not os.path.exists(COLD_RANKS):
        return []
    with open(COLD_RANKS) as f:
        ranks = json.load(f)["records"]
    lines = ["", "## Where the feature models rank withheld targets (cold protocol)", "",
             "From [cold_ranks.py](cold_ranks.py): the withheld test target's median rank among all "
             "items and among the withheld items only, HR@10 among the withheld items (and at "
             "random), and the mean norm of the output rows of warm and of withheld items.", "",
             "| dataset | arm | seed | median rank, all items | median rank, withheld items | HR@10 among withheld (random) | row norm, warm | row norm, withheld |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(ranks, key=lambda r: (r["dataset"], r["arm"], r["seed"])):
        lines.append(f"| {r['dataset']} | {r['arm']} | {r['seed']} | {r['median_rank_among_all']:.0f} of {r['items']} | "
                     f"{r['median_rank_among_withheld']:.0f} of {r['withheld_items']} | "
                     f"{r['hr@10_among_withheld']:.3f} ({r['hr@10_among_withheld_at_random']:.3f}) | "
                     f"{r['row_norm_warm']:.3f} | {r['row_norm_withheld']:.3f} |")
    return lines


def plot(records: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / 5
    for d, dataset in enumerate(datasets):
        for m, (method, rows) in enumerate(methods(records, dataset, "cold").items()):
            values = sliced(rows, "target_withheld", "withheld", "ndcg@10")
            if values:
                axes[0].bar(d + (m - 2) * width, statistics.mean(values), width,
                            yerr=statistics.stdev(values) if len(values) > 1 else 0,
                            color=f"C{m}", label=method if d == 0 else None)
    axes[0].set_xticks(range(len(datasets)), datasets)
    axes[0].set_ylabel("test NDCG@10 on withheld (cold) targets")
    axes[0].set_title("cold items: mean ± std over seeds")
    axes[0].legend(fontsize=8)
    for d, dataset in enumerate(datasets):
        for m, (method, rows) in enumerate(methods(records, dataset, "warm").items()):
            xs = [s for s in LENGTH_SLICES if sliced(rows, "history_length", s, "ndcg@10")]
            ys = [statistics.mean(sliced(rows, "history_length", s, "ndcg@10")) for s in xs]
            axes[1].plot(xs, ys, marker="o", color=f"C{m}", linestyle=("-", "--")[d % 2],
                         label=f"{dataset}: {method}")
    if not any(r["protocol"] == "warm" for r in records):
        axes[1].set_visible(False)
    axes[1].set_xlabel("history length before the test target")
    axes[1].set_ylabel("test NDCG@10 (warm leave-one-out)")
    if axes[1].lines:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def load_records() -> list[dict]:
    return runner.read_records(RESULTS)


def write(records: list[dict]) -> None:
    records = sorted(records, key=lambda r: (r["dataset"], r["protocol"], r["arm"], r["seed"]))
    runner.write_records(RESULTS, records)
    if records:
        plot(records)
    runner.write_atomic(os.path.join(HERE, "README.md"), markdown(records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="beauty,ml-1m")
    parser.add_argument("--protocols", default="cold,warm")
    parser.add_argument("--arms", default="features,id-only")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--workdir_root", default=os.path.join(HERE, "runs"))
    parser.add_argument("--markdown_only", action="store_true")
    args = parser.parse_args()
    if args.markdown_only:
        write(load_records())
        return
    jobs = [(dataset, protocol, arm, int(seed)) for protocol in args.protocols.split(",")
            for dataset in args.datasets.split(",") for seed in args.seeds.split(",")
            for arm in args.arms.split(",")]
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(train_arm, *job, args.workdir_root) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            rec = future.result()
            key = (rec["dataset"], rec["protocol"], rec["arm"], rec["seed"])
            records = [r for r in load_records()  # (another invocation may have added some)
                       if (r["dataset"], r["protocol"], r["arm"], r["seed"]) != key] + [rec]
            write(records)
            print(f"{key}: test ndcg@10 {rec['test']['ndcg@10']:.4f}, {rec['cost_s'] / 60:.1f} min",
                  flush=True)


if __name__ == "__main__":
    main()
