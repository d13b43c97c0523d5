"""Evaluation of one split part: jit-compiled full ranking (default) or the legacy sampled mode.

Full ranking scores every item for each user, masks padding and (by default) the items
already in the user's history, and reports HR/NDCG/MRR/Recall@K and catalog coverage@K, and
on request the same by slice: the target's training popularity, the history's length and,
when the split withholds items from training (cold_items), whether the target is one. Two
baselines go through the same protocol: the most popular items (`popularity`) and, given item
features, the items whose content is nearest the user's recent items' (`content_knn`).
`sampled100` ranks the target among 100 sampled negatives instead: it exists only to compare
with pre-2020 papers and every metric it produces carries the `sampled100/` prefix.
Batches have one fixed shape (padded, with a `valid` mask), so each evaluator compiles once
and its results do not depend on the evaluation batch size.

`NextKEvaluator` scores a list of K items per user against the user's K held-out items (a
`next_k` split) with set Recall@K / NDCG@K: the encoder-decoder's generated list, or any
model's full-ranking top-K, under the same history masking.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax import metrics, ranking, sharding
from transrec_jax.data.batching import EvalBatcher
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.side_info import RESERVED
from transrec_jax.data.splits import Split, training_view
from transrec_jax.models import recommenders
from transrec_jax.models.item_tower import ItemFeatureArrays

SAMPLED_NEGATIVES = 100
# The history items whose content makes the content baseline's user profile (Evaluator.content_knn).
CONTENT_KNN_RECENT = 10


def protocol(config) -> dict:
    """The evaluation protocol in words, written next to every reported figure."""
    e, d = config.eval, config.dataset
    return {
        "split": d.split,
        **({"cold_item_fraction": d.cold_item_fraction} if d.split == "cold_items" else {}),
        **({"max_history": d.max_history} if d.max_history else {}),
        **({"validation_item": "trained on; the final state is tested"} if d.train_on_val_item else {}),
        "ranking": "full (all items)" if e.mode == "full" else f"sampled: target + {SAMPLED_NEGATIVES} uniform negatives (pre-2020 protocol)",
        "history_masked": bool(e.mask_history),
        "ties": "pessimistic",
        "loss": config.loss.name,
        "negatives": config.loss.num_negatives if config.loss.name != "ce" else None,
    }


def train_item_counts(dataset: SequenceDataset, split: Split) -> np.ndarray:
    """Training-part count of every item id (index 0 = padding, always 0; withheld items 0)."""
    train, train_end = training_view(dataset, split)
    pos = np.arange(len(train.items)) - np.repeat(train.offsets[:-1], train.lengths)
    in_train = pos < np.repeat(train_end, train.lengths)
    return np.bincount(train.items[in_train], minlength=dataset.num_items + 1)


class Evaluator:
    """Evaluates params (the model's nnx.State) on one part ('val' or 'test') of a split."""

    def __init__(self, config, dataset: SequenceDataset, split: Split, part: str, graphdef, mesh):
        e = config.eval
        self.config, self.part, self.num_items, self.mesh = config, part, dataset.num_items, mesh
        self.ks, self.kmax = tuple(e.ks), max(e.ks)
        self.batcher = EvalBatcher(dataset, split, part, config.model.max_len, e.batch_size,
                                   mask_history=e.mask_history, length_buckets=e.length_buckets,
                                   with_times=config.model.time_buckets > 0)
        self._data_sharding = sharding.batch_sharding(mesh)
        self._negatives, self._ranks = None, None
        self._target_withheld = (None if split.withheld is None
                                 else np.isin(self.batcher.targets(), split.withheld))
        if e.mode == "sampled100":
            rng = np.random.default_rng([config.seed, 100, part == "test"])
            starts, ends = self.batcher.histories()
            lengths = ends - starts
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            items = dataset.items[np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])]
            self._negatives = ranking.sample_eval_negatives(
                (offsets, items), self.batcher.targets(), dataset.num_items, SAMPLED_NEGATIVES, rng
            )
        self._step = _jitted_eval_step(graphdef, self.ks, self.kmax, e.item_chunk,
                                       self._negatives is not None, mesh,
                                       config.model.user_features != "off")

    def __call__(self, params) -> dict[str, float]:
        return self._run(lambda batch: self._step(params, batch))

    def slices(self, item_counts: np.ndarray) -> dict[str, dict]:
        """The last call's metrics by slice: {'target_popularity': {head|torso|tail|cold: ...},
        'history_length': {'1'|'2-4'|...: ...}}, each with its number of users
        (metrics.slice_metrics; popularity by `item_counts`, the training counts), and when
        the split withholds items 'target_withheld': {withheld|warm: ...}. `cold` holds every
        target training never saw; `withheld` exactly the split's withheld ones."""
        if self._ranks is None:
            raise ValueError("slices() reads the ranks of a full-ranking evaluation: call it first")
        starts, ends = self.batcher.histories()
        out = {
            "target_popularity": metrics.slice_metrics(
                self._ranks, metrics.popularity_groups(self.batcher.targets(), item_counts), self.ks),
            "history_length": metrics.slice_metrics(
                self._ranks, metrics.length_groups(ends - starts), self.ks),
        }
        if self._target_withheld is not None:
            out["target_withheld"] = metrics.slice_metrics(
                self._ranks, np.where(self._target_withheld, "withheld", "warm"), self.ks)
        return out

    def popularity(self, item_counts: np.ndarray) -> dict[str, float]:
        """The most-popular baseline under the same protocol (history masking included).

        Scored config.eval.item_chunk items at a time, as the model is: unchunked, a
        1M-item catalog would take [batch, num_items] scores and masks at once.
        """
        scores = ranking.popularity_scores(item_counts)
        item_chunk, sampled = self.config.eval.item_chunk, self._negatives is not None

        # Jitted as the model's step is: on global arrays of several processes an eager op
        # would run out of step between the processes.
        @functools.partial(jax.jit, out_shardings=sharding.replicated(self.mesh))
        def step(batch):
            if sampled:  # the counts as item biases of zero vectors, among the same negatives
                batch_size = batch["target"].shape[0]
                ranks = ranking.rank_sampled(jnp.zeros((batch_size, 1)), jnp.zeros((len(scores), 1)),
                                             scores, batch["target"], batch["negatives"])
                topk = jnp.zeros((batch_size, self.kmax), jnp.int32)
            else:
                exclude = batch.get("exclude", jnp.zeros((batch["target"].shape[0], 1), jnp.int32))
                ranks, topk, _ = ranking.rank_popularity(scores, batch["target"], exclude,
                                                         kmax=self.kmax, item_chunk=item_chunk,
                                                         mesh=self.mesh)
            per_user = metrics.metrics_from_ranks(ranks, batch["valid"], self.ks)
            return {k: v.sum() for k, v in per_user.items()}, topk, ranks

        return self._run(step)

    def content_knn(self, features: ItemFeatureArrays,
                    recent: int = CONTENT_KNN_RECENT) -> dict[str, float]:
        """The content-only nearest-neighbour baseline under the same protocol: what item
        content alone, with no training, ranks, e.g. for items training never saw.

        Every item scores the cosine between its content vector (`content_vectors`) and the
        user's profile, the mean of the content vectors of the user's last `recent` history
        items (of the model's window, `history`). The default 10: recent items follow the
        user's current interest, which the whole history's mean blurs, and ten are enough that
        one odd item, common in real logs, does not decide the profile.
        Items of the same content tie, and ties rank pessimistically: a target ranks behind
        every other item of its content (coarse content, e.g. genres alone, thus scores low).
        A profile without content (no recent item has features) scores every item 0: its
        target ranks last.
        """
        table = content_vectors(features)
        if len(table) != self.num_items + 1:
            raise ValueError(f"features: {len(table)} rows; expected num_items + 1 = "
                             f"{self.num_items + 1}")
        table = np.pad(table, ((0, -len(table) % sharding.model_size(self.mesh)), (0, 0)))
        # A global array (an argument, not a constant of the program): every process holds it all.
        table = jax.make_array_from_process_local_data(sharding.replicated(self.mesh), table,
                                                       table.shape)
        item_chunk, sampled = self.config.eval.item_chunk, self._negatives is not None

        # Jitted as the model's step is (see `popularity`).
        @functools.partial(jax.jit, out_shardings=sharding.replicated(self.mesh))
        def step(table, batch):
            profile = table[batch["history"][:, -recent:]].sum(axis=1)  # padding: a zero row
            norm = jnp.linalg.norm(profile, axis=1, keepdims=True)
            profile = profile / jnp.where(norm > 0, norm, 1.0)  # the mean's direction
            if sampled:
                ranks = ranking.rank_sampled(profile, table, None, batch["target"],
                                             batch["negatives"])
                topk = jnp.zeros((ranks.shape[0], self.kmax), jnp.int32)
            else:
                exclude = batch.get("exclude", jnp.zeros((batch["target"].shape[0], 1), jnp.int32))
                ranks, topk, _ = ranking.rank_full(profile, table, None, batch["target"], exclude,
                                                   kmax=self.kmax, item_chunk=item_chunk,
                                                   num_items=self.num_items, mesh=self.mesh)
            per_user = metrics.metrics_from_ranks(ranks, batch["valid"], self.ks)
            return {k: v.sum() for k, v in per_user.items()}, topk, ranks

        return self._run(lambda batch: step(table, batch))

    def _run(self, step) -> dict[str, float]:
        # The batches' outputs stay on device until the pass ends and are summed on the host:
        # adding them on device would be eager ops on global arrays between a cluster's
        # processes (see `popularity`); a two-process CI run was once seen hung in such an add.
        batch_sums, topk, valid, ranks = [], [], [], []
        for i, batch in enumerate(self.batcher):
            if self._negatives is not None:
                n = self.batcher.batch_size
                neg = np.zeros((n, SAMPLED_NEGATIVES), np.int32)
                part = self._negatives[self.batcher.order[i * n : (i + 1) * n]]
                neg[: len(part)] = part
                batch["negatives"] = neg
            valid.append(batch["valid"])
            one_sums, one_topk, one_ranks = step(sharding.global_batch(batch, self._data_sharding))
            batch_sums.append(one_sums)
            topk.append(one_topk)
            ranks.append(one_ranks)
        result = metrics.summarize(_total(jax.device_get(batch_sums)), self.batcher.num_users)
        # Each evaluated user's rank, in batcher.users order (batches follow batcher.order).
        self._ranks = np.empty(self.batcher.num_users, np.int32)
        self._ranks[self.batcher.order] = np.concatenate(jax.device_get(ranks))[np.concatenate(valid)]
        if self._negatives is None:
            result.update(metrics.coverage_at_k(
                np.concatenate(jax.device_get(topk)), np.concatenate(valid),
                self.num_items, self.ks,
            ))
        else:
            result = {f"sampled100/{k}": v for k, v in result.items()}
            self._ranks = None  # ranks among 100 sampled items: no slices of those
        return result


