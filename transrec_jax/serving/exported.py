"""Recommend from a directory written by `python -m transrec_jax.export`, with jax and numpy.

This module imports jax, numpy and the standard library only, so a server needs neither flax
nor the model code; export copies it into the directory, which is then all a server needs:

  import sys; sys.path.insert(0, DIR); import exported
  model = exported.load(DIR)
  items, scores = model.recommend([["2571", "1196", "260"], [1, 2]], k=10)  # original ids

Each history is original item ids, oldest first; the model reads its last max_len items and
never recommends any of its items (as `python -m transrec_jax.recommend --history=...`).
"""

from __future__ import annotations

import json
import os
import threading

import jax
import numpy as np

ARTIFACT, IDS, MANIFEST = "model.jaxexport", "ids.json", "manifest.json"
FORMAT = 1  # manifest["format"]: what this loader reads
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

    def recommend(self, histories, k: int | None = None):
        """(original ids [n][k], scores float32[n, k]) after each history of original ids."""
        items, scores = self.top_k([self.index(h) for h in histories], k)
        return [[self.ids[i] for i in row] for row in items.tolist()], scores

    def top_k(self, histories, k: int | None = None):
        """(internal ids int32[n, k], scores float32[n, k]) after each history of internal ids,
        best first (ties to the lower id); k: 1..the exported K (default K)."""
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
        items, scores = [], []
        for first in range(0, len(histories), BATCH_SIZES[-1]):
            top_items, top_scores = self._shared(histories[first : first + BATCH_SIZES[-1]])
            items.append(top_items[:, :k])
            scores.append(top_scores[:, :k])
        return np.concatenate(items), np.concatenate(scores)

    def _shared(self, histories):
        """(items, scores) of `histories` (at most BATCH_SIZES[-1]), from a model call that
        may also answer other threads' rows: whichever caller finds no call running runs one
        for every pending row that fits (the oldest first), so that concurrent requests are
        batched instead of queued one call each."""
        mine = {"histories": histories, "result": None, "error": None}
        with self._ready:
            self._pending.append(mine)
        while True:
            with self._ready:
                while self._busy and not self._done(mine):
                    self._ready.wait()
                if self._done(mine):
                    return self._outcome(mine)
                self._busy, batch, rows = True, [], 0  # (the oldest entry always fits)
                while self._pending and rows + len(self._pending[0]["histories"]) <= BATCH_SIZES[-1]:
                    batch.append(self._pending.pop(0))
                    rows += len(batch[-1]["histories"])
            try:
                items, scores = self._run([h for entry in batch for h in entry["histories"]])
                first = 0
                for entry in batch:
                    last = first + len(entry["histories"])
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
        for rows in BATCH_SIZES:
            self._run([np.ones(1, np.int32)] * rows)

    def _run(self, histories):
        """One call: the histories right-aligned (newest last) in zero-padded arrays whose
        shapes are one of a few."""
        rows = next(size for size in BATCH_SIZES if size >= len(histories))
        longest = max(len(h) for h in histories)
        width = max(_MIN_WIDTH, 1 << (longest - 1).bit_length())
        history = np.zeros((rows, self.max_len), np.int32)
        exclude = np.zeros((rows, width), np.int32)
        for row, h in enumerate(histories):
            recent = h[-self.max_len :]
            history[row, self.max_len - len(recent) :] = recent
            exclude[row, width - len(h) :] = h
        items, scores = self._call(history, exclude)
        return np.asarray(items)[: len(histories)], np.asarray(scores)[: len(histories)]


def load(directory: str) -> ExportedModel:
    return ExportedModel(directory)
