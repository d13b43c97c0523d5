"""SASRec (Kang & McAuley, 2018): a causal Transformer predicting the next item at every position.

Defaults train "SASRec+" (full softmax cross-entropy, Klenitskiy & Vasilev 2023); the `bce`
variant is the original recipe: binary cross-entropy with one sampled negative, post-attention
LayerNorm placement, one head. Each batch's windows are packed into fewer rows
(`train.pack_rows`: the same users, targets and loss, less padding; its speed-up is measured in
experiments/benchmarks/RESULTS.md, "packed training rows").
Results: experiments/reproduce/RESULTS.md, ML-1M rows `sasrec_plus_ce` (this config with [KV23]'s
model details) and `sasrec_bce` (`bce`); Amazon Beauty row `sasrec_plus_ce`. The `cosine` variant
scores items by cosine / 0.1 instead of a dot product: experiments/features/README.md, warm
leave-one-out rows `id-only-cosine` and `features-cosine`.

Run:
  python -m transrec_jax.main --config=configs/sasrec.py --workdir=/tmp/sasrec
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m --workdir=/tmp/sasrec_ml1m
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m,bce --workdir=/tmp/sasrec_bce
Arg words: a dataset (synthetic, ml-1m, ml-1m-full, ml-100k, beauty, local, tfds), `debug`, `bce`,
`cosine`, the feature words `item_features` / `user_features`, and any
`a.b=value` override.
"""

from transrec_jax import config as config_lib


# Arg words of this file (besides a dataset, `debug` and key=value): the keys each one sets.
VARIANTS = {
    "bce": {"model.norm_placement": "sasrec", "loss.name": "bce", "loss.num_negatives": 1},
    "cosine": {"model.score_temperature": 0.1},
}


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.name = "sasrec"
    c.model.num_heads = 1
    c.model.d_ff = 64
    c.train.pack_rows = True
    c.loss.name = "ce"
    return config_lib.finalize(c, arg, VARIANTS)
