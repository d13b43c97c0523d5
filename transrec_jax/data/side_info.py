"""Item and user side information (genres, attributes, demographics, vectors), aligned to a dataset.

A `SideInfo` holds one entity's features as arrays whose rows follow a `SequenceDataset`: for
items row 0 is the padding item and rows 1..num_items the internal items; for users rows
0..num_users-1. A feature file is keyed by the ids people know, so item rows are looked up
through `dataset.item_ids` and, where the dataset file renumbered its items (the ML-1M preset),
through `config.dataset.item_map` exactly as the catalogue resolves them (catalog.py).

Every feature is one of three kinds:
- categorical: int32[rows, max_values] of vocabulary indices, padded with 0 on the right.
  `vocab[0]` is "<pad>", `vocab[1]` "<unknown>", then the distinct values of the dataset's rows,
  sorted (numerically when every value is an integer, else as strings). A row the file does not
  list, or lists with no value (a u.item line with no genre flag, an empty attribute list), is
  [1, 0, ...], so every real row has at least one index to embed. Repeated values of one row
  count once, in the order the file gives them.
- numeric: float32[rows, 1], standardised over the rows the file lists ((x - mean) / std, a
  constant column divides by 1); a row it does not list is 0, the mean. `stats` keeps the raw
  mean and std.
- dense: float32[rows, dim]; zeros for a row the file does not list.
Each feature's `missing` (bool[rows]) marks the rows the file does not list, and its `stats`
count them; the padding row is never missing. File entries for ids the dataset does not have
are counted as `unmatched` (many of them usually mean a wrong item_map).

Files that fail to parse raise a one-line `DataError` "<path>:<line>: <problem>; expected <what>".
`save` and `load` keep a SideInfo in one `.npz` (no pickle), written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import types

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transrec_jax.data.catalog import build_catalog
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError
from transrec_jax.data.load import write_npz
from transrec_jax.models.item_tower import ItemFeatureArrays
from transrec_jax.models.user_tower import UserFeatureArrays

PAD, UNKNOWN = 0, 1
RESERVED = ["<pad>", "<unknown>"]
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
# ML-1M's age codes (users.dat) and the ranges its README gives them ("Under 18" as "0-17", so the
# labels sort in age order); ML-100K ages bucket into them.
AGE_BUCKETS = {1: "0-17", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55",
               56: "56+"}
CACHE_VERSION = 2  # 2: the MovieLens readers add the release year
_INTEGER = re.compile(r"-?\d+")
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")  # movies.dat: "Toy Story (1995)"
_RELEASE_DATE = re.compile(r"\d{1,2}-[A-Za-z]{3}-\d{4}")  # u.item: "01-Jan-1995", "4-Feb-1971"
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclasses.dataclass
class Feature:
    kind: str  # "categorical" | "numeric" | "dense"
    values: np.ndarray  # int32[rows, max_values] | float32[rows, 1] | float32[rows, dim]
    missing: np.ndarray  # bool[rows]: the file has no entry for the row
    vocab: list[str]  # categorical: index → value, RESERVED first; [] otherwise
    # source, rows (real ones), missing, unmatched; categorical: values, vocab_size (RESERVED
    # included), max_values, empty, mean_values (over listed rows); numeric: raw mean, std;
    # dense: dim
    stats: dict


@dataclasses.dataclass
class SideInfo:
    entity: str  # "item" (row 0 = padding, then internal items 1..num_items) or "user"
    features: dict[str, Feature]

    @property
    def rows(self) -> int:
        return len(next(iter(self.features.values())).missing) if self.features else 0

    def stats(self) -> dict:
        return {name: feature.stats for name, feature in self.features.items()}


# --- rows: the ids a feature file uses for each row -----------------------------------------------


def item_keys(dataset: SequenceDataset, item_map: str = "") -> np.ndarray:
    """The original id of each item row (entry 0 unused): through `item_map` as the catalogue
    reads it (the ML-1M preset's file numbers its movies 1..3416), else the dataset's own ids."""
    map_only = types.SimpleNamespace(item_map=item_map, item_titles="")
    return build_catalog(dataset.item_ids, map_only).ids


def _rows(entity: str, dataset: SequenceDataset, item_map: str) -> list[str | None]:
    """Each row's id as the files spell it; None for the padding row."""
    if entity == "item":
        return [None] + [str(key) for key in item_keys(dataset, item_map)[1:]]
    if entity == "user":
        if item_map:
            raise ValueError("item_map applies to items only")
        return [str(key) for key in dataset.user_ids]
    raise ValueError(f"entity {entity!r}: expected 'item' or 'user'")


# --- readers of each format -----------------------------------------------------------------------


def read_movies_dat(path: str, dataset: SequenceDataset, *, item_map: str = "") -> SideInfo:
    """ML-1M movies.dat (`MovieID::Title (Year)::Genre1|Genre2`, latin-1) → categorical
    "genres" and "year" (the release year that ends the title; none when it does not)."""
    genres, years = {}, {}
    for at, line in _lines(path, "latin-1"):
        fields = line.split("::")
        if len(fields) != 3:
            _fail(at, f"{len(fields)} '::'-separated fields", "'MovieID::Title::Genres'")
        key = _integer(at, "MovieID", fields[0], "'MovieID::Title::Genres'")
        _add(genres, key, [g.strip() for g in fields[2].split("|") if g.strip()], at)
        year = _TITLE_YEAR.search(fields[1])
        _add(years, key, [year.group(1)] if year else [], at)
    return _aligned("item", dataset, item_map, path,
                    {"genres": ("categorical", genres), "year": ("categorical", years)})


def read_u_item(path: str, dataset: SequenceDataset, *, item_map: str = "") -> SideInfo:
    """ML-100K u.item (`id|title|release date|video release date|IMDb URL|19 genre flags`,
    latin-1) → categorical "genres" named as ML100K_GENRES and "year" (of the release date
    `01-Jan-1995`; none when the date is blank)."""
    width = 5 + len(ML100K_GENRES)
    expected = (f"{width} fields 'id|title|release date|video release date|IMDb URL|' "
                f"+ {len(ML100K_GENRES)} genre flags (0/1)")
    genres, years = {}, {}
    for at, line in _lines(path, "latin-1"):
        fields = line.split("|")
        if len(fields) != width:
            _fail(at, f"{len(fields)} '|'-separated fields", expected)
        key = _integer(at, "id", fields[0], expected)
        flags = fields[5:]
        for name, flag in zip(ML100K_GENRES, flags, strict=True):
            if flag.strip() not in ("0", "1"):
                _fail(at, f"genre flag {name!r} is {flag!r}", "0 or 1")
        _add(genres, key, [g for g, f in zip(ML100K_GENRES, flags) if f.strip() == "1"], at)
        release = fields[2].strip()
        if release and not _RELEASE_DATE.fullmatch(release):
            _fail(at, f"release date {release!r}", "'DD-Mon-YYYY' or blank")
        _add(years, key, [release[-4:]] if release else [], at)
    return _aligned("item", dataset, item_map, path,
                    {"genres": ("categorical", genres), "year": ("categorical", years)})


def read_item_attributes(path: str, dataset: SequenceDataset, *, item_map: str = "") -> SideInfo:
    """S3-Rec's Amazon `{"item_id": [attribute_id, ...]}` JSON → categorical "attributes"."""
    expected = '{"item_id": [attribute ids], ...}'
    text = _text(path, "utf-8")
    try:
        data = json.loads(text, object_pairs_hook=_Pairs)  # pairs: an id listed twice is named
    except json.JSONDecodeError as e:
        _fail(f"{path}:{e.lineno}", f"not JSON ({e.msg}, column {e.colno})", expected)
    if not isinstance(data, _Pairs):
        _fail(f"{path}:1", f"a JSON {type(data).__name__}", f"an object {expected}")
    attributes, seen = {}, {}
    for key, values in data:
        seen[key] = seen.get(key, 0) + 1
        at = f"{path}:{_json_key_line(text, key, seen[key])}"
        ok = type(values) is list and all(
            isinstance(v, (int, str)) and not isinstance(v, bool) for v in values)
        if not ok:
            shown = "an object" if isinstance(values, _Pairs) else json.dumps(values)[:60]
            _fail(at, f"item {key!r} has {shown}", "a list of attribute ids")
        _add(attributes, key.strip(), [str(v) for v in values], at)
    return _aligned("item", dataset, item_map, path, {"attributes": ("categorical", attributes)})


def read_users_dat(path: str, dataset: SequenceDataset) -> SideInfo:
    """ML-1M users.dat (`UserID::Gender::Age::Occupation::Zip-code`) → categorical "gender",
    "age" (AGE_BUCKETS' ranges) and "occupation" (its code, 0-20)."""
    expected = "'UserID::Gender::Age::Occupation::Zip-code'"
    columns = {"gender": {}, "age": {}, "occupation": {}}
    for at, line in _lines(path, "latin-1"):
        fields = line.split("::")
        if len(fields) != 5:
            _fail(at, f"{len(fields)} '::'-separated fields", expected)
        key = _integer(at, "UserID", fields[0], expected)
        gender = fields[1].strip()
        if gender not in ("M", "F"):
            _fail(at, f"Gender is {fields[1]!r}", "'M' or 'F'")
        age = int(_integer(at, "Age", fields[2], expected))
        if age not in AGE_BUCKETS:
            _fail(at, f"Age is {fields[2]!r}", f"one of the codes {list(AGE_BUCKETS)}")
        occupation = _integer(at, "Occupation", fields[3], expected)
        for name, value in (("gender", gender), ("age", AGE_BUCKETS[age]),
                            ("occupation", occupation)):
            _add(columns[name], key, [value], at)
    return _aligned("user", dataset, "", path,
                    {name: ("categorical", values) for name, values in columns.items()})


def read_u_user(path: str, dataset: SequenceDataset, *, age: str = "bucket") -> SideInfo:
    """ML-100K u.user (`id|age|gender|occupation|zip`) → "age", categorical "gender" and
    "occupation". `age`: "bucket" (categorical, ML-1M's ranges) or "numeric"."""
    if age not in ("bucket", "numeric"):
        raise ValueError(f"age={age!r}: expected 'bucket' or 'numeric'")
    expected = "'id|age|gender|occupation|zip'"
    columns = {"age": {}, "gender": {}, "occupation": {}}
    for at, line in _lines(path, "latin-1"):
        fields = line.split("|")
        if len(fields) != 5:
            _fail(at, f"{len(fields)} '|'-separated fields", expected)
        key = _integer(at, "id", fields[0], expected)
        years = int(_integer(at, "age", fields[1], expected))
        gender, occupation = fields[2].strip(), fields[3].strip()
        if gender not in ("M", "F"):
            _fail(at, f"gender is {fields[2]!r}", "'M' or 'F'")
        if not occupation:
            _fail(at, "occupation is empty", expected)
        bucket = AGE_BUCKETS[max(code for code in AGE_BUCKETS if code <= max(years, 1))]
        _add(columns["age"], key, float(years) if age == "numeric" else [bucket], at)
        _add(columns["gender"], key, [gender], at)
        _add(columns["occupation"], key, [occupation], at)
    kinds = {"age": "numeric" if age == "numeric" else "categorical", "gender": "categorical",
             "occupation": "categorical"}
    return _aligned("user", dataset, "", path,
                    {name: (kinds[name], values) for name, values in columns.items()})


def read_table(path: str, dataset: SequenceDataset, *, entity: str, id_col: str,
               columns: dict[str, str], item_map: str = "") -> SideInfo:
    """A CSV, TSV (by the name, UTF-8, header line) or Parquet table: `id_col` and `columns`,
    {column: "categorical" | "numeric" | "multi:<separator>"}; a feature per column, named as it.

    An empty cell (a null in Parquet) leaves that row missing for that column. A Parquet list
    column is multi-valued as it is ("multi" with any separator)."""
    kinds = {}
    for name, kind in columns.items():
        if kind in ("categorical", "numeric") or (kind.startswith("multi:") and len(kind) > 6):
            kinds[name] = kind
        else:
            raise ValueError(f"column {name!r}: kind {kind!r}; expected 'categorical', 'numeric' "
                             "or 'multi:<separator>'")
    parsed = {name: {} for name in columns}
    for at, record in _table_records(path, id_col, list(columns)):
        key = record[id_col]
        if key is None or not str(key).strip():
            _fail(at, f"column {id_col!r} is empty", "an id on every row")
        key = str(key).strip()
        for name, kind in kinds.items():
            value = record[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if kind == "numeric":
                value = _number(at, f"column {name!r}", value)
            elif isinstance(value, list):
                value = [str(v).strip() for v in value if v is not None and str(v).strip()]
            elif kind.startswith("multi:"):
                value = [v.strip() for v in str(value).split(kind[6:]) if v.strip()]
            else:
                value = [str(value).strip()]
            _add(parsed[name], key, value, at)
    fields = {name: ("numeric" if kinds[name] == "numeric" else "categorical", parsed[name])
              for name in columns}
    return _aligned(entity, dataset, item_map, path, fields)


def read_vectors(path: str, dataset: SequenceDataset, *, entity: str = "item",
                 name: str = "vector", id_col: str = "id", vector_col: str = "vector",
                 item_map: str = "") -> SideInfo:
    """Dense vectors from a Parquet file: one row per id, `vector_col` a list of numbers of the
    same length on every row (e.g. pretrained text or image embeddings) → dense `name`."""
    vectors, dim = {}, None
    for at, record in _table_records(path, id_col, [vector_col]):
        key, vector = record[id_col], record[vector_col]
        if key is None or not str(key).strip():
            _fail(at, f"column {id_col!r} is empty", "an id on every row")
        if not isinstance(vector, list) or not vector:
            _fail(at, f"column {vector_col!r} holds {str(vector)[:40]}",
                  "a non-empty list of numbers")
        if dim is None:
            dim = len(vector)
        if len(vector) != dim:
            _fail(at, f"a vector of {len(vector)} values", f"{dim} as on the first row")
        values = [_number(at, f"column {vector_col!r}", v) for v in vector]
        _add(vectors, str(key).strip(), np.array(values, np.float32), at)
    return _aligned(entity, dataset, item_map, path, {name: ("dense", vectors)})


def combine(*infos: SideInfo) -> SideInfo:
    """The features of several files of one entity and dataset in one SideInfo."""
    features = {}
    for info in infos:
        if info.entity != infos[0].entity or info.rows != infos[0].rows:
            raise ValueError(f"cannot combine {info.entity} features of {info.rows} rows with "
                             f"{infos[0].entity} features of {infos[0].rows} rows")
        for name, feature in info.features.items():
            if name in features:
                raise ValueError(f"feature {name!r} comes from two files")
            features[name] = feature
    return SideInfo(entity=infos[0].entity, features=features)


# --- alignment ------------------------------------------------------------------------------------


def _aligned(entity: str, dataset: SequenceDataset, item_map: str, path: str,
             fields: dict[str, tuple[str, dict]]) -> SideInfo:
    """{name: (kind, {file id: values})} → a SideInfo whose rows follow the dataset."""
    rows = _rows(entity, dataset, item_map)
    real, known = np.array([key is not None for key in rows]), set(rows)
    features = {}
    for name, (kind, by_id) in fields.items():
        present = np.array([key is not None and key in by_id for key in rows], bool)
        values = [by_id[key] if ok else None for key, ok in zip(rows, present)]
        stats = {"source": path, "rows": int(real.sum()), "missing": int((real & ~present).sum()),
                 "unmatched": len(by_id.keys() - known)}
        vocab = []
        if kind == "categorical":
            array, vocab = _categorical(values, real, stats)
        elif kind == "numeric":
            array = _numeric(values, stats)
        else:
            dim = len(next(iter(by_id.values()))) if by_id else 1
            array = np.zeros((len(rows), dim), np.float32)
            for row, vector in enumerate(values):
                if vector is not None:
                    array[row] = vector
            stats["dim"] = dim
        features[name] = Feature(kind=kind, values=array, missing=real & ~present, vocab=vocab,
                                 stats=stats)
    return SideInfo(entity=entity, features=features)


def _categorical(values: list, real: np.ndarray, stats: dict) -> tuple[np.ndarray, list[str]]:
    distinct = {v for row in values if row for v in row}
    numeric = all(_INTEGER.fullmatch(v) for v in distinct)
    vocab = RESERVED + sorted(distinct, key=int if numeric else None)
    index = {v: i for i, v in enumerate(vocab)}
    width = max([1] + [len(row) for row in values if row])
    array = np.full((len(values), width), PAD, np.int32)
    array[real, 0] = UNKNOWN
    for row, row_values in enumerate(values):
        if row_values:
            array[row, : len(row_values)] = [index[v] for v in row_values]
    listed = [len(row) for row in values if row is not None]
    stats.update(values=len(vocab) - len(RESERVED), vocab_size=len(vocab), max_values=width,
                 empty=listed.count(0), mean_values=float(np.mean(listed)) if listed else 0.0)
    return array, vocab


def _numeric(values: list, stats: dict) -> np.ndarray:
    listed = np.array([v for v in values if v is not None], np.float64)
    mean = float(listed.mean()) if len(listed) else 0.0
    std = float(listed.std()) if len(listed) else 0.0
    array = np.zeros((len(values), 1), np.float32)
    for row, value in enumerate(values):
        if value is not None:
            array[row, 0] = (value - mean) / (std or 1.0)
    stats.update(mean=mean, std=std)
    return array


def _add(by_id: dict, key: str, value, at: str) -> None:
    """Record one file entry: an id listed twice is an error; a row's repeated values count once."""
    if key in by_id:
        _fail(at, f"id {key!r} listed again", "one entry per id")
    by_id[key] = list(dict.fromkeys(value)) if isinstance(value, list) else value


# --- parsing helpers ------------------------------------------------------------------------------


def _fail(at: str, problem: str, expected: str):
    """`at`: "path:line" (a Parquet file: "path: row N")."""
    raise DataError(f"{at}: {problem}; expected {expected}")


def _checked(path: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        problem = "a directory, expected a file" if os.path.isdir(path) else "no such file"
        if not os.path.isabs(path):
            problem += f" (relative to the working directory {os.getcwd()})"
        raise DataError(f"{path}: {problem}")
    return path


def _text(path: str, encoding: str) -> str:
    try:
        with open(_checked(path), encoding=encoding) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not {encoding} text (byte {e.start}); "
                        f"expected {encoding}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _lines(path: str, encoding: str) -> list[tuple[str, str]]:
    """("path:line", line) for each non-blank line; an empty file is an error."""
    lines = [(f"{path}:{n}", line.rstrip("\r"))
             for n, line in enumerate(_text(path, encoding).split("\n"), 1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty file; expected one line per id")
    return lines


def _integer(at: str, name: str, token: str, expected: str) -> str:
    """The id or code as the dataset spells it (no spaces or leading zeros)."""
    if not _INTEGER.fullmatch(token.strip()):
        _fail(at, f"{name} {token!r} is not an integer", expected)
    return str(int(token))


def _number(at: str, what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        _fail(at, f"{what} holds {value!r}", "a number")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            _fail(at, f"{what} is {value!r}", "a number")
        value = float(value)
    if not math.isfinite(value):
        _fail(at, f"{what} is {value!r}", "a finite number")
    return float(value)


class _Pairs(list):
    """A JSON object as its (key, value) pairs, in the file's order."""


def _json_key_line(text: str, key: str, occurrence: int) -> int:
    """The line of the `occurrence`-th `"key":` in a JSON text (to name where a bad value is)."""
    matches = re.finditer(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text)
    match = next(itertools.islice(matches, occurrence - 1, None), None)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _table_records(path: str, id_col: str, columns: list[str]):
    """("path:line" or "path: row N", {column: value}) for each data row of a table.

    CSV/TSV (UTF-8, a header line) give strings; Parquet gives Python values (lists for list
    columns, None for nulls)."""
    path = _checked(path)
    wanted = list(dict.fromkeys([id_col] + columns))
    if path.lower().endswith(".parquet"):
        try:
            _check_columns(f"{path}: schema", wanted, pq.read_schema(path).names)
            table = pq.read_table(path, columns=wanted)
        except (pa.ArrowException, OSError) as e:
            why = str(e).strip().splitlines()[0]
            raise DataError(f"{path}: {why}; expected a Parquet file") from None
        data = {name: table.column(name).to_pylist() for name in wanted}
        for row in range(table.num_rows):
            yield f"{path}: row {row + 1}", {name: data[name][row] for name in wanted}
        return
    if not path.lower().endswith((".csv", ".tsv")):
        raise DataError(f"{path}: unknown table type; expected a .csv, .tsv or .parquet file")
    reader = csv.reader(io.StringIO(_text(path, "utf-8"), newline=""),
                        delimiter="\t" if path.lower().endswith(".tsv") else ",")
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file; expected a header line")
    _check_columns(f"{path}:1", wanted, header)
    position = {name: header.index(name) for name in wanted}
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        at = f"{path}:{reader.line_num}"
        if len(fields) != len(header):
            _fail(at, f"{len(fields)} fields", f"{len(header)} as in the header")
        yield at, {name: fields[i] for name, i in position.items()}


def _check_columns(at: str, wanted: list[str], available: list[str]) -> None:
    absent = [name for name in wanted if name not in available]
    if absent:
        _fail(at, f"no column {absent[0]!r} in {available}", f"columns {wanted}")


# --- cache ----------------------------------------------------------------------------------------


def save(info: SideInfo, path: str) -> None:
    """Write `info` to one .npz (arrays, and a JSON `meta` with kinds, vocabularies and stats)
    through a temporary file renamed into place, so a crash never leaves a partial cache."""
    meta = {"version": CACHE_VERSION, "entity": info.entity, "features": [
        {"name": name, "kind": f.kind, "vocab": f.vocab, "stats": f.stats,
         "shape": list(f.values.shape)} for name, f in info.features.items()]}
    arrays = {}
    for i, feature in enumerate(info.features.values()):
        arrays[f"values_{i}"], arrays[f"missing_{i}"] = feature.values, feature.missing
    write_npz(path, meta, arrays)


_DTYPES = {"categorical": np.int32, "numeric": np.float32, "dense": np.float32}


def load(path: str) -> SideInfo:
    """A SideInfo that `save` wrote; a one-line DataError for any other file."""
    expected = (f"expected a side-information cache (version {CACHE_VERSION}) "
                "written by side_info.save")
    try:
        with np.load(_checked(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"version {meta.get('version')!r}")
            features = {}
            for i, f in enumerate(meta["features"]):
                values, missing = z[f"values_{i}"], z[f"missing_{i}"]
                rows = f["shape"][0]
                if (values.dtype != _DTYPES[f["kind"]] or list(values.shape) != f["shape"]
                        or missing.dtype != bool or missing.shape != (rows,)):
                    raise ValueError(f"feature {f['name']!r} has arrays of other types or shapes")
                in_vocab = not values.size or 0 <= values.min() <= values.max() < len(f["vocab"])
                if f["kind"] == "categorical" and not in_vocab:
                    raise ValueError(f"feature {f['name']!r} has indices beyond its vocabulary")
                features[f["name"]] = Feature(kind=f["kind"], values=values, missing=missing,
                                              vocab=list(f["vocab"]), stats=f["stats"])
    except DataError:
        raise
    except Exception as e:  # not an npz, truncated, foreign keys: all say the same
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: unreadable ({why}); {expected}") from None
    info = SideInfo(entity=meta["entity"], features=features)
    if len({len(f.missing) for f in features.values()}) > 1:
        raise DataError(f"{path}: features with different row counts; {expected}")
    return info


# --- from the config: the item features a run reads, cached beside its dataset --------------------

def item_features_format(dataset_cfg) -> str:
    """dataset.item_features_format, `auto` resolved from the file name."""
    d = dataset_cfg
    if d.item_features_format != "auto":
        return d.item_features_format
    name = os.path.basename(d.item_features).lower()
    by_name = {"movies.dat": "movies_dat", "u.item": "u_item"}
    if name in by_name:
        return by_name[name]
    if name.endswith(".json"):
        return "attributes_json"
    raise DataError(f"config.dataset.item_features={d.item_features!r}: cannot tell its format from "
                    "the name; set config.dataset.item_features_format (movies_dat | u_item | "
                    "attributes_json | table | vectors)")


def read_item_features(dataset_cfg, dataset: SequenceDataset, cache_stem: str, *, log=print) -> SideInfo:
    """The items' features that `dataset_cfg.item_features` names, aligned to `dataset`; read
    once and cached as `<cache_stem>-items-<digest>.npz` (the digest covers the file and every
    key that shapes the result)."""
    d = dataset_cfg
    try:
        path = os.path.abspath(_checked(os.path.expanduser(d.item_features)))
    except DataError as e:
        raise DataError(f"config.dataset.item_features: {e}") from None
    fmt = item_features_format(d)
    st = os.stat(path)
    identity = {"v": CACHE_VERSION, "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "format": fmt, "id_col": d.item_features_id_col, "columns": d.item_features_columns,
                "item_map": d.item_map}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    cached = f"{cache_stem}-items-{digest}.npz"
    if os.path.exists(cached):
        return load(cached)
    readers = {
        "movies_dat": lambda: read_movies_dat(path, dataset, item_map=d.item_map),
        "u_item": lambda: read_u_item(path, dataset, item_map=d.item_map),
        "attributes_json": lambda: read_item_attributes(path, dataset, item_map=d.item_map),
        "table": lambda: read_table(path, dataset, entity="item", id_col=d.item_features_id_col,
                                    columns=_column_kinds(d.item_features_columns),
                                    item_map=d.item_map),
        "vectors": lambda: read_vectors(path, dataset, id_col=d.item_features_id_col,
                                        item_map=d.item_map),
    }
    info = readers[fmt]()
    save(info, cached)
    for name, feature in info.features.items():
        s = feature.stats
        log(f"item feature {name} ({feature.kind}): {s['rows'] - s['missing']} of {s['rows']} items "
            f"listed, {s['missing']} unknown, cached at {cached}")
    return info


def _column_kinds(spec: str, key: str = "item_features_columns") -> dict[str, str]:
    """"genre:multi:|,price:numeric,brand:categorical" → {column: kind}; `key` names the
    config key in errors."""
    kinds = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        column, _, kind = part.partition(":")
        if not column or not (kind in ("categorical", "numeric") or kind.startswith("multi:")):
            raise DataError(f"config.dataset.{key}={spec!r}: {part!r} is not "
                            "column:categorical, column:numeric or column:multi:<separator>")
        kinds[column] = kind
    if not kinds:
        raise DataError(f"config.dataset.{key} is empty: a table needs "
                        "column:kind words (categorical | numeric | multi:<separator>)")
    return kinds


def tower_inputs(info: SideInfo, known: np.ndarray) -> ItemFeatureArrays:
    """What the item tower reads (models/item_tower.py): the categorical features, the numeric
    and dense ones, and `known` (the items seen in training; the padding row counts as known)."""
    if info.entity != "item":
        raise ValueError(f"the item tower reads item features, not {info.entity!r} features")
    known = np.asarray(known, bool).copy()
    known[0] = True
    cat = {n: f for n, f in info.features.items() if f.kind == "categorical"}
    return ItemFeatureArrays(
        categorical={n: f.values for n, f in cat.items()},
        vocab_sizes={n: len(f.vocab) for n, f in cat.items()},
        dense={n: f.values for n, f in info.features.items() if f.kind != "categorical"},
        known=known)


# --- from the config: the user features a run reads, cached beside its dataset --------------------

def user_features_format(dataset_cfg) -> str:
    """dataset.user_features_format, `auto` resolved from the file name (users.dat, u.user, or a
    .csv/.tsv/.parquet table)."""
    d = dataset_cfg
    if d.user_features_format != "auto":
        return d.user_features_format
    name = os.path.basename(d.user_features).lower()
    by_name = {"users.dat": "users_dat", "u.user": "u_user"}
    if name in by_name:
        return by_name[name]
    if name.endswith((".csv", ".tsv", ".parquet")):
        return "table"
    raise DataError(f"config.dataset.user_features={d.user_features!r}: cannot tell its format from "
                    "the name; set config.dataset.user_features_format (users_dat | u_user | table)")


def read_user_features(dataset_cfg, dataset: SequenceDataset, cache_stem: str, *, log=print) -> SideInfo:
    """The users' features that `dataset_cfg.user_features` names, aligned to `dataset`'s users;
    read once and cached as `<cache_stem>-users-<digest>.npz` (the digest covers the file and
    every key that shapes the result). A file that fails to parse leaves no cache."""
    d = dataset_cfg
    try:
        path = os.path.abspath(_checked(os.path.expanduser(d.user_features)))
    except DataError as e:
        raise DataError(f"config.dataset.user_features: {e}") from None
    fmt = user_features_format(d)
    columns = _column_kinds(d.user_features_columns, "user_features_columns") if fmt == "table" else {}
    st = os.stat(path)
    identity = {"v": CACHE_VERSION, "entity": "user", "path": path, "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "format": fmt, "id_col": d.user_features_id_col,
                "columns": d.user_features_columns}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    cached = f"{cache_stem}-users-{digest}.npz"
    if os.path.exists(cached):
        return load(cached)
    readers = {
        "users_dat": lambda: read_users_dat(path, dataset),
        "u_user": lambda: read_u_user(path, dataset),
        "table": lambda: read_table(path, dataset, entity="user", id_col=d.user_features_id_col,
                                    columns=columns),
    }
    info = readers[fmt]()
    save(info, cached)
    for name, feature in info.features.items():
        s = feature.stats
        log(f"user feature {name} ({feature.kind}): {s['rows'] - s['missing']} of {s['rows']} users "
            f"listed, {s['missing']} unknown, cached at {cached}")
    return info


def user_tower_inputs(info: SideInfo) -> UserFeatureArrays:
    """What the user tower reads (models/user_tower.py): row 0 the unknown user (categorical
    "unknown", numeric and dense 0, as a user the file does not list), then row u + 1 for the
    dataset's dense user u."""
    if info.entity != "user":
        raise ValueError(f"the user tower reads user features, not {info.entity!r} features")

    def shifted(feature: Feature) -> np.ndarray:
        unknown = np.zeros((1, *feature.values.shape[1:]), feature.values.dtype)
        if feature.kind == "categorical":
            unknown[0, 0] = UNKNOWN
        return np.concatenate([unknown, feature.values])

    cat = {n: f for n, f in info.features.items() if f.kind == "categorical"}
    return UserFeatureArrays(
        categorical={n: shifted(f) for n, f in cat.items()},
        vocab_sizes={n: len(f.vocab) for n, f in cat.items()},
        dense={n: shifted(f) for n, f in info.features.items() if f.kind != "categorical"})
