"""User-level DP-SGD: `dp_train_step`, a private `train.train_step` (training.py wires it in).

Each user's training windows are one privacy unit. A step takes the gradient of each sampled
user's loss (the mean over the positions of all their windows: every user weighs the same)
with `jax.vmap` over the batch's user slots, clips each to global L2 norm C (clip_norm), sums
them, adds N(0, (σC)²) noise to every coordinate and divides by the expected number of users a
step (public, unlike the drawn number), then applies the optax update. Empty slots (`valid`
False) contribute nothing; the noise is there regardless. Accounting: accounting.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from transrec_jax import losses, sharding
from transrec_jax.privacy import accounting


def user_loss_fn(graphdef, constants, loss_cfg, trainable_items=None):
    """loss(params, windows, dropout_key, loss_key) of one user: the mean over the positions of
    all their windows (`windows`: {"seq": [W, width], and "times" / "users" aligned with it})."""

    def user_loss(params, windows, dropout_key, loss_key):
        model = nnx.merge(graphdef, nnx.merge_state(params, constants))
        aligned = {k: windows[k] for k in ("times", "users") if k in windows}
        hidden, targets, weights = model.training_forward(windows["seq"], key=dropout_key, **aligned)
        W, b = model.output_table(key=jax.random.fold_in(dropout_key, 2))
        return losses.compute_loss(loss_cfg, hidden, targets, weights, W, b, loss_key,
                                   num_items=model.num_items, trainable_items=trainable_items,
                                   window=windows["seq"])[0]

    return user_loss


def aggregate(per_user, valid, key, *, params, clip_norm: float, noise_multiplier: float,
              denominator: float):
    """(Σ_u clip(per_user[u], C) + N(0, (σC)²)) / denominator, in the dtypes of `params`, and
    each user's norm before clipping. per_user: a pytree of [users, ...] leaves; valid: [users];
    clip_norm inf: no clipping, noise_multiplier 0: no noise."""
    norms = per_user_norms(per_user)
    scale = valid * jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))  # (C = inf: 1)
    std = jnp.where(noise_multiplier > 0, noise_multiplier * clip_norm, 0.0)  # (not 0 · inf)
    leaves, treedef = jax.tree.flatten(per_user)
    keys = jax.random.split(key, len(leaves))
    summed = [jnp.tensordot(scale, g.astype(jnp.float32), axes=1)
              + std * jax.random.normal(k, g.shape[1:]) for g, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, [(g / denominator).astype(p.dtype)
                                        for g, p in zip(summed, jax.tree.leaves(params))]), norms


def dp_train_step(state, batch, key, *, graphdef, tx, loss_cfg, clip_norm: float,
                  noise_multiplier: float, denominator: float, trainable_items=None):
    """(state, batch, key) → (state, metrics), the batch from UserBatcher. Pure: randomness
    comes from fold_in(key, step), one dropout and one loss key per user slot."""
    step_key = jax.random.fold_in(key, state["step"])
    dropout_key, loss_key, noise_key = jax.random.split(step_key, 3)
    params, constants = nnx.split_state(state["params"], nnx.Param, ...)  # as train.trainable
    slots = batch["valid"].shape[0]
    user_loss = user_loss_fn(graphdef, constants, loss_cfg, trainable_items)
    windows = {k: v for k, v in batch.items() if k != "valid"}
    per_user_loss, per_user_grads = jax.vmap(jax.value_and_grad(user_loss), in_axes=(None, 0, 0, 0))(
        params, windows, jax.random.split(dropout_key, slots), jax.random.split(loss_key, slots))
    grads, norms = aggregate(per_user_grads, batch["valid"], noise_key, params=params,
                             clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                             denominator=denominator)
    return (apply_update(state, tx, params, constants, grads),
            step_metrics(per_user_loss, norms, batch["valid"], grads, clip_norm))


def apply_update(state, tx, params, constants, grads) -> dict:
    """The next state: the optimizer's update of `params` (the nnx.Param part) by `grads`, the
    constants as they were, the step counted."""
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    return {"step": state["step"] + 1,
            "params": nnx.merge_state(optax.apply_updates(params, updates), constants),
            "opt_state": opt_state}


def step_metrics(per_user_loss, norms, valid, grads, clip_norm: float) -> dict:
    """The mean loss of the step's users, the aggregate's norm, the users and the share clipped."""
    valid = valid.astype(jnp.float32)
    users = valid.sum()
    return {"loss": jnp.sum(per_user_loss * valid) / jnp.maximum(users, 1.0),
            "grad_norm": optax.tree.norm(grads), "users": users,
            "clipped": jnp.sum(valid * (norms > clip_norm)) / jnp.maximum(users, 1.0)}


def per_user_norms(per_user_grads) -> jax.Array:
    """The global L2 norm of each user's gradient: [users]."""
    squares = [jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(g.shape[0], -1), axis=1)
               for g in jax.tree.leaves(per_user_grads)]
    return jnp.sqrt(sum(squares))


def compile_dp_step(config, plan: accounting.Plan, graphdef, tx, state, mesh, trainable_items=None):
    """`dp_train_step` jitted over `mesh` as train.compile_train_step: the batch's user slots
    split over `data` (a user's windows stay on one device)."""
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    replicated = sharding.replicated(mesh)
    return jax.jit(
        functools.partial(dp_train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          clip_norm=plan.clip_norm, noise_multiplier=plan.noise_multiplier,
                          denominator=float(plan.users_per_step), trainable_items=trainable_items),
        in_shardings=(state_sharding, sharding.batch_sharding(mesh), replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
