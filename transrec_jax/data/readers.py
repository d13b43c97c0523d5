"""Local interaction files (MovieLens, SASRec/BERT4Rec, S3-Rec, generic tables) -> `Interactions`.

Files are parsed in bulk by pyarrow (ML-20M-sized files in seconds, one copy in memory); `.gz`
is read directly. Rows keep the file order. The bulk read is strict: no spelling of a missing value
(NA, nan, null, an empty field) is read as null, and every parsed field is checked (ids integral,
ratings and timestamps finite) with vectorised checks. Only when a file fails them does a Python
line scan run, to name the first bad line (1-based, as the file counts them) in the `DataError`.
"""

from __future__ import annotations

import csv
import gzip
import itertools
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
_NUMBER_TEXT = r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_NUMBER = re.compile(_NUMBER_TEXT.encode())
# Integers and (roughly) the ISO dates and datetimes pyarrow reads, to name a bad time value.
_TIME_TEXT = r"^-?\d+$|^\d{4}-\d{2}-\d{2}([ T][\d:.]+)?([zZ]|[+-][\d:]+)?$"
_TIME_EXPECTED = "expected integer unix seconds or a date/datetime"
_INT64 = (-(2**63), 2**63)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MISSING = pa_csv.ConvertOptions().null_values  # how pyarrow spells missing: '', NA, nan, null, ...
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark: pyarrow skips it, so the line scans do too
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
        kind = "a directory" if os.path.isdir(path) else "not a regular file"
        raise DataError(f"{path}: {kind}, expected a file")
    try:  # e.g. no read permission: one plain line, before pyarrow's longer one
        open(path, "rb").close()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
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
        _text_problem(path)
        or f"{path}: cannot tell the format from the file name or first line {_shown(first)!r}; "
        f"set config.dataset.format to one of {FORMATS}"
    )


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _first_lines(path: str, limit: int) -> list[bytes]:
    """Up to `limit` non-blank lines, without line endings."""
    lines = []
    try:
        with _open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                line = raw.rstrip(b"\r\n")
                if number == 1:
                    line = line.removeprefix(_BOM)
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
            raise DataError(
                _text_problem(path)
                or f"{path}:1: expected header {expected!r}, got {_shown(header[0])!r}"
            )
    columns = _read_csv_columns(
        path,
        fmt,
        read_options=pa_csv.ReadOptions(
            column_names=names, skip_rows=skip_rows, block_size=_BLOCK_SIZE
        ),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False),
        # Only an empty field is null (the '::' gaps must be), so 'NA' or 'nan' in an integer
        # column fails to parse; nulls and non-finite ratings are then found below.
        convert_options=pa_csv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            null_values=[""],
            strings_can_be_null=False,
        ),
    )
    if any(columns[name].null_count for name in ("user", "item", "rating", "time")):
        raise DataError(_explain(path, fmt, "empty fields"))
    # pop() frees each Arrow column once it is converted, so the peak holds about one copy.
    ratings = columns.pop("rating").to_numpy()
    if not np.isfinite(ratings).all():  # 'nan', 'inf' and float32 overflows parse as floats
        raise DataError(_explain(path, fmt, "ratings that are not finite"))
    return Interactions(
        users=columns.pop("user").to_numpy(),
        items=columns.pop("item").to_numpy(),
        ratings=ratings,
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


class _BadValue(Exception):
    """A table value a converter rejects: its data row (None: the whole column) and the problem."""

    def __init__(self, row: int | None, problem: str):
        super().__init__(problem)
        self.row, self.problem = row, problem


def _read_table(path: str, columns: dict[str, str]) -> Interactions:
    """The configured columns of a table with a header.

    Ids are int64 when every id is an integer, else strings with no further meaning (negative
    numbers are ids like any other). A float id that is whole (1.0) counts as the integer 1, so a
    column pandas wrote as float still reads; 1.5, nan or inf is an error. Times are integer unix
    seconds (again 1.0 counts), dates or datetimes; ratings are finite numbers. A missing value is
    an error: a null, an empty field, or an id spelled as pyarrow spells missing (NA, nan, null,
    N/A, ...). Errors name the line of a csv/tsv and the row of a parquet file.
    """
    if not columns["user_col"] or not columns["item_col"]:
        raise DataError("config.dataset.user_col and item_col must name columns of the table")
    wanted = {key: name for key, name in columns.items() if name}
    data = _read_table_columns(path, wanted)
    if not len(data["user_col"]):
        raise DataError(f"{path}: no interactions (empty file)")
    convert = {"user_col": _ids_to_numpy, "item_col": _ids_to_numpy}
    convert.update(time_col=_times_to_numpy, rating_col=_ratings_to_numpy)
    arrays = {}
    for key in wanted:
        column = data.pop(key)
        try:
            if column.null_count:
                raise _BadValue(_first(column.is_null()), "is empty")
            arrays[key] = convert[key](column)
        except _BadValue as e:
            where = path if e.row is None else _row_location(path, e.row)
            raise DataError(
                f"{where}: column {wanted[key]!r} (config.dataset.{key}) {e.problem}"
            ) from None
    return Interactions(
        users=arrays["user_col"],
        items=arrays["item_col"],
        timestamps=arrays.get("time_col"),
        ratings=arrays.get("rating_col"),
        source=path,
    )


def _read_table_columns(path: str, wanted: dict[str, str]) -> dict[str, pa.ChunkedArray]:
    """{config key: column}, after checking that every configured column exists."""
    name = path.lower().removesuffix(".gz")
    to_read = list(dict.fromkeys(wanted.values()))
    try:
        if path.lower().endswith(".parquet"):
            problem = _missing_column(path, wanted, pq.read_schema(path).names)
            if problem:
                raise DataError(problem)
            table = pq.read_table(path, columns=to_read)
        elif name.endswith((".csv", ".tsv")):
            table = _read_csv_table(path, "\t" if name.endswith(".tsv") else ",", wanted, to_read)
        else:
            raise DataError(
                f"{path}: the table format needs a .csv, .tsv (optionally .gz) or .parquet file"
            )
    except (pa.ArrowException, OSError) as e:  # a parquet file that is not one, or cut short
        raise DataError(f"{path}: {_first_line_of(e)}") from None
    return {key: table.column(column) for key, column in wanted.items()}


def _read_csv_table(path: str, delimiter: str, wanted: dict, to_read: list) -> pa.Table:
    parse_options = pa_csv.ParseOptions(delimiter=delimiter)
    try:
        names = pa_csv.open_csv(path, parse_options=parse_options).schema.names
        problem = _missing_column(path, wanted, names, delimiter)
        if problem:
            raise DataError(_text_problem(path) or problem)
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=_BLOCK_SIZE),
            parse_options=parse_options,
            convert_options=pa_csv.ConvertOptions(
                include_columns=to_read,
                # Ids stay text until every row is seen: pyarrow infers types per block.
                column_types={wanted["user_col"]: pa.string(), wanted["item_col"]: pa.string()},
                null_values=[""],  # not 'NA', 'nan', ...: the converters name such values
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            raise DataError(f"{path}: no interactions (empty file)") from None
        raise DataError(_explain_table(path, delimiter, _first_line_of(e))) from None
    except (OSError, EOFError) as e:  # e.g. a .gz cut short
        raise DataError(f"{path}: cannot read: {_first_line_of(e)}") from None


def _missing_column(path: str, wanted: dict, available: list, delimiter: str = "") -> str | None:
    """The message naming the first configured column the table lacks, or None."""
    for key, name in wanted.items():
        if name not in available:
            hint = ""
            if delimiter and len(available) == 1:
                hint = f" (one column: is the file {delimiter!r}-separated?)"
            return f"{path}: config.dataset.{key}={name!r} not in columns {available}{hint}"
    return None


def _ids_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """int64 when every id is an integer, else fixed-width unicode (never an object array)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).to_numpy()
    if pa.types.is_floating(column.type):
        return _whole(column.to_numpy(), "expected an integer or string id")
    if not _is_text(column.type):
        raise _BadValue(None, f"holds {column.type}, expected integer or string ids")
    missing = _first(pc.is_in(column, value_set=pa.array(_MISSING)))
    if missing is not None:
        value = column[missing].as_py()
        raise _BadValue(missing, f"is {value!r}, a missing value" if value else "is empty")
    try:
        return pc.cast(column, pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        pass
    try:
        numbers = pc.cast(column, pa.float64())
    except pa.ArrowInvalid:  # some ids are not numbers: all are strings
        width = max(1, pc.max(pc.utf8_length(column)).as_py() or 0)
        return column.to_numpy(zero_copy_only=False).astype(f"<U{width}")
    return _whole(numbers.to_numpy(), "expected an integer or string id")


def _times_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Integer unix seconds as they are; dates and datetimes become unix seconds."""
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).to_numpy()
    if pa.types.is_floating(column.type):
        return _whole(column.to_numpy(), _TIME_EXPECTED)
    if pa.types.is_date(column.type):
        return column.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    if pa.types.is_timestamp(column.type):  # sub-second parts are dropped
        seconds = column.cast(pa.timestamp("s", column.type.tz), safe=False)
        return seconds.cast(pa.int64()).to_numpy()
    if _is_text(column.type):  # a csv column with a value that is neither: name it
        bad = _first(pc.invert(pc.match_substring_regex(column, _TIME_TEXT)))
        if bad is not None:
            raise _BadValue(bad, f"is {column[bad].as_py()!r}, {_TIME_EXPECTED}")
    raise _BadValue(None, f"holds {column.type}, expected integer unix seconds or dates/datetimes")


