"""Serve top-K recommendations from a trained workdir's best checkpoint.

  python -m transrec_jax.recommend --workdir=DIR --history=2571,1196,260 [--k=10]
  python -m transrec_jax.recommend --workdir=DIR --users=all --output=top10.parquet [--k=10]
  python -m transrec_jax.recommend --workdir=DIR1 --workdir=DIR2 [...] --history=...

Repeated --workdir: their ensemble ranks, each item scored by the sum of the runs' scores
(serving/run.py `ensemble_of`: the runs share the catalogue, max_len and inputs; --explain
explains the ensemble's scores, --user_features reads one run's model and takes one --workdir).

Item ids are the dataset's original ids (MovieLens MovieIDs through config.dataset.item_map),
shown with titles where config.dataset.item_titles names a file; the given history (or, for
--users=all, each user's whole sequence) is excluded from the recommendations. An encdec
workdir generates the list (greedy or beam search, config.model.beam_width; --k at most
config.model.next_k) and its scores are the log-probabilities of each list prefix. An HSTU
with a relative time bias (config.model.time_buckets > 0) reads each item's time: --users=all
takes the dataset's, --history takes --history_times (unix seconds, one per id, oldest first).
A config.model.time_query="target" model measures the gaps from the time the list is for:
--query_time (default: the last history item's time); with --users=all, --query_time is one
time for every user's list (e.g. now: at or after every user's last item), else each user's
list is for their last item's time. A model with user features (config.model.user_features)
reads each user's: --users=all each dataset user's own, --history those of --user=ID, a user
of the dataset, or of --user_features='{"gender": "F", "age": "25-34"}', a new user's raw values
(default: a user without features).

  ... --explain=occlusion|grad|ig|rollout|attention [--explain_top=5]
      [--explain_plot=FILE.png [--explain_user=ID]]

adds, per recommended item, the --explain_top history items with the largest attributions
(transrec_jax/explain.py: what each method measures; for occlusion, grad and ig a negative
one lowered the score; rollout and attention are the user's shares of the attention, the same
for every recommended item): a
`because` column (id:attribution;...) in the printed table and the CSV, `because_items` /
`because_scores` list columns in Parquet. --explain_plot draws one user's attributions
(history x recommended) as a heatmap: the --history user, or with --users=all --explain_user
(default: the first user). Only a workdir's config.json is read before the flags are checked.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
from absl import flags

from transrec_jax import cli, explain, sharding
from transrec_jax import config as config_lib
from transrec_jax.data.batching import gather_windows
from transrec_jax.serving import Recommender, export, exported

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "A workdir written by transrec_jax.main; "
                                     "repeated: their ensemble (scores summed).")
_HISTORY = flags.DEFINE_list("history", None, "Original item ids, oldest first.")
_HISTORY_TIMES = flags.DEFINE_list(
    "history_times", None, "With --history, for a model with a time bias: each item's time in "
    "seconds (unix time), oldest first.")
_QUERY_TIME = flags.DEFINE_integer(
    "query_time", None, "For a config.model.time_query='target' model, with --history_times or "
    "--users=all: the unix time in seconds the lists are for (default: each history's last "
    "item's time).")
_USER = flags.DEFINE_string(
    "user", None, "With --history, for a model with user features: the dataset's user id whose "
    "features the model reads (default: a user without features).")
_USER_FEATURES = flags.DEFINE_string(
    "user_features", None, "With --history, for a model with user features, instead of --user: "
    "a new user's raw feature values as a JSON object, e.g. '{\"gender\": \"F\", \"age\": "
    "\"25-34\"}' (a categorical value as the feature's vocabulary has it, a number as the file "
    "has it; a feature left out reads as unknown).")
_USERS = flags.DEFINE_enum("users", None, ["all"], "Recommend for every user of the dataset.")
_OUTPUT = flags.DEFINE_string("output", "recommendations.parquet",
                              "With --users=all: a .parquet or .csv file.")
_K = flags.DEFINE_integer("k", 10, "How many items to recommend.")
_ITEM_SHARDS = flags.DEFINE_integer(
    "item_shards", 1, "Split the item table over this many devices (a divisor of the run's "
    "config.mesh.model); each ranks its rows and the top-K lists are merged.")
_EXPLAIN = flags.DEFINE_string("explain", None, f"Attribute each recommendation to the history: "
                               f"one of {', '.join(explain.METHODS)}.")
_EXPLAIN_TOP = flags.DEFINE_integer("explain_top", 5, "With --explain: history items shown per "
                                    "recommended item.")
_EXPLAIN_PLOT = flags.DEFINE_string("explain_plot", None, "With --explain: a .png heatmap of one "
                                    "user's attributions.")
_EXPLAIN_USER = flags.DEFINE_string("explain_user", None, "With --users=all and --explain_plot: the "
                                    "dataset's user id to plot (default: the first user).")
_OUTPUT_FORMATS = (".parquet", ".csv")
_PLOT_ROWS = 40  # a longer history plots only the items among some recommendation's top attributed


def main(argv):
    del argv
    _check_flags()
    mesh = None
    if _ITEM_SHARDS.value > 1:
        mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "model": _ITEM_SHARDS.value}))
    rec = Recommender(_WORKDIR.value[0] if len(_WORKDIR.value) == 1 else _WORKDIR.value, mesh)
    if _USER_FEATURES.value is not None:
        _as_new_user(rec, _user_feature_values())
    k, catalog = _K.value, rec.catalog
    if _HISTORY.value is not None:
        history = rec.item_index(_HISTORY.value)
        _check_k(k, rec.dataset.num_items, np.array([len(np.unique(history))]))
        starts, ends = np.array([0]), np.array([len(history)])
        times, query_time = history_times(_HISTORY_TIMES.value, _QUERY_TIME.value, rec.config.model,
                                          len(history))
        user = None if _USER.value is None else np.array([_user_index(rec.dataset, _USER.value, "user")])
        items, scores = rec.top_k(starts, ends, history, k, times, user, query_time)
        because = (_explain(rec, starts, ends, history, items, 0, user, times, query_time)
                   if _EXPLAIN.value else None)
        titled = catalog.titles is not None
        print("rank\titem\tscore" + ("\ttitle" if titled else "") + ("\tbecause" if because else ""))
        for r, (item, score) in enumerate(zip(items[0], scores[0]), 1):
            print(f"{r}\t{catalog.ids[item]}\t{score:.4f}" + (f"\t{catalog.title(item)}" if titled else "")
                  + (f"\t{_compact(*because[0][r - 1])}" if because else ""))
        return
    ds = rec.dataset
    _check_k(k, ds.num_items, _distinct_per_user(ds))
    plotted = 0 if _EXPLAIN_USER.value is None else _user_index(ds, _EXPLAIN_USER.value, "explain_user")
    users = np.arange(ds.num_users)  # (each sequence's user: a model with user features reads it)
    query_times = None if _QUERY_TIME.value is None else common_query_time(ds, _QUERY_TIME.value)
    items, scores = rec.top_k(ds.offsets[:-1], ds.offsets[1:], ds.items, k, rec.times, users,
                              query_times)
    columns = {
        "user": np.repeat(ds.user_ids, k),
        "rank": np.tile(np.arange(1, k + 1), ds.num_users),
        "item": catalog.ids[items.ravel()],
        "score": scores.ravel(),
    }
    if catalog.titles is not None:
        columns["title"] = catalog.titles[items.ravel()]
    output = _OUTPUT.value
    if _EXPLAIN.value:
        because = _explain(rec, ds.offsets[:-1], ds.offsets[1:], ds.items, items, plotted, users,
                           rec.times, query_times)
        pairs = [pair for user in because for pair in user]
        if output.endswith(".csv"):
            columns["because"] = [_compact(*pair) for pair in pairs]
        else:
            columns["because_items"] = [list(ids) for ids, _ in pairs]
            columns["because_scores"] = [[float(v) for v in values] for _, values in pairs]
    table = pa.table(columns)
    if output.endswith(".csv"):
        pa.csv.write_csv(table, output)
    else:
        pa.parquet.write_table(table, output)
    print(f"wrote top-{k} for {ds.num_users:,} users to {output}")


def _user_feature_values() -> dict:
    """--user_features as a dict (a one-line UsageError if it is not a JSON object)."""
    try:
        values = json.loads(_USER_FEATURES.value)
    except json.JSONDecodeError as e:
        raise cli.UsageError(f"--user_features={_USER_FEATURES.value!r}: not JSON ({e.msg} at "
                             f"character {e.pos})") from None
    if not isinstance(values, dict):
        raise cli.UsageError(f"--user_features={_USER_FEATURES.value!r}: expected a JSON object "
                             "of feature values")
    return values


def _as_new_user(rec, values: dict) -> None:
    """Make `rec`'s user without features (number 0, which a history without --user reads) the
    new user of `values`: its row of every user feature table becomes theirs."""
    features, tables = export.user_feature_tables(rec)
    try:
        rows = exported.encode_user(features, tables, values)
    except exported.RequestError as e:
        raise cli.UsageError(f"--user_features: {e}") from None
    tables = [np.concatenate([row[None], table[1:]]) for row, table in zip(rows, tables)]
    rec.run = dataclasses.replace(rec.run, params=export.with_user_tables(
        rec.run.graphdef, rec.run.params, tables))


def _explain(rec, starts, ends, items, top_items, plotted, users=None, times=None,
             query_times=None):
    """Per user, per recommended item: (public ids, attributions) of its --explain_top most
    positively attributed history items; draws --explain_plot for user `plotted`. times,
    query_times: as `Recommender.top_k`'s (a model with a time bias)."""
    max_len = rec.config.model.max_len
    history = gather_windows(items, starts, ends, max_len)
    window_times = None if times is None else gather_windows(times, starts, ends, max_len)
    result = explain.explain(rec.run.model(), history, top_items, _EXPLAIN.value, users,
                             window_times, query_times)
    positions, values = result.top(_EXPLAIN_TOP.value)
    ids = rec.catalog.ids
    because = [[(ids[history[u][p[p >= 0]]].tolist(), v[p >= 0]) for p, v in zip(positions[u], values[u])]
               for u in range(len(history))]
    if _EXPLAIN_PLOT.value:
        _plot(rec, result, plotted, positions[plotted])
    return because


