"""SASRec, BERT4Rec and a last-item Transformer recommender over one shared encoder.

Token ids: 0 = padding, 1..num_items = items, num_items + 1 = [MASK] (BERT4Rec only).
Sequences are right-aligned and left-padded. All three models embed items (+ positions),
run `model.num_layers` EncoderLayers with a key-padding mask (causal for SASRec and the
Transformer recommender, bidirectional for BERT4Rec) and score items against an output
table. They differ in their training objective and in how they read a user vector.

Randomness (dropout, BERT4Rec masking) comes only from the `key` arguments, so the model's
state is parameters only and a train step is a pure function of (params, batch, key).

With `model.user_features` (input | output) the models also read each sequence's user:
`users` arguments number users as dense user index + 1, 0 the unknown user (models/user_tower.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from transrec_jax.models.attention import (
    bidirectional_mask,
    causal_mask,
    combine_masks,
    dropout,
    key_padding_mask,
    same_segment_mask,
    split_key,
)
from transrec_jax.models.ensemble import Ensemble
from transrec_jax.models.item_tower import ItemFeatureArrays, ItemTower
from transrec_jax.models.layers import EncoderLayer, has_final_norm, make_norm
from transrec_jax.models.positions import make_positions, right_aligned_ids, start_aligned_ids
from transrec_jax.models.user_tower import UserFeatureArrays, UserTower


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / ||x|| over the last axis (a zero vector stays zero)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _padded(init, rows: int):
    """`init` for the first `rows` rows of a table, zeros below: the real rows draw exactly
    what an unpadded table draws."""

    def padded(key, shape, dtype=jnp.float32):
        return jnp.pad(init(key, (rows, *shape[1:]), dtype), ((0, shape[0] - rows), (0, 0)))

    return padded


class Recommender(nnx.Module):
    """Item embedding, positions, encoder stack, final norm and output table.

    Subclasses set `causal` / `has_mask_token` and implement `training_forward`.
    """

    causal: bool = True
    has_mask_token: bool = False  # an extra embedding row, id num_items + 1
    softmax_attention: bool = True  # whether encode(return_attention=True) can read the weights

    def __init__(self, model_cfg, num_items: int, *, dtype, rngs: nnx.Rngs, row_multiple: int = 1,
                 item_features: ItemFeatureArrays | None = None,
                 user_features: UserFeatureArrays | None = None):
        if num_items < 1:
            raise ValueError(f"num_items={num_items}: a model needs at least one item")
        if model_cfg.head not in ("tied", "linear"):
            raise ValueError(f"config.model.head={model_cfg.head!r}: expected tied | linear")
        m = model_cfg
        d_model = m.d_model
        table_init = nnx.initializers.normal(m.embedding_init_std or m.init_std)
        self.num_items = num_items
        self.max_len = m.max_len
        self.dropout_rate = m.dropout
        self.embedding_scale = d_model**0.5 if m.scale_embeddings else 1.0
        # Item tables split over devices get zero rows appended up to a multiple of the
        # shards (`row_multiple`, sharding.py); those rows are never items (ids > num_items), so
        # every consumer of the output table masks them, as it masks id 0.
        vocab_size = num_items + (2 if self.has_mask_token else 1)
        table_rows = _round_up(vocab_size, row_multiple)
        self.output_rows = num_items + 1 if row_multiple == 1 else table_rows
        self.item_embedding = nnx.Embed(
            table_rows, d_model, dtype=dtype, embedding_init=_padded(table_init, vocab_size), rngs=rngs
        )
        if (m.item_tower != "off") != (item_features is not None):
            raise ValueError(f"config.model.item_tower={m.item_tower!r} needs item features exactly "
                             "when it is not 'off' (dataset.item_features)")
        self.item_tower = (
            ItemTower(item_features, rows=table_rows, d_model=d_model, combine=m.item_tower,
                      id_dropout=m.id_dropout, dtype=dtype, rngs=rngs)
            if item_features is not None else None
        )
        self.positions = make_positions(m, dtype=dtype, rngs=rngs)
        self.positions_from = m.positions_from
        layers = [self.make_layer(m, dtype=dtype, rngs=rngs) for _ in range(m.num_layers)]
        self.layers = nnx.List(layers)
        final_norm = self.ends_with_norm(m)
        self.final_norm = make_norm(d_model, dtype=dtype, rngs=rngs) if final_norm else None
        # Each attribute is assigned once: NNX fixes data vs static at the first assignment.
        rows = self.output_rows
        linear = m.head == "linear"
        self.output_weight = (
            nnx.Param(_padded(table_init, num_items + 1)(rngs.params(), (rows, d_model)))
            if linear else None
        )
        self.output_bias = nnx.Param(jnp.zeros((rows,))) if m.head_bias else None
        self.score_temperature = float(m.score_temperature)
        # Last, so that every other parameter draws what it draws without user features.
        placement = m.user_features
        if placement not in ("off", "input", "output"):
            raise ValueError(f"config.model.user_features={placement!r}: expected off | input | output")
        if (placement != "off") != (user_features is not None):
            raise ValueError(f"config.model.user_features={placement!r} needs user features exactly "
                             "when it is not 'off' (dataset.user_features)")
        self.user_placement = placement
        self.user_tower = (UserTower(user_features, d_model=d_model, dtype=dtype, rngs=rngs)
                           if user_features is not None else None)

    @classmethod
    def make_layer(cls, model_cfg, *, dtype, rngs: nnx.Rngs) -> nnx.Module:
        """One block of the stack: a Transformer EncoderLayer (HSTU has its own)."""
        return EncoderLayer(model_cfg, dtype=dtype, rngs=rngs)

    @classmethod
    def ends_with_norm(cls, model_cfg) -> bool:
        """Whether a norm follows the last block (pre and sasrec placements: yes)."""
        return has_final_norm(model_cfg.norm_placement)

    def encode(self, tokens: jax.Array, *, key: jax.Array | None = None,
               last_only: bool = False, segments: jax.Array | None = None,
               positions: jax.Array | None = None, times: jax.Array | None = None,
               users: jax.Array | None = None, input_scale: jax.Array | None = None,
               return_attention: bool = False):
        """tokens int32[B, L], L <= max_len -> hidden [B, L, D]; key=None disables dropout.

        last_only: hidden [B, 1, D] of the last position only, equal to hidden[:, -1:] (the top
        layer then computes that position alone). segments / positions int32[B, L]: a packed
        row's segment numbers (attention stays within a segment) and position ids. times
        int32[B, L + 1]: each token's time, then the last position's query time (HSTU blocks
        with model.time_buckets; models/hstu.py), given to every layer. users int32[B, L]: each
        token's user (dense index + 1; None: the unknown user), whose user-tower vector is added
        to every input (user_placement 'input') or to the output hidden ('output'); a model
        without user features ignores it. input_scale float[B, L]: multiplies each token's item
        vector (explain.py's gradient x input differentiates the score with respect to it).

        return_attention: (hidden, a tuple of each layer's attention weights [B, H, L, L],
        softmax rows before dropout, 0 at masked keys; the top layer's [B, H, 1, L] with
        last_only), for explanations (explain.py's rollout). Off by default, and then nothing
        extra is traced: the training and serving programs are unchanged.
        """
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} > config.model.max_len={self.max_len}")
        if return_attention and not self.softmax_attention:
            raise ValueError(f"{type(self).__name__}: return_attention reads softmax attention "
                             "weights, which this model's blocks do not have")
        embedding_key, *layer_keys = split_key(key, len(self.layers) + 1)
        # (the id dropout's key is folded from the embedding dropout's: without an item tower
        # every key is what it was before the tower existed)
        id_key = None if key is None or self.item_tower is None else jax.random.fold_in(embedding_key, 1)
        x = self.embed_items(tokens, key=id_key) * self.embedding_scale
        if input_scale is not None:
            x = x * input_scale[..., None].astype(x.dtype)
        if self.positions is not None:
            if self.positions_from == "start":
                ids = start_aligned_ids(tokens, segments)
            else:
                ids = right_aligned_ids(length) if positions is None else positions
            x = x + self.positions(ids)
        user_vectors = None
        if self.user_tower is not None:
            users = jnp.zeros(tokens.shape, jnp.int32) if users is None else users
            user_vectors = self.user_tower(users).astype(x.dtype)
            if self.user_placement == "input":
                x = x + user_vectors
        x = dropout(x, self.dropout_rate, embedding_key)
        order = causal_mask(length) if self.causal else bidirectional_mask(length, length)
        mask = combine_masks(key_padding_mask(tokens != 0), order, same_segment_mask(segments))
        top = len(self.layers) - 1
        timed = {} if times is None else {"times": times}
        weights = []
        for i, (layer, layer_key) in enumerate(zip(self.layers, layer_keys, strict=True)):
            if return_attention:
                x, layer_weights = layer(x, mask=mask, key=layer_key, last_only=last_only and i == top,
                                         return_attention=True, **timed)
                weights.append(layer_weights)
            else:
                x = layer(x, mask=mask, key=layer_key, last_only=last_only and i == top, **timed)
        if last_only:
            x = x[:, -1:]  # a no-op unless there are no layers
        x = self.final_norm(x) if self.final_norm is not None else x
        if self.user_placement == "output":  # a bias on the user vector that scores items
            x = x + (user_vectors[:, -1:] if last_only else user_vectors)
        if self.score_temperature:  # cosine scores: unit user vectors, divided by temperature
            x = l2_normalize(x) / self.score_temperature
        return (x, tuple(weights)) if return_attention else x

    def embed_items(self, tokens: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Input vectors of the item ids `tokens`: their id rows, combined with their content
        by the item tower when there is one (`key`, training: its id dropout)."""
        vectors = self.item_embedding(tokens)
        return vectors if self.item_tower is None else self.item_tower(vectors, tokens, key=key)

    def output_table(self, *, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """(W [output_rows, D], b [output_rows] or None): row i scores item id i.

        key (training, with an item tower): its id dropout, drawn once per item, so that some
        targets and competitors of each step are scored by their content alone, as a new item is.

        Row 0 is padding and rows past num_items are not items (callers mask both); output_rows
        is num_items + 1 unless the tables are split over devices. tied: the item-embedding
        rows (BERT4Rec's [MASK] row excluded when unsplit), through the item tower when there
        is one (every item's id row and content); linear: a separate weight. b exists when
        model.head_bias, for either head (BERT4Rec's tied head has an output bias). With
        model.score_temperature the rows are unit vectors (and `encode` returns user vectors of
        norm 1 / temperature), so every consumer of (hidden, W) scores by scaled cosine.
        """
        if self.output_weight is not None:
            weight = self.output_weight[...]
        elif self.item_tower is not None:  # every item's id row with its content
            ids = jnp.arange(self.output_rows)
            weight = self.item_tower(self.item_embedding.embedding[...][: self.output_rows], ids, key=key)
        else:
            weight = self.item_embedding.embedding[...][: self.output_rows]
        if self.score_temperature:
            weight = l2_normalize(weight)
        bias = self.output_bias[...] if self.output_bias is not None else None
        return weight, bias

    def score_all(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] -> float32 scores [..., output_rows] (row i: item id i)."""
        weight, bias = self.output_table()
        weight = weight.astype(hidden.dtype)
        scores = jnp.einsum("...d,vd->...v", hidden, weight, preferred_element_type=jnp.float32)
        return scores if bias is None else scores + bias

    def user_representation(self, history: jax.Array, *, key: jax.Array | None = None,
                            times: jax.Array | None = None,
                            query_time: jax.Array | None = None,
                            users: jax.Array | None = None,
                            input_scale: jax.Array | None = None) -> jax.Array:
        """The vector that scores the item after history int32[B, L]: the last hidden state.

        times int32[B, L] (the history's) and query_time int32[B] (the scored item's): for a
        model with a time bias (model.time_buckets), else None. users int32[B]: each row's user
        (dense index + 1, 0 unknown) for a model with user features, else None. input_scale
        float[B, L]: multiplies each history item's input vector (see `encode`).
        """
        if times is not None:
            times = jnp.concatenate([times, query_time[:, None]], axis=1)
        return self.encode(history, key=key, last_only=True, times=times,
                           users=_per_position(users, history), input_scale=input_scale)[:, 0]

    def user_tokens(self, history: jax.Array) -> jax.Array:
        """The tokens `user_representation` encodes for history int32[B, L]; the user vector
        is the last one's hidden state."""
        return history

    def user_attention(self, history: jax.Array, *, users: jax.Array | None = None) -> tuple:
        """Each layer's attention weights [B, H, L, L] (no dropout) over `user_tokens(history)`,
        as `user_representation` computes them (users int32[B] as there): its last query row
        is the user vector's."""
        tokens = self.user_tokens(history)
        _, weights = self.encode(tokens, users=_per_position(users, tokens), return_attention=True)
        return weights

    def training_forward(self, seq: jax.Array, *, key: jax.Array):
        raise NotImplementedError

    @classmethod
    def training_window(cls, model_cfg) -> int:
        """Items per training row: max_len inputs plus the one after them."""
        return model_cfg.max_len + 1


class SASRec(Recommender):
    """Causal next-item prediction at every position (Kang & McAuley, ICDM 2018)."""

    def __init__(self, model_cfg, num_items: int, *, dtype, rngs: nnx.Rngs, row_multiple: int = 1,
                 item_features: ItemFeatureArrays | None = None,
                 user_features: UserFeatureArrays | None = None):
        super().__init__(model_cfg, num_items, dtype=dtype, rngs=rngs, row_multiple=row_multiple,
                         item_features=item_features, user_features=user_features)
        self.first_item_target = bool(model_cfg.first_item_target)

    def training_forward(self, seq: jax.Array, *, key: jax.Array, segments=None, positions=None,
                         times=None, users=None):
        """seq [B, max_len + 1] -> hidden of seq[:, :-1], targets seq[:, 1:], weights.

        Every non-padding target trains. A window shorter than max_len + 1 has a padding input
        before its first item; with model.first_item_target that slot predicts the first item
        (weight 1), without it the weight is 0, as in SASRec's and [KV23]'s code, whose targets
        start at the second item. A packed row (segments, positions: see
        data/batching.pack_windows) holds several windows, each with that padding slot; an
        input's position id is then one less than in its window (the window's last item is
        only a target), and a segment's last item, an input with no target, gets id 0.
        times [B, max_len + 1], aligned with seq (model.time_buckets): each input's query time
        is its target's. users [B, max_len + 1], aligned with seq: each item's user (dense
        index + 1; data/batching.TrainBatcher's `users`), for a model with user features.
        """
        inputs, targets = seq[:, :-1], seq[:, 1:]
        if segments is not None:
            segments, positions = segments[:, :-1], jnp.maximum(positions[:, :-1] - 1, 0)
        users = None if users is None else users[:, :-1]
        hidden = self.encode(inputs, key=key, segments=segments, positions=positions, times=times,
                             users=users)
        trained = targets != 0
        if not self.first_item_target:
            trained = trained & (inputs != 0)
        return hidden, targets, trained.astype(jnp.float32)


class TransformerRecommender(Recommender):
    """Causal encoder trained only on the last item of each window (T = 1)."""

    def training_forward(self, seq: jax.Array, *, key: jax.Array, users=None):
        """seq [B, max_len + 1] -> hidden [B, 1, D] of the last input, target seq[:, -1];
        users [B, max_len + 1] aligned with seq (model.user_features)."""
        targets = seq[:, -1:]
        users = None if users is None else users[:, :-1]
        hidden = self.encode(seq[:, :-1], key=key, last_only=True, users=users)
        return hidden, targets, (targets != 0).astype(jnp.float32)


def cloze_mask(key: jax.Array, tokens: jax.Array, mask_prob: float,
               segments: jax.Array | None = None) -> jax.Array:
    """bool[B, L]: which non-padding tokens BERT4Rec masks.

    Each non-padding item is masked with probability mask_prob (plain replacement, the
    BERT4Rec-RecSys convention, not BERT's 80/10/10). A non-empty row (with `segments`: a
    packed row's segment) that drew no mask gets its item with the smallest uniform draw
    masked -- one non-padding position chosen uniformly -- so every such sequence has a
    target; the expected rate for a sequence of n items is therefore
    mask_prob + (1 - mask_prob)^n / n.
    """
    real = tokens != 0
    draws = jnp.where(real, jax.random.uniform(key, tokens.shape), jnp.inf)
    if segments is None:
        smallest = jnp.arange(tokens.shape[1])[None, :] == jnp.argmin(draws, axis=1)[:, None]
    else:  # the smallest draw of each token's own segment
        same = segments[:, :, None] == segments[:, None, :]
        smallest = draws == jnp.min(jnp.where(same, draws[:, None, :], jnp.inf), axis=2)
    return real & ((draws < mask_prob) | smallest)


class BERT4Rec(Recommender):
    """Bidirectional Cloze model (Sun et al., CIKM 2019); [MASK] id = num_items + 1."""

    causal = False
    has_mask_token = True

    def __init__(self, model_cfg, num_items: int, *, dtype, rngs: nnx.Rngs, row_multiple: int = 1,
                 item_features: ItemFeatureArrays | None = None,
                 user_features: UserFeatureArrays | None = None):
        super().__init__(model_cfg, num_items, dtype=dtype, rngs=rngs, row_multiple=row_multiple,
                         item_features=item_features, user_features=user_features)
        self.mask_id = num_items + 1
        self.mask_prob = model_cfg.mask_prob

    def training_forward(self, seq: jax.Array, *, key: jax.Array, segments=None, positions=None,
                         users=None):
        """Cloze set-up on the last max_len items of seq [B, max_len + 1] (see `cloze_mask`).

        Masked items are replaced by the [MASK] id; targets are the original items at masked
        positions (weight 1), 0 elsewhere (weight 0). A packed row (segments, positions)
        masks and attends within each segment. users [B, max_len + 1]: aligned with seq.
        """
        mask_key, encode_key = jax.random.split(key)
        tokens = seq[:, 1:]
        if segments is not None:
            segments, positions = segments[:, 1:], positions[:, 1:]
        users = None if users is None else users[:, 1:]
        masked = cloze_mask(mask_key, tokens, self.mask_prob, segments)
        inputs = jnp.where(masked, self.mask_id, tokens)
        hidden = self.encode(inputs, key=encode_key, segments=segments, positions=positions,
                             users=users)
        targets = jnp.where(masked, tokens, 0)
        return hidden, targets, masked.astype(jnp.float32)

    def user_tokens(self, history: jax.Array) -> jax.Array:
        """history[:, 1:], then [MASK]: the window a user vector reads."""
        mask_column = jnp.full((history.shape[0], 1), self.mask_id, dtype=history.dtype)
        return jnp.concatenate([history[:, 1:], mask_column], axis=1)

    def user_representation(self, history: jax.Array, *, key: jax.Array | None = None,
                            users: jax.Array | None = None,
                            input_scale: jax.Array | None = None) -> jax.Array:
        """Drop the oldest item, append [MASK], read the hidden state at that last position
        (users int32[B], input_scale float[B, L] aligned with history: as
        Recommender.user_representation's; [MASK] keeps scale 1)."""
        tokens = self.user_tokens(history)
        if input_scale is not None:
            input_scale = jnp.concatenate([input_scale[:, 1:], jnp.ones_like(input_scale[:, :1])], axis=1)
        return self.encode(tokens, key=key, last_only=True,
                           users=_per_position(users, tokens), input_scale=input_scale)[:, 0]


def _per_position(users: jax.Array | None, tokens: jax.Array) -> jax.Array | None:
    """users int32[B] -> [B, L], each row's user at each of its positions (None stays None)."""
    return None if users is None else jnp.broadcast_to(users[:, None], tokens.shape)


# models/__init__.py adds "encdec" and "hstu" (their modules import this one).
MODELS = {"sasrec": SASRec, "bert4rec": BERT4Rec, "transformer_recommender": TransformerRecommender}
# The models whose training and user vectors read `users` (model.user_features).
READS_USERS = ("sasrec", "bert4rec", "transformer_recommender", "hstu")


def build_model(model_cfg, num_items: int, *, dtype=jnp.float32, rngs: nnx.Rngs,
                row_multiple: int = 1, item_features: ItemFeatureArrays | None = None,
                user_features: UserFeatureArrays | None = None):
    """The model named by model_cfg.name; `dtype` is the compute dtype, parameters stay float32.

    row_multiple: the item tables' rows are padded to a multiple of it (the item shards).
    item_features: what the item tower reads (model.item_tower); None without one.
    user_features: what the user tower reads (model.user_features); None without one.

    model.ensemble_size > 1: an Ensemble of that many members, drawn one after another from
    `rngs` (so each starts from its own initialisation).
    """
    if model_cfg.name not in MODELS:
        raise ValueError(f"config.model.name={model_cfg.name!r}: expected one of {tuple(MODELS)}")
    make = MODELS[model_cfg.name]
    kwargs = dict(dtype=dtype, rngs=rngs, row_multiple=row_multiple, item_features=item_features)
    if user_features is not None:  # (models that do not read users have no such argument)
        if model_cfg.name not in READS_USERS:
            raise ValueError(f"config.model.user_features: model.name={model_cfg.name!r} does not "
                             f"read user features; expected one of {READS_USERS}")
        kwargs["user_features"] = user_features
    if model_cfg.ensemble_size > 1:
        return Ensemble([make(model_cfg, num_items, **kwargs)
                         for _ in range(model_cfg.ensemble_size)])
    return make(model_cfg, num_items, **kwargs)


def training_window(model_cfg) -> int:
    """Items per training row the batcher must yield for the model named by model_cfg.name."""
    if model_cfg.name not in MODELS:
        raise ValueError(f"config.model.name={model_cfg.name!r}: expected one of {tuple(MODELS)}")
    return MODELS[model_cfg.name].training_window(model_cfg)
