"""Recommend from a directory written by `python -m transrec_jax.export`, with jax and numpy.

This module imports jax, numpy and the standard library only, so a server needs neither flax
nor the model code; export copies it into the directory, which is then all a server needs:

  import sys; sys.path.insert(0, DIR); import exported
  model = exported.load(DIR)
  items, scores = model.recommend([["2571", "1196", "260"], [1, 2]], k=10)  # original ids

Each history is original item ids, oldest first; the model reads its last max_len items and
never recommends any of its items (as `python -m transrec_jax.recommend --history=...`). An
HSTU with a relative time bias (manifest["time_query"] not null) also reads each item's time,
in seconds (unix time), and a `"target"` one the time each list is for (default: the last
item's):

  items, scores = model.recommend([["2571", "1196"]], k=10, times=[[978300760, 978302109]],
                                  query_times=[978303000])

A model with user features (manifest["user_features"] not null) also reads whose history each
is: `users=` gives per history a user id of the run's dataset (users.json), whose features the
model reads; a dict of a new user's raw feature values (users.json's "features" names them; a
categorical value must be in its vocabulary, a feature left out reads as unknown); or None for
a user it has no features for (the default for every history):

  items, scores = model.recommend([["2571", "1196"], ["1"], ["1"]], k=10,
                                  users=["6040", {"gender": "F", "age": "25-34"}, None])
"""

from __future__ import annotations

import json
import os
import threading

import jax
import numpy as np

ARTIFACT, IDS, MANIFEST, USERS = "model.jaxexport", "ids.json", "manifest.json", "users.json"
USER_FEATURES = "user_features.npz"
FORMAT = 2  # manifest["format"]: what this loader reads
_INT32_MAX = 2**31 - 1
# `Exported.call` compiles once per concrete input shape, so rows are padded up to one of
# these batch sizes (more rows: calls of the largest), and exclude widths to a power of two.
BATCH_SIZES = (1, 4, 16, 64, 256)
_MIN_WIDTH = 16


class RequestError(ValueError):
    """A request the model cannot answer: unknown ids, an empty history, k out of range."""


