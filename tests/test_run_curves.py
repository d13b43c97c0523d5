"""experiments/reproduce/run_curves.py: curves and timing of stopped runs, from their files."""

import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "run_curves", os.path.join(REPO, "experiments", "reproduce", "run_curves.py"))
run_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_curves)


def _bar(step, total, seconds):
    return f"\rtrain:  1%|          | {step}/{total} [{seconds // 60:02d}:{seconds % 60:02d}<01:00, 9.0it/s]"


def test_a_stopped_run_keeps_its_curve_progress_and_epoch_time(tmp_path):
    run = tmp_path / "ml1m" / "best,seed=0"
    run.mkdir(parents=True)
    # 10 steps an epoch, validation after each; the bar: step 1 at 20 s, then 2 s a step
    # from step 30 on (a validation's time included in those steps).
    val = [0.05, 0.10, 0.12, 0.11]
    with open(run / "metrics.jsonl", "w") as f:
        for i, v in enumerate(val, 1):
            f.write(json.dumps({"step": 10 * i, "kind": "train", "loss": 1.0}) + "\n")
            f.write(json.dumps({"step": 10 * i, "kind": "val", "ndcg@10": v}) + "\n")
            if i > 2:  # eval.test_every_eval from a resumed launch on
                f.write(json.dumps({"step": 10 * i, "kind": "test_every_eval", "ndcg@10": v / 2}) + "\n")
    log = "dataset: x\n" + _bar(0, 100, 0) + _bar(1, 100, 20) + _bar(11, 100, 50)
    log += "".join(_bar(s, 100, 60 + 2 * (s - 30)) for s in range(30, 45))
    (run / "log.txt").write_text(log)
    (run / "error.txt").write_text("killed by signal 15: train: 44/100\n\nmore\n")
    (run / "launch.json").write_text(json.dumps({"config_args": ["--config=configs/sasrec.py:ml-1m"]}))
    out = tmp_path / "curves.json"
    run_curves.main([f"--runs={tmp_path}", f"--out={out}", "--note=test box"])
    data = json.loads(out.read_text())
    assert data["note"] == "test box"
    (r,) = data["runs"]
    assert r["table"] == "ml1m" and r["run"] == "best,seed=0"
    assert r["val_ndcg@10"] == val and r["val_steps"] == [10, 20, 30, 40]
    assert (r["best_val_ndcg10"], r["best_val_step"]) == (0.12, 30)
    assert r["test_every_eval_ndcg@10"] == [0.06, 0.055] and r["test_every_eval_steps"] == [30, 40]
    assert (r["steps"], r["total_steps"]) == (44, 100)
    assert r["seconds_at_first_step"] == 20 and r["seconds_after_first_validation"] == 50
    assert r["seconds_per_epoch"] == pytest.approx(20.0)  # 2 s a step, 10 steps an epoch
    assert r["ended"].startswith("killed by signal 15")
    assert r["config_args"] == ["--config=configs/sasrec.py:ml-1m"]


def test_no_run_directories_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="holds no <table>/<run>/ directories"):
        run_curves.main([f"--runs={tmp_path}", f"--out={tmp_path / 'x.json'}"])
