"""Transformer sequential recommenders: attention, blocks, positions, the five models, ensembles."""

from transrec_jax.models.attention import (
    KVCache,
    MultiHeadAttention,
    bidirectional_mask,
    causal_mask,
    combine_masks,
    dropout,
    key_padding_mask,
)
from transrec_jax.models.layers import DecoderLayer, EncoderLayer, FeedForward, make_norm
from transrec_jax.models import recommenders
from transrec_jax.models.encdec import EncoderDecoder, generate
from transrec_jax.models.ensemble import Ensemble
from transrec_jax.models.hstu import HSTU, HSTUBlock
from transrec_jax.models.recommenders import (
    BERT4Rec,
    Recommender,
    SASRec,
    TransformerRecommender,
    build_model,
    training_window,
)

recommenders.MODELS["encdec"] = EncoderDecoder
recommenders.MODELS["hstu"] = HSTU

__all__ = [
    "BERT4Rec",
    "DecoderLayer",
    "EncoderDecoder",
    "EncoderLayer",
    "Ensemble",
    "HSTU",
    "HSTUBlock",
    "FeedForward",
    "KVCache",
    "MultiHeadAttention",
    "Recommender",
    "SASRec",
    "TransformerRecommender",
    "bidirectional_mask",
    "build_model",
    "causal_mask",
    "combine_masks",
    "dropout",
    "generate",
    "key_padding_mask",
    "make_norm",
    "training_window",
]
