"""Train and evaluate a recommender: flags only; the work is `train.train_and_evaluate`.

  python -m transrec_jax.main --config=configs/sasrec.py --workdir=/tmp/sasrec
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m,debug --workdir=/tmp/x \
      --config.train.batch_size=64
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from transrec_jax import train
from transrec_jax.config import ConfigError
from transrec_jax.data.errors import DataError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path.py:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, DataError, train.NonFiniteLossError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
