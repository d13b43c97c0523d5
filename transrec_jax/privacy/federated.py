"""Federated averaging, simulated: each round's users (clients) train on their own windows only.

A round (`fedavg_round`) samples users as a DP-SGD step does (privacy/batching.py); each client
starts from the global parameters and takes privacy.local_steps SGD steps at
privacy.client_learning_rate on the loss of its own windows, and uploads its update (local minus
global parameters). The server aggregates the updates as DP-SGD aggregates gradients
(dp_sgd.aggregate): privacy.mode='dp_fedavg' clips each to privacy.clip_norm and adds Gaussian
noise, accounted exactly as DP-SGD's steps are (McMahan et al., ICLR 2018: a user's update is
their whole contribution to a round); 'fedavg' only averages. The server then applies train's
optimizer to minus the mean update (with Adam: FedAdam, Reddi et al., ICLR 2021). The
simulation runs every client of a round at once (`jax.vmap`), on one machine.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from transrec_jax import sharding
from transrec_jax.privacy import accounting
from transrec_jax.privacy.dp_sgd import aggregate, apply_update, step_metrics, user_loss_fn


def fedavg_round(state, batch, key, *, graphdef, tx, loss_cfg, local_steps: int,
                 client_learning_rate: float, clip_norm: float, noise_multiplier: float,
                 denominator: float, trainable_items=None):
    """(state, batch, key) → (state, metrics): one round, the batch from UserBatcher. Pure:
    randomness comes from fold_in(key, round); metrics' loss is the clients' first local loss."""
    round_key = jax.random.fold_in(key, state["step"])
    dropout_key, loss_key, noise_key = jax.random.split(round_key, 3)
    params, constants = nnx.split_state(state["params"], nnx.Param, ...)  # as train.trainable
    user_loss = user_loss_fn(graphdef, constants, loss_cfg, trainable_items)

    def client(windows, dropout_key, loss_key):
        def local_step(local, i):
            loss, grads = jax.value_and_grad(user_loss)(
                local, windows, jax.random.fold_in(dropout_key, i), jax.random.fold_in(loss_key, i))
            return jax.tree.map(lambda p, g: p - client_learning_rate * g, local, grads), loss

        local, local_losses = jax.lax.scan(local_step, params, jnp.arange(local_steps))
        return local_losses[0], jax.tree.map(jnp.subtract, params, local)  # minus the update

    slots = batch["valid"].shape[0]
    windows = {k: v for k, v in batch.items() if k != "valid"}
    first_loss, per_user = jax.vmap(client)(
        windows, jax.random.split(dropout_key, slots), jax.random.split(loss_key, slots))
    grads, norms = aggregate(per_user, batch["valid"], noise_key, params=params, clip_norm=clip_norm,
                             noise_multiplier=noise_multiplier, denominator=denominator)
    return (apply_update(state, tx, params, constants, grads),
            step_metrics(first_loss, norms, batch["valid"], grads, clip_norm))


def compile_round(config, plan: accounting.Plan, graphdef, tx, state, mesh, trainable_items=None):
    """`fedavg_round` jitted over `mesh` as dp_sgd.compile_dp_step."""
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    replicated = sharding.replicated(mesh)
    p = config.privacy
    return jax.jit(
        functools.partial(fedavg_round, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          local_steps=p.local_steps, client_learning_rate=p.client_learning_rate,
                          clip_norm=plan.clip_norm, noise_multiplier=plan.noise_multiplier,
                          denominator=float(plan.users_per_step), trainable_items=trainable_items),
        in_shardings=(state_sharding, sharding.batch_sharding(mesh), replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
