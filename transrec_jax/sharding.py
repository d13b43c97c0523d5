"""Where arrays live on the (data, model) device mesh, and how a process feeds it.

The batch splits over `data`. The item tables -- the rows of the input embedding, of a
separate output table and of the output bias, one row per item id -- split over `model`:
with 10^7-10^8 items they are most of the memory and most of the FLOPs. Everything else
(attention, feed-forward, norms, positions) is small and replicated. The model code knows
nothing of this: `state_shardings` picks the item tables by their attribute names, and the
kernels that touch every item (`losses.cross_entropy`, `ranking.rank_full`) run per item
shard under `item_parallel` with explicit collectives over `model`, so no [batch, items]
array exists on one device. The rest is left to XLA's partitioner (a gather of sampled rows
from a sharded table becomes a local masked gather and an all-reduce).

Each process builds the same seeded global batch and hands JAX only the rows its devices
hold (`global_batch`), so a run computes the same numbers on any number of processes.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from transrec_jax import config as config_lib

DATA, MODEL = "data", "model"
# The model attributes whose leading axis is the item id (models/recommenders.py).
ITEM_TABLES = ("item_embedding", "output_weight", "output_bias")


def make_mesh(mesh_cfg) -> Mesh:
    """The (data, model) mesh over all devices of all processes (Auto axes: stack.md)."""
    shape = config_lib.mesh_shape(mesh_cfg, jax.device_count())
    return jax.make_mesh(shape, (DATA, MODEL), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def model_size(mesh: Mesh | None) -> int:
    """How many shards the item tables have (1 without a mesh)."""
    return 1 if mesh is None else mesh.shape[MODEL]


def state_shardings(state, mesh: Mesh):
    """NamedShardings for a train state (params and the optimizer's copies of them alike):
    an item table's rows over `model`, every other leaf replicated."""

    def sharding(path, leaf):
        names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        if names & set(ITEM_TABLES) and len(getattr(leaf, "shape", ())) >= 1:
            return NamedSharding(mesh, P(MODEL))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(sharding, state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Every batch array splits its leading (row) axis over `data`."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def process_rows(sharding: NamedSharding, num_rows: int) -> slice:
    """The rows of a [num_rows, ...] batch that this process's devices hold (contiguous)."""
    index = sharding.addressable_devices_indices_map((num_rows,))
    starts = [s[0].start or 0 for s in index.values()]
    stops = [num_rows if s[0].stop is None else s[0].stop for s in index.values()]
    return slice(min(starts), max(stops))


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Global arrays from the host batch every process builds alike: each process passes only
    its rows (`jax.make_array_from_process_local_data`; a multi-process `device_put` of a
    global sharding is refused)."""
    out = {}
    for name, value in batch.items():
        rows = process_rows(sharding, value.shape[0])
        out[name] = jax.make_array_from_process_local_data(sharding, value[rows], value.shape)
    return out


def item_parallel(body, mesh: Mesh | None, in_specs, out_specs):
    """`body(*args, axis=...)` run once per item shard: under `shard_map` over `mesh` with
    axis=MODEL (its item-table arguments hold one block of rows each, the block's first id
    is `row_offset`), or on whole arrays with axis=None when there is no mesh."""
    if mesh is None:
        return lambda *args: body(*args, axis=None)
    return jax.shard_map(lambda *args: body(*args, axis=MODEL), mesh=mesh,
                         in_specs=in_specs, out_specs=out_specs)


def row_offset(rows: int, axis: str | None):
    """The item id of the first row of this shard's block of `rows` rows."""
    return 0 if axis is None else jax.lax.axis_index(axis) * rows


def over_items(x, axis: str | None, reduce=jax.lax.psum):
    """x combined over the item shards (psum by default); x itself without a mesh."""
    return x if axis is None else reduce(x, axis)


def varying(x, axis: str | None):
    """A fresh constant `x` marked as differing between shards: under `shard_map` a scan's
    initial carry must say so when the carries it becomes depend on batch and item rows."""
    return x if axis is None else jax.lax.pcast(x, (DATA, MODEL), to="varying")
