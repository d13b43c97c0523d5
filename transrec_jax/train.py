"""`train_and_evaluate(config, workdir)`: one training run, readable top to bottom.

data → model and optimizer → jitted train step over a (data, model) mesh → loop with
periodic validation, early stopping and Orbax checkpoints → test evaluation of the best
checkpoint beside the popularity baseline → `results.json`. Relaunching the same command in
the same workdir resumes from the last checkpoint (params, optimizer state, step, data
iterator and early-stopping state); randomness is a pure function of (config.seed, step).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from transrec_jax import checkpoint as checkpoint_lib
from transrec_jax import config as config_lib
from transrec_jax import evaluate, hardware, host_memory, losses, negatives, sharding
from transrec_jax import workdir as workdir_lib
from transrec_jax.checkpoint import Checkpoints
from transrec_jax.data import load, side_info, splits
from transrec_jax.data.batching import TrainBatcher
from transrec_jax.data.dataset import format_stats
from transrec_jax.metric_log import MetricLog, read_metrics
from transrec_jax.models import Ensemble, build_model, training_window


class NonFiniteLossError(FloatingPointError):
    """The loss, parameters or optimizer state became NaN or Inf; the last good checkpoint is kept
    (a non-finite state is never saved)."""


def make_optimizer(train_cfg, total_steps: int, steps_per_epoch: int = 0) -> optax.GradientTransformation:
    """Adam with optional warmup + cosine schedule (`steps_per_epoch`: for train.warmup_epochs)."""
    t = train_cfg
    warmup = warmup_steps(t, steps_per_epoch)
    if t.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0, t.learning_rate, max(warmup, 1), max(total_steps, warmup + 1)
        )
    elif warmup:
        lr = optax.linear_schedule(0.0, t.learning_rate, warmup)
    else:
        lr = t.learning_rate
    return optax.adam(lr, b2=t.adam_b2)


def warmup_steps(train_cfg, steps_per_epoch: int) -> int:
    """train.warmup_epochs in steps when set (> 0), else train.warmup_steps."""
    if train_cfg.warmup_epochs > 0:
        if steps_per_epoch < 1:
            raise ValueError("train.warmup_epochs needs the number of steps per epoch")
        return max(round(train_cfg.warmup_epochs * steps_per_epoch), 1)
    return train_cfg.warmup_steps


def init_state(config, num_items: int, total_steps: int, key, mesh=None, steps_per_epoch: int = 0,
               item_features=None, user_features=None, *, abstract: bool = False):
    """(graphdef, optimizer, state): the model split once; state = {step, params, opt_state}.

    The item tables have their rows padded to a multiple of config.mesh.model (sharding.py).
    With a mesh the state is created in place on it: item-table rows over `model`, the rest
    replicated (each process creates only its shards). abstract=True: the state's shapes,
    dtypes and shardings only (jax.ShapeDtypeStruct leaves, nothing initialised), the target
    a checkpoint restores into.
    """
    dtype = jnp.bfloat16 if config.train.bf16 else jnp.float32
    tx = make_optimizer(config.train, total_steps, steps_per_epoch)

    def create(key):
        model = build_model(config.model, num_items, dtype=dtype, rngs=nnx.Rngs(params=key),
                            row_multiple=config.mesh.model, item_features=item_features,
                            user_features=user_features)
        graphdef, params = nnx.split(model)
        state = {"step": jnp.zeros((), jnp.int32), "params": params,
                 "opt_state": tx.init(trainable(params)[0])}
        return graphdef, state

    graphdef, shapes = nnx.eval_shape(lambda: create(key))  # nothing allocated
    if abstract:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        layout = sharding.state_shardings(shapes, mesh) if mesh is not None else \
            jax.tree.map(lambda _: device, shapes)
        return graphdef, tx, jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                          shapes, layout)
    if mesh is None:
        return graphdef, tx, create(key)[1]
    create_state = jax.jit(lambda key: create(key)[1],
                           out_shardings=sharding.state_shardings(shapes, mesh))
    return graphdef, tx, create_state(key)


def item_features(config, dataset, item_counts: np.ndarray, *, log=print):
    """What the item tower reads (None without one): dataset.item_features aligned to `dataset`
    (read once, cached beside the dataset) and the items seen in training (`item_counts` > 0)."""
    if config.model.item_tower == "off":
        return None
    stem = os.path.splitext(load.cache_path(config.dataset, config.seed))[0]
    info = side_info.read_item_features(config.dataset, dataset, stem, log=log)
    return side_info.tower_inputs(info, item_counts > 0)


def user_features(config, dataset, *, log=print):
    """What the user tower reads (None without one): dataset.user_features aligned to
    `dataset`'s users (read once, cached beside the dataset), row 0 the unknown user."""
    if config.model.user_features == "off":
        return None
    stem = os.path.splitext(load.cache_path(config.dataset, config.seed))[0]
    info = side_info.read_user_features(config.dataset, dataset, stem, log=log)
    return side_info.user_tower_inputs(info)


