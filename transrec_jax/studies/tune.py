"""The best recipe for data nobody tuned on: a short search on validation NDCG@10 alone.

configs/sasrec_best.py was tuned on ML-1M; pointed as it is at a small dataset it overfits. This
search chooses what the data decides (capacity, regularisation, schedule length) in two stages,
every run a study run (runner.launch: resumable, skipped when finished):

  shape     blocks x dropout over SHAPES, each with a cosine schedule of FIRST_EPOCHS epochs;
  schedule  the best shape again with the cosine stretched to 2x, 4x, ... the epochs (up to
            MAX_EPOCHS), stopping at the first length whose best validation is not higher.

Every run warms up over WARMUP_EPOCHS epochs (train.warmup_epochs: the ML-1M preset's 96 steps
are 2 of its epochs) and keeps its best validation checkpoint. The chosen run is the one with
the highest validation value over both stages; its test metrics are read, never compared. The
cost is every run's wall time, written with the choice to <root>/tune.json.
"""

from __future__ import annotations

import json
import os
import time

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError
from transrec_jax.studies import runner
from transrec_jax.studies.study import Run, StudyError, base_config, flag_value, set_value

SHAPES = [(blocks, dropout) for blocks in (2, 4) for dropout in (0.2, 0.5)]
FIRST_EPOCHS = 20
MAX_EPOCHS = 80
WARMUP_EPOCHS = 2
METRIC = "ndcg@10"  # validation metric the search maximises (the preset's early_stop_metric)


def shape_overrides(blocks: int, dropout: float, epochs: int) -> dict:
    return {"model.num_layers": blocks, "model.dropout": dropout, "model.attention_dropout": dropout,
            "train.num_epochs": epochs, "train.num_steps": 0, "train.warmup_steps": 0,
            "train.warmup_epochs": WARMUP_EPOCHS, "train.schedule": "cosine", "train.patience": 0}


def make_run(config: str, seed: int, root: str, blocks: int, dropout: float, epochs: int) -> Run:
    name = f"blocks={blocks},dropout={dropout},epochs={epochs}"
    overrides = {**shape_overrides(blocks, dropout, epochs), "seed": seed}
    return Run(name, {"blocks": str(blocks), "dropout": str(dropout), "epochs": str(epochs)},
               name, seed, config, overrides, os.path.join(root, name))


def check(config: str) -> None:
    """StudyError (one line) when `config` cannot take the search's settings, before any run."""
    base = base_config(config, "--config")
    for key, value in shape_overrides(*SHAPES[-1], MAX_EPOCHS).items():
        set_value(base, key, value)
    try:
        config_lib.validate(base)
    except ConfigError as e:
        raise StudyError(f"--config={config}: the search's settings do not apply: {e}") from None


def with_overrides(config: str, overrides: dict) -> str:
    """"file.py:arg" with `overrides` appended as key=value words."""
    words = [f"{k}={flag_value(v)}" for k, v in overrides.items()]
    file, _, arg = config.partition(":")
    return f"{file}:{','.join([w for w in arg.split(',') if w] + words)}"


def search(config: str, root: str, seed: int = 0, log=lambda line: print(line, flush=True)) -> dict:
    """Run the two stages (see the module docstring); the record written to <root>/tune.json."""
    check(config)
    started = time.time()
    rows = []

    def launch(blocks, dropout, epochs, stage):
        run = make_run(config, seed, root, blocks, dropout, epochs)
        rec = runner.finished(run)
        row = {"stage": stage, "run": run.name, "blocks": blocks, "dropout": dropout,
               "epochs": epochs, "val": rec["val"][METRIC], "best_epoch": rec["best_epoch"],
               "test": rec["test"], "wall_time_s": rec["wall_time_s"],
               "command": " ".join(run.command())}
        log(f"{stage:8s} {run.name}: validation {METRIC} {row['val']:.4f} "
            f"(best epoch {row['best_epoch']:.0f}, {row['wall_time_s']:.0f} s)")
        rows.append(row)
        return row

    shape = max((launch(b, p, FIRST_EPOCHS, "shape") for b, p in SHAPES), key=lambda r: r["val"])
    best, epochs = shape, FIRST_EPOCHS
    while epochs * 2 <= MAX_EPOCHS:
        epochs *= 2
        longer = launch(shape["blocks"], shape["dropout"], epochs, "schedule")
        if longer["val"] <= best["val"]:
            break
        best = longer
    result = {
        "config": config, "seed": seed, "metric": METRIC,
        "search": {"shapes": SHAPES, "first_epochs": FIRST_EPOCHS, "max_epochs": MAX_EPOCHS,
                   "warmup_epochs": WARMUP_EPOCHS},
        "runs": rows,
        "chosen": {k: best[k] for k in ("run", "blocks", "dropout", "epochs", "val", "test", "command")},
        "chosen_config": with_overrides(
            config, shape_overrides(best["blocks"], best["dropout"], best["epochs"])),
        "cost_s": sum(r["wall_time_s"] for r in rows),
        "elapsed_s": time.time() - started,  # (0 when every run was finished before)
    }
    runner.write_atomic(os.path.join(root, "tune.json"), json.dumps(result, indent=2) + "\n")
    return result
