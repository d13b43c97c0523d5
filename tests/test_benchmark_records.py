"""Benchmark figures come from their JSON records: RESULTS.md's table and the README's speed table.

Pure Python over experiments/benchmarks/*.json (no JAX, no data files): regenerates the table of
experiments/benchmarks/RESULTS.md in memory, and checks every figure of the README's "Speed and
scale" section against the record it comes from (experiments/benchmarks/summary.py holds both).
"""

import importlib.util
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "experiments" / "benchmarks"


def _load_summary():
    spec = importlib.util.spec_from_file_location("benchmark_summary", BENCHMARKS / "summary.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


summary = _load_summary()


def test_results_table_is_generated_from_the_records():
    text = (BENCHMARKS / "RESULTS.md").read_text()
    assert text.startswith("# "), "RESULTS.md starts with its title"
    assert text.count(summary.BEGIN) == 1 and text.count(summary.END) == 1
    assert text.index(summary.BEGIN) < text.index("\n## "), "the table comes first"
    assert summary.generated_block(text) == summary.render_block(), (
        "RESULTS.md's table is out of date: run python experiments/benchmarks/summary.py")


def test_every_record_is_current_or_superseded():
    on_disk = {p.name for p in BENCHMARKS.glob("*.json")}
    current = [name for b in summary.CURRENT for name in b.records]
    assert len(current) == len(set(current)), "a record belongs to one benchmark"
    assert not set(current) & set(summary.SUPERSEDED)
    assert set(current) | set(summary.SUPERSEDED) == on_disk, (
        "declare each record in summary.CURRENT or summary.SUPERSEDED")


def test_every_current_row_names_its_command_and_date():
    for b in summary.CURRENT:
        for name in b.records:
            rec = summary.record(name)
            assert summary.command_of(rec) != "not recorded", name
            assert summary.date_of(rec), name


def test_superseded_runs_are_in_the_archive_not_in_results():
    results = (BENCHMARKS / "RESULTS.md").read_text()
    archive = (BENCHMARKS / "ARCHIVE.md").read_text()
    assert archive.splitlines()[0].startswith("# Superseded benchmark runs")
    headings = lambda text: {line for line in text.splitlines() if line.startswith("# ")}
    assert len(headings(archive)) > 1
    assert not (headings(archive) - {archive.splitlines()[0]}) & headings(results)
    # The early 1.48x table that contradicted the README now lives only in the archive.
    assert "| ce | torch_eager | 1855.1 |" in archive
    assert "| ce | torch_eager | 1855.1 |" not in results


def test_readme_speed_table_matches_the_records():
    assert summary.check_readme() == []


def test_readme_claims_hold():
    failed = [what for what, ok in summary.claims() if not ok]
    assert failed == []


@pytest.mark.parametrize("old,new", [
    ("2.76x (CE)", "2.80x (CE)"),                      # a figure changed by hand
    ("3.6 GiB peak RSS", "3.5 GiB peak RSS"),
    ("**291-364 s**", "**291-299 s**"),               # a range over four records
    ("1 of 4 within 5 minutes", "4 of 4 within 5 minutes"),  # a count over them
    ("291 s against 326 s (0.89x)", "291 s against 326 s (0.80x)"),  # a ratio of two
    ("6 runs, 287-332 s", "6 runs, 287-299 s"),
    ("2 of 6 within 5 minutes", "6 of 6 within 5 minutes"),
    ("277-367 s (epochs 8-10", "277-299 s (epochs 8-10"),
    ("689 s and 682 s", "689 s and 600 s"),
    ("no measurable wait", "no wait"),                 # a claim's words dropped
    ("0.2 ms of host work per step", "0.2 ms of host work per step (0.7 ms at most)"),  # unchecked
])
def test_readme_check_catches_a_changed_figure(old, new):
    readme = summary.README.read_text()
    assert old in summary.readme_section(readme)
    assert summary.check_readme(readme.replace(old, new, 1)) != []


def test_number_pattern_reads_figures_not_names():
    assert summary.NUMBER.findall("2.76x (CE), bert4rec.py, 6,040 users, 3e-3, NDCG@10") == [
        "2.76", "6,040", "3", "3", "10"]


def test_records_keep_their_numbers_where_fields_were_added():
    """Fields added from the write-ups name themselves; the measured values are untouched."""
    for path in sorted(BENCHMARKS.glob("*.json")):
        rec = summary.record(path.name)
        for field in rec.get("added_from_write_up", []):
            assert field in rec, (path.name, field)
            assert not re.search(r"_(s|ms|gib|mib|mb)$", field), (path.name, field)
