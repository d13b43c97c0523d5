r"""Our best recipe fitted to a new dataset by a short search on validation (studies/tune.py).

  python -m transrec_jax.tune --config=configs/sasrec_best.py:local,dataset.path=my.tsv \
      --workdir_root=/tmp/tune_my
  python -m transrec_jax.tune --config=configs/sasrec_best.py:ml-100k --seed=1 \
      --workdir_root=/tmp/tune_ml100k

Trains 5-6 runs of the config (blocks x dropout, then the schedule length; one after another),
each in <workdir_root>/<run>, chooses the one with the best validation NDCG@10 and writes the
choice, every run's figures and the total cost to <workdir_root>/tune.json. Rerunning skips
finished runs and resumes an interrupted one. The line `chosen:` is a --config value that trains
the chosen recipe again (e.g. with other seeds).
"""

from __future__ import annotations

from absl import flags

from transrec_jax import cli
from transrec_jax.studies import tune

_CONFIG = flags.DEFINE_string("config", None, "Config string file.py:arg, e.g. configs/sasrec_best.py:local.")
_ROOT = flags.DEFINE_string("workdir_root", None, "Directory of the search's runs and tune.json.")
_SEED = flags.DEFINE_integer("seed", 0, "config.seed of every run of the search.")
flags.mark_flags_as_required(["config", "workdir_root"])


def main(argv):
    del argv
    result = tune.search(_CONFIG.value, _ROOT.value, _SEED.value)
    chosen = result["chosen"]
    print(f"chosen: {result['chosen_config']}")
    print(f"  validation {result['metric']} {chosen['val']:.4f}; test "
          + " ".join(f"{k}={chosen['test'][k]:.4f}" for k in ("hr@10", "ndcg@10"))
          + f"; search cost {result['cost_s'] / 60:.1f} min over {len(result['runs'])} runs")


if __name__ == "__main__":
    cli.run(main)
