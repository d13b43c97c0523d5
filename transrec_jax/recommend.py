"""Serve top-K recommendations from a trained workdir's best checkpoint.

  python -m transrec_jax.recommend --workdir=DIR --history=2858,1196,260 [--k=10]
  python -m transrec_jax.recommend --workdir=DIR --users=all --output=top10.parquet [--k=10]

Item ids are the dataset's original ids; the given history (or, for --users=all, each user's
whole sequence) is excluded from the recommendations. An encdec workdir generates the list
(greedy or beam search, config.model.beam_width; --k at most config.model.next_k) and its
scores are the log-probabilities of each list prefix.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
from absl import app, flags
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import ranking
from transrec_jax.checkpoint import Checkpoints
from transrec_jax.config import ConfigError
from transrec_jax.data import load
from transrec_jax.data.batching import gather_windows
from transrec_jax.data.errors import DataError
from transrec_jax.models import generate
from transrec_jax.train import init_state

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by transrec_jax.main.")
_HISTORY = flags.DEFINE_list("history", None, "Original item ids, oldest first.")
_USERS = flags.DEFINE_enum("users", None, ["all"], "Recommend for every user of the dataset.")
_OUTPUT = flags.DEFINE_string("output", None, "With --users=all: a .parquet or .csv file.")
_K = flags.DEFINE_integer("k", 10, "How many items to recommend.")
_BATCH = 256


class Recommender:
    """A trained model, its dataset's id maps, and a jitted top-K function."""

    def __init__(self, workdir: str):
        path = os.path.join(workdir, "config.json")
        if not os.path.exists(path):
            raise ConfigError(f"{path} not found: --workdir must be a directory written by transrec_jax.main")
        self.config = config_lib.recorded_config(path)
        self.dataset = load.load_dataset(self.config.dataset, self.config.seed, log=lambda *_: None)
        graphdef, _, state = init_state(self.config, self.dataset.num_items, 1, jax.random.key(0))
        checkpoints = Checkpoints(workdir, 1)
        restored, _ = checkpoints.restore(state, best=True)
        if restored is None:
            restored, _ = checkpoints.restore(state)
        checkpoints.close()
        if restored is None:
            raise ConfigError(f"{workdir} holds no checkpoint yet")
        self._graphdef, self._params = graphdef, restored["params"]
        self._index = {str(original): i for i, original in enumerate(self.dataset.item_ids) if i > 0}

    def item_index(self, original_ids) -> np.ndarray:
        unknown = [str(i) for i in original_ids if str(i) not in self._index]
        if unknown:
            raise DataError(f"--history: item ids {unknown[:5]} are not in dataset {self.config.dataset.name!r}")
        return np.array([self._index[str(i)] for i in original_ids], np.int32)

    def top_k(self, starts: np.ndarray, ends: np.ndarray, items: np.ndarray, k: int):
        """Top-k (original ids, scores) after each history items[start:end], excluding that history."""
        max_len = self.config.model.max_len
        generates = self.config.model.name == "encdec"
        if generates and k > self.config.model.next_k:
            raise ConfigError(f"--k={k} exceeds config.model.next_k={self.config.model.next_k}, "
                              "the longest list this encdec model generates")
        width = int((ends - starts).max(initial=1))
        out_items, out_scores = [], []
        for first in range(0, len(starts), _BATCH):
            s, e = starts[first : first + _BATCH], ends[first : first + _BATCH]
            pad = _BATCH - len(s)
            s, e = np.pad(s, (0, pad)), np.pad(e, (0, pad))
            history = gather_windows(items, s, e, max_len)
            exclude = gather_windows(items, s, e, width)
            if generates:
                top_items, top_scores = generate(self._graphdef, self._params, history, exclude,
                                                 k=k, beam_width=self.config.model.beam_width)
            else:
                top_items, top_scores = _top_k(self._graphdef, self._params, history, exclude,
                                               k=k, item_chunk=self.config.eval.item_chunk)
            out_items.append(np.asarray(top_items)[: _BATCH - pad])
            out_scores.append(np.asarray(top_scores)[: _BATCH - pad])
        return self.dataset.item_ids[np.concatenate(out_items)], np.concatenate(out_scores)



@functools.partial(jax.jit, static_argnames=("graphdef", "k", "item_chunk"))
def _top_k(graphdef, params, history, exclude, *, k, item_chunk):
    model = nnx.merge(graphdef, params)
    W, b = model.output_table()
    no_target = jnp.zeros(history.shape[0], jnp.int32)  # id 0 is never rankable
    _, top_items, top_scores = ranking.rank_full(model.user_representation(history), W, b,
                                                 no_target, exclude, kmax=k, item_chunk=item_chunk)
    return top_items, top_scores


def main(argv):
    del argv
    if (_HISTORY.value is None) == (_USERS.value is None):
        raise app.UsageError("give exactly one of --history and --users=all")
    try:
        rec = Recommender(_WORKDIR.value)
        if _HISTORY.value is not None:
            hist = rec.item_index(_HISTORY.value)
            items, scores = rec.top_k(np.array([0]), np.array([len(hist)]), hist, _K.value)
            print("rank\titem\tscore")
            for r, (item, score) in enumerate(zip(items[0], scores[0]), 1):
                print(f"{r}\t{item}\t{score:.4f}")
            return
        ds = rec.dataset
        items, scores = rec.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, _K.value)
        table = pa.table({
            "user": np.repeat(ds.user_ids, _K.value),
            "rank": np.tile(np.arange(1, _K.value + 1), ds.num_users),
            "item": items.ravel(),
            "score": scores.ravel(),
        })
        output = _OUTPUT.value or "recommendations.parquet"
        if output.endswith(".csv"):
            pa.csv.write_csv(table, output)
        elif output.endswith(".parquet"):
            pa.parquet.write_table(table, output)
        else:
            raise ConfigError(f"--output={output!r}: expected a .parquet or .csv file")
        print(f"wrote top-{_K.value} for {ds.num_users:,} users to {output}")
    except (ConfigError, DataError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
