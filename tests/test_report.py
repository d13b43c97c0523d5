"""report: results.json / metrics.jsonl files written here → table (mean ± std over seeds, bold
best, popularity row, failures marked, protocol above), CSVs and PNG plots."""

import csv
import json
import os
import shutil
import textwrap

import pytest

from transrec_jax.config import ConfigError
from transrec_jax.studies import grid, report, study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = """
    \"\"\"Toy ablation of the report tests.\"\"\"
    BASE = "configs/sasrec.py:debug"
    AXES = {
        "loss": [("a", {"loss.name": "ce"}), ("b", {"loss.name": "bce"}), ("c", {"loss.name": "gbce"})],
        "blocks": ("model.num_layers", [1, 2]),
    }
    SEEDS = (0, 1)
    BUDGET = {"train.num_epochs": 3}
"""
# (loss, blocks, seed) → (hr@10, ndcg@10); "failed" and "unfinished" runs have no results.
OUTCOMES = {
    ("a", "1", 0): (0.5, 0.2), ("a", "1", 1): (0.6, 0.2),
    ("a", "2", 0): (0.5, 0.22), ("a", "2", 1): (0.6, 0.22),
    ("b", "1", 0): (0.4, 0.3), ("b", "1", 1): (0.4, 0.3),
    ("b", "2", 0): (0.4, 0.31), ("b", "2", 1): "unfinished",
    ("c", "1", 0): "failed", ("c", "1", 1): (0.45, 0.25),
    ("c", "2", 0): "failed", ("c", "2", 1): "failed",
}


