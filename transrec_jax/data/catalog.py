"""The ids and titles people know for a dataset's items: what `recommend` reads and writes.

A preprocessed file may renumber its items (the SASRec-style ML-1M file numbers movies 1..3416
in order of first appearance); `config.dataset.item_map` maps the file's ids back to the
original ones (MovieLens MovieIDs), and `config.dataset.item_titles` names each original id
(MovieLens `movies.dat` or `u.item`, or a CSV/TSV with `id` and `title` columns). Training never
reads either: they only translate at the edges.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from transrec_jax.data.errors import DataError


@dataclasses.dataclass
class Catalog:
    ids: np.ndarray  # [num_items + 1] the id people know for each internal item; entry 0 unused
    titles: np.ndarray | None  # [num_items + 1] str, "" where a title file has none; None: no file

    def index(self, ids, what: str = "--history") -> np.ndarray:
        """Internal item indices of public ids (strings or ints); one-line DataError if unknown."""
        lookup = {str(public): i for i, public in enumerate(self.ids) if i > 0}
        ids = [str(i).strip() for i in ids]
        unknown = [i for i in ids if i not in lookup]
        if unknown:
            raise DataError(f"{what}: item ids {unknown[:5]} are not in the dataset's catalogue "
                            f"(ids are the dataset's original ids, e.g. {self.ids[1]!s})")
        return np.array([lookup[i] for i in ids], np.int32)

    def title(self, index: int) -> str:
        return "" if self.titles is None else str(self.titles[index])


def build_catalog(file_item_ids: np.ndarray, dataset_cfg) -> Catalog:
    """The catalogue of a dataset whose items carry `file_item_ids` (SequenceDataset.item_ids)."""
    ids = file_item_ids
    if dataset_cfg.item_map:
        mapping = _read_columns(_existing(dataset_cfg.item_map, "item_map"), "item_map")
        missing = [str(i) for i in file_item_ids[1:] if str(i) not in mapping]
        if missing:
            raise DataError(f"{dataset_cfg.item_map}: no original id for the dataset's items "
                            f"{missing[:5]} (config.dataset.item_map)")
        mapped = [mapping.get(str(i), "") for i in file_item_ids]
        ids = _as_ids(mapped)
    titles = None
    if dataset_cfg.item_titles:
        names = _read_titles(_existing(dataset_cfg.item_titles, "item_titles"))
        titles = np.array([""] + [names.get(str(i), "") for i in ids[1:]])
    return Catalog(ids=ids, titles=titles)


def _existing(path: str, key: str) -> str:
    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (relative to the working directory {os.getcwd()})"
        raise DataError(f"config.dataset.{key}={path!r}: no such file{where}")
    return path


def _as_ids(values: list[str]) -> np.ndarray:
    """int64 when every id is an integer (MovieLens), else strings (Amazon ASINs)."""
    try:
        return np.array([int(v) if v else 0 for v in values], np.int64)
    except ValueError:
        return np.array(values)


def _read_columns(path: str, key: str) -> dict[str, str]:
    """First column → second column of a CSV/TSV with a header line."""
    out = {}
    for number, row in enumerate(_rows(_lines(path))[1:], 2):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path}:{number}: expected two columns 'file id, original id' "
                            f"(config.dataset.{key}), got {','.join(row)[:80]!r}")
        out[row[0].strip()] = row[1].strip()
    return out


def _read_titles(path: str) -> dict[str, str]:
    """id → title from movies.dat (`id::title::genres`), u.item (`id|title|...`) or a CSV/TSV."""
    lines = _lines(path)
    if "::" in lines[0] or "|" in lines[0]:
        separator = "::" if "::" in lines[0] else "|"
        out = {}
        for number, line in enumerate(lines, 1):
            fields = line.split(separator)
            if len(fields) < 2 or not fields[0].strip():
                raise DataError(f"{path}:{number}: expected 'id{separator}title{separator}...' "
                                f"(config.dataset.item_titles), got {line[:80]!r}")
            out[fields[0].strip()] = fields[1].strip()
        return out
    rows = _rows(lines)
    header = [h.strip().lower() for h in rows[0]]
    if "title" not in header:
        raise DataError(f"{path}:1: expected a header with an id column and a 'title' column "
                        "(config.dataset.item_titles)")
    column = header.index("title")
    return {row[0].strip(): row[column].strip() for row in rows[1:] if len(row) > column}


def _lines(path: str) -> list[str]:
    # MovieLens' title files are latin-1; UTF-8 files decode the same way for ASCII ids.
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        with open(path, encoding="latin-1") as f:
            text = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty file")
    return lines


def _rows(lines: list[str]) -> list[list[str]]:
    """CSV or TSV (by the first line) with a header."""
    return list(csv.reader(lines, delimiter="\t" if "\t" in lines[0] else ","))