def _plot(rec, result, user, top_positions):
    """The heatmap of one user: all their window's items if few, else those among some
    recommended item's top attributed, oldest first."""
    history = result.history[user]
    real = np.flatnonzero(history)
    rows = real if len(real) <= _PLOT_ROWS else np.unique(top_positions[top_positions >= 0])
    catalog = rec.catalog

    def label(item):
        title = catalog.title(item)
        return f"{catalog.ids[item]} {title}" if title else str(catalog.ids[item])

    name = "--history" if _HISTORY.value is not None else f"user {rec.dataset.user_ids[user]}"
    shown = "" if len(rows) == len(real) else f", {len(rows)} of {len(real)} history items shown"
    explain.heatmap(result.attributions[user][:, rows], [label(i) for i in history[rows]],
                    [label(i) for i in result.items[user]], _EXPLAIN_PLOT.value,
                    title=f"{_EXPLAIN.value} attributions, {name}{shown}")


def history_times(values, query_time, model_cfg, length: int):
    """--history_times (and --query_time) as the model reads them: (int32 seconds since the first
    history item, the query time [1] in the same seconds), or (None, None) for a model without a
    time bias; a cli.UsageError names the flag at fault. Only time differences reach the model."""
    if not model_cfg.time_buckets:
        if values is not None or query_time is not None:
            name = "history_times" if values is not None else "query_time"
            raise cli.UsageError(f"--{name}: this run's model has no time bias "
                                 "(config.model.time_buckets=0) and reads no times")
        return None, None
    if values is None:
        raise cli.UsageError(
            f"--history: this run's HSTU has a relative time bias (config.model.time_buckets="
            f"{model_cfg.time_buckets}): give --history_times, each item's time in seconds")
    try:
        seconds = np.array([int(v) for v in values], np.int64)
    except ValueError:
        raise cli.UsageError(f"--history_times={','.join(values)!r}: expected integer seconds "
                             "separated by commas") from None
    if len(seconds) != length:
        raise cli.UsageError(f"--history_times has {len(seconds)} times for --history's {length} "
                             "ids: expected one per id")
    if (np.diff(seconds) < 0).any():
        raise cli.UsageError(f"--history_times={','.join(values)!r}: expected times in order, "
                             "oldest first, as --history lists its ids")
    if query_time is not None and model_cfg.time_query != "target":
        raise cli.UsageError(f"--query_time: this run's HSTU measures gaps from each item's own "
                             f"time (config.model.time_query={model_cfg.time_query!r}) and reads "
                             "no query time")
    query = seconds[-1] if query_time is None else query_time
    if query < seconds[-1]:
        raise cli.UsageError(f"--query_time={query_time}: expected a time at or after the last "
                             f"history item's ({seconds[-1]})")
    if query - seconds[0] > np.iinfo(np.int32).max:
        raise cli.UsageError(f"--history_times, --query_time: they span {query - seconds[0]:,} s, "
                             "more than int32 seconds (68 years) hold")
    return (seconds - seconds[0]).astype(np.int32), np.array([query - seconds[0]], np.int32)


