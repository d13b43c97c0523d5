"""HSTU (Zhai et al., ICML 2024) as its authors train it on ML-1M; the `large` word: HSTU-large.

facebookresearch/generative-recommenders @2e81fab, configs/ml-1m/:
  hstu-sampled-softmax-n128-final.gin        lines 11-40: max_sequence_length 200, batch 128,
      dropout_rate 0.2, user_embedding_norm l2_norm, num_epochs 101, item_embedding_dim 50;
      2 blocks, 1 head, dqk = dv = 50, linear_dropout_rate 0.2; lr 1e-3, weight decay 0, no
      warm-up; DotProduct similarity; SampledSoftmaxLoss with 128 negatives, sampling_strategy
      "local" (uniform over all items, per position), temperature 0.05, item_l2_norm
  hstu-sampled-softmax-n128-large-final.gin  the same with 8 blocks, 2 heads, dqk = dv = 25
and the code those keys reach (generative_recommenders/research/):
  trainer/train.py line 272-276: AdamW(betas=(0.9, 0.98)), here Adam with adam_b2 0.98
  modeling/sequential/input_features_preprocessors.py lines 82-88: item embeddings times
      sqrt(d), plus learned positions numbered from the oldest item, then dropout
  modeling/sequential/hstu.py: the block (transrec_jax/models/hstu.py), no final norm
Per head, dqk = dv = d_model / num_heads (50 / 1 and 50 / 2 = 25), as both configs have.

One known difference, kept after measuring it: the position table starts from the
preprocessor's N(0, 1/d) (input_features_preprocessors.py lines 66-70), which the authors'
HSTU.reset_params (modeling/sequential/hstu.py lines 642-656) then re-draws xavier_normal over
their 211-row table (std sqrt(2 / (211 + 50)) = 0.088; this config keeps 0.141,
`model.position_init_std`). The ML-1M (3,706 items) table's row `hstu_large_position_init`
sets the authors' value; what it changed is in experiments/reproduce/ml1m_full.md (Findings).
Their attention divides by n = 211, the padded length of a row with its 11 output slots
(trainer/train.py lines 201-209), where models/hstu.py divides by max_len = 200: no
difference, since the LayerNorm of A v cancels any constant scale of A (up to its eps).

The authors' attention bias also has a relative time term, 128 buckets of log time gaps
(modeling/sequential/hstu.py lines 606-613, RelativeBucketedTimeAndPositionBasedBias): the
override `model.time_buckets=128` adds it (models/hstu.py) on a dataset with timestamps (the
ml-100k and tfds presets, a `local` movielens_dat / ml100k / ratings_csv file or a table with
dataset.time_col). [ZL24]'s runs have it: their gin files leave hstu_encoder's
enable_relative_attention_bias=True (research/modeling/sequential/encoder_utils.py line 89).
The ML-1M presets here have no timestamps, so these runs go without it; what it is worth on
ML-1M data, and how much of that is the target's own timestamp, which [ZL24]'s queries read
(`model.time_query`, models/hstu.py), is measured on the users whose raw ratings we have:
experiments/ablations/README.md, the hstu_time_* sections.

Results: experiments/reproduce/RESULTS.md, the ML-1M (all 3,706 items) table, rows `hstu`
(this config) and `hstu_large` (`large`).

Run:
  python -m transrec_jax.main --config=configs/hstu.py:ml-1m-full --workdir=/tmp/hstu
  python -m transrec_jax.main --config=configs/hstu.py:ml-1m-full,large --workdir=/tmp/hstu_large
  python -m transrec_jax.main --config=configs/hstu.py:ml-100k,model.time_buckets=128 --workdir=/tmp/hstu_t
Arg words: a dataset, `large`, `debug`, and any `a.b=value` override.
"""

from transrec_jax import config as config_lib


# Arg words of this file (besides a dataset, `debug` and key=value): the keys each one sets.
VARIANTS = {
    "large": {"model.num_layers": 8, "model.num_heads": 2},  # ...-large-final.gin lines 21-24
}


def get_config(arg=None):
    c = config_lib.base_config()
    c.model.update(
        name="hstu",
        d_model=50,  # item_embedding_dim
        num_layers=2,  # hstu_encoder.num_blocks
        num_heads=1,  # dqk = dv = d_model / num_heads = 50
        dropout=0.2,  # dropout_rate (input embeddings) and linear_dropout_rate (blocks)
        attention_dropout=0.0,  # HSTU's pointwise attention has none
        positions="learned",
        positions_from="start",  # torch.arange(N) over left-aligned rows: the oldest item is 0
        scale_embeddings=True,  # past_embeddings * embedding_dim ** 0.5
        position_init_std=50**-0.5,  # truncated_normal(std=sqrt(1.0 / embedding_dim)), line 66-70
        score_temperature=0.05,  # l2-normalised user and item vectors, temperature 0.05
    )
    c.loss.update(name="sampled_softmax", num_negatives=128, sampler="uniform",
                  sample_per="position")
    c.train.update(
        pack_rows=True,
        batch_size=128,
        learning_rate=1e-3,
        adam_b2=0.98,
        num_epochs=101,
        patience=0,  # the authors train all 101 epochs; the best validation checkpoint is kept
    )
    return config_lib.finalize(c, arg, VARIANTS)
