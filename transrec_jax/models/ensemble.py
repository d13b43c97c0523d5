"""A deep ensemble in one model: K independently initialised members, scores summed.

Member k scores item i by <u_k, w_k,i> (+ b_k,i); the ensemble scores it by the sum over k,
which is the dot product of the concatenated user vectors with the concatenated output rows.
So `user_representation` and `output_table` concatenate and every consumer of (u, W, b) --
the evaluator, `recommend`, the ranking code -- serves the ensemble unchanged. Training gives
each member its own loss on the same batches with its own dropout (see train.train_step), so
the members learn independently, as separately seeded runs would, in one state and one step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Ensemble(nnx.Module):
    """The sum of its members' scores; members are Recommenders over the same catalogue."""

    def __init__(self, members):
        if len(members) < 2:
            raise ValueError(f"an Ensemble needs at least 2 members, got {len(members)}")
        self.members = nnx.List(members)
        self.num_items = members[0].num_items

    def user_representation(self, history: jax.Array, *, key: jax.Array | None = None,
                            **inputs) -> jax.Array:
        """[B, K·D]: the members' user vectors side by side (key=None: no dropout); `inputs`:
        what each member reads besides the history (times and query_time, users, input_scale)."""
        keys = [None] * len(self.members) if key is None else jax.random.split(key, len(self.members))
        return jnp.concatenate(
            [m.user_representation(history, key=k, **inputs) for m, k in zip(self.members, keys)],
            axis=-1)

    def output_table(self) -> tuple[jax.Array, jax.Array | None]:
        """(W [output_rows, K·D], summed b or None): row i scores item i."""
        tables = [m.output_table() for m in self.members]
        biases = [b for _, b in tables if b is not None]
        weight = jnp.concatenate([w for w, _ in tables], axis=-1)
        return weight, (sum(biases) if biases else None)
