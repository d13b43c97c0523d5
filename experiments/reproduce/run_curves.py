"""Validation curves and timing of a table's run directories, finished or not, as one JSON.

A lent GPU machine is given back with its disk, and a run it stopped at the time limit leaves
no record in the table's results (experiments/reproduce/gpu.sh). This keeps what such a run
still tells: validation NDCG@10 at every evaluation (metrics.jsonl; test NDCG@10 too, in runs
with eval.test_every_eval), how far it got and where its time went (the progress bar in
log.txt: seconds at the first step, at the first validation and per epoch), the machine it ran
on (hardware.json) and how it ended (error.txt).

  python experiments/reproduce/run_curves.py --runs=/tmp/reproduce/runs --out=$OUT/run_curves.json \\
      --note="one H200, jax 0.11.2, 6 runs at once"
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re

# tqdm's line: "train:  26%|...| 1007/3840 [02:50<03:04, ...]" (elapsed as [h:]mm:ss)
_BAR = re.compile(r"\|\s*(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")


def bar_times(log: str) -> dict[int, int]:
    """Step -> seconds since the loop started, the first time the bar showed that step."""
    times: dict[int, int] = {}
    for step, _, h, m, s in _BAR.findall(log):
        times.setdefault(int(step), int(h or 0) * 3600 + int(m) * 60 + int(s))
    return times


def _at(times: dict[int, int], step: int) -> tuple[int, int] | None:
    later = [s for s in times if s >= step]
    return (min(later), times[min(later)]) if later else None


def curve(run_dir: str) -> dict:
    """One run's summary (see the module docstring)."""
    def read(name: str) -> str:
        path = os.path.join(run_dir, name)
        return open(path, errors="replace").read() if os.path.exists(path) else ""

    rows = [json.loads(line) for line in read("metrics.jsonl").splitlines() if line.strip()]
    val = [r for r in rows if r.get("kind") == "val"]
    log = read("log.txt")
    times = bar_times(log)
    total = max((int(t) for _, t, *_ in _BAR.findall(log)), default=0)
    steps_per_epoch = val[0]["step"] if val else 0  # validation every epoch in the tables
    out = {
        "run": os.path.basename(run_dir),
        "config_args": json.loads(read("launch.json") or "{}").get("config_args"),
        "hardware": json.loads(read("hardware.json") or "null"),
        "ended": read("error.txt").splitlines()[0] if read("error.txt") else
                 ("finished" if os.path.exists(os.path.join(run_dir, "results.json")) else "unknown"),
        "steps": max(times, default=0),
        "total_steps": total,
        "val_ndcg@10": [round(r["ndcg@10"], 4) for r in val],
        "val_steps": [r["step"] for r in val],
    }
    test = [r for r in rows if r.get("kind") == "test_every_eval"]  # eval.test_every_eval runs
    if test:
        out.update({"test_every_eval_ndcg@10": [round(r["ndcg@10"], 4) for r in test],
                    "test_every_eval_steps": [r["step"] for r in test]})
    if val:
        best = max(val, key=lambda r: r["ndcg@10"])
        out.update(best_val_ndcg10=round(best["ndcg@10"], 4), best_val_step=best["step"])
    first, first_val = _at(times, 1), _at(times, steps_per_epoch + 1) if steps_per_epoch else None
    out["seconds_at_first_step"] = first[1] if first else None
    out["seconds_after_first_validation"] = first_val[1] if first_val else None
    if steps_per_epoch and times:
        # Steady state: from the end of the 3rd epoch to the last step the bar showed.
        start, end = _at(times, 3 * steps_per_epoch), max(times)
        if start and end > start[0]:
            out["seconds_per_epoch"] = round((times[end] - start[1]) / ((end - start[0]) / steps_per_epoch), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="a runs root: <table>/<run>/ directories")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--note", default="", help="where and how the runs ran (kept in the JSON)")
    args = parser.parse_args(argv)
    dirs = sorted(d for d in glob.glob(os.path.join(args.runs, "*", "*")) if os.path.isdir(d))
    if not dirs:
        raise SystemExit(f"error: --runs={args.runs} holds no <table>/<run>/ directories")
    runs = [{"table": os.path.basename(os.path.dirname(d)), **curve(d)} for d in dirs]
    with open(args.out, "w") as f:
        json.dump({"note": args.note, "runs": runs}, f, indent=1)
        f.write("\n")
    for r in runs:
        print(f"{r['table']}/{r['run']}: {r['steps']}/{r['total_steps']} steps, best val NDCG@10 "
              f"{r.get('best_val_ndcg10')}, {r.get('seconds_per_epoch')} s/epoch; {r['ended'][:60]}")


if __name__ == "__main__":
    main()