def common_query_time(ds, query_time: int) -> np.ndarray:
    """--query_time for every user of `ds` (--users=all), in the int32 seconds since the
    dataset's earliest interaction that `Recommender.times` counts; a cli.UsageError when it
    is before some user's last item or beyond int32 seconds."""
    last = ds.timestamps[ds.offsets[1:] - 1].astype(np.int64)
    if query_time < last.max():
        user = int(np.argmax(last))
        raise cli.UsageError(f"--query_time={query_time}: expected a time at or after every "
                             f"user's last item (user {ds.user_ids[user]!s}'s is {last[user]})")
    since = query_time - int(ds.timestamps.min())
    if since > np.iinfo(np.int32).max:
        raise cli.UsageError(f"--query_time={query_time}: {since:,} s after the dataset's first "
                             "interaction, more than int32 seconds (68 years) hold")
    return np.full(ds.num_users, since, np.int32)


def _compact(ids, values) -> str:
    """One cell: 'id:+0.123;id:+0.045' (history items, most positive first)."""
    return ";".join(f"{i}:{v:+.4g}" for i, v in zip(ids, values))


def _user_index(ds, user_id: str, flag: str) -> int:
    """The dense index of the dataset user `user_id` that --`flag` names."""
    matches = np.flatnonzero(np.asarray(ds.user_ids).astype(str) == user_id.strip())
    if not len(matches):
        raise cli.UsageError(f"--{flag}={user_id!r}: not a user of this dataset "
                             f"(e.g. {ds.user_ids[0]!s})")
    return int(matches[0])