def _total(batch_sums: list[dict]) -> dict[str, float]:
    """Each metric's sum over the batches' sums (host values), in float64."""
    return {k: float(np.sum([s[k] for s in batch_sums], dtype=np.float64)) for k in batch_sums[0]}


def content_vectors(features: ItemFeatureArrays) -> np.ndarray:
    """float32[rows, D]: each item's content as one unit vector (zero for an item without any),
    for `Evaluator.content_knn`'s cosine.

    The concatenation, over the features, of a categorical feature's multi-hot over its
    vocabulary (<pad> and <unknown> left out: an unlisted item adds nothing) and each dense or
    numeric feature scaled to unit length, so that a vector's scale does not outweigh the other
    features (a standardised numeric feature keeps its sign only: above or below the mean).
    """
    parts = []
    for name in sorted(features.categorical):
        values = features.categorical[name]
        multi_hot = np.zeros((len(values), features.vocab_sizes[name] - len(RESERVED)), np.float32)
        rows, columns = np.nonzero(values >= len(RESERVED))
        multi_hot[rows, values[rows, columns] - len(RESERVED)] = 1.0
        parts.append(multi_hot)
    parts += [_unit_rows(features.dense[name]) for name in sorted(features.dense)]
    return _unit_rows(np.concatenate(parts, axis=1))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (in float64, returned as float32); zero rows stay zero."""
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _times(batch) -> dict:
    """user_representation's times, from a batch that has them (model.time_buckets > 0): the
    history's and, as the authors' evaluation does (models/hstu.py), the target's."""
    if "history_times" not in batch:
        return {}
    return {"times": batch["history_times"], "query_time": batch["target_time"]}


