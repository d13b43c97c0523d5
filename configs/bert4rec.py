"""BERT4Rec (Sun et al., 2019): a bidirectional Transformer trained to fill masked items (Cloze).

At inference a [MASK] is appended after the history and its output scores the next item.
Defaults follow the RecSys 2023 reproductions on ML-1M: d=64, 2 layers, 2 heads, mask 0.2,
full softmax over the catalog. Each batch's windows are packed into fewer rows
(`train.pack_rows`: the same users and masking law, less padding).
Results: experiments/reproduce/RESULTS.md, row `bert4rec` of the ML-1M and Amazon Beauty tables.

Run:
  python -m transrec_jax.main --config=configs/bert4rec.py --workdir=/tmp/bert4rec
  python -m transrec_jax.main --config=configs/bert4rec.py:ml-1m --workdir=/tmp/bert4rec_ml1m
Arg words: a dataset (synthetic, ml-1m, ml-1m-full, ml-100k, beauty, local, tfds), `debug`, and any
`a.b=value` override.
"""

from transrec_jax import config as config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.name = "bert4rec"
    c.model.num_heads = 2
    c.model.mask_prob = 0.2
    c.model.dropout = c.model.attention_dropout = 0.1
    c.train.pack_rows = True
    c.loss.name = "ce"
    return config_lib.finalize(c, arg)