class ExportedModel:
    """The exported top-K function with its catalogue: original ids and titles."""

    def __init__(self, directory: str):
        with open(os.path.join(directory, MANIFEST)) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{directory}: manifest format {self.manifest.get('format')!r}, this "
                             f"loader reads format {FORMAT}: export the run again")
        with open(os.path.join(directory, ARTIFACT), "rb") as f:
            self._call = jax.jit(jax.export.deserialize(bytearray(f.read())).call)
        with open(os.path.join(directory, IDS)) as f:
            catalog = json.load(f)
        self.ids, self.titles = catalog["ids"], catalog["titles"]  # by internal id; entry 0 None
        self._index = {str(original): i for i, original in enumerate(self.ids) if i > 0}
        self.k, self.max_len = self.manifest["k"], self.manifest["max_len"]
        self.num_items = self.manifest["num_items"]
        # "target" | "last_item": the model reads each item's time (manifest "inputs" has
        # times and query_time); None: histories alone.
        self.time_query = self.manifest.get("time_query")
        # "input" | "output": the model reads each history's user's feature rows (manifest
        # "inputs" has one user.<name> per feature); users are numbered 1 + their index in
        # users.json's ids, 0 the unknown user, the rows of user_features.npz; None: no users.
        self.user_features = self.manifest.get("user_features")
        self.user_ids = None
        if self.user_features is not None:
            with open(os.path.join(directory, USERS)) as f:
                users = json.load(f)
            self.user_ids, self._features = users["ids"], users["features"]
            self._user_number = {str(u): n for n, u in enumerate(self.user_ids, 1)}
            with np.load(os.path.join(directory, USER_FEATURES), allow_pickle=False) as tables:
                self._tables = [tables[f"feature_{i}"] for i in range(len(self._features))]
        # Concurrent callers share model calls (one at a time: each already uses every core):
        # rows wait in _pending while a call runs, and the next call takes all of them.
        self._ready = threading.Condition()
        self._pending: list[dict] = []
        self._busy = False

    def index(self, original_ids) -> np.ndarray:
        """Internal ids of original ones (strings or integers, compared as strings)."""
        keys = [str(i).strip() for i in original_ids]
        unknown = [i for i in keys if i not in self._index]
        if unknown:
            raise RequestError(f"item ids {unknown[:5]} are not in the catalogue")
        return np.array([self._index[i] for i in keys], np.int32)

    def user_numbers(self, user_ids, n: int) -> list | None:
        """What `top_k` takes for `user_ids`, one per history of n: the user number (1 + index
        in users.json, 0: a user without features) of a users.json id (compared as a string)
        or None, a dict of raw feature values as it is; None for None, which `top_k` reads as n
        users without features. A model without user features takes None for every user, so
        one client can call either kind."""
        if user_ids is None:
            return None
        if not _per_history(user_ids, n):
            raise RequestError(f"expected a user (an id, a dict of features or None) for each "
                               f"of the {n} histories")
        if self.user_features is None:
            if any(u is not None for u in user_ids):
                raise RequestError("this model has no user features and reads no users: give "
                                   "None (null) or no users")
            return None
        keys = [u if u is None or isinstance(u, dict) else str(u).strip() for u in user_ids]
        unknown = [u for u in keys if isinstance(u, str) and u not in self._user_number]
        if unknown:
            raise RequestError(f"user ids {unknown[:5]} are not users of the run's dataset: give "
                               "their features (a dict), or None for a user without features")
        return [0 if u is None else u if isinstance(u, dict) else self._user_number[u]
                for u in keys]

    def user_feature_values(self) -> list[dict]:
        """What a new user's dict may hold: per feature its name and kind, and a categorical
        one's values (its vocabulary), a numeric or dense one's dim; [] without user features."""
        if self.user_features is None:
            return []
        return [{"name": f["name"], "kind": f["kind"],
                 **({"values": f["vocab"][2:]} if f["kind"] == "categorical"
                    else {"dim": int(table.shape[1])})}
                for f, table in zip(self._features, self._tables)]

    def user_rows(self, features: dict) -> list[np.ndarray]:
        """The model's feature rows of a user given by raw values (`encode_user`)."""
        return encode_user(self._features, self._tables, features)

    def recommend(self, histories, k: int | None = None, times=None, query_times=None,
                  users=None):
        """(original ids [n][k], scores float32[n, k]) after each history of original ids;
        users: per history a user id of users.json, a dict of a user's raw feature values
        (`user_rows`) or None (a model with user features)."""
        numbers = self.user_numbers(users, len(histories))
        items, scores = self.top_k([self.index(h) for h in histories], k, times, query_times,
                                   numbers)
        return [[self.ids[i] for i in row] for row in items.tolist()], scores

    def top_k(self, histories, k: int | None = None, times=None, query_times=None, users=None):
        """(internal ids int32[n, k], scores float32[n, k]) after each history of internal ids,
        best first (ties to the lower id); k: 1..the exported K (default K). times: with a
        time model, per history its items' times in seconds, oldest first; query_times: with a
        "target" one, per history the time its list is for (None: the last item's). users:
        with a user-feature model, per history its user number or a dict of its raw feature
        values (`user_numbers`, `user_rows`; None: all 0)."""
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.k:
            raise RequestError(f"k={k!r}: expected an integer from 1 to {self.k} (the exported K)")
        histories = [np.asarray(h, np.int32).ravel() for h in histories]
        if not histories:
            raise RequestError("no history given")
        for h in histories:
            if not len(h):
                raise RequestError("an empty history: expected at least one item")
            if h.min() < 1 or h.max() > self.num_items:
                raise RequestError(f"internal item ids must be 1..{self.num_items}")
            if k > self.num_items - len(np.unique(h)):
                raise RequestError(f"k={k}: a history of {len(np.unique(h))} distinct items "
                                   f"leaves {self.num_items - len(np.unique(h))} of the catalogue")
        rows = self._with_times(histories, times, query_times)
        rows = [row + (u,) for row, u in zip(rows, self._checked_users(users, len(rows)))]
        items, scores = [], []
        for first in range(0, len(rows), BATCH_SIZES[-1]):
            top_items, top_scores = self._shared(rows[first : first + BATCH_SIZES[-1]])
            items.append(top_items[:, :k])
            scores.append(top_scores[:, :k])
        return np.concatenate(items), np.concatenate(scores)

    def _with_times(self, histories, times, query_times):
        """Rows (history, times, query time): the times as int32 seconds since the history's
        first item (only differences reach the model), or None without a time bias."""
        if self.time_query is None:
            if times is not None or query_times is not None:
                raise RequestError("this model has no time bias and reads no times")
            return [(h, None, None) for h in histories]
        if times is None:
            raise RequestError("this model has a relative time bias: give each history item's "
                               "time in seconds (times)")
        if query_times is not None and self.time_query != "target":
            raise RequestError(f"this model measures gaps from each item's own time (time_query="
                               f"{self.time_query!r}) and reads no query time")
        if not _per_history(times, len(histories)) or (
                query_times is not None and not _per_history(query_times, len(histories))):
            raise RequestError(f"expected times (and query times) for each of the "
                               f"{len(histories)} histories")
        rows = []
        for row, (h, t) in enumerate(zip(histories, times)):
            try:
                t = np.array([_seconds(v) for v in t], np.int64)
                q = None if query_times is None else _seconds(query_times[row])
            except (TypeError, ValueError, OverflowError):
                raise RequestError(f"history {row}: expected times in integer seconds") from None
            if len(t) != len(h):
                raise RequestError(f"history {row}: {len(t)} times for {len(h)} items")
            q = t[-1] if q is None else q
            if (np.diff(t) < 0).any():
                raise RequestError(f"history {row}: expected times in order, oldest first")
            if q < t[-1]:
                raise RequestError(f"history {row}: query time {q} is before its last item's "
                                   f"({t[-1]})")
            if q - t[0] > _INT32_MAX:
                raise RequestError(f"history {row}: its times span more than int32 seconds")
            rows.append((h, (t - t[0]).astype(np.int32), np.int32(q - t[0])))
        return rows

    def _checked_users(self, users, n: int) -> list:
        """Each row's user feature rows (None without user features)."""
        if self.user_features is None:
            if users is not None:
                raise RequestError("this model has no user features and reads no users")
            return [None] * n
        if users is None:
            users = [0] * n
        if not _per_history(users, n):
            raise RequestError(f"expected a user number for each of the {n} histories")
        rows = []
        for u in users:
            if isinstance(u, dict):
                rows.append(self.user_rows(u))
            elif _is_integer(u) and 0 <= u <= len(self.user_ids):
                rows.append([table[u] for table in self._tables])
            else:
                raise RequestError(f"user numbers must be integers 0..{len(self.user_ids)} "
                                   "(0: a user without features) or dicts of feature values")
        return rows

    def _shared(self, rows):
        """(items, scores) of `rows` (at most BATCH_SIZES[-1]), from a model call that
        may also answer other threads' rows: whichever caller finds no call running runs one
        for every pending row that fits (the oldest first), so that concurrent requests are
        batched instead of queued one call each."""
        mine = {"rows": rows, "result": None, "error": None}
        with self._ready:
            self._pending.append(mine)
        while True:
            with self._ready:
                while self._busy and not self._done(mine):
                    self._ready.wait()
                if self._done(mine):
                    return self._outcome(mine)
                self._busy, batch, taken = True, [], 0  # (the oldest entry always fits)
                while self._pending and taken + len(self._pending[0]["rows"]) <= BATCH_SIZES[-1]:
                    batch.append(self._pending.pop(0))
                    taken += len(batch[-1]["rows"])
            try:
                items, scores = self._run([r for entry in batch for r in entry["rows"]])
                first = 0
                for entry in batch:
                    last = first + len(entry["rows"])
                    entry["result"] = (items[first:last], scores[first:last])
                    first = last
            except BaseException as e:  # every caller of this call learns of it
                for entry in batch:
                    entry["error"] = e
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

    @staticmethod
    def _done(entry) -> bool:
        return entry["result"] is not None or entry["error"] is not None

    @staticmethod
    def _outcome(entry):
        if entry["error"] is not None:
            raise entry["error"]
        return entry["result"]

    def warm_up(self) -> None:
        """Compile every batch size at the smallest width now, not at the first requests."""
        timed = self.time_query is not None
        one = (np.ones(1, np.int32), np.zeros(1, np.int32) if timed else None,
               np.int32(0) if timed else None,
               [t[0] for t in self._tables] if self.user_features is not None else None)
        for rows in BATCH_SIZES:
            self._run([one] * rows)

    def _run(self, rows):
        """One call: the rows' histories (and times) right-aligned (newest last) in
        zero-padded arrays whose shapes are one of a few (with their users' feature rows,
        padded with a user without features)."""
        size = next(size for size in BATCH_SIZES if size >= len(rows))
        longest = max(len(h) for h, _, _, _ in rows)
        width = max(_MIN_WIDTH, 1 << (longest - 1).bit_length())
        history = np.zeros((size, self.max_len), np.int32)
        exclude = np.zeros((size, width), np.int32)
        times = np.zeros((size, self.max_len), np.int32)
        query_time = np.zeros(size, np.int32)
        users = ([np.repeat(table[:1], size, axis=0) for table in self._tables]
                 if self.user_features is not None else [])
        for row, (h, t, q, u) in enumerate(rows):
            recent = h[-self.max_len :]
            history[row, self.max_len - len(recent) :] = recent
            exclude[row, width - len(h) :] = h
            if t is not None:
                times[row, self.max_len - len(recent) :] = t[-self.max_len :]
                query_time[row] = q
            for table, user_row in zip(users, u or []):
                table[row] = user_row
        extra = (times, query_time) if self.time_query is not None else ()
        extra += tuple(users)
        items, scores = self._call(history, exclude, *extra)
        return np.asarray(items)[: len(rows)], np.asarray(scores)[: len(rows)]