def fake_run(run: study.Run, outcome) -> None:
    os.makedirs(run.workdir)
    curve = [{"step": s, "kind": "val", "ndcg@10": 0.1 * s} for s in (10, 20)]
    with open(run.path("metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in curve)
    if outcome == "failed":
        with open(run.path("error.txt"), "w") as f:
            f.write("exit code 1: error: boom\n\ntraceback...\n")
    elif outcome != "unfinished":
        hr, ndcg = outcome
        results = {
            "config": {"train": {"early_stop_metric": "ndcg@10"}},
            "protocol": {"split": "leave_one_out", "ranking": "full (all items)", "history_masked": True,
                         "ties": "pessimistic", "loss": run.labels["loss"], "negatives": None},
            "dataset": {"name": "synthetic", "users": 2000, "items": 500, "interactions": 80000},
            "test": {"hr@10": hr, "ndcg@10": ndcg, "mrr@10": ndcg / 2},
            "test_popularity": {"hr@10": 0.3, "ndcg@10": 0.1, "mrr@10": 0.05},
            "best_step": 20, "steps": 30, "epochs": 3.0, "wall_time_s": 12.0,
        }
        with open(run.path("results.json"), "w") as f:
            json.dump(results, f)


@pytest.fixture
def swept(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "toy.py"
    path.write_text(textwrap.dedent(SWEEP))
    sweep = grid.load(str(path), root=str(tmp_path / "runs"))
    for run in sweep.runs:
        fake_run(run, OUTCOMES[run.labels["loss"], run.labels["blocks"], run.seed])
    return sweep


def row(md: str, start: str) -> list[str]:
    (line,) = [line for line in md.splitlines() if line.startswith(start)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_means_bold_popularity_failures_and_protocol(swept, tmp_path):
    out = str(tmp_path / "out")
    md = report.write_report(swept, out, ["hr@10", "ndcg@10"], "ndcg@10")
    assert md == open(os.path.join(out, "report.md")).read()
    assert md.index("- **Protocol:** split: leave_one_out; ranking: full (all items)") < md.index("| loss |")
    assert "ties: pessimistic (loss: by row)" in md and "negatives" not in md
    assert "**Every run:** train.num_epochs=3" in md and "**Trained:** 3 epochs (30 steps)" in md
    assert "Toy ablation of the report tests." in md
    assert row(md, "| a | 1 |") == ["a", "1", "**0.5500 ± 0.0707**", "0.2000 ± 0.0000", "2/2", "3"]
    assert row(md, "| a | 2 |")[2] == "**0.5500 ± 0.0707**"  # ties share the bold
    assert row(md, "| b | 2 |") == ["b", "2", "0.4000", "**0.3100**", "1/2", "3"]
    assert row(md, "| c | 1 |") == ["c", "1", "0.4500", "0.2500", "1/2 (1 failed)", "3"]
    assert row(md, "| c | 2 |") == ["c", "2", "*failed*", "*failed*", "0/2 (2 failed)", "—"]
    assert row(md, "| *popularity baseline* |") == ["*popularity baseline*", "", "0.3000", "0.1000", "", ""]
    assert "- `blocks=1,loss=c,seed=0`: exit code 1: error: boom" in md
    assert "`blocks=2,loss=b,seed=1` (unfinished)" in md
    assert "![val_curves](val_curves.png)" in md

    with open(os.path.join(out, "report.csv")) as f:
        points = list(csv.DictReader(f))
    assert len(points) == 7 and points[-1]["loss"] == "popularity"
    assert float(points[0]["hr@10_mean"]) == pytest.approx(0.55) and points[0]["seeds_done"] == "2"
    with open(os.path.join(out, "runs.csv")) as f:
        runs = list(csv.DictReader(f))
    assert [r["status"] for r in runs].count("done") == 8 and len(runs) == 12
    assert {r["mrr@10"] for r in runs if r["status"] == "failed"} == {""}
    for name in ("vs_loss.png", "vs_blocks.png", "val_curves.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


REPORT_FILES = ("report.md", "report.csv", "runs.csv")


def test_report_regenerates_from_its_results_file_without_the_runs(swept, tmp_path):
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10", "ndcg@10"], "ndcg@10")
    written = {name: open(os.path.join(out, name), "rb").read() for name in (*REPORT_FILES, "results.json")}
    data = json.loads(written["results.json"])
    assert data["sweep"]["seeds"] == [0, 1] and data["sweep"]["every_run"] == {"train.num_epochs": 3}
    assert [r["run"] for r in data["runs"]] == [run.name for run in swept.runs]  # sweep order
    first = data["runs"][0]
    assert first["labels"] == {"loss": "a", "blocks": "1"} and first["seed"] == 0
    assert first["status"] == "done" and first["error"] == ""
    assert set(first["results"]) == {*report.REPORT_KEYS, "config"}
    assert first["results"]["config"] == {"train": {"early_stop_metric": "ndcg@10"}}
    assert first["curve"] == [[10, 0.1 * 10], [20, 0.1 * 20]]
    failed = data["runs"][[r["run"] for r in data["runs"]].index("blocks=1,loss=c,seed=0")]
    assert failed["status"] == "failed" and failed["error"] == "exit code 1: error: boom"

    shutil.rmtree(swept.root)  # a fresh checkout: no run workdirs, only the committed report
    for name in (*REPORT_FILES, "val_curves.png"):
        os.remove(os.path.join(out, name))
    md = report.write_report(swept, out, ["hr@10", "ndcg@10"], "ndcg@10")
    for name, content in written.items():
        assert open(os.path.join(out, name), "rb").read() == content, name
    assert "![val_curves](val_curves.png)" in md and os.path.exists(os.path.join(out, "val_curves.png"))


def test_a_run_with_a_workdir_wins_over_the_results_file(swept, tmp_path):
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10"], "ndcg@10")
    (run, *others) = swept.runs
    for other in others:
        shutil.rmtree(other.workdir)
    os.remove(run.path("results.json"))
    with open(run.path("error.txt"), "w") as f:
        f.write("exit code 2: rerun and failed\n")
    report.write_report(swept, out, ["hr@10"], "ndcg@10")
    with open(os.path.join(out, "runs.csv")) as f:
        runs = list(csv.DictReader(f))
    assert (runs[0]["status"], runs[0]["error"]) == ("failed", "exit code 2: rerun and failed")
    assert [r["status"] for r in runs].count("done") == 7


def test_a_sweep_given_more_seeds_reads_the_old_seeds_from_its_results_file(swept, tmp_path):
    """Seed 0 reported and its workdirs gone (they are not committed), then the sweep runs seed
    1 too: the report has both, seed 0 from results.json."""
    out = str(tmp_path / "out")
    path = str(tmp_path / "toy.py")
    first = grid.load(path, (), "0", root=swept.root)
    report.write_report(first, out, ["hr@10"], "ndcg@10")
    want = open(os.path.join(out, "runs.csv")).read()
    for run in first.runs:
        shutil.rmtree(run.workdir)
    both = report.write_report(swept, out, ["hr@10"], "ndcg@10")
    assert "| a | 1 |" in both and row(both, "| a | 1 |")[-2] == "2/2"
    with open(os.path.join(out, "runs.csv")) as f:
        runs = list(csv.DictReader(f))
    assert [r["seed"] for r in runs].count("0") == [r["seed"] for r in runs].count("1") == len(first.runs)
    seed0 = [line for line in want.splitlines()[1:]]
    assert all(line in open(os.path.join(out, "runs.csv")).read() for line in seed0)
    assert json.load(open(os.path.join(out, "results.json")))["sweep"]["seeds"] == [0, 1]


@pytest.mark.parametrize("change", [
    {"seeds": "0"},
    {"sets": ["train.num_epochs=4"]},
    {"curve_metric": "hr@10"},
])
def test_a_results_file_of_other_sweep_settings_is_refused(swept, tmp_path, change):
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10"], "ndcg@10")
    shutil.rmtree(swept.root)
    written = open(os.path.join(out, "results.json")).read()
    path = str(tmp_path / "toy.py")
    other = grid.load(path, change.get("sets", ()), change.get("seeds", ""), root=swept.root)
    with pytest.raises(study.StudyError) as e:
        report.write_report(other, out, ["hr@10"], change.get("curve_metric", "ndcg@10"))
    message = str(e.value)
    assert isinstance(e.value, ConfigError) and "\n" not in message
    assert message.startswith(os.path.join(out, "results.json")) and "other sweep settings" in message
    assert open(os.path.join(out, "results.json")).read() == written  # left as it was


def test_a_damaged_results_file_is_refused(swept, tmp_path):
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10"], "ndcg@10")
    shutil.rmtree(swept.root)
    with open(os.path.join(out, "results.json"), "w") as f:
        f.write('{"runs": []}')
    with pytest.raises(study.StudyError, match=r"results\.json: not a study results file"):
        report.write_report(swept, out, ["hr@10"], "ndcg@10")


def test_report_before_any_run_finished(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "toy.py"
    path.write_text(textwrap.dedent(SWEEP))
    sweep = grid.load(str(path), root=str(tmp_path / "runs"))
    md = report.write_report(sweep, sweep.root, ["hr@10"], "ndcg@10")
    assert "No run has finished yet." in md and row(md, "| a | 1 |")[2] == "not finished"
    assert not [f for f in os.listdir(sweep.root) if f.endswith(".png")]


@pytest.mark.parametrize("values, std", [
    ((0.019397597912921023, 0.019397599176065813), None),  # float32 noise: no ± 0.0000
    ((0.0194, 0.0294), pytest.approx(0.0070711, abs=1e-6)),  # a real spread keeps its std
])
def test_popularity_std_only_when_it_shows(values, std):
    records = [{"results": {"test_popularity": {"ndcg@10": v}}} for v in values]
    pop = report.popularity(records, ["ndcg@10"])
    assert pop["mean"]["ndcg@10"] == pytest.approx(sum(values) / 2)
    assert pop["std"]["ndcg@10"] == std


def test_regenerate_rewrites_a_report_from_its_results_file_alone(swept, tmp_path):
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10", "ndcg@10"], "ndcg@10")
    path = os.path.join(out, report.RESULTS)
    written = {name: open(os.path.join(out, name), "rb").read() for name in (*REPORT_FILES, report.RESULTS)}
    assert json.loads(written[report.RESULTS])["report"] == {
        "sweep": str(tmp_path / "toy.py"), "set": [], "metrics": ["hr@10", "ndcg@10"]}
    shutil.rmtree(swept.root)
    for name in (*REPORT_FILES, "val_curves.png", "vs_loss.png"):
        os.remove(os.path.join(out, name))
    md = report.regenerate(path, draw=False)  # the sweep file, --set items and metrics it records
    for name, content in written.items():
        assert open(os.path.join(out, name), "rb").read() == content, name
    # Not drawn, yet linked as written: the figures are not what the table is compared on
    assert "![vs_loss](vs_loss.png)" in md and "![val_curves](val_curves.png)" in md
    assert not os.path.exists(os.path.join(out, "vs_loss.png"))


def test_a_run_without_a_recorded_curve_keeps_the_figure_drawn_from_the_runs(swept, tmp_path):
    """A curve of null: not recorded (a report converted after its runs were gone). The
    val_curves.png already there is kept and linked, never redrawn without that run."""
    out = str(tmp_path / "out")
    report.write_report(swept, out, ["hr@10"], "ndcg@10")
    shutil.rmtree(swept.root)
    path = os.path.join(out, report.RESULTS)
    with open(path) as f:
        data = json.load(f)
    data["runs"][0]["curve"] = None
    with open(path, "w") as f:
        json.dump(data, f)
    figure = os.path.join(out, "val_curves.png")
    with open(figure, "wb") as f:
        f.write(b"drawn from the runs")
    md = report.write_report(swept, out, ["hr@10"], "ndcg@10")
    assert "![val_curves](val_curves.png)" in md and open(figure, "rb").read() == b"drawn from the runs"
    assert json.load(open(path))["runs"][0]["curve"] is None  # kept absent, not invented
    os.remove(figure)
    md = report.write_report(swept, out, ["hr@10"], "ndcg@10")
    assert "val_curves" not in md and not os.path.exists(figure)
    assert "![vs_loss](vs_loss.png)" in md  # the final figures still plot
