"""Which history items led to a recommendation: each recommended item's score attributed to the
items of the history it was computed from (issue 29).

  occlusion  score(history) - score(history without item j), for every position j. An item
             is removed by dropping it and shifting the older items right by one, padding at
             the left: the result is a history the model could have been given (left padding
             only), the counterfactual "this user never had item j". Replacing it by padding
             instead would leave a hole mid-sequence, a pattern training never produced (and
             right-aligned positions would not move). Items older than the window stay out
             (BERT4Rec reads a full window's last max_len - 1 items: there, removing one
             brings the oldest into view, as that history would).
  grad       gradient x input: d score / d v_j . v_j summed over the model dimension, where
             v_j is the model's input vector of item j (`embed_items`: its id row, through the
             item tower when there is one). One forward and one backward pass per item explained.
  ig         integrated gradients: gradient x input averaged along the path that scales every
             v_j from 0 to 1 (16 points); its attributions add up to the score's change along
             that path. 16 times grad's cost.
  rollout    attention rollout (Abnar & Zuidema 2020): per layer, the head-averaged attention
             weights plus the identity (the residual), rows renormalised, multiplied from the
             first layer to the top; the row of the user vector's position (the last: SASRec's
             last item, BERT4Rec's appended [MASK]) gives each history item's share of it.
  attention  the last block's head-averaged attention row of that position, raw.

rollout and attention explain the user vector, not a score: attention does not depend on the
item scored, so every explained item of a user gets the same row, and it says what the
attention mixed, not what changed the score (attention weights alone are known not to be
faithful explanations). Both are shares, >= 0 and summing to 1 over the tokens the model
read (BERT4Rec's [MASK] keeps its own share, so there the history's sum to less); an
ensemble's are the mean of its members' rows. One full forward per batch of users, the
weights read through `encode(return_attention=True)` (off, and untraced, in training and
serving).

For occlusion, grad and ig, a positive attribution means the item raised the recommended
item's score. Scores are what
serving ranks by: user_representation . output row (+ bias), float32. Every method is one
jit-compiled call per batch of users (occlusion: one batched forward over the batch's
[users x positions] shortened histories), with users batched by history length so short
histories do not pay for the longest window (as the evaluator's eval.length_buckets does).

Models: SASRec, BERT4Rec, the Transformer recommender, HSTU, and ensembles of them (one run's
model.ensemble_size, or runs of different models that serving's `ensemble_of` sums: the
ensemble's occlusion, grad and ig attributions are the sums of its members', its rollout and
attention rows their mean, each member's [MASK] layout mapped first), with user
features or without (`users`: each history's user, as serving gives it). An HSTU with a
relative time bias also reads `times` (each history item's, aligned with history) and
`query_time` (the time its list is for; default the last item's), as serving gives them;
occlusion drops an item's time with the item, and gradients are taken with the times fixed.
encdec (its list is generated, its scores are list log-probabilities) is refused by
`unsupported` in one line, and so is HSTU for rollout and attention (its pointwise SiLU
attention is not a softmax: no shares to roll out).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax.config import ConfigError
from transrec_jax.data.batching import bucket_width, bucket_widths

METHODS = ("occlusion", "grad", "ig", "rollout", "attention")
_ATTENTION_METHODS = ("rollout", "attention")  # read the softmax weights: not for HSTU
_BATCH = 256  # users per call at most (ig: divided by its path points)
_GRAD_BATCH = 32  # users per grad call: its K vmapped backward passes hold K x the activations;
                  # a small batch keeps them in cache
_OCCLUSION_TOKENS = 1 << 18  # tokens per occlusion call (users x positions x width): bounds memory
_IG_STEPS = 16  # integrated gradients: points on the path
_ATTENTION_ENTRIES = 1 << 22  # rollout / attention: users x width x width per call (memory)
_WIDTH_BUCKETS = 4  # history widths compiled, at most (users batched by history length)
_PRECISION = jax.lax.Precision.HIGHEST  # as ranking.py scores: no TF32/bf16 rounding


@dataclasses.dataclass
class Explanation:
    history: np.ndarray  # int32[N, W] the window the model read (internal ids, right-aligned, 0 pad)
    items: np.ndarray  # int32[N, K] the explained (recommended) items, internal ids
    scores: np.ndarray  # float32[N, K] their scores after the whole history
    attributions: np.ndarray  # float32[N, K, W] per history position; 0 at padding

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions int[N, K, n], values float[N, K, n]): each item's n most positively
        attributed history positions, best first; -1 and NaN where the history is shorter."""
        real = (self.history != 0)[:, None, :]
        keyed = np.where(real, self.attributions, -np.inf)
        positions = np.argsort(-keyed, axis=-1, kind="stable")[..., :n]
        values = np.take_along_axis(keyed, positions, axis=-1)
        empty = ~np.isfinite(values)
        return np.where(empty, -1, positions), np.where(empty, np.nan, values)


