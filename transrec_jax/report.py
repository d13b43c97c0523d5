r"""A sweep's results as a paper-ready table and figures.

  python -m transrec_jax.report --sweep=experiments/ablations/loss.py
  python -m transrec_jax.report --sweep=experiments/ablations/loss.py \
      --out=experiments/ablations/results/loss

Takes the same --sweep/--set/--seeds/--workdir_root as `transrec_jax.sweep` (they name the
runs) and writes, to --out (default: the sweep's directory):
  report.md    the protocol, dataset and budget, then one row per grid point: test metrics as
               mean ± std over seeds (sample std), best model row per column in bold, the
               popularity baseline, failed and unfinished runs marked; the figures below it
  report.csv   the same numbers, one row per grid point (mean and std columns)
  runs.csv     every run: its labels, status, error and all test metrics
  vs_<axis>.png     each metric against each axis, error bars over seeds
  val_curves.png    the validation metric against the training step, one line per run
"""

from __future__ import annotations

import csv
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from transrec_jax import cli  # noqa: E402
from transrec_jax import sweep as sweep_lib  # noqa: E402
from transrec_jax.metric_log import read_metrics  # noqa: E402

MAX_LINES = 6  # more lines than this in a vs-axis plot: keep the one through the reference


def collect(sweep: sweep_lib.Sweep, curve_metric: str) -> list[dict]:
    """One record per run: status, results.json (when done), error line, validation curve."""
    records = []
    for run in sweep.runs:
        status = run.status()
        record = {"run": run, "status": status, "results": None, "error": "", "curve": []}
        if status == "done":
            with open(run.path("results.json")) as f:
                record["results"] = json.load(f)
        if status == "failed":
            with open(run.path("error.txt")) as f:
                record["error"] = f.readline().strip()
        if status != "not run":
            record["curve"] = [(r["step"], r[curve_metric]) for r in read_metrics(run.workdir)
                               if r["kind"] == "val" and curve_metric in r]
        records.append(record)
    return records


def aggregate(records: list[dict], metrics: list[str]) -> list[dict]:
    """Grid points in sweep order: seeds done/failed/total, mean and std of each metric."""
    points: dict[str, dict] = {}
    for rec in records:
        run = rec["run"]
        p = points.setdefault(run.point, {"labels": run.labels, "total": 0, "failed": 0,
                                          "values": {m: [] for m in metrics}, "epochs": []})
        p["total"] += 1
        p["failed"] += rec["status"] == "failed"
        if rec["results"]:
            p["epochs"].append(rec["results"]["epochs"])
            for m in metrics:
                if m in rec["results"]["test"]:
                    p["values"][m].append(rec["results"]["test"][m])
    for p in points.values():
        p["done"] = len(p["epochs"])
        p["mean"] = {m: float(np.mean(v)) if v else None for m, v in p["values"].items()}
        p["std"] = {m: float(np.std(v, ddof=1)) if len(v) > 1 else None for m, v in p["values"].items()}
    return list(points.values())


def popularity(records: list[dict], metrics: list[str]) -> dict:
    """The popularity baseline's test metrics, averaged over finished runs (same data: same values).

    A spread the table's 4 decimals cannot show (float32 sums ordered by another eval batch
    shape differ by ~1e-9) gets no ± at all; a real one (different data) does."""
    values = {m: [r["results"]["test_popularity"][m] for r in records
                  if r["results"] and m in r["results"]["test_popularity"]] for m in metrics}
    return {"mean": {m: float(np.mean(v)) if v else None for m, v in values.items()},
            "std": {m: float(np.std(v, ddof=1)) if len(v) > 1 and np.ptp(v) >= 5e-5 else None
                    for m, v in values.items()}}


