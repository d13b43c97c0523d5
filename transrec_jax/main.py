"""Train and evaluate a recommender: flags only; the work is `train.train_and_evaluate`.

  python -m transrec_jax.main --config=configs/sasrec.py --workdir=/tmp/sasrec
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m,debug --workdir=/tmp/x \
      --config.train.batch_size=64

Several processes (one per host) run the same command with their own
--config.cluster.process_id; see cluster.py.
"""

from absl import flags
from ml_collections import config_flags

from transrec_jax import cli, cluster, compile_cache, host_memory, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path.py:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_RESTART = flags.DEFINE_bool(
    "restart", False,
    "Discard the run already in --workdir (its checkpoints, logs and results) and start over.")
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", True,
    "Keep freed host memory for reuse (transrec_jax/host_memory.py): faster CPU steps, "
    "resident memory stays at its peak.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", compile_cache.DEFAULT_DIR,
    "Keep compiled programs here for the next run with the same ones (seeds, resumes, a study's "
    "rows); '' turns the cache off (compile_cache.py).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    if _KEEP_FREED_MEMORY.value:
        host_memory.keep_freed_memory()  # before JAX's first computation starts its threads
    compile_cache.enable(_COMPILATION_CACHE.value)
    cluster.initialize(_CONFIG.value.cluster)  # before any JAX computation: joins the other processes
    try:
        results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
    except train.NonFiniteLossError as e:
        cli.fail(str(e))
    if cluster.is_chief():
        print(summary_table(results))
    cluster.finish()


def summary_table(results: dict) -> str:
    """Test metrics of the tested checkpoint beside the popularity baseline, with the protocol."""
    p = results["protocol"]
    lines = [
        f"test metrics ({p['split']}, {p['ranking']}, history masked: {p['history_masked']}; "
        f"{'final' if 'validation_item' in p else 'best'} step {results['tested_step']} of "
        f"{results['steps']}, {results['wall_time_s']:.0f} s)",
    ]
    ks = sorted({int(name.split("@")[1]) for name in results["test"]})
    lines.append("| metric | " + " | ".join(f"@{k}" for k in ks) + " |")
    lines.append("|---" * (len(ks) + 1) + "|")
    for metric in ("hr", "ndcg", "mrr", "recall", "coverage"):
        for label, values in (("model", results["test"]), ("popularity", results["test_popularity"])):
            cells = [values.get(f"{metric}@{k}") for k in ks]
            if all(c is None for c in cells):
                continue
            lines.append(f"| {metric} {label} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
