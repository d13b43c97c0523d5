"""Metrics to `metrics.jsonl` (one JSON object per line) and to TensorBoard (tensorboardX).

`metrics.jsonl` is the record; the TensorBoard event files are rebuilt from it whenever a run
starts or resumes, so after a kill and a resume both hold each (kind, step, metric) once: rows
logged after the checkpoint the run resumes from, `test` rows (written again at the end of
every launch) and a line torn by a kill are dropped, the remaining rows are replayed into a
fresh event file, and the run appends from there.

With several processes only process 0 writes (`write`); on the others a MetricLog touches no
file and `write` does nothing.
"""

from __future__ import annotations

import glob
import json
import os

import jax
from tensorboardX import SummaryWriter


class MetricLog:
    def __init__(self, workdir: str, resume_step: int, *, write: bool | None = None):
        """`write`: whether this process writes the logs; default: process 0 only."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.writes = jax.process_index() == 0 if write is None else write
        if not self.writes:
            return
        rows = _keep_rows(self.path, resume_step)
        tb_dir = os.path.join(workdir, "tensorboard")
        for old in glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")):
            os.remove(old)  # rebuilt from the rows kept
        self._tb = SummaryWriter(tb_dir)
        for row in rows:
            self._add_scalars(row["step"], row["kind"],
                              {k: v for k, v in row.items() if k not in ("step", "kind")})
        self._tb.flush()
        self._file = open(self.path, "a")

    def write(self, step: int, kind: str, values: dict) -> None:
        if not self.writes:
            return
        row = {"step": int(step), "kind": kind, **{k: float(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        self._add_scalars(row["step"], kind, {k: row[k] for k in values})

    def _add_scalars(self, step: int, kind: str, values: dict) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(f"{kind}/{name.replace('@', '_at_')}", float(value), int(step))

    def close(self) -> None:
        if not self.writes:
            return
        self._file.close()
        self._tb.close()


def _parse(lines) -> list[dict]:
    """The rows of complete, well-formed lines (a kill can tear the last one)."""
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and isinstance(row.get("kind"), str):
            rows.append(row)
    return rows


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return _parse(f)


def _keep_rows(path: str, step: int) -> list[dict]:
    """Rewrites `path` (atomically) with the rows a run resuming from `step` keeps; returns them."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [r for r in _parse(f) if r["step"] <= step and r["kind"] != "test"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)
    return rows