def _cell(mean, std) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def markdown(sweep: sweep_lib.Sweep, records: list[dict], points: list[dict], metrics: list[str],
             figures: list[str]) -> str:
    done = [r["results"] for r in records if r["results"]]
    lines = [f"# Ablation: {sweep.name}", ""]
    if sweep.doc:
        lines += [sweep.doc.splitlines()[0], ""]
    lines += _header(sweep, done)
    axes = list(sweep.axes) or ["setting"]  # a sweep without axes: one row, the base
    best = {m: max((round(p["mean"][m], 4) for p in points if p["mean"][m] is not None), default=None)
            for m in metrics}
    lines += ["| " + " | ".join(axes + metrics + ["seeds", "epochs"]) + " |",
              "|" + "---|" * (len(axes) + len(metrics) + 2)]
    for p in points:
        cells = [p["labels"].get(a, "base") for a in axes]
        for m in metrics:
            if p["done"] == 0:
                cells.append("*failed*" if p["failed"] else "not finished")
                continue
            cell = _cell(p["mean"][m], p["std"][m])
            bold = p["mean"][m] is not None and round(p["mean"][m], 4) == best[m]
            cells.append(f"**{cell}**" if bold else cell)
        seeds = f"{p['done']}/{p['total']}" + (f" ({p['failed']} failed)" if p["failed"] else "")
        epochs = f"{np.mean(p['epochs']):.3g}" if p["epochs"] else "—"
        lines.append("| " + " | ".join(cells + [seeds, epochs]) + " |")
    pop = popularity(records, metrics)
    first = ["*popularity baseline*"] + [""] * (len(axes) - 1)
    lines.append("| " + " | ".join(first + [_cell(pop["mean"][m], pop["std"][m]) for m in metrics]
                                   + ["", ""]) + " |")
    failed = [r for r in records if r["status"] == "failed"]
    unfinished = [r for r in records if r["status"] in ("unfinished", "not run")]
    if failed:
        lines += ["", "**Failed runs** (`<run>/error.txt` has the end of the output):", ""]
        lines += [f"- `{r['run'].name}`: {r['error']}" for r in failed]
    if unfinished:
        lines += ["", "**Not finished** (left out of the table): "
                  + ", ".join(f"`{r['run'].name}` ({r['status']})" for r in unfinished)]
    for fig in figures:
        lines += ["", f"![{os.path.splitext(fig)[0]}]({fig})"]
    return "\n".join(lines) + "\n"


def _header(sweep: sweep_lib.Sweep, done: list[dict]) -> list[str]:
    """Protocol, dataset and budget: what every number in the table shares."""
    if not done:
        return ["No run has finished yet.", ""]
    protocols = [r["protocol"] for r in done]
    common = {k: v for k, v in protocols[0].items() if all(p.get(k) == v for p in protocols)}
    varied = sorted({k for p in protocols for k in p} - set(common))
    protocol = "; ".join(f"{k}: {v}" for k, v in common.items() if v is not None)
    if varied:
        protocol += f" ({', '.join(varied)}: by row)"
    ds = done[0]["dataset"]
    dataset = f"{ds['name']}, " + ", ".join(
        f"{ds[k]:,} {k}" for k in ("users", "items", "interactions") if k in ds)
    stop = done[0]["config"]["train"]["early_stop_metric"]
    epochs = _span([f"{r['epochs']:.3g}" for r in done])
    steps = _span([str(r["steps"]) for r in done])
    cells = (f"one run each (seed {sweep.seeds[0]})" if len(sweep.seeds) == 1 else
             f"mean ± std (sample) over seeds {', '.join(map(str, sweep.seeds))}, one value where "
             "one seed finished")
    budget = ", ".join(f"{k}={v}" for k, v in sweep.every_run.items()) or "the base config's"
    return [
        f"- **Protocol:** {protocol}. Test metrics of the checkpoint with the best validation {stop}.",
        f"- **Dataset:** {dataset}.",
        f"- **Base:** `{sweep.config}`. **Every run:** {budget}. "
        f"**Trained:** {epochs} epochs ({steps} steps).",
        f"- **Cells:** {cells}; bold: best model row per column.",
        "",
    ]


def _span(values: list[str]) -> str:
    """'a' when all equal, else 'min–max' (numeric order)."""
    low, high = min(values, key=float), max(values, key=float)
    return low if low == high else f"{low}–{high}"


def write_csvs(out: str, sweep: sweep_lib.Sweep, records: list[dict], points: list[dict],
               metrics: list[str]) -> None:
    axes = list(sweep.axes)
    pop = popularity(records, metrics)
    with open(os.path.join(out, "report.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(axes + ["seeds_done", "seeds_failed", "seeds_total"]
                   + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] + ["epochs_mean"])
        for p in points:
            w.writerow([p["labels"][a] for a in axes] + [p["done"], p["failed"], p["total"]]
                       + [_num(p[s][m]) for m in metrics for s in ("mean", "std")]
                       + [_num(np.mean(p["epochs"]) if p["epochs"] else None)])
        w.writerow(["popularity"] * len(axes) + ["", "", ""]
                   + [_num(pop[s][m]) for m in metrics for s in ("mean", "std")] + [""])
    test_keys = sorted({k for r in records if r["results"] for k in r["results"]["test"]})
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *axes, "seed", "status", "error", "best_step", "steps", "epochs",
                    "wall_time_s", *test_keys, *(f"popularity/{k}" for k in test_keys)])
        for r in records:
            res = r["results"] or {}
            w.writerow([r["run"].name, *(r["run"].labels[a] for a in axes), r["run"].seed,
                        r["status"], r["error"]]
                       + [_num(res.get(k)) for k in ("best_step", "steps", "epochs", "wall_time_s")]
                       + [_num(res.get("test", {}).get(k)) for k in test_keys]
                       + [_num(res.get("test_popularity", {}).get(k)) for k in test_keys])