def _users(batch, on: bool) -> dict:
    """user_representation's users, for a model with user features (model.user_features):
    each row's own user, numbered as the user tower numbers them (dense index + 1; padding
    rows 0, the unknown user)."""
    return {"users": jnp.where(batch["valid"], batch["user"] + 1, 0)} if on else {}


@functools.lru_cache(maxsize=8)
def _jitted_eval_step(graphdef, ks, kmax, item_chunk, sampled, mesh, users):
    """One jitted `_eval_step` per setting, shared by the Evaluators of a run: the test pass
    runs the programs the validation passes compiled (EvalBatcher gives both the same shapes)."""
    return jax.jit(functools.partial(_eval_step, graphdef=graphdef, ks=ks, kmax=kmax,
                                     item_chunk=item_chunk, sampled=sampled, mesh=mesh, users=users),
                   out_shardings=sharding.replicated(mesh))


def _eval_step(params, batch, *, graphdef, ks, kmax, item_chunk, sampled, mesh, users=False):
    model = nnx.merge(graphdef, params)
    user_repr = model.user_representation(batch["history"], **_times(batch), **_users(batch, users))
    W, b = model.output_table()
    if sampled:
        ranks = ranking.rank_sampled(user_repr, W, b, batch["target"], batch["negatives"])
        topk = jnp.zeros((ranks.shape[0], kmax), jnp.int32)
    else:
        exclude = batch.get("exclude", jnp.zeros((batch["target"].shape[0], 1), jnp.int32))
        ranks, topk, _ = ranking.rank_full(user_repr, W, b, batch["target"], exclude, kmax=kmax,
                                           item_chunk=item_chunk, num_items=model.num_items,
                                           mesh=mesh)
    per_user = metrics.metrics_from_ranks(ranks, batch["valid"], ks)
    return {k: v.sum() for k, v in per_user.items()}, topk, ranks


