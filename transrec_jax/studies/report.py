r"""Study reports: an ablation sweep as a paper-ready table, CSVs and figures; reproduction
tables (with published references) as RESULTS.md.

Ablation report (`python -m transrec_jax.report --sweep=...`), written to one directory:
  report.md    the protocol, dataset and budget, then one row per grid point: test metrics as
               mean ± std over seeds (sample std), best model row per column in bold, the
               popularity baseline, failed and unfinished runs marked; the figures below it
  report.csv   the same numbers, one row per grid point (mean and std columns)
  runs.csv     every run: its labels, status, error and all test metrics
  vs_<axis>.png     each metric against each axis, error bars over seeds
  val_curves.png    the validation metric against the training step, one line per run
  results.json the study results file: per run (sweep order) its labels, seed, status, error
               line, what the report uses of its results.json and its validation curve, the
               sweep's settings and the report's own arguments (sweep file, --set items,
               metrics). A run whose workdir is missing (run workdirs are not committed) is read
               from it, so the report regenerates without the runs, byte for byte (report.md
               and the CSVs), and a sweep given more seeds adds their runs to it; one written
               for other sweep settings is refused. `regenerate`
               (`python -m transrec_jax.report --regenerate=DIR`) rewrites every report under DIR
               from its results.json alone.

A curve of null is one that was not recorded: the reports written before results.json existed
were converted from their runs.csv and report.md once their runs were gone (their test metrics
at runs.csv's 6 significant digits). val_curves.png is then not redrawn; the report links the
one drawn from the runs while they existed when it lies beside the report.

Reproduction tables: RESULTS.md from every results/<table>.json (the runner's records) and each
table's findings (<table>.md): ours beside published, Δ, epochs, wall time, hardware.
"""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np

from transrec_jax.metric_log import read_metrics
from transrec_jax.studies import grid, runner
from transrec_jax.studies import table as table_lib
from transrec_jax.studies.grid import Sweep
from transrec_jax.studies.study import StudyError

METRICS = ("hr@10", "ndcg@10")  # the published pair every table row is compared on
# A row passes with Δ NDCG@10 ≥ -NOISE: within seed-to-seed noise of its published figure, or above
NOISE = 0.006
PROTOCOL = (
    "leave-one-out: each user's last item is the test target, the second-to-last the validation "
    "target (used only to pick the checkpoint and stop training), the rest trains; the test "
    "target is predicted from the whole history, validation item included. Full ranking over "
    "all items; items already in the history are excluded (the target stays rankable); ties "
    "count against the model."
)

MAX_LINES = 6  # more lines than this in a vs-axis plot: keep the one through the reference


RESULTS = "results.json"  # the study results file, beside the report
RUN_FIELDS = ("run", "config_args", "labels", "seed", "status", "error", "results", "curve")
# What the report reads of a finished run's results.json (and config.train.early_stop_metric)
REPORT_KEYS = ("protocol", "dataset", "epochs", "steps", "best_step", "wall_time_s", "test",
               "test_popularity")


def collect(sweep: Sweep, curve_metric: str, out: str = "") -> list[dict]:
    """One record per run: status, results (what the report uses of results.json, when done),
    error line, validation curve, and `stored`: the run as <out>/results.json keeps it. A run
    whose workdir is missing takes its record from <out>/results.json when that has one."""
    missing = {run.name for run in sweep.runs if not os.path.isdir(run.workdir)}
    kept = read_results(os.path.join(out, RESULTS), sweep, curve_metric) if out and missing else {}
    records = []
    for run in sweep.runs:
        stored = kept[run.name] if run.name in missing & kept.keys() else run_record(run, curve_metric)
        curve = None if stored["curve"] is None else [tuple(p) for p in stored["curve"]]  # None: not recorded
        records.append({"run": run, "status": stored["status"], "results": stored["results"],
                        "error": stored["error"], "curve": curve, "stored": stored})
    return records


