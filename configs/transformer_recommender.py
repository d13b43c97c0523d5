"""The classic "encoder + last position + linear head" recommender many tutorials show.

A causal Transformer encodes the history; only the last position's output is mapped to item
logits by a separate linear layer and trained with full cross-entropy on the next item. It
is a fair row in every comparison table: the same encoder as SASRec, one target per window.
Results: experiments/reproduce/RESULTS.md, ML-1M row `transformer_recommender`; against
every-position training at equal settings: experiments/ablations/output_head.py.

Run:
  python -m transrec_jax.main --config=configs/transformer_recommender.py --workdir=/tmp/tr
  python -m transrec_jax.main --config=configs/transformer_recommender.py:ml-1m --workdir=/tmp/tr_ml1m
Arg words: a dataset (synthetic, ml-1m, ml-1m-full, ml-100k, beauty, local, tfds), `debug`, and any
`a.b=value` override.
"""

from transrec_jax import config as config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.name = "transformer_recommender"
    c.model.head = "linear"
    c.model.head_bias = True
    c.train.window = "random"  # one target per window: sample windows to see every position
    c.loss.name = "ce"
    return config_lib.finalize(c, arg)
