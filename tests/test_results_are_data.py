"""Results are data, words are Markdown.

A measured figure lives in a study's results file and the Markdown generated from it (or the
Markdown people write about it: experiments/reproduce/<table>.md, the READMEs), never in a
docstring, a comment, a config or a Python string. These tests hold the line:

  (a) no Python file under transrec_jax/, configs/ or experiments/ (results folders aside)
      quotes a measured metric, speed-up, spread or duration;
  (b) the committed experiments/reproduce/RESULTS.md is exactly what reproduce.py writes from
      the committed results/*.json and the tables' Markdown (`--markdown_only`; no training);
  (c) no table file keeps FINDINGS in Python: each table's words are its <table>.md;
  (d) every committed ablation report (experiments/ablations/results/<study>/) has its study
      results file, and its report.md, report.csv and runs.csv are exactly what
      `python -m transrec_jax.report --regenerate=experiments/ablations/results` writes from it
      (no runs, no training, no figures drawn).
"""

import ast
import glob
import importlib.util
import os
import re
import shutil
import sys

import pytest

from transrec_jax.studies import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("transrec_jax", "configs", "experiments")
SKIPPED_DIRS = {"results", "runs", "__pycache__"}  # data a study writes; git-ignored run folders

_METRIC = r"(?:NDCG|HR|ndcg|hr|Recall|recall|MRR|mrr)@[0-9]+"
MEASURED = re.compile("|".join([
    # a metric, then within a few characters a figure with 3+ decimals: "NDCG@10 0.1886",
    # "HR@10 of 0.3349". Not across ≥ ≤ > <: "NDCG@10 ≥ 0.190" states a goal, not a result.
    _METRIC + r"[^0-9≥≤><]{0,12}[0-9]?\.[0-9]{3,}",
    # a figure, then the metric it is: "+0.0029 test NDCG@10"
    r"[0-9]\.[0-9]{3,}[^0-9]{0,12}" + _METRIC,
    # a measured speed ratio: "~1.7x faster", "1.5× slower", "~1.7x the time"
    r"[0-9.]+ ?[x×] (?:faster|slower|the time|as fast|as slow)",
    # a spread: "± 0.0025", "±0.002" (a format string's "± {std:.4f}" is not one)
    r"± ?[0-9]*\.?[0-9]",
    # a measured duration per unit of work: "70 s an epoch", "~17 min per run", "2.0 h a seed"
    r"[0-9.]+ ?(?:ms|s|min|minutes|h|hours) (?:a|an|per|each) (?:step|epoch|run|seed)\b",
]))


def python_files():
    for top in SCANNED:
        for root, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(root, name)


def exempt_lines(tree: ast.Module) -> set[int]:
    """Lines of a module-level `REFERENCES = {...}`: a table's citations of published work.
    Their figures are the papers' own (the data a table compares against, as `published=` is),
    never ours, so a citation may quote them. Nothing else is exempt."""
    lines = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "REFERENCES" for t in node.targets):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def test_the_pattern_catches_figures_and_spares_code():
    caught = ["test NDCG@10 0.1886 over 3 seeds", "HR@10 0.3349", "+0.0029 test NDCG@10",
              "(`train.pack_rows`; ~1.7x faster on ML-1M)", "the core ran 1.5x slower",
              "0.1946 ± 0.0027", "seed noise ±0.002", "at 70 s an epoch", "~17 min per run",
              "recall@20 = 0.104", "mrr@10: 0.0612"]
    spared = ["ks=(1, 5, 10)", 'METRICS = ("hr@10", "ndcg@10")', "GOAL = 'NDCG@10 ≥ 0.190'",
              'f"{mean:.4f} ± {std:.4f}"', "mean ± std over seeds", "published=(0.3152, 0.1821)",
              '{"ndcg@10": 0.3}', "3,416 items", "lr 3e-3 after a 96-step warm-up",
              "dropout 0.1, d = d_ff = 64", "NOISE = 0.006", "b2 0.999"]
    assert [s for s in caught if not MEASURED.search(s)] == []
    assert [s for s in spared if MEASURED.search(s)] == []


def test_no_python_file_quotes_a_measured_figure():
    found = []
    for path in python_files():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        skip = exempt_lines(ast.parse(source, path))
        for number, line in enumerate(source.splitlines(), 1):
            if number not in skip and MEASURED.search(line):
                found.append(f"{os.path.relpath(path, REPO)}:{number}: {line.strip()}")
    assert found == [], ("measured figures belong in a results file and Markdown (a table's "
                         "<table>.md, a README), linked from here:\n" + "\n".join(found))


def load_reproduce():
    spec = importlib.util.spec_from_file_location(
        "reproduce", os.path.join(REPO, "experiments", "reproduce", "reproduce.py"))
    module = sys.modules["reproduce"] = importlib.util.module_from_spec(spec)  # for dataclasses
    spec.loader.exec_module(module)
    return module


