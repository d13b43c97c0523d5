r"""Are the explanations faithful? Deletion curves of each attribution method (issue 29, item 3).

For each trained workdir (one per seed) and a seeded sample of its users (the same users for
every workdir of a dataset: --users of those whose window holds more than max(--ks) items), the
top-1 recommendation after the user's whole sequence (as `recommend --users=all` makes it) is
explained by each method, and the k = 1, 2, 5, 10 history items it attributes most are deleted
at once (dropped, the older items shifted right: explain.py's occlusion). Against two controls:
  random  k history items drawn uniformly (seeded numpy);
  recent  the k most recent items.
Per k: the drop in the item's score (original - after; larger = the deleted items mattered
more) and its 0-based rank after the deletion among the items the original history leaves
rankable (the candidate set stays fixed; 0 = still first). AOPC: the score drop averaged over
the ks. Cost: seconds per user of the attribution itself, compiled (each shape warmed first).

Records go to <out_dir>/results.json (a rerun replaces the records of its workdirs), the table
and the deletion-curve plot to <out_dir>/README.md and <out_dir>/deletion_<dataset>.png,
with the hand-written findings in experiments/explain/findings.md quoted below the table.

  python experiments/explain/faithfulness.py --workdirs=runs/ml1m_s0,runs/ml1m_s1,runs/ml1m_s2
  python experiments/explain/faithfulness.py --markdown_only
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax import explain, hardware, ranking
from transrec_jax.data.batching import gather_windows
from transrec_jax.serving import Recommender
from transrec_jax.studies import runner

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
CONTROLS = ("random", "recent")
_BATCH = 128  # users per scoring call


def user_sample(rec: Recommender, users: int, longest_k: int, seed: int) -> np.ndarray:
    """Indices of `users` users (seeded) whose window holds more than longest_k items."""
    lengths = np.minimum(np.diff(rec.dataset.offsets), rec.config.model.max_len)
    eligible = np.flatnonzero(lengths > longest_k)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, size=min(users, len(eligible)), replace=False))


def delete(history: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """history [N, W] without the given positions [N, k]: the rest keep their order,
    right-aligned, padding at the left."""
    keep = history != 0
    np.put_along_axis(keep, positions, False, axis=1)
    order = np.argsort(keep, axis=1, kind="stable")  # deleted and padding first, order kept
    out = np.take_along_axis(history, order, axis=1)
    return np.where(np.take_along_axis(keep, order, axis=1), out, 0)


@functools.partial(jax.jit, static_argnames="graphdef")
def _score_and_rank(graphdef, params, history, exclude, item, who):
    model = nnx.merge(graphdef, params)
    table = model.output_table()
    user = model.user_representation(history, **who)
    ranks, _, _ = ranking.rank_full(user, *table, item, exclude, kmax=1, num_items=model.num_items)
    return explain.item_scores(user, table, item[:, None])[:, 0], ranks


def score_and_rank(model, history, exclude, item, users):
    """(score float[N], rank int[N]) of item[N] after history[N, W] of users[N] (dense
    indices), exclude[N, H] unrankable."""
    graphdef, params = nnx.split(model)
    first_member = model.members[0] if hasattr(model, "members") else model
    reads_users = getattr(first_member, "user_tower", None) is not None
    scores, ranks = [], []
    for first in range(0, len(history), _BATCH):
        part = [a[first : first + _BATCH] for a in (history, exclude, item, users + 1)]
        pad = _BATCH - len(part[0])
        part = [jnp.asarray(np.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))) for a in part]
        numbers = part.pop()
        who = {"users": numbers} if reads_users else {}
        s, r = _score_and_rank(graphdef, params, *part, who)
        scores.append(np.asarray(s)[: _BATCH - pad])
        ranks.append(np.asarray(r)[: _BATCH - pad])
    return np.concatenate(scores), np.concatenate(ranks)


def attribute(model, method, history, item, users, rng) -> tuple[np.ndarray, float]:
    """(attributions [N, W] of item [N] over history, seconds per user). Controls rank positions
    by a seeded random key or by recency."""
    real = history != 0
    if method == "random":
        return np.where(real, rng.random(history.shape), -np.inf), 0.0
    if method == "recent":
        return np.where(real, np.arange(history.shape[1])[None, :], -np.inf), 0.0
    lengths = real.sum(1)
    warm = [np.flatnonzero(lengths == n)[0] for n in np.unique(lengths)]  # every width compiles
    explain.explain(model, history[warm], item[warm, None], method, users[warm])
    start = time.perf_counter()
    result = explain.explain(model, history, item[:, None], method, users)
    cost = (time.perf_counter() - start) / len(history)
    return np.where(real, result.attributions[:, 0], -np.inf), cost


def measure(workdir: str, methods: list[str], users: int, ks: list[int], seed: int) -> list[dict]:
    rec = Recommender(workdir)
    ds = rec.dataset
    chosen = user_sample(rec, users, max(ks), seed)
    starts, ends = ds.offsets[:-1][chosen], ds.offsets[1:][chosen]
    top, _ = rec.top_k(starts, ends, ds.items, 1, rec.times, chosen)
    item = top[:, 0]
    history = gather_windows(ds.items, starts, ends, rec.config.model.max_len)
    exclude = gather_windows(ds.items, starts, ends, int((ends - starts).max()))
    model = rec.run.model()
    base_score, base_rank = score_and_rank(model, history, exclude, item, chosen)
    records = []
    for method in [*methods, *CONTROLS]:
        rng = np.random.default_rng([seed, 29])
        attributions, cost = attribute(model, method, history, item, chosen, rng)
        order = np.argsort(-attributions, axis=1, kind="stable")
        deletion = {}
        for k in ks:
            score, rank = score_and_rank(model, delete(history, order[:, :k]), exclude, item, chosen)
            deletion[str(k)] = {"score_drop": float(np.mean(base_score - score)),
                                "rank": float(np.mean(rank)), "still_top1": float(np.mean(rank == 0))}
        records.append({
            "dataset": rec.config.dataset.name, "seed": int(rec.config.seed), "workdir": workdir,
            "model": rec.config.model.name, "method": method, "users": int(len(chosen)),
            "sample_seed": seed, "base_rank": float(np.mean(base_rank)), "deletion": deletion,
            "aopc": float(np.mean([deletion[str(k)]["score_drop"] for k in ks])),
            "cost_s_per_user": cost, "hardware": hardware.host(),
            "date": datetime.date.today().isoformat()})
        print(f"{workdir} {method}: AOPC {records[-1]['aopc']:.4f}, "
              f"{cost * 1e3:.2f} ms per user", flush=True)
    return records


def mean_std(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(records: list[dict]) -> str:
    lines = ["<!-- generated by experiments/explain/faithfulness.py from results.json; "
             "edit findings.md -->",
             "# Faithfulness of the explanations: deletion curves", "",
             "What is measured: [faithfulness.py](faithfulness.py); the findings, hand-written, "
             "below the table.", "",
             "Per method, the top-1 recommendation's score drop after deleting its k most "
             "attributed history items (larger: the method found items that mattered), AOPC (the "
             "drop averaged over k), its mean rank after the largest k (0: still first) and the "
             "attribution's cost. Mean ± std over the seeds (sample std).", ""]
    if not records:
        lines += ["No results yet.", ""]
    for dataset in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == dataset]
        ks = sorted({int(k) for r in rows for k in r["deletion"]})
        seeds = sorted({r["seed"] for r in rows})
        lines += [f"## {dataset}", "",
                  f"{rows[0]['users']} users, model {rows[0]['model']}, seeds "
                  f"{', '.join(map(str, seeds))}. ![deletion curves](deletion_{dataset}.png)", "",
                  "| method | " + " | ".join(f"score drop, k={k}" for k in ks)
                  + f" | AOPC | rank after k={ks[-1]} | cost (ms per user) |",
                  "|---|" + "---:|" * (len(ks) + 3)]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            drops = [mean_std([r["deletion"][str(k)]["score_drop"] for r in mine]) for k in ks]
            cost = ("-" if method in CONTROLS
                    else mean_std([r["cost_s_per_user"] * 1e3 for r in mine], 2))
            lines.append(f"| {method} | " + " | ".join(drops) + f" | {mean_std([r['aopc'] for r in mine])} | "
                         f"{mean_std([r['deletion'][str(ks[-1])]['rank'] for r in mine], 1)} | {cost} |")
        lines.append("")
    if records:
        cpus = sorted({r["hardware"].get("cpu", "?") for r in records})
        lines += [f"Machines: {'; '.join(cpus)}.", ""]
    findings = os.path.join(HERE, "findings.md")
    if os.path.exists(findings):
        with open(findings) as f:
            lines += [f.read().strip(), ""]
    return "\n".join(lines)


def plot(records: list[dict], out_dir: str) -> None:
    """deletion_<dataset>.png: score drop against k, one line per method (std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for dataset in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == dataset]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            ks = sorted(int(k) for k in mine[0]["deletion"])
            drops = np.array([[r["deletion"][str(k)]["score_drop"] for k in ks] for r in mine])
            ax.errorbar(ks, drops.mean(0), yerr=drops.std(0, ddof=1) if len(mine) > 1 else None,
                        marker="o", capsize=3, label=method,
                        linestyle="--" if method in CONTROLS else "-")
        ax.set_xlabel("history items deleted (k)")
        ax.set_ylabel("drop in the top-1 item's score")
        ax.set_title(f"{dataset}: deletion curves", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"deletion_{dataset}.png"), dpi=120)
        plt.close(fig)


