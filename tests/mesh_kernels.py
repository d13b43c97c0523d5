"""Worker for test_sharding.py: the item-parallel kernels on every mesh of 8 simulated devices.

  python tests/mesh_kernels.py [--all]   → one JSON line {case: {mesh: max relative difference}}

Each loss (value and gradients with respect to hidden states, item table and bias) and each
ranking (ranks, top-10 ids) is computed once without a mesh (whole arrays, one device) and
once per mesh shape with the item table's rows split over `model` and the batch over `data`,
inside `jax.jit` as the train and evaluation steps run them. Ranking results must be equal;
losses and gradients are reported as max |mesh - reference| / max |reference|.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           " --xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from transrec_jax import config as config_lib  # noqa: E402
from transrec_jax import ranking, sharding  # noqa: E402
from transrec_jax.losses import compute_loss  # noqa: E402

MESHES = ((1, 1), (8, 1), (4, 2), (2, 4), (1, 8))
QUICK = {"meshes": ((2, 4),),  # without --all: batch and item table both split
         "losses": ("ce", "ce_chunked", "ce_exclude_window_packed", "sampled_softmax", "bce")}
NUM_ITEMS, ROWS, D = 203, 208, 8  # the table padded to a multiple of 8 rows, as models pad it
R, P = 16, 6  # training rows x positions
LOSSES = {
    "ce": {},
    "ce_label_smoothing": {"label_smoothing": 0.1},
    "ce_chunked": {"ce_chunk_size": 10},
    "ce_exclude_window": {"exclude_window": True},
    "ce_exclude_window_packed": {"exclude_window": True},
    "sampled_softmax": {"name": "sampled_softmax", "num_negatives": 12},
    "sampled_softmax_unseen": {"name": "sampled_softmax", "num_negatives": 12, "sampler": "unseen"},
    "bce": {"name": "bce", "num_negatives": 4},
    "gbce": {"name": "gbce", "num_negatives": 4},
}


def mesh_of(data, model):
    devices = np.array(jax.devices()[: data * model]).reshape(data, model)
    return jax.sharding.Mesh(devices, (sharding.DATA, sharding.MODEL),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2)


def table(rng):
    """W [ROWS, D] and b [ROWS] with the padding rows zero; rows 7 and 8 equal (exact ties)."""
    W = rng.normal(size=(ROWS, D)).astype(np.float32)
    W[NUM_ITEMS + 1:] = 0.0
    W[8] = W[7]
    b = rng.normal(size=ROWS).astype(np.float32) * 0.1
    b[NUM_ITEMS + 1:] = 0.0
    b[8] = b[7]
    return W, b


def training_batch(rng):
    window = rng.integers(1, NUM_ITEMS + 1, size=(R, P + 1)).astype(np.int32)
    window[:3, :2] = 0  # short windows: left padding
    segments = np.where(np.arange(P + 1) < 3, 1, 2) * (window != 0)
    hidden = rng.normal(size=(R, P, D)).astype(np.float32)
    targets = window[:, 1:]
    weights = (targets != 0).astype(np.float32)
    return hidden, targets, weights, window, segments.astype(np.int32)


def loss_cases(rng, meshes, names):
    W, b = table(rng)
    hidden, targets, weights, window, segments = training_batch(rng)
    out = {}
    for case in names:
        overrides = LOSSES[case]
        cfg = config_lib.base_config().loss
        cfg.update(overrides)
        packed = segments if case.endswith("_packed") else None

        def loss(h, W, b, mesh):
            return compute_loss(cfg, h, targets, weights, W, b, jax.random.key(3),
                                num_items=NUM_ITEMS, window=window, segments=packed, mesh=mesh)[0]

        reference = jax.jit(jax.value_and_grad(lambda h, W, b: loss(h, W, b, None),
                                               argnums=(0, 1, 2)))(hidden, W, b)
        out[case] = {}
        for data, model in meshes:
            mesh = mesh_of(data, model)
            rows, items = (jax.sharding.NamedSharding(mesh, s)
                           for s in (jax.sharding.PartitionSpec(sharding.DATA),
                                     jax.sharding.PartitionSpec(sharding.MODEL)))
            step = jax.jit(jax.value_and_grad(lambda h, W, b: loss(h, W, b, mesh), argnums=(0, 1, 2)),
                           in_shardings=(rows, items, items))
            got = step(hidden, W, b)
            out[case][f"{data}x{model}"] = max(
                float(np.max(np.abs(np.asarray(g) - np.asarray(r))) / max(np.max(np.abs(np.asarray(r))), 1e-30))
                for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(reference)))
    return out


def ranking_cases(rng, meshes):
    W, b = table(rng)
    users = rng.normal(size=(32, D)).astype(np.float32)
    targets = rng.integers(1, NUM_ITEMS + 1, size=32).astype(np.int32)
    targets[:4] = 7  # ties with item 8
    exclude = rng.integers(0, NUM_ITEMS + 1, size=(32, 5)).astype(np.int32)
    out = {}
    for chunk in (0, 12):
        def run(mesh):
            return ranking.rank_full(users, W, b, targets, exclude, kmax=10, item_chunk=chunk,
                                     num_items=NUM_ITEMS, mesh=mesh)

        reference = [np.asarray(x) for x in run(None)]
        out[f"rank_full_chunk{chunk}"] = {
            f"{d}x{m}": all(np.array_equal(np.asarray(g), r)
                            for g, r in zip(run(mesh_of(d, m))[:2], reference[:2]))
            for d, m in meshes}
    return out


if __name__ == "__main__":
    every = "--all" in sys.argv
    meshes = MESHES if every else QUICK["meshes"]
    rng = np.random.default_rng(0)
    print(json.dumps({**loss_cases(rng, meshes, LOSSES if every else QUICK["losses"]),
                      **ranking_cases(rng, meshes)}))
