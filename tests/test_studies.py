"""transrec_jax/studies: sweeps, reproduction tables and the benchmark launchers share one Run
model and one runner; the CLIs over them keep no launching logic of their own."""

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from transrec_jax.studies import grid, runner, study, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # config paths in study files are relative to the repository root


def imported_modules(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", [
    "experiments/reproduce/reproduce.py", "experiments/benchmarks/time_to_quality.py",
    "experiments/next_k/compare.py", "transrec_jax/sweep.py",
])
def test_every_launcher_goes_through_the_runner(path):
    names = imported_modules(os.path.join(REPO, path))
    assert "transrec_jax.studies.runner" in names
    assert "transrec_jax.sweep" not in names and "subprocess" not in names  # no launcher of its own
    assert "transrec_jax.train" not in names  # no run trained in-process


def test_sweeps_and_tables_expand_to_the_same_run(tmp_path):
    (tmp_path / "s.py").write_text('BASE = "configs/sasrec.py:debug"\n'
                                   'AXES = {"blocks": ("model.num_layers", [1])}\n')
    (tmp_path / "t.py").write_text(textwrap.dedent('''
        ROWS = [dict(name="one", config="configs/sasrec.py:debug",
                     overrides={"model.num_layers": 1}, published=None, source="toy")]
    '''))
    (run_a,) = grid.load(str(tmp_path / "s.py"), root="r").runs
    (run_b,) = table.load_table(str(tmp_path / "t.py"), root="r").runs
    assert isinstance(run_a, study.Run) and isinstance(run_b, study.Run)
    assert run_a.config_args() == run_b.config_args()  # the same settings, one launcher
    assert (run_a.name, run_b.name) == ("blocks=1,seed=0", "one,seed=0")


def test_runner_todo_skips_finished_and_recorded(tmp_path):
    runs = [study.Run(name, {}, name, 0, "configs/sasrec.py:debug", {}, str(tmp_path / name))
            for name in ("done", "recorded", "new")]
    os.makedirs(runs[0].workdir)
    open(runs[0].path("results.json"), "w").write("{}")
    assert [r.name for r in runner.todo(runs, {"recorded": {}})] == ["new"]


