"""Worker for test_sharding.py: one tiny run per mesh shape on simulated CPU devices.

  python tests/mesh_run.py DEVICES OUT_DIR LOSS DATAxMODEL [DATAxMODEL ...]

For each mesh it runs `train.train_and_evaluate` unchanged (3 steps, one validation), then
writes OUT_DIR/LOSS/DATAxMODEL.npz: the train losses and gradient norms of every step, the
validation and test metrics, the parameters after the last step (item-table padding rows
dropped), and each test user's top-10 from `recommend`'s Recommender on the mesh, of the run
and of the ensemble of the run with itself.
"""

import os
import sys

# Before JAX starts: DEVICES CPU devices; single-threaded Eigen in each, or the device
# programs' collectives can time out on 2 busy cores (see test_train.py).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           f" --xla_force_host_platform_device_count={sys.argv[1]}")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from transrec_jax import config as config_lib  # noqa: E402
from transrec_jax import sharding, train  # noqa: E402
from transrec_jax.metric_log import read_metrics  # noqa: E402
from transrec_jax.serving import Recommender, load_run  # noqa: E402



def tiny_config(out_dir: str, loss: str, data: int, model: int):
    c = config_lib.base_config()
    c.dataset.cache_dir = os.path.join(out_dir, "cache")
    c.dataset.synthetic.update(num_users=96, num_items=199, min_len=6, max_len=16)
    c.model.update(max_len=8, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    c.loss.name = loss
    c.loss.num_negatives = 8
    c.train.update(num_epochs=0, num_steps=3, batch_size=16, eval_every_steps=3, log_every=1,
                   checkpoint_every_steps=3, learning_rate=3e-3)
    c.eval.update(batch_size=32, ks=(5, 10), length_buckets=1)
    c.mesh.update(data=data, model=model)
    return c


def main(out_dir, loss, meshes):
    os.makedirs(os.path.join(out_dir, loss), exist_ok=True)
    for name in meshes:
        data, model = map(int, name.split("x"))
        workdir = os.path.join(out_dir, loss, name)
        config = tiny_config(out_dir, loss, data, model)
        results = train.train_and_evaluate(config, workdir)
        logged = read_metrics(workdir)
        run = load_run(workdir, checkpoint="last")
        params = {"/".join(map(str, path)): np.asarray(x)
                  for path, x in jax.tree_util.tree_leaves_with_path(run.params)}
        catalogue = run.dataset.num_items + 1
        params = {k: (v[:catalogue] if any(t in k for t in sharding.ITEM_TABLES) else v)
                  for k, v in params.items()}
        out = {
            "loss": [r["loss"] for r in logged if r["kind"] == "train"],
            "grad_norm": [r["grad_norm"] for r in logged if r["kind"] == "train"],
            **{f"val/{k}": v for r in logged if r["kind"] == "val" for k, v in r.items()
               if k not in ("step", "kind")},
            **{f"test/{k}": v for k, v in results["test"].items()},
            **{f"params/{k}": v for k, v in params.items()},
            "top10": top10(config, workdir),
            "top10_twice": top10(config, [workdir, workdir]),
        }
        np.savez(os.path.join(out_dir, loss, f"{name}.npz"), **out)


def top10(config, workdir):
    """Every test user's top-10 (history excluded) from `recommend`'s Recommender on this
    run's mesh: each item shard ranks its rows, the shards' lists merged (workdir: a list
    for their ensemble)."""
    rec = Recommender(workdir, sharding.make_mesh(config.mesh))
    split = rec.run.split()
    users = split.eval_users("test")
    starts = rec.dataset.offsets[users]
    return rec.top_k(starts, starts + split.test_pos[users], rec.dataset.items, 10)[0]


if __name__ == "__main__":
    main(sys.argv[2], sys.argv[3], sys.argv[4:])
