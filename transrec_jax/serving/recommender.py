"""Top-K lists from a trained run: history in, the best unseen items out (jit-compiled)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax import ranking, sharding
from transrec_jax.config import ConfigError
from transrec_jax.data.batching import gather_windows, relative_times
from transrec_jax.data.catalog import build_catalog
from transrec_jax.models import generate
from transrec_jax.serving.run import load_ensemble, load_run

_BATCH = 256  # histories per compiled call: one shape, whatever the number of users


class Recommender:
    """A run's best model (or several runs' ensemble), its dataset and catalogue (the ids and
    titles people know)."""

    def __init__(self, workdir, mesh=None):
        """workdir: a run's directory, or a list of two or more whose best models rank as one,
        their scores summed (serving/run.py `ensemble_of`). mesh: rank over a (data, model)
        mesh, item-table rows split over `model` (sharding.make_mesh); None: one device."""
        self.run = (load_run(workdir, mesh=mesh) if isinstance(workdir, str)
                    else load_ensemble(list(workdir), mesh=mesh))
        self.config, self.dataset = self.run.config, self.run.dataset
        self.catalog = build_catalog(self.dataset.item_ids, self.config.dataset)
        # A model with a relative time bias (model.time_buckets) reads each item's time: these
        # are dataset.items' (the run trained, so the dataset has timestamps); else None.
        self.times = relative_times(self.dataset) if self.config.model.time_buckets else None

    def item_index(self, original_ids) -> np.ndarray:
        """Internal ids of original ones (`DataError` naming any the catalogue lacks)."""
        return self.catalog.index(original_ids)

    def top_k(self, starts: np.ndarray, ends: np.ndarray, items: np.ndarray, k: int,
              times: np.ndarray | None = None, users: np.ndarray | None = None,
              query_times: np.ndarray | None = None):
        """Top-k (internal ids, scores) after each history items[start:end], excluding that history.

        An encdec model generates its list (greedy or beam search); the others rank every item.
        times: int32 seconds aligned with items (`self.times` for dataset.items), which a model
        with a time bias needs. query_times: int32 seconds per history, the time its list is for,
        from which a `time_query="target"` model measures the history's gaps; None: the last
        history item's time (a `last_item` model reads none).
        users: each history's dense user index, which a model with user features
        (config.model.user_features) reads; None: every history is an unknown user's.
        """
        model_cfg = self.config.model
        generates = model_cfg.name == "encdec"
        if generates and k > model_cfg.next_k:
            raise ConfigError(f"k={k} exceeds config.model.next_k={model_cfg.next_k}, "
                              "the longest list this encdec model generates")
        if self.times is not None and times is None:
            raise ConfigError(f"config.model.time_buckets={model_cfg.time_buckets}: this model "
                              "needs the time of each history item")
        graphdef, params = self.run.graphdef, self.run.params
        width = int((ends - starts).max(initial=1))
        out_items, out_scores = [], []
        for first in range(0, len(starts), _BATCH):
            s, e = starts[first : first + _BATCH], ends[first : first + _BATCH]
            pad = _BATCH - len(s)
            s, e = np.pad(s, (0, pad)), np.pad(e, (0, pad))
            batch = {"history": gather_windows(items, s, e, model_cfg.max_len),
                     "exclude": gather_windows(items, s, e, width)}
            if self.times is not None:
                batch["times"] = gather_windows(times, s, e, model_cfg.max_len)
                batch["query_time"] = (gather_windows(times, s, e, 1)[:, 0] if query_times is None
                                       else np.pad(query_times[first : first + _BATCH], (0, pad)))
            if model_cfg.user_features != "off":  # user numbers: dense index + 1, 0 unknown
                batch["users"] = np.zeros(_BATCH, np.int32)
                if users is not None:
                    batch["users"][: _BATCH - pad] = users[first : first + _BATCH] + 1
            if self.run.mesh is not None:  # each process passes its rows of the global batch
                batch = sharding.global_batch(batch, sharding.batch_sharding(self.run.mesh))
            history, exclude = batch.pop("history"), batch.pop("exclude")
            if generates:
                top_items, top_scores = generate(graphdef, params, history, exclude,
                                                 k=k, beam_width=model_cfg.beam_width)
            else:
                top_items, top_scores = _top_k(graphdef, params, history, exclude, batch, k=k,
                                               item_chunk=self.config.eval.item_chunk,
                                               mesh=self.run.mesh)
            out_items.append(np.asarray(top_items)[: _BATCH - pad])
            out_scores.append(np.asarray(top_scores)[: _BATCH - pad])
        return np.concatenate(out_items), np.concatenate(out_scores)


@functools.partial(jax.jit, static_argnames=("graphdef", "k", "item_chunk", "mesh"))
def _top_k(graphdef, params, history, exclude, timed, *, k, item_chunk, mesh):
    """Top-k of every item (per item shard with a mesh: their top-k lists merged); timed: the
    user_representation times and query_time of a model with a time bias, and the users of a
    model with user features, else {}."""
    model = nnx.merge(graphdef, params)
    W, b = model.output_table()
    no_target = jnp.zeros(history.shape[0], jnp.int32)  # id 0 is never rankable
    user_repr = model.user_representation(history, **timed)
    _, top_items, top_scores = ranking.rank_full(user_repr, W, b, no_target, exclude, kmax=k,
                                                 item_chunk=item_chunk, num_items=model.num_items,
                                                 mesh=mesh)
    return top_items, top_scores