def unsupported(model_cfg, method: str) -> str | None:
    """Why `method` cannot explain a model of this config (one line), or None: what
    `recommend` checks from a workdir's config.json before loading anything."""
    if method not in METHODS:
        return f"--explain={method!r}: expected one of {', '.join(METHODS)}"
    return _unsupported_model(model_cfg.name == "encdec",
                              method in _ATTENTION_METHODS and model_cfg.name == "hstu", method)


def _unsupported_model(generates: bool, pointwise: bool = False, method: str = "") -> str | None:
    if generates:
        return ("--explain: this run's encdec generates its list (scores are list "
                "log-probabilities, not user vector . item row): explanations need sasrec, "
                "bert4rec, transformer_recommender or hstu")
    if pointwise:
        return (f"--explain={method}: HSTU's attention is a pointwise SiLU, not a softmax (its "
                "rows are no shares of the history to roll out): use occlusion, grad or ig")
    return None


def explain(model: nnx.Module, history, items, method: str, users=None, times=None,
            query_time=None) -> Explanation:
    """`method`'s Explanation of `items` int[N, K] after `history` int[N, W] (W <= max_len)."""
    if method not in METHODS:
        raise ConfigError(unsupported(None, method))
    return {"occlusion": occlusion, "grad": grad_input, "ig": integrated_gradients,
            "rollout": rollout, "attention": last_attention}[method](model, history, items, users,
                                                                      times, query_time)