def _ratings_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        ratings = column.cast(pa.float32(), safe=False).to_numpy()
        bad = _first(~np.isfinite(ratings))
        if bad is not None:
            raise _BadValue(bad, f"is {ratings[bad].item()!r}, expected a finite number")
        return ratings
    if _is_text(column.type):  # a csv column with a value that is not a number: name it
        bad = _first(pc.invert(pc.match_substring_regex(column, f"^(?:{_NUMBER_TEXT})$")))
        if bad is not None:
            raise _BadValue(bad, f"is {column[bad].as_py()!r}, expected a number")
    raise _BadValue(None, f"holds {column.type}, expected numbers")


def _whole(values: np.ndarray, expected: str) -> np.ndarray:
    """Floats that are all whole numbers (1.0) as int64; else the first other one is named."""
    ok = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0**63)
    bad = _first(~ok)
    if bad is not None:
        raise _BadValue(bad, f"is {values[bad].item()!r}, {expected}")
    return values.astype(np.int64)


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _first(mask) -> int | None:
    """Row of the first True in a boolean column (numpy or Arrow), or None."""
    rows = np.flatnonzero(np.asarray(mask))
    return int(rows[0]) if len(rows) else None


def _row_location(path: str, row: int) -> str:
    """'path:LINE' of data row `row` (0-based) of a csv/tsv, 'path: row N' of a parquet file."""
    if path.lower().endswith(".parquet"):
        return f"{path}: row {row + 1}"
    # As pyarrow reads it: empty lines are skipped, and the first other line is the header.
    with _open_binary(path) as f:
        lines = (number for number, raw in enumerate(f, 1) if raw.rstrip(b"\r\n"))
        return f"{path}:{next(itertools.islice(lines, row + 1, None))}"