def run_record(run, curve_metric: str) -> dict:
    """One run as the study results file keeps it, read from its workdir: runner.record's status
    fields, its labels, what the report uses of its results.json, its validation curve. In JSON
    types (a JSON round trip), so a report built from it or from the file is the same."""
    rec = {**runner.record(run, details=False), "labels": run.labels, "results": None, "curve": []}
    rec.setdefault("error", "")
    if rec["status"] == "done":
        r = runner.results(run)
        stop = r["config"]["train"]["early_stop_metric"]
        rec["results"] = {**{k: r[k] for k in REPORT_KEYS},
                          "config": {"train": {"early_stop_metric": stop}}}
    if rec["status"] != "not run":
        rec["curve"] = [[r["step"], r[curve_metric]] for r in read_metrics(run.workdir)
                        if r["kind"] == "val" and curve_metric in r]
    return json.loads(json.dumps(rec))


def sweep_settings(sweep: Sweep) -> dict:
    """The sweep-level fields the report uses, in JSON types; all but `doc` must match the sweep
    file for its results file to be read."""
    return json.loads(json.dumps({
        "name": sweep.name, "doc": sweep.doc, "config": sweep.config, "axes": sweep.axes,
        "reference": sweep.reference, "every_run": sweep.every_run, "seeds": sweep.seeds}))


def write_results(path: str, sweep: Sweep, records: list[dict], metrics: list[str],
                  curve_metric: str) -> None:
    """The study results file: the sweep's settings, the report's arguments (what `regenerate`
    needs besides the sweep file) and every run's stored record, sweep order (one run a line)."""
    runs = ",\n  ".join(json.dumps(r["stored"]) for r in records)
    args = {"sweep": sweep.path, "set": list(sweep.sets), "metrics": list(metrics)}
    runner.write_atomic(path, f'{{"sweep": {json.dumps(sweep_settings(sweep))},\n '
                              f'"report": {json.dumps(args)},\n '
                              f'"curve_metric": {json.dumps(curve_metric)},\n "runs": [\n  {runs}\n ]}}\n')


