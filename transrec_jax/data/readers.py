"""Local interaction files (MovieLens, SASRec/BERT4Rec, S3-Rec, generic tables) -> `Interactions`.

Files are parsed in bulk by pyarrow (ML-20M's 20M lines take seconds and stay near 1 GB); `.gz`
is read directly. Rows keep the file order. Only when the bulk parser rejects a file does a Python
line scan run, to name the first bad line in the `DataError`.
"""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from transrec_jax.data.errors import DataError
from transrec_jax.data.interactions import Interactions

FORMATS = ("movielens_dat", "ml100k", "ratings_csv", "user_item", "user_items", "table")

# Fixed-layout formats: separator (None: any whitespace), field names as the format's docs call
# them, and kinds ('i' integer, 'f' number). Their ids are integers; string ids need `table`.
_FIELDS = {
    "movielens_dat": (b"::", ("UserID", "MovieID", "Rating", "Timestamp"), "iifi"),
    "ml100k": (b"\t", ("user", "item", "rating", "timestamp"), "iifi"),
    "ratings_csv": (b",", ("userId", "movieId", "rating", "timestamp"), "iifi"),
    "user_item": (None, ("user", "item"), "ii"),
}
_EXPECTED = {
    "movielens_dat": "UserID::MovieID::Rating::Timestamp",
    "ml100k": "user<TAB>item<TAB>rating<TAB>timestamp",
    "ratings_csv": "userId,movieId,rating,timestamp",
    "user_item": "user item",
    "user_items": "user item1 item2 ...",
}
_INTEGER = re.compile(rb"-?\d+")
_NUMBER = re.compile(rb"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_WHOLE_LINE = "\x1f"  # a delimiter no text file uses, so each line is read as one column
_BLOCK_SIZE = 1 << 24  # pyarrow needs each line inside one block; user_items lines can be long
_SNIFF_LINES = 100


def read_interactions(
    path: str,
    fmt: str = "auto",
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "",
    rating_col: str = "",
) -> Interactions:
    """Read one interaction file; `fmt` is one of FORMATS or 'auto' (from the name or the lines).

    The *_col arguments (config.dataset.*_col) name the columns of the `table` format.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not a file")
    guessed = False  # guessed from the lines' shape: errors then say so, the guess may be wrong
    if fmt == "auto":
        fmt = _format_from_name(path)
        if fmt is None:
            fmt, guessed = _format_from_lines(path), True
    elif fmt not in FORMATS:
        raise DataError(
            f"{path}: unknown format {fmt!r} (config.dataset.format); "
            f"expected 'auto' or one of {FORMATS}"
        )
    try:
        if fmt == "table":
            columns = {"user_col": user_col, "item_col": item_col}
            columns.update(time_col=time_col, rating_col=rating_col)
            interactions = _read_table(path, columns)
        elif fmt in ("user_item", "user_items"):
            interactions = _read_id_lines(path, fmt)
        else:
            interactions = _read_ratings(path, fmt)
    except DataError as e:
        if guessed:
            raise DataError(f"{e} [format guessed as {fmt!r}: set config.dataset.format]") from None
        raise
    if not len(interactions):
        raise DataError(f"{path}: no interactions (empty file)")
    return interactions


# --- format detection -----------------------------------------------------------------------------


def _format_from_name(path: str) -> str | None:
    """MovieLens' own file names; other .csv/.tsv/.parquet files are tables (unless ML's header)."""
    name = os.path.basename(path).lower().removesuffix(".gz")
    by_name = {"ratings.dat": "movielens_dat", "u.data": "ml100k", "ratings.csv": "ratings_csv"}
    if name in by_name:
        return by_name[name]
    if name.endswith(".parquet"):
        return "table"
    if name.endswith((".csv", ".tsv")):
        header = _first_lines(path, 1)
        is_movielens = header and header[0].strip() == _EXPECTED["ratings_csv"].encode()
        return "ratings_csv" if is_movielens else "table"
    return None


def _format_from_lines(path: str) -> str:
    """Guess from the first lines: "::", four TAB-separated integers, or whitespace ids."""
    lines = _first_lines(path, _SNIFF_LINES)
    if not lines:
        raise DataError(f"{path}: no interactions (empty file)")
    first = lines[0]
    if b"::" in first:
        return "movielens_dat"
    tab_fields = first.split(b"\t")
    if len(tab_fields) == 4 and all(_INTEGER.fullmatch(f.strip()) for f in tab_fields):
        return "ml100k"
    token_counts = {len(line.split()) for line in lines}
    all_integers = all(_INTEGER.fullmatch(t) for line in lines for t in line.split())
    if all_integers and token_counts == {2}:
        return "user_item"
    # Lengths that vary are sequences; a constant length >= 3 may be `user item timestamp`.
    if all_integers and len(token_counts) > 1 and min(token_counts) >= 2:
        return "user_items"
    raise DataError(
        f"{path}: cannot tell the format from the file name or first line {_shown(first)!r}; "
        f"set config.dataset.format to one of {FORMATS}"
    )


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _first_lines(path: str, limit: int) -> list[bytes]:
    """Up to `limit` non-blank lines, without line endings."""
    lines = []
    try:
        with _open_binary(path) as f:
            for raw in f:
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    lines.append(line)
                    if len(lines) == limit:
                        break
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {_first_line_of(e)}") from None
    return lines


# --- rating files: movielens_dat, ml100k, ratings_csv ---------------------------------------------


def _read_ratings(path: str, fmt: str) -> Interactions:
    """user, item, rating, timestamp per line; '::' is read as ':' with empty columns between."""
    names = ["user", "item", "rating", "time"]
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float32(), "time": pa.int64()}
    skip_rows = 0
    if fmt == "movielens_dat":
        delimiter = ":"
        names = ["user", "gap1", "item", "gap2", "rating", "gap3", "time"]
        types.update(gap1=pa.null(), gap2=pa.null(), gap3=pa.null())  # must stay empty
    elif fmt == "ml100k":
        delimiter = "\t"
    else:
        delimiter, skip_rows = ",", 1
        header = _first_lines(path, 1)
        if header and header[0].strip() != _EXPECTED[fmt].encode():
            expected = _EXPECTED[fmt]
            raise DataError(f"{path}:1: expected header {expected!r}, got {_shown(header[0])!r}")
    columns = _read_csv_columns(
        path,
        fmt,
        read_options=pa_csv.ReadOptions(
            column_names=names, skip_rows=skip_rows, block_size=_BLOCK_SIZE
        ),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False),
        convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=list(types)),
    )
    # pop() frees each Arrow column once it is converted, so the peak holds about one copy.
    return Interactions(
        users=columns.pop("user").to_numpy(),
        items=columns.pop("item").to_numpy(),
        ratings=columns.pop("rating").to_numpy(),
        timestamps=columns.pop("time").to_numpy(),
        source=path,
    )


# --- id sequences: user_item, user_items ----------------------------------------------------------


def _read_id_lines(path: str, fmt: str) -> Interactions:
    """`user item` or `user item1 item2 ...` lines -> one row per item, in file order."""
    columns = _read_csv_columns(
        path,
        fmt,
        read_options=pa_csv.ReadOptions(column_names=["line"], block_size=_BLOCK_SIZE),
        parse_options=pa_csv.ParseOptions(delimiter=_WHOLE_LINE, quote_char=False),
        convert_options=pa_csv.ConvertOptions(column_types={"line": pa.string()}),
    )
    lines = pc.utf8_trim_whitespace(columns.pop("line"))
    lines = pc.filter(lines, pc.not_equal(lines, ""))
    tokens = pc.utf8_split_whitespace(lines).combine_chunks()
    offsets = tokens.offsets.to_numpy()
    lengths = np.diff(offsets)
    malformed = lengths != 2 if fmt == "user_item" else lengths < 2
    if malformed.any():
        raise DataError(_explain(path, fmt, f"expected {_EXPECTED[fmt]!r} on every line"))
    try:
        ids = pc.cast(tokens.flatten(), pa.int64()).to_numpy()
    except pa.ArrowInvalid as e:
        raise DataError(_explain(path, fmt, _first_line_of(e))) from None
    starts = offsets[:-1]
    is_user = np.zeros(len(ids), dtype=bool)
    is_user[starts] = True
    return Interactions(users=np.repeat(ids[starts], lengths - 1), items=ids[~is_user], source=path)


# --- generic tables: csv / tsv (optionally .gz) / parquet -----------------------------------------


def _read_table(path: str, columns: dict[str, str]) -> Interactions:
    """The configured columns of a table with a header; ids may be integers or strings."""
    if not columns["user_col"] or not columns["item_col"]:
        raise DataError("config.dataset.user_col and item_col must name columns of the table")
    wanted = {key: name for key, name in columns.items() if name}
    data = _read_table_columns(path, wanted)
    for key, column in data.items():
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(
                f"{path}: column {wanted[key]!r} (config.dataset.{key}) is empty in data row {row}"
            )
    timestamps = ratings = None
    if "time_col" in data:
        timestamps = _times_to_numpy(data.pop("time_col"), path, wanted["time_col"])
    if "rating_col" in data:
        ratings = _ratings_to_numpy(data.pop("rating_col"), path, wanted["rating_col"])
    return Interactions(
        users=_ids_to_numpy(data.pop("user_col")),
        items=_ids_to_numpy(data.pop("item_col")),
        timestamps=timestamps,
        ratings=ratings,
        source=path,
    )


def _read_table_columns(path: str, wanted: dict[str, str]) -> dict[str, pa.ChunkedArray]:
    """{config key: column}, after checking that every configured column exists."""
    name = path.lower().removesuffix(".gz")
    to_read = list(dict.fromkeys(wanted.values()))
    try:
        if path.lower().endswith(".parquet"):
            _check_columns(wanted, pq.read_schema(path).names)
            table = pq.read_table(path, columns=to_read)
        elif name.endswith((".csv", ".tsv")):
            parse_options = pa_csv.ParseOptions(delimiter="\t" if name.endswith(".tsv") else ",")
            _check_columns(wanted, pa_csv.open_csv(path, parse_options=parse_options).schema.names)
            table = pa_csv.read_csv(
                path,
                read_options=pa_csv.ReadOptions(block_size=_BLOCK_SIZE),
                parse_options=parse_options,
                convert_options=pa_csv.ConvertOptions(
                    include_columns=to_read,
                    # Ids stay text until every row is seen: pyarrow infers types per block.
                    column_types={wanted["user_col"]: pa.string(), wanted["item_col"]: pa.string()},
                    strings_can_be_null=True,
                ),
            )
        else:
            raise DataError(
                f"{path}: the table format needs a .csv, .tsv (optionally .gz) or .parquet file"
            )
    except (pa.ArrowInvalid, OSError) as e:
        if "Empty CSV file" in str(e):
            raise DataError(f"{path}: no interactions (empty file)") from None
        raise DataError(f"{path}: {_first_line_of(e)}") from None
    return {key: table.column(column) for key, column in wanted.items()}


def _check_columns(wanted: dict[str, str], available: list[str]) -> None:
    for key, name in wanted.items():
        if name not in available:
            raise DataError(f"config.dataset.{key}={name!r} not in columns {available}")


def _ids_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """int64 when every id is an integer, else fixed-width unicode (never an object array)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).to_numpy()
    column = column.cast(pa.string())
    try:
        return pc.cast(column, pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        width = max(1, pc.max(pc.utf8_length(column)).as_py() or 0)
        return column.to_numpy(zero_copy_only=False).astype(f"<U{width}")


def _times_to_numpy(column: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    """Integer unix seconds as they are; dates and datetimes become unix seconds."""
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).to_numpy()
    if pa.types.is_date(column.type):
        return column.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    if pa.types.is_timestamp(column.type):  # sub-second parts are dropped
        seconds = column.cast(pa.timestamp("s", column.type.tz), safe=False)
        return seconds.cast(pa.int64()).to_numpy()
    raise DataError(
        f"{path}: column {name!r} (config.dataset.time_col) holds {column.type}, "
        "expected integer unix seconds or dates/datetimes"
    )


def _ratings_to_numpy(column: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(
            f"{path}: column {name!r} (config.dataset.rating_col) holds {column.type}, "
            "expected numbers"
        )
    return column.cast(pa.float32()).to_numpy()


# --- bulk parsing, and the line scan that explains its failures -----------------------------------


def _read_csv_columns(path: str, fmt: str, **options) -> dict[str, pa.ChunkedArray]:
    """pyarrow.csv.read_csv as {name: column}; a DataError naming the bad line if it fails."""
    try:
        table = pa_csv.read_csv(path, **options)
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            raise DataError(f"{path}: no interactions (empty file)") from None
        raise DataError(_explain(path, fmt, _first_line_of(e))) from None
    except (OSError, EOFError) as e:  # e.g. a .gz that is not gzip
        raise DataError(f"{path}: cannot read: {_first_line_of(e)}") from None
    return {name: table.column(name) for name in table.column_names}


def _explain(path: str, fmt: str, parser_error: str) -> str:
    """'path:LINE: what is wrong' for the first line the format rejects, else the parser's error."""
    whitespace_only_is_blank = fmt in ("user_item", "user_items")  # as the bulk reader treats it
    try:
        with _open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                line = raw.rstrip(b"\r\n")
                blank = not (line.strip() if whitespace_only_is_blank else line)
                if blank or (fmt == "ratings_csv" and number == 1):
                    continue
                problem = _line_problem(line, fmt)
                if problem:
                    return f"{path}:{number}: {problem}"
    except (OSError, EOFError) as e:
        return f"{path}: cannot read: {_first_line_of(e)}"
    return f"{path}: {parser_error}"


def _line_problem(line: bytes, fmt: str) -> str | None:
    shown = _shown(line)
    if fmt == "user_items":
        tokens = line.split()
        if len(tokens) < 2:
            return f"expected {_EXPECTED[fmt]!r}, got {shown!r}"
        names, kinds = ("user",) + ("item",) * (len(tokens) - 1), "i" * len(tokens)
    else:
        separator, names, kinds = _FIELDS[fmt]
        tokens = line.split(separator)
        if len(tokens) != len(names):
            return f"expected {_EXPECTED[fmt]!r}, got {shown!r}"
    for name, kind, token in zip(names, kinds, tokens, strict=True):
        if kind == "i" and not _INTEGER.fullmatch(token):
            return f"{name} {_shown(token)!r} is not an integer in {shown!r}"
        if kind == "f" and not _NUMBER.fullmatch(token):
            return f"{name} {_shown(token)!r} is not a number in {shown!r}"
    return None


def _shown(raw: bytes, limit: int = 80) -> str:
    """A line or field as messages show it: decoded, truncated to `limit` characters."""
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line_of(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
