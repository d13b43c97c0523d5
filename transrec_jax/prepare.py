"""Prepare (and cache) a dataset and print its statistics and split.

  python -m transrec_jax.prepare --config=configs/sasrec.py:ml-1m
"""

import json

from absl import flags
from ml_collections import config_flags

from transrec_jax import cli
from transrec_jax import config as config_lib
from transrec_jax.data import load, splits
from transrec_jax.data.dataset import format_stats

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path.py:arg).")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    config = _CONFIG.value
    config_lib.validate(config)
    ds = load.load_dataset(config.dataset, config.seed)
    split = splits.make_split(ds, config.dataset, seed=config.seed)
    print(format_stats(ds.stats()))
    print(json.dumps({"stats": ds.stats(), "split": split.summary()}, indent=2))


if __name__ == "__main__":
    cli.run(main)
