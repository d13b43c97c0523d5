"""Train and evaluate a recommender: flags only; the work is `train.train_and_evaluate`.

  python -m transrec_jax.main --config=configs/sasrec.py --workdir=/tmp/sasrec
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m,debug --workdir=/tmp/x \
      --config.train.batch_size=64
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from transrec_jax import host_memory, train
from transrec_jax.config import ConfigError
from transrec_jax.data.errors import DataError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path.py:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", True,
    "Keep freed host memory for reuse (transrec_jax/host_memory.py): faster CPU steps, "
    "resident memory stays at its peak.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    if _KEEP_FREED_MEMORY.value:
        host_memory.keep_freed_memory()  # before JAX's first computation starts its threads
    try:
        results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, DataError, train.NonFiniteLossError) as e:
        sys.exit(f"error: {e}")
    print(summary_table(results))


def summary_table(results: dict) -> str:
    """Test metrics of the best checkpoint beside the popularity baseline, with the protocol."""
    p = results["protocol"]
    lines = [
        f"test metrics ({p['split']}, {p['ranking']}, history masked: {p['history_masked']}; "
        f"best step {results['best_step']} of {results['steps']}, {results['wall_time_s']:.0f} s)",
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
    app.run(main)
