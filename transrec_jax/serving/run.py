"""`load_run(workdir)`: the one way to get a trained model back (config, dataset, params);
`load_ensemble(workdirs)`: several runs back as one, their item scores summed."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import evaluate, sharding
from transrec_jax.checkpoint import Checkpoints
from transrec_jax.config import ConfigError
from transrec_jax.data import load, splits
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.models import Ensemble
from transrec_jax.train import init_state, item_features, user_features


@dataclasses.dataclass
class Run:
    workdir: str
    config: object  # the recorded ml_collections.ConfigDict, locked
    dataset: SequenceDataset
    graphdef: object
    params: object  # nnx.State of the restored checkpoint
    step: int  # its training step
    mesh: object = None  # the mesh the params live on (item-table rows over `model`), or None
    members: tuple = ()  # an ensemble's member Runs (`ensemble_of`); () for one run

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)

    def split(self) -> splits.Split:
        return splits.make_split(self.dataset, self.config.dataset, seed=self.config.seed)


def load_run(workdir: str, checkpoint: str = "best", mesh=None) -> Run:
    """The run in `workdir` at its best-validation checkpoint, or at its `last` periodic one.

    A run that has not validated yet has no best checkpoint: `best` then falls back to the last,
    as it does for a run whose test evaluated its final state (dataset.train_on_val_item).
    With a `mesh` (sharding.make_mesh) the params are restored onto it, item-table rows split
    over its `model` axis, which must divide the run's config.mesh.model (the tables' padding).
    """
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint={checkpoint!r}: expected 'best' or 'last'")
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"{path} not found: --workdir must be a directory written by transrec_jax.main")
    config = config_lib.recorded_config(path)
    dataset = load.load_dataset(config.dataset, config.seed, log=lambda *_: None)
    if mesh is not None and config.mesh.model % mesh.shape[sharding.MODEL]:
        raise ConfigError(f"{workdir} was trained with mesh.model={config.mesh.model}: its item "
                          f"tables split over a divisor of {config.mesh.model} devices, not "
                          f"{mesh.shape[sharding.MODEL]}")
    # (the item and user towers' arrays come back from the checkpoint; these give their shapes)
    counts = evaluate.train_item_counts(dataset, splits.make_split(dataset, config.dataset, seed=config.seed)) \
        if config.model.item_tower != "off" else None
    # (total steps and steps per epoch only shape the lr schedule, which no checkpoint holds)
    graphdef, _, state = init_state(config, dataset.num_items, 1, jax.random.key(config.seed), mesh,
                                    steps_per_epoch=1,
                                    item_features=item_features(config, dataset, counts, log=lambda *_: None),
                                    user_features=user_features(config, dataset, log=lambda *_: None),
                                    abstract=True)
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    restored, skipped = None, []
    if checkpoint == "best" and not config.dataset.train_on_val_item:
        restored, _ = checkpoints.restore(state, best=True)
        skipped += checkpoints.skipped
    if restored is None:
        restored, _ = checkpoints.restore(state)
        skipped += checkpoints.skipped
    checkpoints.close()
    if restored is None and skipped:  # e.g. a feature file that changed its vocabulary since
        name, step, reason = skipped[0]
        raise ConfigError(f"{workdir}: no checkpoint restores into the model its config.json and "
                          f"data files build now ({name}/{step}: {reason})")
    if restored is None:
        raise ConfigError(f"{workdir} holds no checkpoint yet")
    return Run(workdir, config, dataset, graphdef, restored["params"], int(restored["step"]), mesh)


def ensemble_of(runs) -> Run:
    """Loaded runs as one Run whose model is their models.Ensemble (item i scored by the sum of
    the members' scores), which every consumer of a Run (Recommender, export, the evaluator)
    serves unchanged. Members rank the same catalogue (dataset.item_ids), read histories of
    one model.max_len and the same other inputs (a time bias and its time_query, user
    features) and rank every item (no encdec); anything else may differ. The Run's config and
    dataset are the first member's."""
    if len(runs) < 2:
        raise ConfigError(f"an ensemble needs two or more runs, got {len(runs)}")
    first = runs[0]
    for run in runs:
        if run.config.model.name == "encdec":
            raise ConfigError(f"{run.workdir}: model.name='encdec' generates its list; an "
                              "ensemble sums the scores of models that rank every item")
        if not np.array_equal(run.dataset.item_ids, first.dataset.item_ids):
            raise ConfigError(f"{run.workdir}: its items (dataset.item_ids) differ from "
                              f"{first.workdir}'s; ensemble members rank one catalogue")
        if _inputs(run.config.model) != _inputs(first.config.model):
            raise ConfigError(f"{run.workdir}: its inputs (model.max_len, time bias, time_query, "
                              f"user features: {_inputs(run.config.model)}) differ from "
                              f"{first.workdir}'s ({_inputs(first.config.model)}); ensemble "
                              "members read the same")
    graphdef, params = nnx.split(Ensemble([run.model() for run in runs]))
    return Run(first.workdir, first.config, first.dataset, graphdef, params, first.step,
               first.mesh, members=tuple(runs))


def load_ensemble(workdirs, checkpoint: str = "best", mesh=None) -> Run:
    """`ensemble_of` the runs in `workdirs`, each at its `checkpoint` (as `load_run`)."""
    if len(workdirs) < 2:
        raise ConfigError(f"an ensemble needs two or more workdirs, got {len(workdirs)}")
    return ensemble_of([load_run(w, checkpoint, mesh) for w in workdirs])


def _inputs(model_cfg) -> tuple:
    """What a model reads besides the items of its history window."""
    timed = model_cfg.time_buckets > 0
    return (model_cfg.max_len, timed, model_cfg.time_query if timed else None,
            model_cfg.user_features != "off")