def read_results(path: str, sweep: Sweep, curve_metric: str) -> dict[str, dict]:
    """The runs <path> records, by name ({} without the file); StudyError naming the file when it
    is not a study results file or was written for other sweep settings (or curve metric)."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
        settings, runs = data["sweep"], data["runs"]
        lacking = [k for r in runs for k in RUN_FIELDS if k not in r]
        if lacking:
            raise KeyError(lacking[0])
        now = sweep_settings(sweep)
        # Seeds added since (the file's are among the sweep's): its runs still stand.
        seeds = settings["seeds"] if set(settings["seeds"]) <= set(now["seeds"]) else now["seeds"]
        differ = [f"{k} {json.dumps(settings.get(k))}, now {json.dumps(now[k])}"
                  for k in now if k not in ("doc", "seeds") and now[k] != settings.get(k)]
        if seeds != settings["seeds"]:
            differ.append(f"seeds {json.dumps(settings['seeds'])}, now {json.dumps(now['seeds'])}")
        if data["curve_metric"] != curve_metric:
            differ.append(f"curve_metric {data['curve_metric']}, now {curve_metric}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StudyError(f"{path}: not a study results file written by transrec_jax.report ({e!r}); "
                         "move it away") from None
    recorded = [(r["run"], r["config_args"]) for r in runs]
    expected = [(run.name, run.config_args()) for run in sweep.runs if run.seed in seeds]
    if not differ and recorded != expected:
        other = next((r for r, e in zip(recorded, expected) if r != e), None)
        differ.append(f"run {other[0]} {' '.join(other[1])}" if other else
                      f"{len(recorded)} runs, now {len(expected)}")
    if differ:
        raise StudyError(f"{path} was written for other sweep settings than --sweep and its flags "
                         f"now give ({'; '.join(differ)}): pass the flags it was written with, or "
                         "move it away")
    return {r["run"]: r for r in runs}


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


def markdown(sweep: Sweep, records: list[dict], points: list[dict], metrics: list[str],
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


def _header(sweep: Sweep, done: list[dict]) -> list[str]:
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


def write_csvs(out: str, sweep: Sweep, records: list[dict], points: list[dict],
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


def axis_lines(sweep: Sweep, points: list[dict]) -> dict[str, dict[tuple, dict]]:
    """The lines of each axis's vs_<axis>.png, by axis (an axis without a line gets no figure):
    per setting of the other axes, its finished points by level index (only the reference
    setting when there are more than MAX_LINES)."""
    by_axis = {}
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
        if lines:
            by_axis[axis] = lines
    return by_axis


def plot_axes(out: str, sweep: Sweep, records: list[dict], points: list[dict],
              metrics: list[str], draw: bool = True) -> list[str]:
    """vs_<axis>.png per axis: each metric against the axis levels, one line per setting of the
    other axes (only the reference setting when there are too many), error bars over seeds.
    Not `draw`: only the file names."""
    by_axis = axis_lines(sweep, points)
    if not draw:
        return [f"vs_{axis}.png" for axis in by_axis]
    plt = _pyplot()

    pop = popularity(records, metrics)
    files = []
    for axis, lines in by_axis.items():
        levels, others = sweep.axes[axis], [a for a in sweep.axes if a != axis]
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


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_curves(out: str, sweep: Sweep, records: list[dict], curve_metric: str,
                draw: bool = True) -> list[str]:
    """val_curves.png: validation metric vs step, one line per run, one colour per grid point.
    A run whose curve was not recorded (None): not redrawn, the figure already in `out` kept
    (drawn while the runs existed), if any. Not `draw`: only the file name."""
    path = os.path.join(out, "val_curves.png")
    if any(r["curve"] is None for r in records):
        return ["val_curves.png"] if os.path.exists(path) else []
    with_curves = sorted((r for r in records if r["curve"]), key=lambda r: r["status"] != "done")
    if not with_curves or not draw:
        return ["val_curves.png"] if with_curves else []
    plt = _pyplot()

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
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return ["val_curves.png"]


def write_report(sweep: Sweep, out: str, metrics: list[str], curve_metric: str,
                 draw: bool = True) -> str:
    """Write every file of the report to `out` (not `draw`: all but the figures, which
    report.md still links); the Markdown text."""
    os.makedirs(out, exist_ok=True)
    records = collect(sweep, curve_metric, out)
    write_results(os.path.join(out, RESULTS), sweep, records, metrics, curve_metric)
    points = aggregate(records, metrics)
    write_csvs(out, sweep, records, points, metrics)
    figures = plot_axes(out, sweep, records, points, metrics, draw)
    figures += plot_curves(out, sweep, records, curve_metric, draw)
    text = markdown(sweep, records, points, metrics, figures)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def regenerate(results_file: str, draw: bool = True, root: str = "") -> str:
    """Rewrite the report beside `results_file` from it, with the sweep file, --set items and
    metrics it records (run from the repository root; `root`: where the runs would be, default
    the sweep's, a run found there wins over its record); the Markdown text."""
    try:
        with open(results_file) as f:
            data = json.load(f)
        args, seeds = data["report"], ",".join(map(str, data["sweep"]["seeds"]))
        sweep_file, sets, metrics = args["sweep"], list(args["set"]), list(args["metrics"])
        curve_metric = data["curve_metric"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StudyError(f"{results_file}: not a study results file written by transrec_jax.report "
                         f"({e!r})") from None
    sweep = grid.load(sweep_file, sets, seeds, root)
    return write_report(sweep, os.path.dirname(results_file), metrics, curve_metric, draw)


# --- reproduction tables ------------------------------------------------------------------


def write_markdown(out_dir: str) -> str:
    """<out_dir>/RESULTS.md from every <out_dir>/results/*.json and each table's findings; its
    path."""
    path = os.path.join(out_dir, "RESULTS.md")
    runner.write_atomic(path, results_markdown(out_dir))
    return path


def results_markdown(out_dir: str) -> str:
    """What write_markdown writes to <out_dir>/RESULTS.md; nothing is written or run."""
    tables = []
    for path in sorted(glob.glob(os.path.join(out_dir, "results", "*.json"))):
        with open(path) as f:
            tables.append(json.load(f))
    return tables_markdown(tables)


def read_findings(table_file: str) -> str:
    """The `## Findings` section of the table's Markdown file, without its heading and the blank
    lines around it, up to the next `#` or `##` heading (outside code fences); "" without file
    or section."""
    path = table_lib.findings_path(table_file)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if table_lib.FINDINGS_HEADING not in lines:
        return ""
    start = end = lines.index(table_lib.FINDINGS_HEADING) + 1
    fenced = False
    for end in range(start, len(lines) + 1):
        if end == len(lines) or (not fenced and lines[end].startswith(("# ", "## "))):
            break
        fenced ^= lines[end].lstrip().startswith("```")
    return "\n".join(lines[start:end]).strip("\n")


def tables_markdown(tables: list[dict]) -> str:
    """RESULTS.md: the protocol, then one section per reproduction table."""
    lines = [
        "# Reproduction results", "",
        "Written by `experiments/reproduce/reproduce.py` from `results/*.json` (one file per "
        "table, every run in it); do not edit by hand. How to run the tables: "
        "`experiments/reproduce/README.md`.", "",
        f"**Protocol (every table):** {PROTOCOL}", "",
        "**Cells:** ours = test metric, mean ± sample std over the finished seeds (n); "
        f"Δ = ours − published; ✓ = Δ NDCG@10 ≥ −{NOISE} (within seed noise, or above); epochs = best / "
        "trained, mean over seeds; wall time = mean per run over its attempts, * = resumed from a "
        "checkpoint that did not record the earlier attempts' time (the last attempt only).", "",
    ]
    for table in tables:
        lines += _section(table)
    return "\n".join(lines) + "\n"


def _section(t: dict) -> list[str]:
    done = [r for r in t["runs"] if r["status"] == "done"]
    lines = [f"## {t['title']}", "",
             f"`python experiments/reproduce/reproduce.py --table={t['file']}`", ""]
    if done:
        ds = done[0]["dataset"]
        lines.append(f"- **Dataset:** {ds['name']}, " + ", ".join(
            f"{ds[k]:,} {k}" for k in ("users", "items", "interactions")) + ".")
        recorded = [{k: r["protocol"][k] for k in ("split", "ranking", "history_masked", "ties")}
                    for r in done]
        if all(p == recorded[0] for p in recorded):
            lines.append("- **Protocol recorded by the runs:** "
                         + "; ".join(f"{k}: {v}" for k, v in recorded[0].items()) + ".")
        else:
            lines.append("- **Protocol recorded by the runs DIFFERS between runs:** see the JSON.")
    budget = ", ".join(f"`{k}={v}`" for k, v in t["budget"].items()) or "the configs' own"
    lines.append(f"- **Budget (every row):** {budget}; a row's own changes are listed below the table.")
    runnable = [row for row in t["rows"] if row["config"]]
    seed_sets = {tuple(row["seeds"]) for row in runnable}
    most = max(seed_sets, key=len) if seed_sets else ()
    fewer = [f"`{row['name']}` ({', '.join(map(str, row['seeds']))})" for row in runnable
             if tuple(row["seeds"]) != most]
    lines.append(f"- **Seeds:** {', '.join(map(str, most))}"
                 + (f"; fewer for {', '.join(fewer)}." if fewer else " for every row."))
    if t["goal"]:
        lines.append(f"- **Goal:** {t['goal']}.")
    lines += ["", "| row | ours HR@10 (n) | published | Δ | ours NDCG@10 | published | Δ "
              "| epochs (best/trained) | wall time per run | hardware |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in t["rows"]:
        lines.append("| " + " | ".join(_row_cells(row, [r for r in t["runs"] if r["row"] == row["name"]]))
                     + " |")
    if done:
        pop = [float(np.mean([r["test_popularity"][m] for r in done])) for m in METRICS]
        lines.append(f"| *popularity* | {pop[0]:.4f} | | | {pop[1]:.4f} | | | | | |")
    failed = [r for r in t["runs"] if r["status"] == "failed"]
    if failed:
        lines += ["", "**Failed runs** (`<workdir>/error.txt` has the end of the output):", ""]
        lines += [f"- `{r['run']}`: {r['error']}" for r in failed]
    findings = read_findings(t["file"])
    if findings:
        lines += ["", "**Findings:**", "", findings]
    lines += ["", "**Rows** (config, changes from it, source):", ""]
    for row in t["rows"]:
        changes = " ".join(f"`{k}={v}`" for k, v in row["overrides"].items())
        config = f"`{row['config']}`" + (f" + {changes}" if changes else "") if row["config"] else "no run"
        lines.append(f"- `{row['name']}`: {config}. Source: {row['source']}.")
    if t.get("references"):  # absent from files written before REFERENCES existed
        lines += ["", "**References:**", ""]
        lines += [f"- [{key}] {citation}" for key, citation in t["references"].items()]
    return lines + [""]


def _row_cells(row: dict, runs: list[dict]) -> list[str]:
    """The table cells of one row: ours beside published for HR@10 and NDCG@10, then
    epochs, wall time and hardware of its finished runs."""
    published = row["published"] or {}
    pub = [f"{published[m]:.4f}" if m in published else "—" for m in METRICS]
    done = [r for r in runs if r["status"] == "done"]
    if not row["config"]:
        return [f"`{row['name']}`", "reference, not run", pub[0], "", "—", pub[1], "", "", "", ""]
    if not done:
        failed = sum(r["status"] == "failed" for r in runs)
        unfinished = sum(r["status"] == "unfinished" for r in runs)
        state = (f"failed ({failed} of {len(runs)})" if failed else
                 f"not finished ({unfinished} of {len(runs)})" if unfinished else "not run yet")
        return [f"`{row['name']}`", state, pub[0], "", "—", pub[1], "", "", "", ""]
    n = f"({len(done)})" if len(done) == len(runs) else f"({len(done)} of {len(runs)})"
    cells = [f"`{row['name']}`"]
    for m, p in zip(METRICS, pub):
        values = [r["test"][m] for r in done]
        mean = float(np.mean(values))
        ours = _cell(mean, float(np.std(values, ddof=1)) if len(values) > 1 else None)
        cells.append(f"{ours} {n}" if m == METRICS[0] else ours)
        cells.append(p)
        if m in published:
            delta = mean - published[m]
            within = m == "ndcg@10" and delta >= -NOISE - 1e-12
            cells.append(f"{delta:+.4f}" + (" ✓" if within else ""))
        else:
            cells.append("")
    best, trained = (float(np.mean([r[k] for r in done])) for k in ("best_epoch", "epochs"))
    wall = _duration(float(np.mean([r["wall_time_s"] for r in done])))
    resumed = "*" if not all(r.get("wall_time_all_attempts", not r["resumed"]) for r in done) else ""
    hardware = "; ".join(dict.fromkeys(_hardware(r["hardware"]) for r in done))
    return cells + [f"{best:.3g}/{trained:.3g}", wall + resumed, hardware]


def _hardware(h: dict) -> str:
    if "cpu_cores" not in h:
        cpu = "CPU not recorded"
    else:
        cores = h["cpu_cores"]
        cpu = f"{h.get('cpu', 'CPU unknown')}, {cores} core{'' if cores == 1 else 's'}"
    if h["accelerator"]:
        count = f"{h['accelerator_count']}× " if h["accelerator_count"] > 1 else ""
        return f"{count}{h['accelerator']} (host {cpu})"
    return cpu


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