def occlusion(model: nnx.Module, history, items, users=None, times=None,
              query_time=None) -> Explanation:
    """score(history) - score(history without position j) for each position j (module docstring).

    history: int[N, W] internal item ids, right-aligned and 0-padded (W <= model.max_len);
    items: int[N, K] the items to explain (e.g. the top-K recommended); users: int[N] each
    history's dense user index, which a model with user features (model.user_features) reads;
    None: every history is an unknown user's. times: int[N, W] seconds of each history item
    and query_time: int[N] the time each list is for (None: the last item's), which a model
    with a time bias (model.time_buckets) reads.
    """
    return _batched(_occlusion_kernel, model, history, items, users,
                    lambda width: max(1, min(_BATCH, _OCCLUSION_TOKENS // (width * width))),
                    times=times, query_time=query_time)


def grad_input(model: nnx.Module, history, items, users=None, times=None,
               query_time=None) -> Explanation:
    """Gradient x input on the model's input item vectors (module docstring); arguments as
    `occlusion`'s."""
    return _batched(_grad_kernel, model, history, items, users, lambda width: _GRAD_BATCH,
                    times=times, query_time=query_time)


def integrated_gradients(model: nnx.Module, history, items, users=None, times=None,
                         query_time=None, steps: int = _IG_STEPS) -> Explanation:
    """Gradient x input averaged along the path from all input item vectors at 0 (positions
    alone) to the history (midpoint rule, `steps` points): per history, the attributions sum
    to about score(history) - score(vectors at 0), which the plain gradient does not promise.
    Costs `steps` gradients."""
    return _batched(functools.partial(_grad_kernel, steps=steps), model, history, items, users,
                    lambda width: max(1, _BATCH // steps), times=times, query_time=query_time)


def rollout(model: nnx.Module, history, items, users=None, times=None,
            query_time=None) -> Explanation:
    """Attention rollout's share of each history item in the user vector (module docstring),
    the same row for every item of `items`; arguments as `occlusion`'s (a softmax model reads
    no times)."""
    return _batched(functools.partial(_attention_kernel, rolled=True), model, history, items,
                    users, _attention_users, method="rollout", times=times, query_time=query_time)


def last_attention(model: nnx.Module, history, items, users=None, times=None,
                   query_time=None) -> Explanation:
    """The last block's head-averaged attention of the user vector's position over the
    history, the same row for every item of `items`; arguments as `rollout`'s."""
    return _batched(functools.partial(_attention_kernel, rolled=False), model, history, items,
                    users, _attention_users, method="attention", times=times,
                    query_time=query_time)


def _attention_users(width: int) -> int:
    return max(1, min(_BATCH, _ATTENTION_ENTRIES // (width * width)))


def _check_model(model: nnx.Module, method: str = "") -> None:
    members = _members(model)  # (an ensemble of runs may mix models: every member must qualify)
    reason = _unsupported_model(
        any(type(m).__name__ == "EncoderDecoder" for m in members),
        method in _ATTENTION_METHODS and not all(getattr(m, "softmax_attention", True) for m in members),
        method)
    if reason:
        raise ConfigError(reason)


def _reads_times(model) -> bool:
    return any(getattr(layer, "time_bias", None) is not None for layer in _members(model)[0].layers)


def _members(model) -> list:
    return list(model.members) if hasattr(model, "members") else [model]


def _batched(kernel, model, history, items, users, users_per_call, method: str = "",
             times=None, query_time=None) -> Explanation:
    """Run `kernel` over users sorted by history length, each group at its bucket width,
    padded to a fixed number of users per call (few compiled shapes)."""
    _check_model(model, method)
    if _reads_times(model) != (times is not None) or (times is None and query_time is not None):
        raise ConfigError("this HSTU has a relative time bias: pass times (and query_time)"
                          if _reads_times(model) else "times given to a model without a time bias")
    history = np.asarray(history, np.int32)
    items = np.asarray(items, np.int32)
    if history.ndim != 2 or items.ndim != 2 or len(history) != len(items):
        raise ValueError(f"expected history [N, W] and items [N, K], got {history.shape}, {items.shape}")
    n, full = history.shape
    if full > _max_len(model):
        raise ValueError(f"history width {full} > config.model.max_len={_max_len(model)}")
    reads_users = getattr(_members(model)[0], "user_tower", None) is not None
    if times is not None:
        times = np.asarray(times, np.int32)
        query_time = times[:, -1] if query_time is None else np.asarray(query_time, np.int32)
        if times.shape != history.shape or query_time.shape != (n,):
            raise ValueError(f"expected times {history.shape} and query_time ({n},), got "
                             f"{times.shape}, {query_time.shape}")
    # (user numbers as the models read them: dense index + 1, 0 the unknown user)
    numbers = np.zeros(n, np.int32) if users is None else np.asarray(users, np.int32) + 1
    graphdef, params = nnx.split(model)
    scores = np.zeros(items.shape, np.float32)
    attributions = np.zeros((n, items.shape[1], full), np.float32)
    lengths = (history != 0).sum(axis=1)
    widths = bucket_widths(full, _WIDTH_BUCKETS)
    user_width = np.array([bucket_width(widths, int(m)) for m in lengths], np.int64)
    for width in np.unique(user_width):
        group = np.flatnonzero(user_width == width)
        size = users_per_call(int(width))
        for first in range(0, len(group), size):
            rows = group[first : first + size]
            pad = size - len(rows)
            h = np.pad(history[rows][:, full - width :], ((0, pad), (0, 0)))
            it = np.pad(items[rows], ((0, pad), (0, 0)), constant_values=1)
            who = {"users": jnp.asarray(np.pad(numbers[rows], (0, pad)))} if reads_users else {}
            if times is not None:
                who["times"] = jnp.asarray(np.pad(times[rows][:, full - width :], ((0, pad), (0, 0))))
                who["query_time"] = jnp.asarray(np.pad(query_time[rows], (0, pad)))
            s, a = kernel(graphdef, params, jnp.asarray(h), jnp.asarray(it), who)
            scores[rows] = np.asarray(s)[: len(rows)]
            attributions[rows, :, full - width :] = np.asarray(a)[: len(rows)]
    return Explanation(history, items, scores, attributions)


def _max_len(model) -> int:
    return _members(model)[0].max_len


def item_scores(user, table, items):
    """float32[B, K]: user [B, D] against the output rows of items [B, K] (+ bias)."""
    weight, bias = table
    rows = weight.astype(jnp.float32)[items]
    scores = jnp.einsum("bd,bkd->bk", user.astype(jnp.float32), rows, precision=_PRECISION)
    return scores if bias is None else scores + bias.astype(jnp.float32)[items]


@functools.partial(jax.jit, static_argnames="graphdef")
def _occlusion_kernel(graphdef, params, history, items, who):
    """(scores [B, K], attributions [B, K, L]): one forward over the [B·L, L] histories with
    one position dropped each (older items shifted right, their times with them); who: what
    user_representation reads besides the history ({"users": [B]}, {"times": [B, L],
    "query_time": [B]}, both or neither)."""
    model = nnx.merge(graphdef, params)
    batch, length = history.shape
    table = model.output_table()
    base = item_scores(model.user_representation(history, **who), table, items)
    i = jnp.arange(length)
    source = jnp.where(i[None, :] <= i[:, None], i[None, :] - 1, i[None, :])  # [dropped j, slot i]

    def occlude(rows):  # [B, L] -> [B·L, L]
        return jnp.where(source >= 0, rows[:, jnp.maximum(source, 0)], 0).reshape(batch * length, length)

    user = model.user_representation(
        occlude(history), **{k: occlude(v) if k == "times" else jnp.repeat(v, length, axis=0)
                             for k, v in who.items()})
    dropped = item_scores(user, table, jnp.repeat(items, length, axis=0)).reshape(batch, length, -1)
    attributions = jnp.swapaxes(base[:, None, :] - dropped, 1, 2)
    return base, jnp.where(history[:, None, :] != 0, attributions, 0.0)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"))
def _grad_kernel(graphdef, params, history, items, who, *, steps: int = 0):
    """(scores [B, K], attributions [B, K, L]).

    Each history item's input vector is multiplied by a scale s_j (`input_scale` of
    user_representation; an ensemble's members each), so d score / d s_j at s = 1 is gradient x
    input (summed over members and D). steps > 0: integrated gradients, that derivative averaged
    at s = (i + 1/2) / steps, i < steps (the midpoint rule from s = 0). A vmapped backward pass
    per explained item. who: as `_occlusion_kernel`'s (the times stay as they are).
    """
    model = nnx.merge(graphdef, params)
    table = model.output_table()
    rows = jnp.swapaxes(table[0][items], 0, 1)  # [K, B, D]: d score_k / d user

    def derivative(level):
        scale = jnp.full(history.shape, level, jnp.float32)
        user, backward = jax.vjp(lambda s: model.user_representation(history, input_scale=s, **who), scale)
        (per_item,) = jax.vmap(backward)(rows.astype(user.dtype))  # [K, B, L]
        return user, per_item

    user, per_item = derivative(1.0)
    if steps:
        levels = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
        per_item = jax.lax.map(lambda level: derivative(level)[1], levels).mean(0)
    per_item = jnp.swapaxes(per_item, 0, 1).astype(jnp.float32)  # [B, K, L]
    return item_scores(user, table, items), jnp.where(history[:, None, :] != 0, per_item, 0.0)


def attention_rollout(weights) -> jax.Array:
    """float32[B, L, L] from each layer's weights [B, H, L, L], first layer first (Abnar &
    Zuidema 2020): R = Â_top ... Â_1, Â = rows of (mean over heads + I) renormalised. Row i:
    the share of each input token in position i's top output; rows sum to 1 (a padding row,
    with no allowed key, is its own identity row)."""
    if not weights:
        raise ValueError("attention_rollout: no layers' weights to roll out")
    rolled = None
    for layer in weights:
        mixed = layer.astype(jnp.float32).mean(1) + jnp.eye(layer.shape[-1], dtype=jnp.float32)
        mixed = mixed / mixed.sum(-1, keepdims=True)
        rolled = mixed if rolled is None else jnp.matmul(mixed, rolled, precision=_PRECISION)
    return rolled


def rollout_row(weights, position: int = -1) -> jax.Array:
    """float32[B, L]: row `position` of attention_rollout(weights), as vector x matrix products
    from the top layer down (O(L^2) a layer where the whole product costs O(L^3))."""
    if not weights:
        raise ValueError("rollout_row: no layers' weights to roll out")
    row = None
    for layer in reversed(weights):
        mixed = layer.astype(jnp.float32).mean(1) + jnp.eye(layer.shape[-1], dtype=jnp.float32)
        mixed = mixed / mixed.sum(-1, keepdims=True)
        row = mixed[:, position] if row is None else jnp.einsum("bl,blm->bm", row, mixed,
                                                                 precision=_PRECISION)
    return row


@functools.partial(jax.jit, static_argnames=("graphdef", "rolled"))
def _attention_kernel(graphdef, params, history, items, who, *, rolled: bool):
    """(scores [B, K], attributions [B, K, L]): the user vector position's rollout (or last
    block attention) row, its members' mean, mapped back to history positions and repeated
    for each item. who: {"users": [B]} or {}."""
    model = nnx.merge(graphdef, params)
    scores = item_scores(model.user_representation(history, **who), model.output_table(), items)
    length = history.shape[1]
    rows = []
    for member in _members(model):
        weights = member.user_attention(history, **who)
        if not weights:  # no layers: the user vector is its own position's input
            row = jax.nn.one_hot(jnp.full(history.shape[:1], length - 1), length)
        elif rolled:
            row = rollout_row(weights)
        else:
            row = weights[-1].astype(jnp.float32).mean(1)[:, -1]
        if member.has_mask_token:  # token t is history t + 1; [MASK]'s own share dropped
            row = jnp.pad(row[:, :-1], ((0, 0), (1, 0)))
        rows.append(row)  # [B, L] over the history positions
    row = jnp.where(history != 0, sum(rows) / len(rows), 0.0)
    return scores, jnp.broadcast_to(row[:, None, :], (*items.shape, length))


def heatmap(attributions: np.ndarray, history_labels: list[str], item_labels: list[str],
            path: str, title: str = "") -> None:
    """A PNG of attributions [K, H] (recommended items x history items) as history rows x
    recommended columns, diverging around 0 (red: the item raised the score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(attributions, np.float64).T  # [H, K]
    bound = float(np.nanmax(np.abs(values))) if values.size else 1.0
    bound = bound if bound > 0 else 1.0
    height = 1.5 + 0.28 * len(history_labels)
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * len(item_labels) + 0.06 * max(map(len, history_labels), default=0),
                                    height))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(item_labels)), [_short(s) for s in item_labels], rotation=60,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(history_labels)), [_short(s) for s in history_labels], fontsize=7)
    ax.set_xlabel("recommended (best first)")
    ax.set_ylabel("history (oldest at the top)")
    if title:
        ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, label="attribution", shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