@pytest.mark.parametrize("entry", ["launch", "run_all"])
def test_stopping_the_driver_stops_its_training_process(tmp_path, entry):
    """SIGTERM to a study driver must not leave its training child running into the workdir."""
    driver = textwrap.dedent(f"""
        import subprocess, sys
        from transrec_jax.studies import runner, study
        def start(run, env=None, log=None):  # a stand-in training process
            process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            print(process.pid, flush=True)
            return process
        runner.start = start
        run = study.Run("r", {{}}, "r", 0, "configs/sasrec.py:debug", {{}}, {str(tmp_path / "r")!r})
        runner.launch(run) if {entry!r} == "launch" else runner.run_all([run])
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, cwd=REPO)
    child = int(process.stdout.readline())
    try:
        time.sleep(0.5)  # the driver is waiting on its child
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):  # reaped by the driver: gone, not orphaned
            os.kill(child, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("signum, outcome, status", [
    (signal.SIGTERM, "stopped", "unfinished"),  # a time limit: resumable, not an error
    (signal.SIGKILL, "failed", "failed"),  # e.g. the kernel's OOM killer
])
def test_a_run_ended_by_sigterm_is_unfinished_not_failed(tmp_path, monkeypatch, signum, outcome, status):
    def start(run, env=None, log=None):  # a training process that a signal ends
        return subprocess.Popen([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signum)})"])
    monkeypatch.setattr(runner, "start", start)
    run = study.Run("r", {}, "r", 0, "configs/sasrec.py:debug", {}, str(tmp_path / "r"))
    assert runner.launch(run)[0] == outcome
    assert run.status() == status
    assert os.path.exists(run.path("error.txt")) == (outcome == "failed")


def time_to_quality_module():
    spec = importlib.util.spec_from_file_location(
        "time_to_quality", os.path.join(REPO, "experiments", "benchmarks", "time_to_quality.py"))
    ttq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ttq)
    return ttq


@pytest.mark.parametrize("name", sorted(time_to_quality_module().recipes()))
def test_time_to_quality_recipes_are_runs_and_extra_overrides_win(name):
    ttq = time_to_quality_module()
    args = argparse.Namespace(config_overrides="model.attention_dropout=0.0,train.bf16=True",
                              workdir_root="/tmp/ttq")
    run = ttq.recipe_run(name, ttq.recipes()[name], args)
    assert run.overrides["model.attention_dropout"] == "0.0" and run.overrides["train.bf16"] == "True"
    assert run.workdir == os.path.join("/tmp/ttq", name)
    config = study.base_config(run.config, "recipe")
    for key, value in run.overrides.items():
        if key not in args.config_overrides:
            study.check_value(config, key, value, "recipe")  # every recipe key exists, typed


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_time_to_quality_records_what_the_compilation_cache_held(tmp_path, monkeypatch, mode):
    """A cold run compiles into an empty cache of its own; a warm one into the shared cache, whose
    programs before and after the run are counted (a run that finds its programs adds none)."""
    ttq = time_to_quality_module()
    shared = tmp_path / "shared_cache"
    shared.mkdir()
    (shared / "jit_train_step-aa-cache").write_text("x")
    (shared / "jit_train_step-aa-atime").write_text("x")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(shared))
    seen = {}

    def start(run, env=None, log=None):  # "trains": one new program, then a validation row
        seen["cache"] = env["JAX_COMPILATION_CACHE_DIR"]
        program = os.path.join(seen["cache"], "jit__eval_step-bb-cache")
        row = json.dumps({"kind": "val", "step": 48, "ndcg@10": 0.2}) + "\n"
        script = (f"import os; os.makedirs({seen['cache']!r}, exist_ok=True); "
                  f"open({program!r}, 'w').close(); open({run.path('metrics.jsonl')!r}, 'a').write({row!r})")
        return subprocess.Popen([sys.executable, "-c", script])

    monkeypatch.setattr(runner, "start", start)
    args = argparse.Namespace(config_overrides="", workdir_root=str(tmp_path / "runs"), limit=60.0,
                              metric="ndcg@10", target=0.18, compilation_cache=mode)
    result = ttq.run_recipe("fast", ttq.recipes()["fast"], args)
    assert result["stopped_by"] == "target" and result["curve"][0]["value"] == 0.2
    for probe in (result["speed_before"], result["speed_after"]):  # the box's speed around the run
        assert probe["matmul_gflops"] > 0 and probe["copy_gbs"] > 0
    if mode == "cold":
        assert seen["cache"] == str(tmp_path / "runs" / "fast" / "compilation_cache")
        assert result["compilation_cache"] == {"mode": "cold", "programs_before": 0, "programs_after": 1}
    else:
        assert seen["cache"] == str(shared)
        assert result["compilation_cache"] == {"mode": "warm", "programs_before": 1, "programs_after": 2}


def test_gpu_script_runs_the_named_steps_and_refuses_unknown_ones(tmp_path):
    """experiments/benchmarks/gpu.sh with PYTHON=echo: each step prints its command instead of running."""
    script = os.path.join(REPO, "experiments", "benchmarks", "gpu.sh")

    def run(steps):
        env = {**os.environ, "PYTHON": "echo", "STEPS": steps, "OUT": str(tmp_path)}
        return subprocess.run(["bash", script], env=env, capture_output=True, text=True)

    done = run("ttq,converge")
    assert done.returncode == 0
    commands = [line for line in done.stdout.splitlines() if "time_to_quality.py" in line]
    assert len(commands) == 2
    assert "--recipes=best_fast" in commands[0] and "train.num_epochs=8" in commands[0]
    assert "--recipes=best_config" in commands[1] and "--target=1" in commands[1]
    assert "train_step.py" not in done.stdout and "evaluate_speed.py" not in done.stdout
    refused = run("ttq,bogus")
    assert refused.returncode == 2 and "time_to_quality.py" not in refused.stdout
    assert refused.stderr.strip().splitlines() == [
        "error: STEPS: unknown step 'bogus'; expected ttq, converge, train_step or evaluate"]
