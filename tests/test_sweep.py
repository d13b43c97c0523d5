"""Sweep files → named runs (grid, ZIP, one-at-a-time, --set, errors) and the local runner:
skip finished runs, relaunch unfinished ones, record failures and go on."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from transrec_jax import sweep as sweep_lib
from transrec_jax.studies import grid, study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # BASE config paths are relative to the repository root


def write_sweep(tmp_path, body: str, name: str = "abl") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


GRID = """
    BASE = "configs/sasrec.py:debug"
    AXES = {
        "loss": [("bce_1neg", {"loss.name": "bce", "loss.num_negatives": 1}), ("ce", {"loss.name": "ce"})],
        "blocks": ("model.num_layers", [1, 2, 3]),
    }
    SEEDS = (0, 1)
    BUDGET = {"train.num_steps": 4}
"""


def test_grid_expansion_and_stable_names(tmp_path):
    sweep = grid.load(write_sweep(tmp_path, GRID))
    assert len(sweep.runs) == 12 and len({r.name for r in sweep.runs}) == 12
    assert [r.seed for r in sweep.runs] == [0] * 6 + [1] * 6  # every grid point once before seed 1
    first = sweep.runs[0]
    assert first.name == "blocks=1,loss=bce_1neg,seed=0" and first.point == "blocks=1,loss=bce_1neg"
    assert first.labels == {"loss": "bce_1neg", "blocks": "1"}
    assert first.workdir == os.path.join("experiments", "ablations", "runs", "abl", first.name)
    assert first.command() == [
        "python", "-m", "transrec_jax.main", f"--workdir={first.workdir}",
        "--config=configs/sasrec.py:debug", "--config.train.num_steps=4", "--config.loss.name=bce",
        "--config.loss.num_negatives=1", "--config.model.num_layers=1", "--config.seed=0",
    ]
    assert sweep.axes == {"loss": ["bce_1neg", "ce"], "blocks": ["1", "2", "3"]}
    assert sweep.reference == {"loss": "ce", "blocks": "1"}  # the levels equal to the base config
    swapped = GRID.replace('"blocks": ("model.num_layers", [1, 2, 3]),', "").replace(
        "AXES = {", 'AXES = {\n        "blocks": ("model.num_layers", [3, 2, 1]),')
    assert {r.name for r in grid.load(write_sweep(tmp_path, swapped, "abl2")).runs} == {
        r.name for r in sweep.runs}


def test_zip_and_one_at_a_time(tmp_path):
    zipped = grid.load(write_sweep(tmp_path, """
        BASE = "configs/sasrec.py:debug"
        AXES = {"blocks": ("model.num_layers", [1, 2, 4]), "heads": ("model.num_heads", [1, 2, 4]),
                "d": [(str(d), {"model.d_model": d, "model.d_ff": 2 * d}) for d in (16, 32)]}
        ZIP = [("blocks", "heads")]
    """))
    assert [(r.labels["blocks"], r.labels["heads"]) for r in zipped.runs] == [
        ("1", "1"), ("1", "1"), ("2", "2"), ("2", "2"), ("4", "4"), ("4", "4")]
    assert zipped.runs[1].overrides["model.d_ff"] == 64

    ofat = grid.load(write_sweep(tmp_path, """
        BASE = "configs/sasrec.py:debug"
        AXES = {"blocks": ("model.num_layers", [1, 2, 4]), "heads": ("model.num_heads", [1, 2, 4]),
                "d": ("model.d_model", [16, 32])}
        GRID = "one_at_a_time"
    """, "ofat"))
    ref = {"blocks": "1", "heads": "2", "d": "16"}  # configs/sasrec.py:debug
    assert ofat.reference == ref and ofat.runs[0].labels == ref
    assert len(ofat.runs) == 1 + 2 + 2 + 1
    for run in ofat.runs[1:]:
        assert sum(run.labels[a] != ref[a] for a in ref) == 1


def test_set_changes_dataset_budget_seeds_and_root(tmp_path):
    path = write_sweep(tmp_path, GRID)
    sweep = grid.load(path, ["train.num_steps=7", "dataset=ml-100k"], seeds="3,4")
    run = sweep.runs[0]
    assert run.config == "configs/sasrec.py:ml-100k,debug"
    assert run.overrides["train.num_steps"] == 7 and sweep.every_run == {"train.num_steps": 7}
    assert sweep.seeds == (3, 4) and run.name.endswith("seed=3")
    assert sweep.root == os.path.join("experiments", "ablations", "runs",
                                      "abl,dataset=ml-100k,train.num_steps=7")
    assert grid.load(path, root=str(tmp_path / "r")).runs[0].workdir.startswith(str(tmp_path))


@pytest.mark.parametrize("body, sets, message", [
    ('AXES = {"x": ("model.nope", [1])}', [], "axis 'x' level '1': config key 'model.nope' unknown"),
    ('AXES = {"x": ("model.num_layers", [1.5])}', [], "model.num_layers=1.5: expected a int"),
    ('AXES = {"x": [("a/b", {"model.num_layers": 1})]}', [], "level 'a/b': labels may use"),
    ('AXES = {"x": ("model.num_layers", [1])}\nSEED = (1,)', [], "unknown name SEED"),
    ('AXES = {"x": ("model.num_layers", [1])}', ["train.num_steps"], "--set 'train.num_steps': expected"),
    ('AXES = {"x": ("model.num_layers", [1])}', ["train.nope=1"], "config key 'train.nope' unknown"),
    ('AXES = {"x": ("model.num_layers", [1])}', ["model.num_layers=2"], "axis 'x' of"),
    ('AXES = {"x": ("model.num_layers", [1])}', ["dataset=nope"], "--set dataset=nope: expected one of"),
    ('AXES = {"x": ("model.num_layers", [1]), "y": ("model.num_heads", [1, 2])}\nZIP = [("x", "y")]',
     [], "ZIP group ('x', 'y') has axes of different lengths"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, body, sets, message):
    path = write_sweep(tmp_path, 'BASE = "configs/sasrec.py:debug"\n' + body)
    with pytest.raises(sweep_lib.SweepError) as err:
        grid.load(path, sets)
    assert message in str(err.value) and "\n" not in str(err.value)


FAKE_MAIN = """
    import json, os, sys
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    with open(os.path.join(args["workdir"], "calls.txt"), "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    if args["config.model.num_layers"] == "3":
        print("step 1 of 4")
        sys.exit("error: boom")
    with open(os.path.join(args["workdir"], "results.json"), "w") as f:
        json.dump({"test": {"hr@10": 0.5, "ndcg@10": 0.25}}, f)
"""


def test_runner_skips_resumes_and_records_failures(tmp_path, monkeypatch, capsys):
    """A stand-in for transrec_jax.main records its calls: the runner logic without training."""
    (tmp_path / "fake_main.py").write_text(textwrap.dedent(FAKE_MAIN))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(study, "MAIN", "fake_main")
    body = 'BASE = "configs/sasrec.py:debug"\nAXES = {"blocks": ("model.num_layers", [1, 2, 3])}\n'
    path = write_sweep(tmp_path, body)
    root = str(tmp_path / "runs")
    done, unfinished, failing = grid.load(path, root=root).runs
    os.makedirs(done.workdir)
    open(done.path("results.json"), "w").write("{}")
    os.makedirs(unfinished.path("checkpoints"))  # interrupted: relaunched in place

    assert sweep_lib.run_sweep(grid.load(path, root=root), parallel=2) == 1
    assert "1 finished (skipped), 1 to resume, 0 failed before (retried), 1 new" in capsys.readouterr().out
    assert not os.path.exists(done.path("calls.txt"))
    assert open(unfinished.path("calls.txt")).read().split() == unfinished.command()[3:]
    assert [r.status() for r in (done, unfinished, failing)] == ["done", "done", "failed"]
    assert open(failing.path("error.txt")).readline().strip() == "exit code 1: error: boom"
    assert "step 1 of 4" in open(failing.path("error.txt")).read()
    with open(failing.path("launch.json")) as f:
        assert json.load(f)["command"] == failing.command()

    assert sweep_lib.run_sweep(grid.load(path, root=root)) == 1  # only the failure is retried
    assert len(open(failing.path("calls.txt")).readlines()) == 2
    assert len(open(unfinished.path("calls.txt")).readlines()) == 1

    write_sweep(tmp_path, body + 'BUDGET = {"train.num_steps": 9}\n')  # same names, other settings
    with pytest.raises(sweep_lib.SweepError, match="launched with other settings"):
        sweep_lib.run_sweep(grid.load(path, root=root))


@pytest.mark.slow
def test_sweep_and_report_end_to_end(tmp_path):
    """Three real tiny runs through the CLI: one cannot build (3 heads for d=16) and fails alone;
    a rerun skips the two finished runs; --dry_run prints the rest; the report marks the failure."""
    path = write_sweep(tmp_path, f"""
        BASE = "configs/sasrec.py:debug,dataset.synthetic.num_users=200,dataset.synthetic.num_items=50"
        AXES = {{"heads": ("model.num_heads", [1, 2, 3])}}
        BUDGET = {{"train.num_steps": 4, "train.eval_every_steps": 2, "dataset.cache_dir": {str(tmp_path)!r}}}
    """)
    root = str(tmp_path / "runs")
    cli = [sys.executable, "-m", "transrec_jax.sweep", f"--sweep={path}", f"--workdir_root={root}"]
    first = subprocess.run(cli + ["--parallel=2"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 1, first.stderr[-2000:]
    assert "1 of 3 runs failed" in first.stderr
    sweep = grid.load(path, root=root)
    assert [r.status() for r in sweep.runs] == ["done", "done", "failed"]
    error = open(sweep.runs[2].path("error.txt")).readline()
    assert error.startswith("exit code 1: error: config.model.d_model=16 is not divisible")

    again = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert "2 finished (skipped)" in again.stdout and again.returncode == 1
    dry = subprocess.run(cli + ["--dry_run"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert dry.stdout.splitlines() == [shlex.join(sweep.runs[2].command())]

    report = subprocess.run([sys.executable, "-m", "transrec_jax.report", f"--sweep={path}",
                             f"--workdir_root={root}"], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    md = open(os.path.join(root, "report.md")).read()
    assert "| 3 | *failed* |" in md and "`heads=3,seed=0`: exit code 1" in md
    for name in ("report.csv", "runs.csv", "vs_heads.png", "val_curves.png"):
        assert os.path.getsize(os.path.join(root, name)) > 0