NEXT_K_METHODS = ("generate", "top_k")


class NextKEvaluator:
    """Set Recall@K / NDCG@K of each user's K-item list against their K held-out items.

    method 'generate' (the default for models that generate, i.e. encdec) decodes the list
    with `beam_width` (default config.model.beam_width); 'top_k' takes the K best items of
    the full ranking from `user_representation` (any model). K = split.num_targets.
    """

    def __init__(self, config, dataset: SequenceDataset, split: Split, part: str, graphdef, mesh,
                 *, method: str | None = None, beam_width: int | None = None):
        e = config.eval
        self.k = split.num_targets
        generates = hasattr(recommenders.MODELS[config.model.name], "generate")
        self.method = method or ("generate" if generates else "top_k")
        if self.method not in NEXT_K_METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {NEXT_K_METHODS}")
        if self.method == "generate" and not generates:
            raise ValueError(f"config.model.name={config.model.name!r} cannot generate: use method='top_k'")
        self.batcher = EvalBatcher(dataset, split, part, config.model.max_len, e.batch_size,
                                   mask_history=e.mask_history, next_k=self.k,
                                   length_buckets=e.length_buckets,
                                   with_times=config.model.time_buckets > 0)
        self._data_sharding = sharding.batch_sharding(mesh)
        self._step = jax.jit(
            functools.partial(_next_k_step, graphdef=graphdef, k=self.k, method=self.method,
                              beam_width=beam_width or config.model.beam_width,
                              item_chunk=e.item_chunk, mesh=mesh,
                              users=config.model.user_features != "off"),
            out_shardings=sharding.replicated(mesh),
        )

    def __call__(self, params) -> dict[str, float]:
        batch_sums = jax.device_get([  # summed on the host, as in Evaluator._run
            self._step(params, sharding.global_batch(batch, self._data_sharding))
            for batch in self.batcher])
        return metrics.summarize(_total(batch_sums), self.batcher.num_users)


def _next_k_step(params, batch, *, graphdef, k, method, beam_width, item_chunk, mesh, users=False):
    model = nnx.merge(graphdef, params)
    exclude = batch.get("exclude", jnp.zeros((batch["target"].shape[0], 1), jnp.int32))
    if method == "generate":
        items, _ = model.generate(batch["history"], exclude, k=k, beam_width=beam_width)
    else:
        W, b = model.output_table()
        no_target = jnp.zeros_like(batch["target"])  # id 0 is never rankable: plain top-K
        user_repr = model.user_representation(batch["history"], **_times(batch),
                                              **_users(batch, users))
        _, items, _ = ranking.rank_full(user_repr, W, b, no_target, exclude, kmax=k,
                                        item_chunk=item_chunk, num_items=model.num_items,
                                        mesh=mesh)
    per_user = metrics.next_k_metrics(items, batch["targets"], batch["valid"], (k,))
    return {name: v.sum() for name, v in per_user.items()}
