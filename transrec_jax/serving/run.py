"""`load_run(workdir)`: the one way to get a trained model back (config, dataset, params)."""

from __future__ import annotations

import dataclasses
import os

import jax
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax.checkpoint import Checkpoints
from transrec_jax.config import ConfigError
from transrec_jax.data import load, splits
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.train import init_state


@dataclasses.dataclass
class Run:
    workdir: str
    config: object  # the recorded ml_collections.ConfigDict, locked
    dataset: SequenceDataset
    graphdef: object
    params: object  # nnx.State of the restored checkpoint
    step: int  # its training step

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)

    def split(self) -> splits.Split:
        return splits.make_split(self.dataset, self.config.dataset)


def load_run(workdir: str, checkpoint: str = "best") -> Run:
    """The run in `workdir` at its best-validation checkpoint, or at its `last` periodic one.

    A run that has not validated yet has no best checkpoint: `best` then falls back to the last.
    """
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint={checkpoint!r}: expected 'best' or 'last'")
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"{path} not found: --workdir must be a directory written by transrec_jax.main")
    config = config_lib.recorded_config(path)
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda *_: None)
    graphdef, _, state = init_state(config, dataset.num_items, 1, jax.random.key(config.seed))
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    restored = None
    if checkpoint == "best":
        restored, _ = checkpoints.restore(state, best=True)
    if restored is None:
        restored, _ = checkpoints.restore(state)
    checkpoints.close()
    if restored is None:
        raise ConfigError(f"{workdir} holds no checkpoint yet")
    return Run(workdir, config, dataset, graphdef, restored["params"], int(restored["step"]))
