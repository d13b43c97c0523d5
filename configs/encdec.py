"""Encoder-decoder next-items recommender: the decoder writes the next K items one by one.

A bidirectional encoder reads the history; a causal decoder with cross-attention is trained
with teacher forcing to emit the user's next `model.next_k` items (default 5) after a [START]
token, from random windows inside each training sequence. Validation and the standard test
(the reproduction table) read the decoder's first step, i.e. the next-item protocol;
generation is greedy (`model.beam_width=1`) or beam search. Loss: full softmax (ce);
bce/gbce are rejected because generation sums softmax log-probabilities.
Results: experiments/reproduce/RESULTS.md, ML-1M row `encdec` (next item); the next-K lists
beside SASRec's: experiments/next_k/README.md.

Run:
  python -m transrec_jax.main --config=configs/encdec.py --workdir=/tmp/encdec
  python -m transrec_jax.main --config=configs/encdec.py:ml-1m --workdir=/tmp/encdec_ml1m
  # next-K protocol (last 5 items test, the 5 before validation; adds `test_next_k` to results.json):
  python -m transrec_jax.main --config=configs/encdec.py:ml-1m,next_k --workdir=/tmp/encdec_nk
  # encdec vs SASRec top-K on that split, with wall times:
  python experiments/next_k/compare.py --dataset=ml-1m --out=experiments/next_k/results/ml-1m.json
  python -m transrec_jax.recommend --workdir=/tmp/encdec_ml1m --history=2858,1196,260 --k=5
Arg words: a dataset (synthetic, ml-1m, ml-1m-full, ml-100k, beauty, local, tfds), `debug`, `next_k`
(dataset.split=next_k), `beam` (model.beam_width=4) and any `a.b=value` override.
"""

from transrec_jax import config as config_lib


# Arg words of this file (besides a dataset, `debug` and key=value): the keys each one sets.
VARIANTS = {
    "next_k": {"dataset.split": "next_k"},
    "beam": {"model.beam_width": 4},
}


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.name = "encdec"
    c.model.num_heads = 2
    c.model.num_decoder_layers = 2
    c.model.next_k = 5
    c.model.dropout = c.model.attention_dropout = 0.1
    c.loss.name = "ce"
    c.train.window = "random"  # one window per user and epoch, anywhere in the sequence
    return config_lib.finalize(c, arg, VARIANTS)