def load(directory: str) -> ExportedModel:
    return ExportedModel(directory)


def encode_user(features: list[dict], tables: list[np.ndarray], values: dict) -> list[np.ndarray]:
    """The feature rows (one per entry of users.json's "features", beside its table of rows by
    user number) of a user given by raw values: {name: a categorical feature's value or list of
    values (each in its vocabulary), a numeric one's number, a dense one's list of dim
    numbers}; a feature left out reads as unknown, as for a user the feature file does not
    list (row 0)."""
    names = [f["name"] for f in features]
    extra = sorted(set(map(str, values)) - set(names))
    if extra:
        raise RequestError(f"user features {extra[:5]} are not the model's: expected some of "
                           f"{names}")
    rows = [table[0].copy() for table in tables]  # a user without features
    for f, row in zip(features, rows):
        if f["name"] not in values:
            continue
        value, at = values[f["name"]], f"user feature {f['name']!r}"
        if f["kind"] == "categorical":
            given = value if isinstance(value, list) else [value]
            if not all(_is_value(v) for v in given):
                raise RequestError(f"{at}: expected a value (a string or an integer) or a list "
                                   "of values")
            keys = list(dict.fromkeys(str(v).strip() for v in given))
            codes = {v: i for i, v in enumerate(f["vocab"]) if i >= 2}  # (not <pad>, <unknown>)
            unknown = [v for v in keys if v not in codes]
            if unknown:
                known = ", ".join(map(repr, list(codes)[:5])) + (", ..." if len(codes) > 5 else "")
                raise RequestError(f"{at}: {unknown[:5]} not in its vocabulary ({known}; leave "
                                   "the feature out for a user without it)")
            if len(keys) > len(row):
                raise RequestError(f"{at}: {len(keys)} values, the model reads at most {len(row)}")
            row[:] = 0
            row[: len(keys)] = [codes[v] for v in keys]
            if not keys:  # no value: unknown, as the data reads an empty entry
                row[0] = 1
        else:
            given = [value] if f["kind"] == "numeric" else value
            if not isinstance(given, list) or len(given) != len(row) or not all(
                    _is_number(v) for v in given):
                expected = "a number" if f["kind"] == "numeric" else f"{len(row)} numbers"
                raise RequestError(f"{at}: expected {expected}")
            if f["kind"] == "numeric":
                given = [(given[0] - f["mean"]) / (f["std"] or 1.0)]
            row[:] = np.asarray(given, np.float32)
    return rows


def _per_history(values, n: int) -> bool:
    """Whether values is a sequence of n entries (one per history)."""
    return (hasattr(values, "__len__") and not isinstance(values, (str, bytes, dict))
            and len(values) == n)


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_value(value) -> bool:
    """A categorical feature's value: a string or an integer."""
    return isinstance(value, str) or _is_integer(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool) and np.isfinite(value)


def _seconds(value) -> int:
    """An integer number of seconds (an int or a digit string; not a bool or a float)."""
    if isinstance(value, (bool, float, np.floating)):
        raise TypeError(value)
    return int(value)