def test_committed_results_md_is_what_reproduce_writes(monkeypatch):
    """Regenerate with `python experiments/reproduce/reproduce.py --markdown_only`."""
    monkeypatch.chdir(REPO)  # the JSON names its table files relative to the repository root
    reproduce = load_reproduce()
    out_dir = reproduce.OUT_DIR
    with open(os.path.join(out_dir, "RESULTS.md"), encoding="utf-8") as f:
        committed = f.read()
    assert reproduce.results_markdown(out_dir) == committed, (
        "RESULTS.md is stale or edited by hand: run "
        "`python experiments/reproduce/reproduce.py --markdown_only`")


def module_names(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    return {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)}


TABLES = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "reproduce", "*.py"))
                if "ROWS" in module_names(p))


def test_the_shipped_tables_are_found():
    assert {os.path.basename(p) for p in TABLES} >= {"ml1m.py", "beauty.py"}


@pytest.mark.parametrize("path", TABLES, ids=os.path.basename)
def test_table_words_are_markdown(path):
    """No FINDINGS list in the table file; its words, findings included, are <table>.md."""
    assert "FINDINGS" not in module_names(path)
    words = os.path.splitext(path)[0] + ".md"
    assert os.path.exists(words), f"{os.path.relpath(words, REPO)}: the table's words are missing"
    with open(words, encoding="utf-8") as f:
        assert "## Findings" in f.read().splitlines()


def test_no_python_file_defines_findings():
    assert [os.path.relpath(p, REPO) for p in python_files() if "FINDINGS" in module_names(p)] == []


ABLATION_RESULTS = os.path.join(REPO, "experiments", "ablations", "results")
ABLATION_REPORTS = sorted(os.path.basename(os.path.dirname(p))
                          for p in glob.glob(os.path.join(ABLATION_RESULTS, "*", "report.md")))


def test_every_ablation_report_keeps_its_results_file():
    assert len(ABLATION_REPORTS) >= 6
    assert [s for s in ABLATION_REPORTS
            if not os.path.exists(os.path.join(ABLATION_RESULTS, s, report.RESULTS))] == []


@pytest.mark.parametrize("name", ABLATION_REPORTS)
def test_committed_ablation_report_is_what_its_results_file_writes(name, tmp_path, monkeypatch):
    """Regenerate with `python -m transrec_jax.report --regenerate=experiments/ablations/results`."""
    monkeypatch.chdir(REPO)  # the results file names its sweep file relative to the repository root
    committed = os.path.join(ABLATION_RESULTS, name)
    out = tmp_path / name
    out.mkdir()
    # The figure of curves no longer recorded stays as committed, linked when it is there
    for kept in (report.RESULTS, "val_curves.png"):
        if os.path.exists(os.path.join(committed, kept)):
            shutil.copy(os.path.join(committed, kept), out / kept)
    report.regenerate(str(out / report.RESULTS), draw=False, root=str(tmp_path / "no_runs"))
    for file in (report.RESULTS, "report.md", "report.csv", "runs.csv"):
        with open(os.path.join(committed, file), encoding="utf-8") as f:
            assert (out / file).read_text(encoding="utf-8") == f.read(), (
                f"{name}/{file} is stale or edited by hand: run "
                "`python -m transrec_jax.report --regenerate=experiments/ablations/results`")


def test_committed_next_k_table_is_what_its_results_files_write():
    """Regenerate with `python experiments/next_k/compare.py --markdown_only` (no JAX, no runs)."""
    spec = importlib.util.spec_from_file_location(
        "next_k_readme_table", os.path.join(REPO, "experiments", "next_k", "readme_table.py"))
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    with open(table.README, encoding="utf-8") as f:
        committed = f.read()
    assert table.readme_text(committed) == committed, (
        "experiments/next_k/README.md's table is stale or edited by hand: run "
        "`python experiments/next_k/compare.py --markdown_only`")


@pytest.mark.parametrize("study_dir,driver_file", [
    ("recipe", "recipe.py"), ("features", "features.py"), ("explain", "faithfulness.py"),
    ("privacy", "privacy.py")])
def test_committed_study_readme_is_what_its_results_file_writes(study_dir, driver_file):
    """Regenerate with `python experiments/<study>/<driver> --markdown_only` (no runs)."""
    path = os.path.join(REPO, "experiments", study_dir, driver_file)
    spec = importlib.util.spec_from_file_location(f"{study_dir}_study", path)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    readme = os.path.join(REPO, "experiments", study_dir, "README.md")
    if not os.path.exists(driver.RESULTS):
        pytest.skip(f"experiments/{study_dir} has no results yet")
    with open(readme, encoding="utf-8") as f:
        assert driver.markdown(driver.load_records()) == f.read(), (
            f"experiments/{study_dir}/README.md is stale or edited by hand: run "
            f"`python {os.path.relpath(path, REPO)} --markdown_only`")


def test_export_readme_is_what_its_records_write():
    """Regenerate with `python experiments/export/readme.py` (no runs)."""
    path = os.path.join(REPO, "experiments", "export", "readme.py")
    spec = importlib.util.spec_from_file_location("export_readme", path)
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    with open(readme.README, encoding="utf-8") as f:
        assert readme.markdown() == f.read(), (
            "experiments/export/README.md is stale or edited by hand: run "
            "`python experiments/export/readme.py`")