def _check_explain_flags() -> None:
    """The --explain flags, and whether the run's model supports the method (from its
    config.json: nothing loads)."""
    method, plot = _EXPLAIN.value, _EXPLAIN_PLOT.value
    if method is None:
        for name in ("explain_plot", "explain_user"):
            if flags.FLAGS[name].present:
                raise cli.UsageError(f"--{name} goes with --explain=METHOD "
                                     f"({' or '.join(explain.METHODS)})")
        return
    if method not in explain.METHODS:
        raise cli.UsageError(explain.unsupported(None, method))
    if _EXPLAIN_TOP.value < 1:
        raise cli.UsageError(f"--explain_top={_EXPLAIN_TOP.value}: expected a positive integer")
    if _EXPLAIN_USER.value is not None and (plot is None or _USERS.value is None):
        raise cli.UsageError("--explain_user picks the plotted user of --users=all: it goes with "
                             "--users=all and --explain_plot")
    if plot is not None:
        if not plot.endswith(".png"):
            raise cli.UsageError(f"--explain_plot={plot!r}: expected a file ending in .png")
        folder = os.path.dirname(os.path.abspath(plot))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise cli.UsageError(f"--explain_plot={plot!r}: {folder} is not a writable directory")
    if _ITEM_SHARDS.value > 1:
        raise cli.UsageError("--explain runs on one device: leave --item_shards at 1")
    for workdir in _WORKDIR.value:  # (an ensemble's every member)
        recorded = os.path.join(workdir, "config.json")
        if os.path.exists(recorded):  # (else the workdir's own error comes when it loads)
            reason = explain.unsupported(config_lib.recorded_config(recorded).model, method)
            if reason:
                raise cli.UsageError(reason if len(_WORKDIR.value) == 1 else f"{workdir}: {reason}")


def _check_flags() -> None:
    """Every argument, before the checkpoint loads."""
    if _WORKDIR.value is None:
        raise cli.UsageError("--workdir is required: a directory written by transrec_jax.main")
    if len(_WORKDIR.value) > 1 and flags.FLAGS["user_features"].present:
        raise cli.UsageError(f"--user_features reads one run's model: give one --workdir, not "
                             f"an ensemble of {len(_WORKDIR.value)}")
    _check_explain_flags()
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
        if _QUERY_TIME.value is not None and _HISTORY_TIMES.value is None:
            raise cli.UsageError("--query_time goes with --history_times")
        if _USER.value is not None and _USER_FEATURES.value is not None:
            raise cli.UsageError("give at most one of --user (a dataset user) and --user_features "
                                 "(a new user's values)")
        if _USER_FEATURES.value is not None:
            _user_feature_values()
        recorded = os.path.join(_WORKDIR.value[0], "config.json")
        if os.path.exists(recorded):  # (else the workdir's own error comes when it loads)
            model_cfg = config_lib.recorded_config(recorded).model
            history_times(_HISTORY_TIMES.value, _QUERY_TIME.value, model_cfg, len(_HISTORY.value))
            for name in ("user", "user_features"):
                if flags.FLAGS[name].present and model_cfg.user_features == "off":
                    raise cli.UsageError(f"--{name}: this run's model has no user features "
                                         "(config.model.user_features='off') and reads no user")
        return
    for name in ("history_times", "user", "user_features"):
        if flags.FLAGS[name].present:
            raise cli.UsageError(f"--{name} goes with --history; --users=all reads the dataset's "
                                 "times and users")
    recorded = os.path.join(_WORKDIR.value[0], "config.json")
    if _QUERY_TIME.value is not None and os.path.exists(recorded):
        model_cfg = config_lib.recorded_config(recorded).model
        if not model_cfg.time_buckets or model_cfg.time_query != "target":
            raise cli.UsageError(
                "--query_time: this run's model reads no query time (it reads one with "
                "config.model.time_buckets > 0 and time_query='target'; this run has "
                f"time_buckets={model_cfg.time_buckets}, time_query={model_cfg.time_query!r})")
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