def trainable(params):
    """(the nnx.Param leaves, the rest): the model's state splits into what the optimizer trains
    and its constants (the item and user towers' feature tables, models/item_tower.py and
    models/user_tower.py)."""
    return nnx.split_state(params, nnx.Param, ...)


def train_step(state, batch, key, *, graphdef, tx, loss_cfg, item_log_probs, mesh=None,
               trainable_items=None):
    """(state, batch, key) → (state, metrics). Pure: randomness comes from fold_in(key, step)."""
    step_key = jax.random.fold_in(key, state["step"])
    dropout_key, loss_key = jax.random.split(step_key)

    def member_loss(member, dropout_key, loss_key):
        aligned = {k: batch[k] for k in ("segments", "positions", "times", "users") if k in batch}
        hidden, targets, weights = member.training_forward(batch["seq"], key=dropout_key, **aligned)
        # (the output table's id dropout: a key of its own, used only by an item tower)
        W, b = member.output_table(key=jax.random.fold_in(dropout_key, 2))
        return losses.compute_loss(loss_cfg, hidden, targets, weights, W, b, loss_key,
                                   num_items=member.num_items, item_log_probs=item_log_probs,
                                   trainable_items=trainable_items,
                                   window=batch["seq"], segments=aligned.get("segments"),
                                   mesh=mesh)[0]

    def loss_fn(params):
        model = nnx.merge(graphdef, params)
        if not isinstance(model, Ensemble):
            return member_loss(model, dropout_key, loss_key)
        # Each member its own loss, dropout and negatives: independent training, one step.
        k = len(model.members)
        member_keys = zip(jax.random.split(dropout_key, k), jax.random.split(loss_key, k))
        return sum(member_loss(m, *keys) for m, keys in zip(model.members, member_keys)) / k

    params, constants = trainable(state["params"])
    loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge_state(p, constants)))(params)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {
        "step": state["step"] + 1,
        "params": nnx.merge_state(optax.apply_updates(params, updates), constants),
        "opt_state": opt_state,
    }
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def compile_train_step(config, graphdef, tx, state, mesh, item_log_probs=None, trainable_items=None):
    """`train_step` jitted over `mesh`: the state keeps its shardings (donated, updated in
    place), the batch splits over `data`, the key and the metrics are replicated."""
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    replicated = sharding.replicated(mesh)
    return jax.jit(
        functools.partial(train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          item_log_probs=item_log_probs, mesh=mesh, trainable_items=trainable_items),
        in_shardings=(state_sharding, sharding.batch_sharding(mesh), replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


def train_and_evaluate(config, workdir: str, *, restart: bool = False) -> dict:
    """Train, or resume, the run of `config` in `workdir`; a finished run returns its results.

    `restart` discards a run of another config (or this one) in `workdir` and starts over.
    """
    start_time = time.time()
    config_lib.validate(config, jax.device_count())
    finished = workdir_lib.check(workdir, config, restart=restart)  # writes nothing
    if finished is not None:
        say(f"{workdir} holds a finished run of this config: its results.json (--restart to rerun)")
        return finished

    # --- data ---------------------------------------------------------------------------
    dataset = load.load_dataset(config.dataset, config.seed, log=say)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    if dataset.num_items < config.mesh.model:
        raise config_lib.ConfigError(
            f"config.mesh.model={config.mesh.model} splits the item table over more devices than "
            f"{config.dataset.name} has items ({dataset.num_items}); expected at most {dataset.num_items}")
    if config.model.time_buckets and dataset.timestamps is None:
        raise config_lib.ConfigError(
            f"config.model.time_buckets={config.model.time_buckets} needs timestamps, and dataset "
            f"{config.dataset.name} ({dataset.name}) has none: expected model.time_buckets=0")
    workdir_lib.bind(workdir, config, restart=restart)  # only once the data loaded
    stats = dataset.stats()
    say(f"dataset {config.dataset.name}: {format_stats(stats)}")
    # Packed rows come in multiples of batch/8 rows (<= 8 step shapes), split over the devices.
    mesh = sharding.make_mesh(config.mesh)
    pack_rows = math.lcm(max(config.train.batch_size // 8, 1), mesh.shape[sharding.DATA])
    private = None
    if config.privacy.mode != "off":  # batches of users, sampled as privacy/accounting.py assumes
        from transrec_jax.privacy import training  # (needs the optional extra `privacy`)
        private = training.setup(config, dataset, split, mesh, training_window(config.model), log=say)
        batcher = private.batcher
    else:
        batcher = TrainBatcher(dataset, split, config.model.max_len, config.train.batch_size,
                               config.seed, config.train.window, width=training_window(config.model),
                               pack_row_multiple=pack_rows if config.train.pack_rows else 0,
                               with_times=config.model.time_buckets > 0,
                               with_users=config.model.user_features != "off")
    if config.loss.name == "sampled_softmax" and config.loss.sampler == "unseen":
        negatives.check_unseen(config.loss.num_negatives, dataset.num_items, batcher.width)
    total_steps = config.train.num_steps or config.train.num_epochs * batcher.steps_per_epoch
    eval_every = config.train.eval_every_steps or config.train.eval_every_epochs * batcher.steps_per_epoch
    item_counts = evaluate.train_item_counts(dataset, split)

    # --- model, optimizer, state, compiled steps ----------------------------------------
    data_sharding = sharding.batch_sharding(mesh)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    features = item_features(config, dataset, item_counts, log=say)
    graphdef, tx, state = init_state(config, dataset.num_items, total_steps, init_key, mesh,
                                     steps_per_epoch=batcher.steps_per_epoch, item_features=features,
                                     user_features=user_features(config, dataset, log=say))
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainable(state["params"])[0]))
    # Items withheld from training (dataset.split=cold_items) do not exist for its losses.
    trainable_items = None if split.withheld is None else jnp.asarray(item_counts > 0)
    step_fn = private.compile(config, graphdef, tx, state, mesh, trainable_items) if private else \
        compile_train_step(config, graphdef, tx, state, mesh,
                           _popularity_log_probs(item_counts, config.loss), trainable_items)
    validate = evaluate.Evaluator(config, dataset, split, "val", graphdef, mesh)
    test = evaluate.Evaluator(config, dataset, split, "test", graphdef, mesh)

    # --- resume -------------------------------------------------------------------------
    # The newest checkpoint that restores intact; damaged ones are reported, moved aside and
    # skipped (see checkpoint.py). Saves newer than the resume step are discarded: this run
    # recomputes them (e.g. a best save whose periodic save never landed).
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints, log=say)
    restored, meta = checkpoints.restore(state, set_aside=True, check=_check_resume_meta)
    progress = {"best_value": None, "best_step": None, "bad_evals": 0, "stopped_early": False}
    # Wall time of the earlier attempts, up to the checkpoint this one resumes from (None: a
    # checkpoint from before it was recorded); the work a kill lost is redone, and counted, here.
    earlier_s = 0.0
    if restored is not None:
        state = restored
        batcher.restore(meta["batcher"])
        progress = meta["progress"]
        earlier_s = meta.get("elapsed_s")
        say(f"resumed from step {int(state['step'])}")
    elif checkpoints.skipped:
        say(f"warning: no checkpoint restores ({len(checkpoints.skipped)} skipped); starting from step 0")
    step = int(state["step"])
    dropped = checkpoints.discard_after(step)
    if dropped:
        say(f"discarded {', '.join(dropped)}: newer than step {step}, this run recomputes them")
    log = MetricLog(workdir, step)

    def elapsed() -> float | None:
        return None if earlier_s is None else earlier_s + time.time() - start_time

    def save(fingerprint, best=False):
        checkpoints.save(step, state, {"batcher": batcher.state(), "progress": progress,
                                       "elapsed_s": elapsed()},
                         best=best, fingerprint=fingerprint)

    # --- training loop ------------------------------------------------------------------
    # A checkpoint at every validation (after it, so its meta holds the updated early-stopping
    # state) and every `checkpoint_every_steps`: a kill loses at most one interval. Before each
    # save the state itself (params and optimizer state) must be finite, besides the loss.
    metric = config.train.early_stop_metric
    loop_start, first_step = time.time(), step
    bar = tqdm(total=total_steps, initial=step, desc="train", disable=jax.process_index() != 0)
    pending = None  # the previous step's metrics, checked after the next step is dispatched
    while step < total_steps and not progress["stopped_early"]:
        # Every process builds the same batch; each passes only its devices' rows
        # (jax.make_array_from_process_local_data, in sharding.global_batch).
        batch = sharding.global_batch(next(batcher), data_sharding)
        state, step_metrics = step_fn(state, batch, train_key)
        step += 1
        if pending is not None:
            _check_finite(*pending, checkpoints)
        pending = (step, step_metrics)
        if step % config.train.log_every == 0 or step == total_steps:
            values = jax.device_get(step_metrics)
            log.write(step, "train", values)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
        bar.update(1)
        evaluating = step % eval_every == 0 or step == total_steps
        if not evaluating and step % config.train.checkpoint_every_steps:
            continue
        _check_finite(*pending, checkpoints)
        fingerprint = _check_state(step, state, checkpoints)
        if evaluating:
            values = validate(state["params"])
            host_memory.release_free_memory()  # the heap's fragments (see host_memory.py)
            log.write(step, "val", values)
            say(f"step {step} validation: {_fmt(values, config.eval.ks)}"
                + (private.progress(step) if private else ""))
            if config.eval.test_every_eval:  # recorded only: nothing below reads it
                log.write(step, "test_every_eval", test(state["params"]))
            if progress["best_value"] is None or values[metric] > progress["best_value"]:
                progress.update(best_value=values[metric], best_step=step, bad_evals=0)
                save(fingerprint, best=True)
            else:
                progress["bad_evals"] += 1
            if config.train.patience and progress["bad_evals"] >= config.train.patience:
                say(f"early stop at step {step}: no {metric} gain in {progress['bad_evals']} evaluations")
                progress["stopped_early"] = True
        save(fingerprint)
    bar.close()
    if pending is not None:
        _check_finite(*pending, checkpoints)
    train_seconds = time.time() - loop_start

    # --- test evaluation of the best checkpoint (the final state: dataset.train_on_val_item) ---
    checkpoints.wait()
    best_state = None if split.val_trained else _best_state(checkpoints, state, progress["best_step"])
    tested_step = step if split.val_trained else progress["best_step"]
    test_metrics = test((best_state or state)["params"])
    test_slices = test.slices(item_counts) if config.eval.mode == "full" else None
    popularity = test.popularity(item_counts)
    popularity_slices = test.slices(item_counts) if config.eval.mode == "full" else None
    content_knn = content_knn_slices = None
    if features is not None:
        content_knn = test.content_knn(features)
        content_knn_slices = test.slices(item_counts) if config.eval.mode == "full" else None
    next_k_metrics = None
    if split.kind == "next_k":  # the list of K items against the K held-out ones
        next_k_start = time.time()
        next_k = evaluate.NextKEvaluator(config, dataset, split, "test", graphdef, mesh)
        next_k_metrics = {"method": next_k.method, **next_k((best_state or state)["params"]),
                          "seconds": time.time() - next_k_start}
        say(f"next-{next_k.k} test ({next_k.method}): recall@{next_k.k}="
            f"{next_k_metrics[f'recall@{next_k.k}']:.4f} ndcg@{next_k.k}={next_k_metrics[f'ndcg@{next_k.k}']:.4f}")
    checkpoints.close()
    log.write(step, "test", test_metrics)
    log.close()
    say(f"test ({'final' if split.val_trained else 'best'} step {tested_step}): "
        f"{_fmt(test_metrics, config.eval.ks)}")
    say(f"popularity baseline: {_fmt(popularity, config.eval.ks)}")
    if content_knn is not None:
        say(f"content kNN baseline: {_fmt(content_knn, config.eval.ks)}")
    for name, groups in (test_slices or {}).items():
        k = min(config.eval.ks, key=lambda k: abs(k - 10))
        say(f"test ndcg@{k} by {name.replace('_', ' ')}: " + ", ".join(
            f"{label} {g[f'ndcg@{k}']:.4f} ({g['users']} users)" for label, g in groups.items()))

    steps_run = step - first_step
    results = {
        "config": config.to_dict(),
        "protocol": evaluate.protocol(config),
        "dataset": {"name": config.dataset.name, **stats, "split": split.summary()},
        "test": test_metrics,
        "test_popularity": popularity,
        # by the target's training popularity and the history's length (metrics.py, Slices),
        # and (split=cold_items) by whether the target was withheld from training
        "test_slices": test_slices,
        "test_popularity_slices": popularity_slices,
        # the item-content nearest-neighbour baseline (evaluate.py), when the run has features
        "test_content_knn": content_knn,
        "test_content_knn_slices": content_knn_slices,
        "test_next_k": next_k_metrics,
        "best_validation": {metric: progress["best_value"]},
        "best_step": progress["best_step"],
        "tested_step": tested_step,  # the best step, or the last (dataset.train_on_val_item)
        "steps": step,
        "epochs": step / batcher.steps_per_epoch,
        "steps_per_epoch": batcher.steps_per_epoch,
        "num_params": num_params,
        # every attempt's, each up to the checkpoint the next resumed from (False: a resumed
        # checkpoint did not record the earlier ones, so only this attempt's)
        "wall_time_s": elapsed() or time.time() - start_time,
        "wall_time_all_attempts": earlier_s is not None,
        "attempt_wall_time_s": time.time() - start_time,
        "train_time_s": train_seconds,
        "steps_per_s": steps_run / train_seconds if steps_run else None,
        "device": {"kind": jax.devices()[0].device_kind, "count": jax.device_count(),
                   "mesh": dict(mesh.shape), "processes": jax.process_count(),
                   "platform": jax.default_backend(), "host": platform.node(), **hardware.host()},
        "versions": {"jax": jax.__version__},
        **({"privacy": private.report(step)} if private else {}),  # the epsilon spent
        # eval.test_every_eval: test metrics at every validation step (resumed runs included)
        **({"test_every_eval": [{k: v for k, v in row.items() if k != "kind"}
                                for row in read_metrics(workdir) if row["kind"] == "test_every_eval"]}
           if config.eval.test_every_eval else {}),
    }
    # Written atomically, by process 0: its presence marks a finished run (sweeps skip such runs).
    if jax.process_index() == 0:
        tmp = os.path.join(workdir, "results.json.tmp")
        with open(tmp, "w") as f:
            json.dump(_jsonable(results), f, indent=2)
        os.replace(tmp, os.path.join(workdir, "results.json"))
    return results


def _popularity_log_probs(item_counts: np.ndarray, loss_cfg):
    """log q(item) of the popularity sampler (entry 0, padding, is -inf); None when unused."""
    if loss_cfg.name not in ("bce", "gbce", "sampled_softmax") or loss_cfg.sampler != "popularity":
        return None
    with np.errstate(divide="ignore"):
        log_q = np.log(item_counts / item_counts.sum())
    log_q[0] = -np.inf
    return jnp.asarray(log_q, jnp.float32)


def say(message: str) -> None:
    """Progress messages that do not break the progress bar (process 0's only)."""
    if jax.process_index() == 0:
        tqdm.write(message)


def _check_finite(step, step_metrics, checkpoints):
    loss = float(step_metrics["loss"])
    if not np.isfinite(loss):
        checkpoints.wait()
        raise NonFiniteLossError(f"loss is {loss} at step {step}; stopped, {_kept(checkpoints)}")


def _kept(checkpoints) -> str:
    latest = checkpoints.latest_step()
    return "no checkpoint was saved before it" if latest is None else \
        f"the last good checkpoint is kept (step {latest})"


def _check_state(step, state, checkpoints) -> list[int]:
    """The state's fingerprint for the save; raises if a parameter or optimizer value is not
    finite (a finite loss is computed from the previous parameters, not these)."""
    finite, fingerprint = checkpoint_lib.inspect(state)
    if not finite:
        checkpoints.wait()
        raise NonFiniteLossError(f"non-finite parameters or optimizer state at step {step} (the loss "
                                 f"was finite); stopped without saving it, {_kept(checkpoints)}")
    return fingerprint


def _check_resume_meta(state, meta) -> None:
    """A periodic checkpoint's meta must hold what the loop resumes from (else it is skipped)."""
    batcher, progress = meta.get("batcher"), meta.get("progress")
    if not (isinstance(batcher, dict) and all(isinstance(batcher.get(k), int) for k in ("epoch", "batch"))):
        raise ValueError(f"meta batcher state {batcher!r} is not an epoch and batch")
    missing = {"best_value", "best_step", "bad_evals", "stopped_early"} - set(progress or {})
    if not isinstance(progress, dict) or missing:
        raise ValueError(f"meta progress lacks {sorted(missing)}")


def _best_state(checkpoints, state, best_step):
    """The state the test evaluates: the best checkpoint; if it is damaged or missing, the
    periodic checkpoint of the best step; else the final state. Says which when not the best."""
    best, _ = checkpoints.restore(state, best=True, set_aside=True)
    if best_step is None or (best is not None and int(best["step"]) == best_step):
        return best  # (no validation ran: None, the final state)
    why = (f"the best checkpoint is of step {int(best['step'])}, not {best_step}" if best is not None
           else "no best checkpoint restores" if checkpoints.skipped else "no best checkpoint")
    if checkpoints.has_step(best_step):
        periodic, _ = checkpoints.restore(state, step=best_step, set_aside=True)
        if periodic is not None:
            say(f"{why}: testing the periodic checkpoint of step {best_step} instead")
            return periodic
    if best is not None:
        say(f"{why}: testing the best checkpoint of step {int(best['step'])}")
        return best
    say(f"{why}: testing the final state (step {int(state['step'])})")
    return None


def _fmt(values: dict, ks) -> str:
    k = 10 if 10 in ks else max(ks)
    names = [n for n in (f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", f"sampled100/hr@{k}",
                         f"sampled100/ndcg@{k}") if n in values]
    return " ".join(f"{n}={values[n]:.4f}" for n in names)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
