"""The train-step tools of experiments/benchmarks run a config's own step end to end (slow tier):
profile_step.py breaks it down by XLA op, ab_step.py times it across revisions into a JSON record."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "experiments", "benchmarks")
CONFIG = "configs/sasrec_best.py:debug,fast"  # the synthetic set: packed rows, exclude_window


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_profile_step_breaks_a_configs_step_down_by_op(tmp_path):
    out = run("profile_step.py", f"--config={CONFIG}", "--steps=1", "--top=3",
              f"--trace-dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{CONFIG}; data: synthetic TrainBatcher" in out.stdout
    kinds = {line.split("|")[1].strip(): float(line.split("|")[2])
             for line in out.stdout.splitlines() if line.startswith("| ") and "ms per step" not in line
             and not line.startswith("|---")}
    parts = [v for k, v in kinds.items() if k != "total"]  # each printed to 0.1 ms
    assert kinds["matmul"] > 0 and kinds["total"] == pytest.approx(sum(parts), abs=0.05 * (len(parts) + 1))


@pytest.mark.slow
def test_ab_step_times_a_configs_step_in_each_variant(tmp_path):
    record_path = tmp_path / "ab.json"
    out = run("ab_step.py", "HEAD", ".", f"--config={CONFIG}", "--rounds=2", "--per=1",
              f"--out={record_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(record_path.read_text())
    assert record["step"] == f"config={CONFIG}" and record["cpu_cores"] >= 1
    assert record["speed_before"]["matmul_gflops"] > 0 and record["speed_after"]["copy_gbs"] > 0
    assert record["command"].startswith(".venv/bin/python experiments/benchmarks/ab_step.py HEAD .")
    assert set(record["variants"]) == {"HEAD", "."}
    for variant in record["variants"].values():
        assert len(variant["step_ms"]) == 2 and variant["median_ms"] > 0
    assert record["variants"]["HEAD"]["speedup_vs_first"] == 1.0
    assert record["variants"]["."]["working_tree"] and not record["variants"]["HEAD"]["working_tree"]


@pytest.mark.slow
def test_profile_step_names_a_missing_config_in_one_line():
    out = run("profile_step.py", "--config=configs/no_such.py:ml-1m", "--steps=1")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: --config=configs/no_such.py:ml-1m: no config file configs/no_such.py under {REPO}; "
        "expected path.py[:arg], e.g. configs/sasrec_best.py:ml-1m,fast"]
