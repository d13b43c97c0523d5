"""An encoder-decoder recommender that writes the user's next K items one at a time.

The encoder (the shared `Recommender` stack, bidirectional) reads the history; a stack of
`DecoderLayer`s (causal self-attention, cross-attention to the encoder output) is trained
with teacher forcing to emit the next `model.next_k` items after a [START] token, id
num_items + 1. Each pick thus conditions on the earlier picks of the same list, which a
single top-K over one user vector cannot do.

Decoder positions count steps from [START] (step 0), unlike the encoder's right-aligned
ones, so a step's input never depends on how many steps follow: what incremental decoding
with a KV cache needs. The item embedding is shared by encoder, decoder and (tied head)
output table.

Generation (`generate`) encodes the history once, then runs `lax.scan` over k decoder steps
against per-layer KV caches, greedy or beam search, with fixed shapes so one compile serves
every batch. At each step id 0, the items already in the list and the `exclude` ids get
-inf; beam search keeps `beam_width` hypotheses ranked by summed log-probabilities (softmax
over items 1..num_items) and returns the best one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from transrec_jax.models.attention import KVCache, dropout, key_padding_mask, split_key
from transrec_jax.models.layers import DecoderLayer, has_final_norm, make_norm
from transrec_jax.models.positions import sinusoidal_table
from transrec_jax.models.item_tower import ItemFeatureArrays
from transrec_jax.models.recommenders import Recommender


class DecoderPositions(nnx.Module):
    """Learned or sinusoidal encodings of decoder step ids 0..next_k-1 ([START] is step 0)."""

    def __init__(self, model_cfg, *, dtype, rngs: nnx.Rngs):
        m = model_cfg
        self.d_model, self.dtype = m.d_model, dtype
        learned = m.positions == "learned"
        init = nnx.initializers.normal(m.embedding_init_std or m.init_std)
        self.embedding = (
            nnx.Embed(m.next_k, m.d_model, dtype=dtype, embedding_init=init, rngs=rngs)
            if learned else None
        )

    def __call__(self, steps: jax.Array) -> jax.Array:
        """steps int32[S] -> [S, D]."""
        if self.embedding is not None:
            return self.embedding(steps)
        return sinusoidal_table(steps, self.d_model).astype(self.dtype)


def forbidden_items(exclude: jax.Array, num_items: int) -> jax.Array:
    """bool[B, num_items + 1]: id 0 and every id in exclude int32[B, H] (0-padded)."""
    batch = exclude.shape[0]
    forbidden = jnp.zeros((batch, num_items + 1), bool)
    return forbidden.at[jnp.arange(batch)[:, None], exclude].set(True).at[:, 0].set(True)


class EncoderDecoder(Recommender):
    """Encoder over the history, decoder emitting the next `model.next_k` items."""

    causal = False  # the encoder reads the whole history at once
    has_mask_token = True  # the extra embedding row, id num_items + 1, is the decoder's [START]

    def __init__(self, model_cfg, num_items: int, *, dtype, rngs: nnx.Rngs, row_multiple: int = 1,
                 item_features: ItemFeatureArrays | None = None):
        super().__init__(model_cfg, num_items, dtype=dtype, rngs=rngs, row_multiple=row_multiple,
                         item_features=item_features)
        m = model_cfg
        if m.next_k < 1:
            raise ValueError(f"config.model.next_k={m.next_k}: expected a positive integer")
        self.start_id = num_items + 1
        self.next_k = m.next_k
        self.decoder_positions = (
            DecoderPositions(m, dtype=dtype, rngs=rngs)
            if m.positions in ("learned", "sinusoidal") else None  # rotary acts inside attention
        )
        layers = [DecoderLayer(m, dtype=dtype, rngs=rngs) for _ in range(m.num_decoder_layers)]
        self.decoder_layers = nnx.List(layers)
        final_norm = has_final_norm(m.norm_placement)
        self.decoder_final_norm = (
            make_norm(m.d_model, dtype=dtype, rngs=rngs) if final_norm else None
        )

    @classmethod
    def training_window(cls, model_cfg) -> int:
        """Training rows hold max_len history items and then next_k targets."""
        return model_cfg.max_len + model_cfg.next_k

    # --- training and the next-item protocol ------------------------------------------------

    def training_forward(self, seq: jax.Array, *, key: jax.Array):
        """seq [B, max_len + next_k] -> decoder hidden [B, K, D], targets [B, K], weights.

        History = the first max_len items, targets = the last next_k; the decoder reads
        [START] + targets[:-1] (teacher forcing). A row with fewer than next_k + 1 items is
        shifted left first (`history_first`), so its history keeps one item and its targets
        are the rest followed by padding (weight 0).
        """
        width = self.max_len + self.next_k
        if seq.shape[1] != width:
            raise ValueError(
                f"training rows have {seq.shape[1]} items; encdec needs model.max_len + "
                f"model.next_k = {width}"
            )
        seq = history_first(seq, self.next_k)
        history, targets = seq[:, : self.max_len], seq[:, self.max_len :]
        encode_key, decode_key = split_key(key, 2)
        encoded = self.encode(history, key=encode_key)
        inputs = jnp.concatenate([self._start_column(seq.shape[0]), targets[:, :-1]], axis=1)
        hidden = self.decode(inputs, encoded, history != 0, key=decode_key)
        return hidden, targets, (targets != 0).astype(jnp.float32)

    def user_representation(self, history: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """The decoder's hidden state after [START]: it scores the next item (step 1)."""
        encode_key, decode_key = split_key(key, 2)
        encoded = self.encode(history, key=encode_key)
        start = self._start_column(history.shape[0])
        return self.decode(start, encoded, history != 0, key=decode_key)[:, 0]

    def decode(self, tokens, encoded, source_valid, *, key: jax.Array | None = None) -> jax.Array:
        """Teacher-forced decoder pass: tokens int32[B, T] (step 0 first) -> hidden [B, T, D].

        encoded [B, L, D] is the encoder output, source_valid bool[B, L] its non-padding keys.
        """
        embed_key, *layer_keys = split_key(key, len(self.decoder_layers) + 1)
        x = dropout(self._embed_steps(tokens, jnp.arange(tokens.shape[1])), self.dropout_rate,
                    embed_key)
        cross_mask = key_padding_mask(source_valid)
        for layer, layer_key in zip(self.decoder_layers, layer_keys, strict=True):
            x = layer(x, encoded, cross_mask=cross_mask, key=layer_key)
        return self._decoder_norm(x)

    # --- incremental decoding ----------------------------------------------------------------

    def init_decoder_cache(self, batch_size: int, capacity: int) -> tuple[KVCache, ...]:
        """One empty self-attention cache per decoder layer."""
        return tuple(layer.init_cache(batch_size, capacity) for layer in self.decoder_layers)

    def decode_step(self, tokens, step, encoded, cross_mask, caches):
        """One decoder step: tokens int32[N] at step `step` -> (hidden [N, D], updated caches)."""
        x = self._embed_steps(tokens[:, None], step[None])
        updated = []
        for layer, cache in zip(self.decoder_layers, caches, strict=True):
            x, cache = layer.decode(x, encoded, cache, cross_mask=cross_mask)
            updated.append(cache)
        return self._decoder_norm(x)[:, 0], tuple(updated)

    def log_probs(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] -> float32 log-softmax over items 1..num_items; id 0 gets -inf."""
        scores = self.score_all(hidden)[..., : self.num_items + 1]  # (a split table has more rows)
        scores = jnp.where(jnp.arange(scores.shape[-1]) == 0, -jnp.inf, scores)
        return jax.nn.log_softmax(scores, axis=-1)

    def generate(self, history, exclude=None, *, k: int, beam_width: int = 1):
        """history int32[B, L <= max_len], exclude int32[B, H] or None -> (items i32, scores f32) [B, k].

        items[:, i] is the list's (i+1)-th pick; scores[:, i] the log-probability of the first
        i + 1 picks (non-increasing). A slot with no item left to pick holds id 0 and -inf.
        beam_width 1 is greedy decoding.
        """
        if not isinstance(k, int) or not 1 <= k <= self.next_k:
            raise ValueError(f"k={k!r}: expected 1 <= k <= config.model.next_k={self.next_k}")
        if not isinstance(beam_width, int) or beam_width < 1:
            raise ValueError(f"config.model.beam_width={beam_width!r}: expected a positive integer")
        if exclude is None:
            exclude = jnp.zeros((history.shape[0], 1), jnp.int32)
        if beam_width == 1:
            return self.greedy(history, exclude, k=k)
        return self.beam_search(history, exclude, k=k, beam_width=beam_width)

    def greedy(self, history, exclude, *, k: int):
        """Pick the most probable allowed item at every step (see `generate`)."""
        batch = history.shape[0]
        rows = jnp.arange(batch)
        encoded = self.encode(history)
        cross_mask = key_padding_mask(history != 0)

        def step(carry, t):
            caches, tokens, forbidden = carry
            hidden, caches = self.decode_step(tokens, t, encoded, cross_mask, caches)
            log_p = jnp.where(forbidden, -jnp.inf, self.log_probs(hidden))
            item = jnp.argmax(log_p, axis=-1).astype(jnp.int32)
            picked = log_p[rows, item]
            item = jnp.where(picked == -jnp.inf, 0, item)
            return (caches, item, forbidden.at[rows, item].set(True)), (item, picked)

        init = (self.init_decoder_cache(batch, k), self._start_column(batch)[:, 0],
                forbidden_items(exclude, self.num_items))
        _, (items, picked) = jax.lax.scan(step, init, jnp.arange(k))
        return items.T, jnp.cumsum(picked.T, axis=1)

    def beam_search(self, history, exclude, *, k: int, beam_width: int):
        """Keep the beam_width best partial lists by summed log-probability (see `generate`)."""
        batch, beams = history.shape[0], beam_width
        encoded = jnp.repeat(self.encode(history), beams, axis=0)  # row b * beams + w
        cross_mask = key_padding_mask(jnp.repeat(history != 0, beams, axis=0))
        forbidden = jnp.repeat(forbidden_items(exclude, self.num_items), beams, axis=0)
        num_ids = forbidden.shape[1]
        # The beams start identical: only beam 0 may expand at step 0, or the top hypotheses
        # would be copies of one another.
        total = jnp.tile(jnp.where(jnp.arange(beams) == 0, 0.0, -jnp.inf), (batch, 1))
        lists = jnp.zeros((batch, beams, k), jnp.int32)
        step_log_p = jnp.zeros((batch, beams, k), jnp.float32)
        users = jnp.arange(batch)[:, None]

        def step(carry, t):
            caches, tokens, forbidden, total, lists, step_log_p = carry
            hidden, caches = self.decode_step(tokens, t, encoded, cross_mask, caches)
            log_p = jnp.where(forbidden, -jnp.inf, self.log_probs(hidden))
            log_p = log_p.reshape(batch, beams, num_ids)
            candidates = (total[:, :, None] + log_p).reshape(batch, beams * num_ids)
            total, best = jax.lax.top_k(candidates, beams)  # [B, beams], best first
            parent, item = best // num_ids, (best % num_ids).astype(jnp.int32)
            picked = log_p[users, parent, item]
            item = jnp.where(total == -jnp.inf, 0, item)
            source = (users * beams + parent).reshape(-1)  # row of each new beam's parent
            caches = tuple(KVCache(c.keys[source], c.values[source], c.index) for c in caches)
            tokens = item.reshape(-1)
            forbidden = forbidden[source].at[jnp.arange(batch * beams), tokens].set(True)
            lists = jnp.take_along_axis(lists, parent[..., None], axis=1).at[:, :, t].set(item)
            step_log_p = jnp.take_along_axis(step_log_p, parent[..., None], axis=1)
            step_log_p = step_log_p.at[:, :, t].set(picked)
            return (caches, tokens, forbidden, total, lists, step_log_p), None

        start = jnp.full((batch * beams,), self.start_id, jnp.int32)
        init = (self.init_decoder_cache(batch * beams, k), start, forbidden, total, lists,
                step_log_p)
        (_, _, _, _, lists, step_log_p), _ = jax.lax.scan(step, init, jnp.arange(k))
        return lists[:, 0], jnp.cumsum(step_log_p[:, 0], axis=1)

    # --- helpers ---------------------------------------------------------------------------

    def _start_column(self, batch: int) -> jax.Array:
        return jnp.full((batch, 1), self.start_id, jnp.int32)

    def _embed_steps(self, tokens: jax.Array, steps: jax.Array) -> jax.Array:
        x = self.embed_items(tokens) * self.embedding_scale
        if self.decoder_positions is not None:
            x = x + self.decoder_positions(steps)
        return x

    def _decoder_norm(self, x: jax.Array) -> jax.Array:
        return self.decoder_final_norm(x) if self.decoder_final_norm is not None else x


def history_first(seq: jax.Array, next_k: int) -> jax.Array:
    """Shift rows with n < next_k + 1 items left by next_k + 1 - n, zero-filling the right.

    Rows are right-aligned; after the shift a short row's first item ends the history part
    and the rest start the target part, so every target has some history to condition on.
    """
    width = seq.shape[1]
    count = (seq != 0).sum(axis=1)
    shift = jnp.maximum(next_k + 1 - count, 0)
    index = jnp.arange(width)[None, :] + shift[:, None]
    shifted = jnp.take_along_axis(seq, jnp.minimum(index, width - 1), axis=1)
    return jnp.where(index < width, shifted, 0)


@functools.partial(jax.jit, static_argnames=("graphdef", "k", "beam_width"))
def generate(graphdef, params, history, exclude, *, k: int, beam_width: int):
    """Jitted `EncoderDecoder.generate` on split model state: one compile per shape, k, beam_width."""
    return nnx.merge(graphdef, params).generate(history, exclude, k=k, beam_width=beam_width)