def _explain_table(path: str, delimiter: str, parser_error: str) -> str:
    """'path:LINE: what is wrong' for the first line that is not UTF-8 or has the wrong width."""
    problem = _text_problem(path)
    if problem:
        return problem
    width = None
    try:
        with _open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                line = raw.rstrip(b"\r\n")
                if not line:
                    continue
                try:
                    fields = len(next(csv.reader([line.decode("utf-8")], delimiter=delimiter)))
                except UnicodeDecodeError:
                    return f"{path}:{number}: not UTF-8 text: {_shown(line)!r}"
                except csv.Error as e:
                    return f"{path}:{number}: {_first_line_of(e)}"
                if width is None:
                    width = fields
                elif fields != width:
                    return (
                        f"{path}:{number}: expected {width} fields as in the header, got "
                        f"{fields} in {_shown(line)!r}"
                    )
    except (OSError, EOFError) as e:
        return f"{path}: cannot read: {_first_line_of(e)}"
    return f"{path}: {parser_error}"


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
    problem = _text_problem(path)
    if problem:
        return problem
    whitespace_only_is_blank = fmt in ("user_item", "user_items")  # as the bulk reader treats it
    try:
        with _open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                line = raw.rstrip(b"\r\n")
                if number == 1:
                    line = line.removeprefix(_BOM)
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
        if not token:
            return f"{name} is empty in {shown!r}"
        if kind == "i" and not _INTEGER.fullmatch(token):
            return f"{name} {_shown(token)!r} is not an integer in {shown!r}"
        if kind == "i" and not _INT64[0] <= int(token) < _INT64[1]:
            return f"{name} {_shown(token)!r} does not fit in 64 bits in {shown!r}"
        if kind == "f" and not _NUMBER.fullmatch(token):  # 'nan' and 'inf' are not numbers here
            return f"{name} {_shown(token)!r} is not a number in {shown!r}"
        if kind == "f" and abs(float(token)) > _FLOAT32_MAX:
            return f"{name} {_shown(token)!r} is too large for float32 in {shown!r}"
    return None


def _text_problem(path: str) -> str | None:
    """Why a file that failed to parse is not UTF-8 text at all (judged by its first 4 KiB)."""
    try:
        with _open_binary(path) as f:
            head = f.read(4096)
    except (OSError, EOFError) as e:
        return f"{path}: cannot read: {_first_line_of(e)}"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); expected UTF-8"
    if b"\x00" in head:
        return f"{path}: not a text file (NUL bytes in the first 4 KiB: binary, or UTF-16/32?)"
    return None


def _shown(raw: bytes, limit: int = 80) -> str:
    """A line or field as messages show it: decoded, truncated to `limit` characters."""
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line_of(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
