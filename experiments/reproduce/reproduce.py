r"""Reproduction tables: a table file → every row × seed trained → results JSON and RESULTS.md.

  python experiments/reproduce/reproduce.py --table=experiments/reproduce/ml1m.py
  python experiments/reproduce/reproduce.py --table=experiments/reproduce/ml1m.py \
      --rows=sasrec_plus_ce,bert4rec --seeds=0 --parallel=2
  python experiments/reproduce/reproduce.py --table=experiments/reproduce/ml1m.py --dry_run > jobs.txt
  python experiments/reproduce/reproduce.py --table=experiments/reproduce/ml1m.py --report_only
  python experiments/reproduce/reproduce.py --markdown_only

A table file is plain Python (ml1m.py is the example) that sets:

  ROWS = [dict(name="sasrec_plus_ce",            letters, digits and _ . + - (a directory name)
               config="configs/sasrec.py:ml-1m", the config every run of the row starts from
               overrides={"model.dropout": 0.1}, config keys the row changes (optional)
               published=(0.3152, 0.1821),       published (HR@10, NDCG@10), or None
               source="where the settings and the figures come from",
               seeds=(0,)),                      optional: fewer seeds than SEEDS
          dict(name=..., published=..., source=...)]   no config: a published reference only
  SEEDS = (0, 1, 2)                              config.seed of every row's runs
  BUDGET = {"train.num_epochs": 200, ...}        overrides of every run (a row's own win)
  GOAL = "..."                                   optional: a target stated above the table
  REFERENCES = {"KV23": "authors, title, venue; code"}   optional: the keys sources cite

and a docstring: its first line is the table's title, the rest says in short what the table is
and how to run it. Names starting with `_` are the file's own helpers. Words about the table
are Markdown, written by hand in <table>.md beside the table file (ml1m.md): the protocol and
rows in full, and under its `## Findings` heading what the runs found (what explains a row's
miss, with the figures measured), which RESULTS.md quotes below the table as it is.

Each run is a `transrec_jax.sweep.Run` named `<row>,seed=N`, workdir <workdir_root>/<name>
(default experiments/reproduce/runs/<table>), launched with `sweep.launch` (`--parallel` at a
time): a run with results.json is skipped, an interrupted one resumes from its checkpoint, a
failed one is retried; a failure leaves <workdir>/error.txt and never stops the other runs.
A run that <out_dir>/results/<table>.json records as finished, with the arguments and the
resolved settings it would run with now, counts as finished too: a fresh checkout, whose run
directories are gone, skips it and tables it as recorded. Change a row's overrides, its config
file or a default it relies on, and its runs train again (a config key added since a run was
recorded is not compared; records from before settings were recorded are trusted on their
arguments and get today's settings).
Overrides are BUDGET, then the row's, then the seed; unknown keys and wrong types stop the
table before anything runs, and a workdir launched with other settings is an error. Then (and
alone with --report_only) every run of the table is written to <out_dir>/results/<table>.json,
and <out_dir>/RESULTS.md is rewritten from every results/*.json there and each table's
findings. --markdown_only (no --table) only rewrites RESULTS.md that way: no run, no JSON
touched, so it is how an edited <table>.md reaches RESULTS.md. --rows limits what is
launched (or printed by --dry_run); --seeds replaces every row's seeds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import dataclasses
import glob
import json
import os
import runpy
import shlex
import sys
from typing import Any

import numpy as np

from transrec_jax import hardware
from transrec_jax import sweep as sweep_lib
from transrec_jax.config import ConfigError
from transrec_jax.metric_log import read_metrics

TABLE_NAMES = ("ROWS", "SEEDS", "BUDGET", "GOAL", "REFERENCES")
ROW_KEYS = ("name", "config", "overrides", "published", "source", "seeds")
METRICS = ("hr@10", "ndcg@10")  # the published pair every row is compared on
# A row passes with Δ NDCG@10 ≥ -NOISE: within seed-to-seed noise of its published figure, or above
NOISE = 0.006
RUNS_ROOT = os.path.join("experiments", "reproduce", "runs")
OUT_DIR = os.path.join("experiments", "reproduce")
FINDINGS_HEADING = "## Findings"  # the section of <table>.md that RESULTS.md quotes
PROTOCOL = (
    "leave-one-out: each user's last item is the test target, the second-to-last the validation "
    "target (used only to pick the checkpoint and stop training), the rest trains; the test "
    "target is predicted from the whole history, validation item included. Full ranking over "
    "all items; items already in the history are excluded (the target stays rankable); ties "
    "count against the model."
)


class ReproduceError(ValueError):
    """The table file or a flag is malformed; the message names the culprit."""


@dataclasses.dataclass
class Row:
    name: str
    config: str  # "file.py:arg"; "" for a published reference (nothing runs)
    overrides: dict[str, Any]
    published: tuple[float, float] | None  # (hr@10, ndcg@10)
    source: str
    seeds: tuple[int, ...]
    dataset_path: str  # the local file its runs read, "" when none
    settings: dict[str, Any]  # the resolved config of its runs, flat ("model.d_model": 64), no seed


@dataclasses.dataclass
class Table:
    name: str
    path: str
    title: str
    goal: str
    references: dict[str, str]
    budget: dict[str, Any]
    rows: list[Row]
    root: str
    runs: list[sweep_lib.Run]  # seed by seed, rows in file order; run.point is the row name


def load_table(path: str, seeds: str = "", root: str = "") -> Table:
    """Read a table file and expand it into runs (`seeds`: "0,1,2" replaces every row's)."""
    if not os.path.isfile(path):
        raise ReproduceError(f"--table={path}: no such file")
    spec = runpy.run_path(path)
    unknown = [k for k in spec if k.isupper() and not k.startswith("_") and k not in TABLE_NAMES]
    if "FINDINGS" in unknown:
        raise ReproduceError(f"{path}: FINDINGS: findings are Markdown, not Python: write them "
                             f"under '{FINDINGS_HEADING}' in {findings_path(path)}")
    if unknown:
        raise ReproduceError(f"{path}: unknown name {unknown[0]}; a table file sets {TABLE_NAMES}")
    if not spec.get("ROWS"):
        raise ReproduceError(f"{path}: ROWS is missing or empty")
    budget = {key: sweep_lib._plain(value) for key, value in spec.get("BUDGET", {}).items()}
    try:
        forced = tuple(int(s) for s in seeds.split(",")) if seeds else ()
        table_seeds = tuple(int(s) for s in spec.get("SEEDS", (0,)))
    except ValueError:
        raise ReproduceError(f"seeds {seeds or spec['SEEDS']!r}: expected integers") from None
    rows = [_row(path, i, raw, budget, forced or table_seeds, bool(forced))
            for i, raw in enumerate(spec["ROWS"])]
    names = [row.name for row in rows]
    for name in names:
        if names.count(name) > 1:
            raise ReproduceError(f"{path}: row {name!r} appears twice")
    name = os.path.splitext(os.path.basename(path))[0]
    root = root or os.path.join(RUNS_ROOT, name)
    runs = []
    for seed in sorted({s for row in rows for s in row.seeds}):
        for row in rows:
            if seed in row.seeds:
                run_name = f"{row.name},seed={seed}"
                overrides = {**budget, **row.overrides, "seed": seed}
                runs.append(sweep_lib.Run(run_name, {"row": row.name}, row.name, seed, row.config,
                                          overrides, os.path.join(root, run_name)))
    title = (spec.get("__doc__") or "").strip().split("\n")[0].rstrip(".") or name
    references = spec.get("REFERENCES", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in references.items()):
        raise ReproduceError(f"{path}: REFERENCES: expected {{key: citation}} strings")
    return Table(name, path, title, spec.get("GOAL", ""), references, budget, rows, root, runs)


def _row(path: str, index: int, raw, budget: dict, seeds: tuple[int, ...], forced: bool) -> Row:
    """One ROWS entry, checked: its keys, its config file and every override against it."""
    if not isinstance(raw, dict):
        raise ReproduceError(f"{path}: ROWS[{index}]: expected a dict with keys {ROW_KEYS}")
    name = raw.get("name")
    if not isinstance(name, str) or not sweep_lib._SAFE.match(name):
        raise ReproduceError(f"{path}: ROWS[{index}]: name {name!r}: letters, digits and _ . + - only")
    where = f"{path}: row {name!r}"
    unknown = sorted(set(raw) - set(ROW_KEYS))
    if unknown:
        raise ReproduceError(f"{where}: unknown key {unknown[0]!r}; a row has {ROW_KEYS}")
    if not raw.get("source"):
        raise ReproduceError(f"{where}: no source; say where its settings and figures come from")
    published = raw.get("published")
    if published is not None:
        if (not isinstance(published, (tuple, list)) or len(published) != 2
                or not all(isinstance(x, (int, float)) for x in published)):
            raise ReproduceError(f"{where}: published={published!r}: expected (hr@10, ndcg@10) or None")
        published = (float(published[0]), float(published[1]))
    overrides = {key: sweep_lib._plain(value) for key, value in raw.get("overrides", {}).items()}
    config = raw.get("config", "")
    if not config:
        if overrides or "seeds" in raw or published is None:
            raise ReproduceError(f"{where}: a row without config is a published reference: it "
                                 "needs published, and overrides or seeds mean nothing there")
        return Row(name, "", {}, published, raw["source"], (), "", {})
    config_file, _, arg = config.partition(":")
    if not os.path.isfile(config_file):
        raise ReproduceError(f"{where}: config file {config_file!r} not found (run from the repository root)")
    try:
        base = runpy.run_path(config_file)["get_config"](arg)
    except ConfigError as e:
        raise ReproduceError(f"{where}: config {config!r}: {e}") from None
    every = {**budget, **overrides}
    if "seed" in every:
        raise ReproduceError(f"{where}: config.seed is set by SEEDS (or --seeds) only")
    final = copy.deepcopy(base)
    for key, value in every.items():
        sweep_lib._check_value(base, key, value, where)
        sweep_lib._set(final, key, value)
    try:
        row_seeds = seeds if forced else tuple(int(s) for s in raw.get("seeds", seeds))
    except (TypeError, ValueError):
        raise ReproduceError(f"{where}: seeds={raw['seeds']!r}: expected integers") from None
    dataset_path = final.dataset.path if final.dataset.source == "local" else ""
    return Row(name, config, overrides, published, raw["source"], row_seeds, dataset_path,
               flat_settings(final.to_dict()))


def flat_settings(config: dict, prefix: str = "") -> dict[str, Any]:
    """A config dict as {"a.b": value} in JSON types (tuples become lists), without the seed."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" != "seed":
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value))
    return flat


def with_runs(table: Table, runs: list[sweep_lib.Run]) -> Table:
    """`table` with those of `runs` it lacks (another --seeds) appended."""
    names = {run.name for run in table.runs}
    return dataclasses.replace(table, runs=table.runs + [r for r in runs if r.name not in names])


def select(table: Table, rows: str) -> list[sweep_lib.Run]:
    """The runs of the rows named in `rows` ("a,b"); all of them when empty."""
    if not rows:
        return table.runs
    by_name = {row.name: row for row in table.rows}
    names = rows.split(",")
    for name in names:
        if name not in by_name:
            raise ReproduceError(f"--rows: no row {name!r} in {table.path}; its rows: {', '.join(by_name)}")
        if not by_name[name].config:
            raise ReproduceError(f"--rows: row {name!r} is a published reference: nothing to run")
    return [run for run in table.runs if run.point in names]


# --- running --------------------------------------------------------------------------------


def recorded(table: Table, out_dir: str) -> dict[str, dict]:
    """The finished runs that <out_dir>/results/<table>.json records with the settings each run
    of `table` has now, by run name."""
    path = os.path.join(out_dir, "results", f"{table.name}.json")
    if not os.path.exists(path):
        return {}
    runs = {run.name: run for run in table.runs}
    settings = {row.name: row.settings for row in table.rows}
    try:
        with open(path) as f:
            records = json.load(f)["runs"]
        same = {r["run"]: r for r in records if r["status"] == "done" and r["run"] in runs
                and r["config_args"] == runs[r["run"]].config_args()}
        for name, r in list(same.items()):
            now = settings[r["row"]]
            if "settings" not in r:  # recorded before settings were: trusted on its arguments
                same[name] = {**r, "settings": now}
            elif any(key in now and now[key] != value for key, value in r["settings"].items()):
                del same[name]  # the same arguments resolve to other settings now
        return same
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ReproduceError(f"{path}: not a results file written by reproduce.py ({e!r}); "
                             "move it away to start the table afresh") from None


def todo(runs: list[sweep_lib.Run], done_before: dict[str, dict]) -> list[sweep_lib.Run]:
    """The runs neither finished here nor recorded as finished."""
    return [run for run in runs if run.status() != "done" and run.name not in done_before]


def run_table(table: Table, runs: list[sweep_lib.Run], parallel: int,
              done_before: dict[str, dict]) -> int:
    """Launch every unfinished run of `runs` (`parallel` at a time); the number that failed."""
    sweep_lib.check_workdirs(runs)
    todo_runs = todo(runs, done_before)
    paths = {row.name: row.dataset_path for row in table.rows}
    for run in todo_runs:
        if paths[run.point] and not os.path.exists(paths[run.point]):
            raise ReproduceError(f"row {run.point!r}: dataset file {paths[run.point]} not found "
                                 "(run from the repository root)")
    from_record = sum(run.name in done_before and run.status() != "done" for run in runs)
    note = f"; {from_record} of them recorded in results/{table.name}.json" if from_record else ""
    print(f"table {table.name}: {len(runs)} runs in {table.root}: {len(runs) - len(todo_runs)} "
          f"finished (skipped{note}), {len(todo_runs)} to run", flush=True)
    env = dict(os.environ)
    if parallel > 1:  # several runs on one accelerator: no run may grab most of its memory
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    host = hardware.host()
    failed = 0
    pool = concurrent.futures.ThreadPoolExecutor(max(parallel, 1))
    try:
        futures = {pool.submit(_launch, run, env, host): run for run in todo_runs}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            outcome, message = future.result()
            print(f"[{i}/{len(todo_runs)}] {futures[future].name}: {outcome} ({message})", flush=True)
            failed += outcome == "failed"
    finally:  # on Ctrl-C, start nothing more (the running children get the SIGINT too)
        pool.shutdown(cancel_futures=True)
    return failed


def _launch(run: sweep_lib.Run, env: dict, host: dict) -> tuple[str, str]:
    """sweep.launch, after noting the machine that runs it (results.json names no CPU)."""
    os.makedirs(run.workdir, exist_ok=True)
    _write_atomic(run.path("hardware.json"), json.dumps(host) + "\n")
    return sweep_lib.launch(run, env)


# --- results --------------------------------------------------------------------------------


def collect(table: Table, done_before: dict[str, dict]) -> list[dict]:
    """One record per run of the table: status, error line, and for finished runs what the
    tables need (test and validation metrics, popularity, epochs, times, hardware); a run not
    finished here but in `done_before` keeps its recorded record."""
    records = []
    for run in table.runs:
        status = run.status()
        if status != "done" and run.name in done_before:
            records.append(done_before[run.name])
            continue
        record = {"row": run.point, "seed": run.seed, "run": run.name, "status": status,
                  "workdir": run.workdir, "config": run.config, "config_args": run.config_args()}
        if status == "failed":
            with open(run.path("error.txt")) as f:
                record["error"] = f.readline().strip()
        if status == "done":
            record.update(_finished(run))
        records.append(record)
    return records


def _finished(run: sweep_lib.Run) -> dict:
    with open(run.path("results.json")) as f:
        r = json.load(f)
    val = next((row for row in read_metrics(run.workdir)
                if row["kind"] == "val" and row["step"] == r["best_step"]), None)
    # The CPU the run saw: its own results.json (runs since hardware.host() was added there,
    # however they were launched), else what this runner recorded at launch.
    host = {k: r["device"][k] for k in ("cpu", "cpu_cores") if k in r["device"]}
    if not host and os.path.exists(run.path("hardware.json")):
        with open(run.path("hardware.json")) as f:
            host = json.load(f)
    resumed = False
    if os.path.exists(run.path("log.txt")):
        with open(run.path("log.txt"), errors="replace") as f:
            resumed = "resumed from step" in f.read()
    device = {k: v for k, v in r["device"].items() if k != "host"}
    return {
        "test": r["test"],
        "val": {k: v for k, v in val.items() if k not in ("step", "kind")} if val else r["best_validation"],
        "test_popularity": r["test_popularity"],
        "best_step": r["best_step"],
        "best_epoch": r["best_step"] / r["steps_per_epoch"],
        "steps": r["steps"],
        "epochs": r["epochs"],
        "steps_per_epoch": r["steps_per_epoch"],
        "num_params": r["num_params"],
        "train_time_s": r["train_time_s"],
        "wall_time_s": r["wall_time_s"],
        "steps_per_s": r["steps_per_s"],
        "resumed": resumed,  # wall and train time then cover the last attempt only
        "device": device,
        "hardware": {**host, "accelerator": device["kind"] if device["platform"] != "cpu" else None,
                     "accelerator_count": device["count"] if device["platform"] != "cpu" else 0},
        "versions": r["versions"],
        "dataset": {k: r["dataset"][k] for k in ("name", "users", "items", "interactions")},
        "protocol": r["protocol"],
        "settings": flat_settings(r["config"]),  # what the run resolved its config to
    }


def write_results(table: Table, records: list[dict], out_dir: str) -> str:
    """<out_dir>/results/<table>.json: the table's rows and every run; its path."""
    doc = {
        "table": table.name,
        "file": table.path,
        "title": table.title,
        "goal": table.goal,
        "references": table.references,
        "budget": table.budget,
        "workdir_root": table.root,
        "rows": [{"name": row.name, "config": row.config, "overrides": row.overrides,
                  "published": dict(zip(METRICS, row.published)) if row.published else None,
                  "source": row.source, "seeds": list(row.seeds)} for row in table.rows],
        "runs": records,
    }
    path = os.path.join(out_dir, "results", f"{table.name}.json")
    _write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def write_markdown(out_dir: str) -> str:
    """<out_dir>/RESULTS.md from every <out_dir>/results/*.json and each table's findings; its
    path."""
    path = os.path.join(out_dir, "RESULTS.md")
    _write_atomic(path, results_markdown(out_dir))
    return path


def results_markdown(out_dir: str) -> str:
    """What write_markdown writes to <out_dir>/RESULTS.md; nothing is written or run."""
    tables = []
    for path in sorted(glob.glob(os.path.join(out_dir, "results", "*.json"))):
        with open(path) as f:
            tables.append(json.load(f))
    return markdown(tables)


def findings_path(table_file: str) -> str:
    """<table>.md beside the table file <table>.py: the words written about the table."""
    return os.path.splitext(table_file)[0] + ".md"


def read_findings(table_file: str) -> str:
    """The `## Findings` section of the table's Markdown file, without its heading and the blank
    lines around it, up to the next `#` or `##` heading (outside code fences); "" without file
    or section."""
    path = findings_path(table_file)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if FINDINGS_HEADING not in lines:
        return ""
    start = end = lines.index(FINDINGS_HEADING) + 1
    fenced = False
    for end in range(start, len(lines) + 1):
        if end == len(lines) or (not fenced and lines[end].startswith(("# ", "## "))):
            break
        fenced ^= lines[end].lstrip().startswith("```")
    return "\n".join(lines[start:end]).strip("\n")


def markdown(tables: list[dict]) -> str:
    lines = [
        "# Reproduction results", "",
        "Written by `experiments/reproduce/reproduce.py` from `results/*.json` (one file per "
        "table, every run in it); do not edit by hand. How to run the tables: "
        "`experiments/reproduce/README.md`.", "",
        f"**Protocol (every table):** {PROTOCOL}", "",
        "**Cells:** ours = test metric, mean ± sample std over the finished seeds (n); "
        f"Δ = ours − published; ✓ = Δ NDCG@10 ≥ −{NOISE} (within seed noise, or above); epochs = best / "
        "trained, mean over seeds; wall time = mean per run, * = resumed (last attempt only).", "",
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
        ours = f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ± {float(np.std(values, ddof=1)):.4f}"
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
    resumed = "*" if any(r["resumed"] for r in done) else ""
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


def _write_atomic(path: str, text: str) -> None:
    """Write via a temporary file and a rename: a reader never sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="", help="table file, e.g. experiments/reproduce/ml1m.py")
    parser.add_argument("--rows", default="", help="comma-separated rows to launch (default: all)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds replacing every row's")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--workdir_root", default="", help=f"where the runs go (default {RUNS_ROOT}/<table>)")
    parser.add_argument("--out_dir", default=OUT_DIR, help="holds results/<table>.json and RESULTS.md")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the commands of unfinished runs; run nothing")
    parser.add_argument("--report_only", action="store_true",
                        help="run nothing; write the JSON and RESULTS.md")
    parser.add_argument("--markdown_only", action="store_true",
                        help="no --table: rewrite RESULTS.md from the results/*.json in --out_dir "
                        "and each table's <table>.md; run nothing, write no JSON")
    args = parser.parse_args(argv)
    if args.markdown_only:
        if args.table or args.rows or args.seeds or args.dry_run or args.report_only:
            parser.error("--markdown_only takes only --out_dir")
        print(f"wrote {write_markdown(args.out_dir)}")
        return
    if not args.table:
        parser.error("--table is required (or --markdown_only)")
    try:
        table = load_table(args.table, args.seeds, args.workdir_root)
        runs = select(table, args.rows)
        # What is written covers the file's seeds too, whatever --seeds launches: a run of
        # the table that --seeds leaves out keeps its record.
        written = with_runs(load_table(args.table, "", args.workdir_root), table.runs)
        done_before = recorded(written, args.out_dir)
        if args.dry_run:
            sweep_lib.check_workdirs(runs)
            todo_runs = todo(runs, done_before)
            for run in todo_runs:
                print(shlex.join(run.command()))
            print(f"# {len(runs) - len(todo_runs)} finished runs left out", file=sys.stderr)
            return
        failed = 0 if args.report_only else run_table(table, runs, args.parallel, done_before)
        results = write_results(written, collect(written, done_before), args.out_dir)
        print(f"wrote {results} and {write_markdown(args.out_dir)}")
    except (ReproduceError, sweep_lib.SweepError) as e:
        sys.exit(f"error: {e}")
    if failed:
        sys.exit(f"{failed} runs failed (<workdir>/error.txt says why; the tables mark them); "
                 "rerun the same command to retry them")


if __name__ == "__main__":
    main()
