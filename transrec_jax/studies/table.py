"""Reproduction table files → rows with published references, and their runs (the file
format: experiments/reproduce/reproduce.py). A run is named `<row>,seed=N`; its overrides are
BUDGET, then the row's, then the seed."""

from __future__ import annotations

import copy
import dataclasses
import os
import runpy
from typing import Any

from transrec_jax.studies import study
from transrec_jax.studies.study import Run, StudyError

TABLE_NAMES = ("ROWS", "SEEDS", "BUDGET", "GOAL", "REFERENCES")
ROW_KEYS = ("name", "config", "overrides", "published", "source", "seeds")
RUNS_ROOT = os.path.join("experiments", "reproduce", "runs")
FINDINGS_HEADING = "## Findings"  # the section of <table>.md that RESULTS.md quotes


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
    runs: list[Run]  # seed by seed, rows in file order; run.point is the row name


def findings_path(table_file: str) -> str:
    """<table>.md beside the table file <table>.py: the words written about the table."""
    return os.path.splitext(table_file)[0] + ".md"


def load_table(path: str, seeds: str = "", root: str = "") -> Table:
    """Read a table file and expand it into runs (`seeds`: "0,1,2" replaces every row's)."""
    if not os.path.isfile(path):
        raise StudyError(f"--table={path}: no such file")
    spec = runpy.run_path(path)
    unknown = [k for k in spec if k.isupper() and not k.startswith("_") and k not in TABLE_NAMES]
    if "FINDINGS" in unknown:
        raise StudyError(f"{path}: FINDINGS: findings are Markdown, not Python: write them "
                         f"under '{FINDINGS_HEADING}' in {findings_path(path)}")
    if unknown:
        raise StudyError(f"{path}: unknown name {unknown[0]}; a table file sets {TABLE_NAMES}")
    if not spec.get("ROWS"):
        raise StudyError(f"{path}: ROWS is missing or empty")
    budget = {key: study.plain(value) for key, value in spec.get("BUDGET", {}).items()}
    forced = study.parse_seeds(seeds, (), "seeds ")
    table_seeds = study.parse_seeds("", spec.get("SEEDS", (0,)), "seeds ")
    rows = [_row(path, i, raw, budget, forced or table_seeds, bool(forced))
            for i, raw in enumerate(spec["ROWS"])]
    names = [row.name for row in rows]
    for name in names:
        if names.count(name) > 1:
            raise StudyError(f"{path}: row {name!r} appears twice")
    name = os.path.splitext(os.path.basename(path))[0]
    root = root or os.path.join(RUNS_ROOT, name)
    runs = []
    for seed in sorted({s for row in rows for s in row.seeds}):
        for row in rows:
            if seed in row.seeds:
                run_name = f"{row.name},seed={seed}"
                overrides = {**budget, **row.overrides, "seed": seed}
                runs.append(Run(run_name, {"row": row.name}, row.name, seed, row.config,
                                overrides, os.path.join(root, run_name)))
    title = (spec.get("__doc__") or "").strip().split("\n")[0].rstrip(".") or name
    references = spec.get("REFERENCES", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in references.items()):
        raise StudyError(f"{path}: REFERENCES: expected {{key: citation}} strings")
    return Table(name, path, title, spec.get("GOAL", ""), references, budget, rows, root, runs)


def _row(path: str, index: int, raw, budget: dict, seeds: tuple[int, ...], forced: bool) -> Row:
    """One ROWS entry, checked: its keys, its config file and every override against it."""
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: ROWS[{index}]: expected a dict with keys {ROW_KEYS}")
    name = raw.get("name")
    if not isinstance(name, str) or not study.SAFE.match(name):
        raise StudyError(f"{path}: ROWS[{index}]: name {name!r}: letters, digits and _ . + - only")
    where = f"{path}: row {name!r}"
    unknown = sorted(set(raw) - set(ROW_KEYS))
    if unknown:
        raise StudyError(f"{where}: unknown key {unknown[0]!r}; a row has {ROW_KEYS}")
    if not raw.get("source"):
        raise StudyError(f"{where}: no source; say where its settings and figures come from")
    published = raw.get("published")
    if published is not None:
        if (not isinstance(published, (tuple, list)) or len(published) != 2
                or not all(isinstance(x, (int, float)) for x in published)):
            raise StudyError(f"{where}: published={published!r}: expected (hr@10, ndcg@10) or None")
        published = (float(published[0]), float(published[1]))
    overrides = {key: study.plain(value) for key, value in raw.get("overrides", {}).items()}
    config = raw.get("config", "")
    if not config:
        if overrides or "seeds" in raw or published is None:
            raise StudyError(f"{where}: a row without config is a published reference: it "
                             "needs published, and overrides or seeds mean nothing there")
        return Row(name, "", {}, published, raw["source"], (), "", {})
    base = study.base_config(config, where)
    every = {**budget, **overrides}
    if "seed" in every:
        raise StudyError(f"{where}: config.seed is set by SEEDS (or --seeds) only")
    final = copy.deepcopy(base)
    for key, value in every.items():
        study.check_value(base, key, value, where)
        study.set_value(final, key, value)
    row_seeds = seeds if forced else study.parse_seeds("", raw.get("seeds", seeds), f"{where}: seeds=")
    dataset_path = final.dataset.path if final.dataset.source == "local" else ""
    return Row(name, config, overrides, published, raw["source"], row_seeds, dataset_path,
               study.flat_settings(final.to_dict()))


def with_runs(table: Table, runs: list[Run]) -> Table:
    """`table` with those of `runs` it lacks (another --seeds) appended."""
    names = {run.name for run in table.runs}
    return dataclasses.replace(table, runs=table.runs + [r for r in runs if r.name not in names])


def select(table: Table, rows: str) -> list[Run]:
    """The runs of the rows named in `rows` ("a,b"); all of them when empty."""
    if not rows:
        return table.runs
    by_name = {row.name: row for row in table.rows}
    names = rows.split(",")
    for name in names:
        if name not in by_name:
            raise StudyError(f"--rows: no row {name!r} in {table.path}; its rows: {', '.join(by_name)}")
        if not by_name[name].config:
            raise StudyError(f"--rows: row {name!r} is a published reference: nothing to run")
    return [run for run in table.runs if run.point in names]


def results_path(table: Table, out_dir: str) -> str:
    """<out_dir>/results/<table>.json: the table's results file."""
    return os.path.join(out_dir, "results", f"{table.name}.json")


def results_document(table: Table, records: list[dict]) -> dict:
    """The table's results file: its rows with their published figures, and every run's record."""
    return {
        "table": table.name,
        "file": table.path,
        "title": table.title,
        "goal": table.goal,
        "references": table.references,
        "budget": table.budget,
        "workdir_root": table.root,
        "rows": [{"name": row.name, "config": row.config, "overrides": row.overrides,
                  "published": dict(zip(("hr@10", "ndcg@10"), row.published)) if row.published else None,
                  "source": row.source, "seeds": list(row.seeds)} for row in table.rows],
        "runs": records,
    }