def load_records(out_dir: str = HERE) -> list[dict]:
    return runner.read_records(os.path.join(out_dir, "results.json"))


def write(records: list[dict], out_dir: str) -> None:
    records = sorted(records, key=lambda r: (r["dataset"], r["seed"], r["workdir"]))
    runner.write_records(os.path.join(out_dir, "results.json"), records)
    runner.write_atomic(os.path.join(out_dir, "README.md"), markdown(records))
    if records:
        plot(records, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", default="", help="trained workdirs, comma-separated (one per seed)")
    parser.add_argument("--methods", default=",".join(explain.METHODS))
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--ks", default="1,2,5,10")
    parser.add_argument("--sample_seed", type=int, default=0, help="which users, and the random control")
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--markdown_only", action="store_true", help="rewrite README.md from results.json")
    args = parser.parse_args()
    if args.markdown_only:  # (README.md alone: no results file is written, no figure drawn)
        runner.write_atomic(os.path.join(args.out_dir, "README.md"), markdown(load_records(args.out_dir)))
        return
    workdirs = [w for w in args.workdirs.split(",") if w]
    methods = [m for m in args.methods.split(",") if m]
    if not workdirs:
        parser.error("--workdirs: expected trained workdirs, comma-separated")
    unknown = [m for m in methods if m not in explain.METHODS]
    if unknown:
        parser.error(f"--methods: {unknown} unknown; expected some of {', '.join(explain.METHODS)}")
    ks = sorted(int(k) for k in args.ks.split(","))
    for workdir in workdirs:
        new = measure(workdir, methods, args.users, ks, args.sample_seed)
        records = [r for r in load_records(args.out_dir) if r["workdir"] != workdir] + new
        write(records, args.out_dir)


if __name__ == "__main__":
    main()
