"""What train_and_evaluate needs of a run with config.privacy.mode on: `setup` → `Private`."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from transrec_jax import sharding
from transrec_jax.data.splits import training_view
from transrec_jax.privacy import accounting, dp_sgd, federated
from transrec_jax.privacy.batching import UserBatcher

NAMES = {"dp_sgd": "user-level DP-SGD", "fedavg": "federated averaging (not private)",
         "dp_fedavg": "user-level DP federated averaging"}


@dataclasses.dataclass
class Private:
    """The run's user batcher and plan; its compiled step, progress line and results entry."""

    mode: str
    batcher: UserBatcher
    plan: accounting.Plan
    upload_bytes: int = 0  # a client's update in a round (federated modes)

    def compile(self, config, graphdef, tx, state, mesh, trainable_items=None):
        if self.mode == "dp_sgd":
            return dp_sgd.compile_dp_step(config, self.plan, graphdef, tx, state, mesh, trainable_items)
        params = jax.tree.leaves(nnx.split_state(state["params"], nnx.Param, ...)[0])
        self.upload_bytes = int(sum(np.prod(x.shape) * x.dtype.itemsize for x in params))
        return federated.compile_round(config, self.plan, graphdef, tx, state, mesh, trainable_items)

    def progress(self, step: int) -> str:
        if not self.plan.noise_multiplier:
            return ""
        return f" (privacy: epsilon={self.plan.epsilon(step):.3f} at delta={self.plan.delta:.2e})"

    def report(self, step: int) -> dict:
        federated_report = {} if self.mode == "dp_sgd" else {
            "rounds": step, "upload_bytes_per_client_round": self.upload_bytes}
        return {**self.plan.report(step), "mode": self.mode, **federated_report}


def setup(config, dataset, split, mesh, width: int, log=print) -> Private:
    """The user batcher and the plan (noise calibrated to the planned steps) of config.privacy."""
    p, t = config.privacy, config.train
    population = int((training_view(dataset, split)[1] >= 2).sum())
    steps = t.num_steps or t.num_epochs * -(-population // p.users_per_step)
    plan = accounting.make_plan(p, population, steps, mesh.shape[sharding.DATA],
                                private=p.mode != "fedavg")
    batcher = UserBatcher(dataset, split, users_per_step=p.users_per_step, capacity=plan.capacity,
                          windows_per_user=p.windows_per_user, sampling=p.sampling,
                          max_len=config.model.max_len, seed=config.seed, window=t.window,
                          width=width, with_times=config.model.time_buckets > 0,
                          with_users=config.model.user_features != "off")
    guarantee = (f", clip norm {plan.clip_norm}, noise multiplier {plan.noise_multiplier:.4f}: "
                 f"epsilon {plan.epsilon(steps):.3f} at delta {plan.delta:.2e} after {steps} steps"
                 if plan.noise_multiplier else "")
    log(f"privacy: {NAMES[p.mode]}, {plan.sampling} sampling of {plan.users_per_step} of "
        f"{plan.population} users a step (batch capacity {plan.capacity}){guarantee}")
    return Private(p.mode, batcher, plan)
