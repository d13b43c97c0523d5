"""Metrics to `metrics.jsonl` (one JSON object per line) and to TensorBoard (tensorboardX)."""

from __future__ import annotations

import json
import os

from tensorboardX import SummaryWriter


class MetricLog:
    def __init__(self, workdir: str, resume_step: int):
        self.path = os.path.join(workdir, "metrics.jsonl")
        _drop_rows_after(self.path, resume_step)  # rows logged after the checkpoint we resume from
        self._file = open(self.path, "a")
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, kind: str, values: dict) -> None:
        row = {"step": int(step), "kind": kind, **{k: float(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for name, value in values.items():
            self._tb.add_scalar(f"{kind}/{name.replace('@', '_at_')}", float(value), int(step))

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _drop_rows_after(path: str, step: int) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(rows)
    os.replace(tmp, path)
