"""The item tower: an item's vector from its id and its content (genres, attributes, vectors).

Without it an item is one row of the id table, and an item nobody trained on is noise. With
`model.item_tower` set, every item vector (the inputs' and, tied, the output table's) combines
the id row with the item's content, so any item with features can be scored:

  content  c = sum over features of: the mean of a categorical feature's value embeddings
           (padding excluded), or a dense (or numeric) feature projected to d_model
  sum      e = id + c
  gated    e = g * id + (1 - g) * c,  g = sigmoid(W [id; c] + b), per dimension
  concat   e = W [id; c_1; ...; c_n] + b  (each feature's vector, not their sum)

Items never seen in training (`known` False) and, while training, with probability
`model.id_dropout` each input occurrence and each row of the output table (drawn once a step),
take a learned "unknown id" vector instead of their id row: the content alone must then place
them as an input and score them as a target, which is what a new item needs. The feature arrays are constants of the model
(`FeatureTable` variables, never trained: the train step differentiates `nnx.Param` only).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

COMBINES = ("sum", "gated", "concat")


class FeatureTable(nnx.Variable):
    """A constant of the model (feature values, the known-items mask): saved, never trained."""


@dataclasses.dataclass(frozen=True)
class ItemFeatureArrays:
    """What the tower reads, one row per item id (row 0: padding; data/side_info.py builds it).

    categorical: int32[num_items + 1, max_values] vocabulary indices (0 padding, 1 unknown);
    vocab_sizes: each categorical feature's vocabulary size; dense: float32[num_items + 1, dim]
    (a numeric feature is dim 1); known: bool[num_items + 1], the items seen in training.
    """

    categorical: dict[str, np.ndarray]
    vocab_sizes: dict[str, int]
    dense: dict[str, np.ndarray]
    known: np.ndarray

    @property
    def names(self) -> list[str]:
        return sorted(self.categorical) + sorted(self.dense)


def _rows(values: np.ndarray, rows: int, fill: int | float) -> np.ndarray:
    """values with rows appended up to `rows` ([MASK] and shard padding rows): `fill` in their
    first column (categorical: 1 = unknown; the known mask: True), 0 elsewhere."""
    extra = np.zeros((rows - len(values), *values.shape[1:]), values.dtype)
    if len(extra) and fill:
        extra[(slice(None), 0) if extra.ndim > 1 else slice(None)] = fill
    return np.concatenate([values, extra])


def feature_vectors(tower, rows: jax.Array) -> list[jax.Array]:
    """Each feature's vector [..., D] for the table rows `rows` [...] of a tower (item or user)
    holding `categorical` / `value_embeddings` and `dense` / `projections`: a categorical
    feature's value embeddings mean-pooled (padding excluded), a dense one projected."""
    out = []
    for table, embed in zip(tower.categorical, tower.value_embeddings):
        values = table[...][rows]  # [..., M]
        present = (values != 0)[..., None]
        pooled = jnp.sum(embed(values) * present, axis=-2)
        out.append(pooled / jnp.maximum(jnp.sum(present, axis=-2), 1))
    for table, project in zip(tower.dense, tower.projections):
        out.append(project(table[...][rows]))
    return out


class ItemTower(nnx.Module):
    def __init__(self, features: ItemFeatureArrays, *, rows: int, d_model: int, combine: str,
                 id_dropout: float, dtype, rngs: nnx.Rngs):
        if combine not in COMBINES:
            raise ValueError(f"config.model.item_tower={combine!r}: expected one of {COMBINES}")
        init = nnx.initializers.normal(0.02)
        self.combine, self.id_dropout = combine, float(id_dropout)
        self.known = FeatureTable(jnp.asarray(_rows(features.known.astype(bool), rows, True)))
        self.categorical = nnx.List([
            FeatureTable(jnp.asarray(_rows(features.categorical[n].astype(np.int32), rows, 1)))
            for n in sorted(features.categorical)])
        self.value_embeddings = nnx.List([
            nnx.Embed(features.vocab_sizes[n], d_model, dtype=dtype, embedding_init=init, rngs=rngs)
            for n in sorted(features.categorical)])
        self.dense = nnx.List([
            FeatureTable(jnp.asarray(_rows(features.dense[n].astype(np.float32), rows, 0.0)))
            for n in sorted(features.dense)])
        self.projections = nnx.List([
            nnx.Linear(features.dense[n].shape[1], d_model, dtype=dtype, rngs=rngs)
            for n in sorted(features.dense)])
        self.unknown_id = nnx.Param(init(rngs.params(), (d_model,)))
        n = len(self.categorical) + len(self.dense)
        self.mix = (nnx.Linear(2 * d_model, d_model, dtype=dtype, rngs=rngs) if combine == "gated" else
                    nnx.Linear((1 + n) * d_model, d_model, dtype=dtype, rngs=rngs) if combine == "concat"
                    else None)

    def feature_vectors(self, ids: jax.Array) -> list[jax.Array]:
        """Each feature's vector for the items `ids` [...] -> [..., D], in the order of `names`."""
        return feature_vectors(self, ids)

    def __call__(self, id_vectors: jax.Array, ids: jax.Array, *, key: jax.Array | None = None):
        """Item vectors [..., D] of the items `ids` [...] whose id rows are `id_vectors`; `key`
        (training) draws the id dropout."""
        use_id = self.known[...][ids]
        if key is not None and self.id_dropout > 0:
            use_id &= jax.random.uniform(key, ids.shape) >= self.id_dropout
        unknown = self.unknown_id[...].astype(id_vectors.dtype)
        id_part = jnp.where(use_id[..., None], id_vectors, unknown)
        features = self.feature_vectors(ids)
        if self.combine == "concat":
            return self.mix(jnp.concatenate([id_part, *features], axis=-1))
        content = sum(features[1:], features[0]) if features else jnp.zeros_like(id_part)
        if self.combine == "sum":
            return id_part + content
        gate = jax.nn.sigmoid(self.mix(jnp.concatenate([id_part, content], axis=-1)))
        return gate * id_part + (1 - gate) * content
