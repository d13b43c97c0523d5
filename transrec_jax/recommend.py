"""Serve top-K recommendations from a trained workdir's best checkpoint.

  python -m transrec_jax.recommend --workdir=DIR --history=2571,1196,260 [--k=10]
  python -m transrec_jax.recommend --workdir=DIR --users=all --output=top10.parquet [--k=10]

Item ids are the dataset's original ids (MovieLens MovieIDs through config.dataset.item_map),
shown with titles where config.dataset.item_titles names a file; the given history (or, for
--users=all, each user's whole sequence) is excluded from the recommendations. An encdec
workdir generates the list (greedy or beam search, config.model.beam_width; --k at most
config.model.next_k) and its scores are the log-probabilities of each list prefix. An HSTU
with a relative time bias (config.model.time_buckets > 0) reads each item's time, which only the
dataset has: --users=all, not --history.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
from absl import flags

from transrec_jax import cli, sharding
from transrec_jax.serving import Recommender

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by transrec_jax.main.")
_HISTORY = flags.DEFINE_list("history", None, "Original item ids, oldest first.")
_USERS = flags.DEFINE_enum("users", None, ["all"], "Recommend for every user of the dataset.")
_OUTPUT = flags.DEFINE_string("output", "recommendations.parquet",
                              "With --users=all: a .parquet or .csv file.")
_K = flags.DEFINE_integer("k", 10, "How many items to recommend.")
_ITEM_SHARDS = flags.DEFINE_integer(
    "item_shards", 1, "Split the item table over this many devices (a divisor of the run's "
    "config.mesh.model); each ranks its rows and the top-K lists are merged.")
_OUTPUT_FORMATS = (".parquet", ".csv")


def main(argv):
    del argv
    _check_flags()
    mesh = None
    if _ITEM_SHARDS.value > 1:
        mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "model": _ITEM_SHARDS.value}))
    rec = Recommender(_WORKDIR.value, mesh)
    k, catalog = _K.value, rec.catalog
    if _HISTORY.value is not None:
        if rec.times is not None:
            raise cli.UsageError(
                f"--history: this run's HSTU has a relative time bias (config.model.time_buckets="
                f"{rec.config.model.time_buckets}) and --history's ids carry no times; "
                "use --users=all")
        history = rec.item_index(_HISTORY.value)
        _check_k(k, rec.dataset.num_items, np.array([len(np.unique(history))]))
        items, scores = rec.top_k(np.array([0]), np.array([len(history)]), history, k)
        titled = catalog.titles is not None
        print("rank\titem\tscore" + ("\ttitle" if titled else ""))
        for r, (item, score) in enumerate(zip(items[0], scores[0]), 1):
            print(f"{r}\t{catalog.ids[item]}\t{score:.4f}" + (f"\t{catalog.title(item)}" if titled else ""))
        return
    ds = rec.dataset
    _check_k(k, ds.num_items, _distinct_per_user(ds))
    items, scores = rec.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, k, rec.times)
    columns = {
        "user": np.repeat(ds.user_ids, k),
        "rank": np.tile(np.arange(1, k + 1), ds.num_users),
        "item": catalog.ids[items.ravel()],
        "score": scores.ravel(),
    }
    if catalog.titles is not None:
        columns["title"] = catalog.titles[items.ravel()]
    table, output = pa.table(columns), _OUTPUT.value
    if output.endswith(".csv"):
        pa.csv.write_csv(table, output)
    else:
        pa.parquet.write_table(table, output)
    print(f"wrote top-{k} for {ds.num_users:,} users to {output}")


def _check_flags() -> None:
    """Every argument, before the checkpoint loads."""
    if _WORKDIR.value is None:
        raise cli.UsageError("--workdir is required: a directory written by transrec_jax.main")
    shards, devices = _ITEM_SHARDS.value, jax.device_count()
    if shards < 1 or devices % shards:
        raise cli.UsageError(f"--item_shards={shards}: expected a divisor of the {devices} devices")
    if (_HISTORY.value is None) == (_USERS.value is None):
        raise cli.UsageError("give exactly one of --history=ID,ID,... and --users=all")
    if _K.value < 1:
        raise cli.UsageError(f"--k={_K.value}: expected a positive integer")
    if _HISTORY.value is not None:
        if not _HISTORY.value or any(not i.strip() for i in _HISTORY.value):
            raise cli.UsageError(f"--history={','.join(_HISTORY.value)!r}: expected item ids "
                                 "separated by commas, oldest first")
        if flags.FLAGS["output"].present:
            raise cli.UsageError("--output goes with --users=all; --history prints its list")
        return
    output = _OUTPUT.value
    if not output.endswith(_OUTPUT_FORMATS):
        raise cli.UsageError(f"--output={output!r}: expected a file ending in one of {_OUTPUT_FORMATS}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise cli.UsageError(f"--output={output!r}: {folder} is not a writable directory")


def _check_k(k: int, num_items: int, history_sizes: np.ndarray) -> None:
    """k must fit the items left once each history (distinct items) is excluded."""
    longest = int(history_sizes.max(initial=0))
    if k > num_items - longest:
        raise cli.UsageError(f"--k={k}: the catalogue has {num_items:,} items and the longest "
                             f"history excludes {longest:,}: expected --k <= {num_items - longest:,}")


def _distinct_per_user(ds) -> np.ndarray:
    """How many distinct items each user's sequence holds."""
    users = np.repeat(np.arange(ds.num_users), ds.lengths)
    pairs = np.unique(users.astype(np.int64) * (ds.num_items + 1) + ds.items)
    return np.bincount(pairs // (ds.num_items + 1), minlength=ds.num_users)


if __name__ == "__main__":
    cli.run(main)