def _num(x) -> str:
    return "" if x is None else f"{x:.6g}" if isinstance(x, float) else str(x)


def plot_axes(out: str, sweep: sweep_lib.Sweep, records: list[dict], points: list[dict],
              metrics: list[str]) -> list[str]:
    """vs_<axis>.png per axis: each metric against the axis levels, one line per setting of the
    other axes (only the reference setting when there are too many), error bars over seeds."""
    pop = popularity(records, metrics)
    files = []
    for axis, levels in sweep.axes.items():
        others = [a for a in sweep.axes if a != axis]
        lines: dict[tuple, dict] = {}
        for p in points:
            if p["done"]:
                key = tuple(p["labels"][a] for a in others)
                lines.setdefault(key, {})[levels.index(p["labels"][axis])] = p
        lines = {k: v for k, v in lines.items() if len(v) > 1 or len(levels) == 1}
        if len(lines) > MAX_LINES:
            ref = tuple(sweep.reference[a] for a in others)
            lines = {ref: lines[ref]} if ref in lines else {}
        if not lines:
            continue
        fig, axs = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
        ordered = all(_is_number(level) for level in levels)  # else no line joins the points
        for ax, m in zip(axs[0], metrics):
            for key, by_level in lines.items():
                xs = sorted(i for i in by_level if by_level[i]["mean"][m] is not None)
                label = ",".join(f"{a}={v}" for a, v in zip(others, key)) or sweep.name
                ax.errorbar(xs, [by_level[i]["mean"][m] for i in xs],
                            yerr=[by_level[i]["std"][m] or 0.0 for i in xs],
                            marker="o", capsize=3, label=label,
                            linestyle="-" if ordered else "none")
            if pop["mean"][m] is not None:
                ax.axhline(pop["mean"][m], color="grey", linestyle="--", linewidth=1, label="popularity")
            ax.set_xticks(range(len(levels)), levels, rotation=30 if len(levels) > 4 else 0)
            ax.set_xlabel(axis)
            ax.set_ylabel(f"test {m}")
            ax.grid(alpha=0.3)
        axs[0][-1].legend(fontsize="x-small")
        fig.suptitle(f"{sweep.name}: test metrics vs {axis}", fontsize="medium")
        fig.tight_layout()
        files.append(f"vs_{axis}.png")
        fig.savefig(os.path.join(out, files[-1]), dpi=150)
        plt.close(fig)
    return files


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_curves(out: str, sweep: sweep_lib.Sweep, records: list[dict], curve_metric: str) -> list[str]:
    """val_curves.png: validation metric vs step, one line per run, one colour per grid point."""
    with_curves = sorted((r for r in records if r["curve"]), key=lambda r: r["status"] != "done")
    if not with_curves:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {p: f"C{i % 10}" for i, p in enumerate(dict.fromkeys(r["run"].point for r in records))}
    labelled = set()
    for r in with_curves:
        point = r["run"].point
        steps, values = zip(*r["curve"])
        ax.plot(steps, values, color=colours[point], linewidth=1.2,
                linestyle="-" if r["status"] == "done" else ":",
                label=None if point in labelled else (point or sweep.name))
        labelled.add(point)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {curve_metric}")
    ax.set_title(f"{sweep.name}: validation {curve_metric} (dotted: not finished)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2 if len(labelled) > 8 else 1)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "val_curves.png"), dpi=150)
    plt.close(fig)
    return ["val_curves.png"]


def write_report(sweep: sweep_lib.Sweep, out: str, metrics: list[str], curve_metric: str) -> str:
    """Write every file of the report to `out`; the Markdown text."""
    os.makedirs(out, exist_ok=True)
    records = collect(sweep, curve_metric)
    points = aggregate(records, metrics)
    write_csvs(out, sweep, records, points, metrics)
    figures = plot_axes(out, sweep, records, points, metrics)
    figures += plot_curves(out, sweep, records, curve_metric)
    text = markdown(sweep, records, points, metrics, figures)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


_OUT = flags.DEFINE_string("out", "", "Directory for the report (default: the sweep's directory).")
_METRICS = flags.DEFINE_list("metrics", ["hr@10", "ndcg@10", "hr@20", "ndcg@20"], "Table's test metrics.")
_CURVE = flags.DEFINE_string("curve_metric", "ndcg@10", "Validation metric of the curves plot.")
for _name in ("sweep", "set", "seeds", "workdir_root"):
    flags.declare_key_flag(_name)


def main(argv):
    del argv
    sweep = sweep_lib.load_from_flags()
    out = _OUT.value or sweep.root
    print(write_report(sweep, out, _METRICS.value, _CURVE.value))
    print(f"written to {out}")


if __name__ == "__main__":
    flags.mark_flag_as_required("sweep")
    cli.run(main)
