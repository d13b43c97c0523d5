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
               seeds=(0,)),                      optional: the row's own seeds instead of SEEDS
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

Each run is a `transrec_jax.studies.study.Run` named `<row>,seed=N`, workdir
<workdir_root>/<name> (default experiments/reproduce/runs/<table>), launched by
`transrec_jax.studies.runner` (`--parallel` at a time): a run with results.json is skipped, an
interrupted one resumes from its checkpoint, a failed one is retried; a failure leaves
<workdir>/error.txt and never stops the other runs. The table format and the run names:
transrec_jax/studies/table.py; RESULTS.md: transrec_jax/studies/report.py.
A run that <out_dir>/results/<table>.json records as finished, with the arguments and the
resolved settings it would run with now, counts as finished too: a fresh checkout, whose run
directories are gone, skips it and tables it as recorded. Change a row's overrides, its config
file or a default it relies on, and its runs train again (a config key added since a run was
recorded is not compared, one removed since must hold the value the code still implements,
transrec_jax.config.REMOVED; records from before settings were recorded are trusted on their
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
import json
import os
import sys

from transrec_jax.studies import report, runner
from transrec_jax.studies import table as table_lib
from transrec_jax.studies.study import Run, StudyError
from transrec_jax.studies.table import load_table, select  # noqa: F401  (this script's API)

ReproduceError = StudyError  # the name this script's callers knew
RUNS_ROOT = table_lib.RUNS_ROOT
OUT_DIR = os.path.join("experiments", "reproduce")
results_markdown = report.results_markdown


def run_table(table: table_lib.Table, runs: list[Run], parallel: int,
              done_before: dict[str, dict]) -> int:
    """Launch every unfinished run of `runs` (`parallel` at a time); the number that failed."""
    runner.check_workdirs(runs)
    todo_runs = runner.todo(runs, done_before)
    paths = {row.name: row.dataset_path for row in table.rows}
    for run in todo_runs:
        if paths[run.point] and not os.path.exists(paths[run.point]):
            raise StudyError(f"row {run.point!r}: dataset file {paths[run.point]} not found "
                             "(run from the repository root)")
    from_record = sum(run.name in done_before and run.status() != "done" for run in runs)
    note = f"; {from_record} of them recorded in results/{table.name}.json" if from_record else ""
    print(f"table {table.name}: {len(runs)} runs in {table.root}: {len(runs) - len(todo_runs)} "
          f"finished (skipped{note}), {len(todo_runs)} to run", flush=True)
    return runner.run_all(todo_runs, parallel)


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
        print(f"wrote {report.write_markdown(args.out_dir)}")
        return
    if not args.table:
        parser.error("--table is required (or --markdown_only)")
    try:
        table = load_table(args.table, args.seeds, args.workdir_root)
        runs = select(table, args.rows)
        # What is written covers the file's seeds too, whatever --seeds launches: a run of
        # the table that --seeds leaves out keeps its record, and only the runs launched are
        # added (no 'not run' record for a row or seed nobody asked for).
        written = table_lib.with_runs(load_table(args.table, "", args.workdir_root), runs)
        path = table_lib.results_path(written, args.out_dir)
        done_before = runner.recorded(path, written.runs, {row.name: row.settings for row in written.rows})
        if args.dry_run:
            runner.dry_run(runs, done_before)
            return
        failed = 0 if args.report_only else run_table(table, runs, args.parallel, done_before)
        doc = table_lib.results_document(written, runner.collect(written.runs, done_before))
        runner.write_atomic(path, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path} and {report.write_markdown(args.out_dir)}")
    except StudyError as e:
        sys.exit(f"error: {e}")
    if failed:
        sys.exit(f"{failed} runs failed (<workdir>/error.txt says why; the tables mark them); "
                 "rerun the same command to retry them")


if __name__ == "__main__":
    main()
