"""The user tower: one [D] vector per user from the user's features (demographics, a table).

With `model.user_features` set, a Recommender adds the vector of the user a sequence belongs to
either to every input position's embedding (`input`: each attention layer reads it, the effect
of an extra user token without lengthening the window, and packed rows of several users stay
correct because the user is given per position) or to the hidden state that scores the items
(`output`: a bias on the user vector).

  u = sum over features of: the mean of a categorical feature's value embeddings (padding
      excluded), or a dense (or numeric) feature projected to d_model

Users are numbered as the batches give them: dense user index + 1, with 0 the unknown (or
padding) user, whose categorical values are all "unknown" and numeric or dense ones 0, as a user
the file does not list has (data/side_info.py). The feature arrays are constants of the model
(`FeatureTable` variables, saved in checkpoints, never trained).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax.models.item_tower import FeatureTable, feature_vectors

PLACEMENTS = ("off", "input", "output")


@dataclasses.dataclass(frozen=True)
class UserFeatureArrays:
    """What the tower reads, one row per user number (row 0: the unknown user; then dense user
    index + 1; data/side_info.user_tower_inputs builds it).

    categorical: int32[num_users + 1, max_values] vocabulary indices (0 padding, 1 unknown);
    vocab_sizes: each categorical feature's vocabulary size; dense: float32[num_users + 1, dim]
    (a numeric feature is dim 1).
    """

    categorical: dict[str, np.ndarray]
    vocab_sizes: dict[str, int]
    dense: dict[str, np.ndarray]

    @property
    def names(self) -> list[str]:
        return sorted(self.categorical) + sorted(self.dense)

    @property
    def rows(self) -> int:
        return len(next(iter({**self.categorical, **self.dense}.values())))


class UserTower(nnx.Module):
    def __init__(self, features: UserFeatureArrays, *, d_model: int, dtype, rngs: nnx.Rngs):
        if not features.names:
            raise ValueError("the user tower needs at least one user feature")
        init = nnx.initializers.normal(0.02)
        self.categorical = nnx.List([
            FeatureTable(jnp.asarray(features.categorical[n].astype(np.int32)))
            for n in sorted(features.categorical)])
        self.value_embeddings = nnx.List([
            nnx.Embed(features.vocab_sizes[n], d_model, dtype=dtype, embedding_init=init, rngs=rngs)
            for n in sorted(features.categorical)])
        self.dense = nnx.List([
            FeatureTable(jnp.asarray(features.dense[n].astype(np.float32)))
            for n in sorted(features.dense)])
        self.projections = nnx.List([
            nnx.Linear(features.dense[n].shape[1], d_model, dtype=dtype, rngs=rngs)
            for n in sorted(features.dense)])

    def __call__(self, users: jax.Array) -> jax.Array:
        """The vectors [..., D] of the user numbers `users` [...] (0: the unknown user)."""
        out = feature_vectors(self, users)
        return sum(out[1:], out[0])
