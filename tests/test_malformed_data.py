"""Malformed input files and caches, as a fault-injection run found them.

Every malformed file must give one `DataError` line naming the file (and the line and field where
one is to blame) and leave nothing in the cache dir; a corrupt cache must be named in the log,
deleted and rebuilt. Files that are odd but fine (CRLF, BOM, duplicates) must simply read.
"""

import gzip
import json
import os
import pathlib
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data import load, readers, splits
from transrec_jax.data.errors import DataError

DAT_OK = "1::10::5::100\n1::11::4::101\n"
CSV_HEADER = "userId,movieId,rating,timestamp\n"
TABLE = dict(user_col="user", item_col="item", time_col="ts", rating_col="r")
HEAD = "user,item,ts,r\n"


def _cfg(tmp_path, path, fmt="auto", **kw):
    c = config_lib.base_config()
    c.dataset.update(source="local", path=str(path), format=fmt, name="local")
    c.dataset.update(cache_dir=str(tmp_path / "cache"), **kw)
    return c.dataset


def _write(path, content):
    """content: text (compressed for a .gz name), raw bytes, or a function that writes the file."""
    if callable(content):
        content(str(path))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        data = content.encode()
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _parquet(**columns):
    return lambda path: pq.write_table(pa.table(columns), path)


def _truncated_gzip(text):
    data = gzip.compress(text.encode() * 2000)
    return data[: len(data) // 2]


RANDOM_BYTES = random.Random(0).randbytes(3000)

# (file name, content, format, config keys, where, words): `where` follows the path in the
# message (":LINE:" or ": row N:"; None when no line is to blame); every word is in the message.
CASES = [
    # movielens_dat: UserID::MovieID::Rating::Timestamp
    ("ratings.dat", DAT_OK + "nan::3::4::9\n", "auto", {}, ":3:", ["UserID 'nan'"]),
    ("ratings.dat", DAT_OK + "1::3::4::NA\n", "auto", {}, ":3:", ["Timestamp 'NA'"]),
    ("ratings.dat", DAT_OK + "1::3::4::null\n", "auto", {}, ":3:", ["Timestamp 'null'"]),
    ("ratings.dat", "1::N/A::4::9\n", "movielens_dat", {}, ":1:", ["MovieID 'N/A'"]),
    ("ratings.dat", DAT_OK + "::3::4::9\n", "auto", {}, ":3:", ["UserID is empty"]),
    ("ratings.dat", DAT_OK + "1::3::4::\n", "auto", {}, ":3:", ["Timestamp is empty"]),
    ("ratings.dat", DAT_OK + "1::3::nan::9\n", "auto", {}, ":3:", ["Rating 'nan'"]),
    ("ratings.dat", DAT_OK + "1::3::inf::9\n", "auto", {}, ":3:", ["Rating 'inf'"]),
    ("ratings.dat", DAT_OK + "1::3::-inf::9\n", "auto", {}, ":3:", ["Rating '-inf'"]),
    ("ratings.dat", DAT_OK + "1::3::1e39::9\n", "auto", {}, ":3:", ["Rating '1e39'", "float32"]),
    ("ratings.dat", DAT_OK + "1.5::3::4::9\n", "auto", {}, ":3:", ["UserID '1.5'", "integer"]),
    ("ratings.dat", DAT_OK + "1::3::4::9.5\n", "auto", {}, ":3:", ["Timestamp '9.5'"]),
    ("ratings.dat", DAT_OK + "1::3::4::99999999999999999999\n", "auto", {}, ":3:", ["64 bits"]),
    ("ratings.dat", DAT_OK + "1::3::4\n", "auto", {}, ":3:", ["expected 'UserID::"]),
    ("ratings.dat", DAT_OK + "1::3::4::9::9\n", "auto", {}, ":3:", ["expected 'UserID::"]),
    ("ratings.dat", "1,3,4,9\n", "auto", {}, ":1:", ["expected 'UserID::"]),
    ("ratings.dat", DAT_OK + "1:3::4::9\n", "auto", {}, ":3:", ["expected 'UserID::"]),
    ("ratings.dat", DAT_OK + "   \n", "auto", {}, ":3:", ["expected 'UserID::"]),
    ("ratings.dat", DAT_OK + "9" * 1_000_000 + "\n", "auto", {}, ":3:", ["..."]),
    ("ratings.dat", DAT_OK.encode("utf-16"), "auto", {}, None, ["UTF-16"]),
    ("ratings.dat.gz", _truncated_gzip(DAT_OK), "auto", {}, None, ["cannot read"]),
    ("ratings.dat.gz", b"not gzip at all", "auto", {}, None, ["cannot read"]),
    ("ratings.dat", "", "auto", {}, None, ["empty file"]),
    # ml100k: user<TAB>item<TAB>rating<TAB>timestamp
    ("u.data", "1\t2\t5\t9\nN/A\t3\t4\t9\n", "auto", {}, ":2:", ["user 'N/A'"]),
    ("u.data", "1\t2\t5\t9\n1\t3\t\t9\n", "auto", {}, ":2:", ["rating is empty"]),
    ("u.data", "1\t2\t5\t9\n1\t3\t4\tnan\n", "auto", {}, ":2:", ["timestamp 'nan'"]),
    ("u.data", "1 2 5 9\n", "ml100k", {}, ":1:", ["expected 'user<TAB>"]),
    ("u.data", "1\t2\t5\t9\n1\t3\t4\n", "auto", {}, ":2:", ["expected 'user<TAB>"]),
    # ratings_csv: a header, then userId,movieId,rating,timestamp
    ("ratings.csv", CSV_HEADER + "1,2,5,9\n1,NA,4,9\n", "auto", {}, ":3:", ["movieId 'NA'"]),
    ("ratings.csv", CSV_HEADER + "1,2,NaN,9\n", "auto", {}, ":2:", ["rating 'NaN'"]),
    ("ratings.csv", CSV_HEADER + "1,2,5,\n", "auto", {}, ":2:", ["timestamp is empty"]),
    ("ratings.csv", CSV_HEADER + "null,2,5,9\n", "auto", {}, ":2:", ["userId 'null'"]),
    ("ratings.csv", CSV_HEADER + "1,2,5,9,0\n", "auto", {}, ":2:", ["expected 'userId,"]),
    ("ratings.csv", CSV_HEADER, "auto", {}, None, ["empty file"]),
    ("ratings.csv", CSV_HEADER.replace(",", ";") + "1;2;5;9\n", "auto", {}, ":1:", ["header"]),
    # user_item and user_items (SASRec/BERT4Rec/S3-Rec id lines)
    ("seq.txt", "1 2\n1 nan\n", "user_item", {}, ":2:", ["item 'nan'"]),
    ("seq.txt", "1 2\n1.5 3\n", "user_item", {}, ":2:", ["user '1.5'"]),
    ("seq.txt", "1 2\n7\n", "user_item", {}, ":2:", ["expected 'user item'"]),
    ("seq.txt", "1 2 3\n2 NA 4\n", "user_items", {}, ":2:", ["item 'NA'"]),
    ("seq.txt", "1 2 3\n2 4 inf\n", "user_items", {}, ":2:", ["item 'inf'"]),
    ("seq.txt.gz", _truncated_gzip("1 2 3\n"), "user_items", {}, None, ["cannot read"]),
    ("seq.txt", RANDOM_BYTES, "user_items", {}, None, ["not a text file"]),
    # table: csv
    ("log.csv", HEAD + "1,2,3,4\nnan,2,3,4\n", "table", TABLE, ":3:", ["'user'", "user_col"]),
    ("log.csv", HEAD + ",2,3,4\n", "table", TABLE, ":2:", ["user_col) is empty"]),
    ("log.csv", HEAD + "1,2,3,4\n1.5,2,3,4\n", "table", TABLE, ":3:", ["1.5", "user_col"]),
    ("log.csv", HEAD + "u1,B1,nan,4\n", "table", TABLE, ":2:", ["nan", "time_col"]),
    ("log.csv", HEAD + "u1,B1,3,4\nu1,B2,NA,4\n", "table", TABLE, ":3:", ["'NA'", "time_col"]),
    ("log.csv", HEAD + "u1,B1,,4\n", "table", TABLE, ":2:", ["time_col) is empty"]),
    ("log.csv", HEAD + "u1,B1,3.5,4\n", "table", TABLE, ":2:", ["3.5", "time_col"]),
    ("log.csv", HEAD + "u1,B1,3,inf\n", "table", TABLE, ":2:", ["inf", "rating_col"]),
    ("log.csv", HEAD + "u1,B1,3,4\nu,B,3,NA\n", "table", TABLE, ":3:", ["'NA'", "rating_col"]),
    ("log.csv", HEAD + "u1,B1,3,4\n\nu1,B2,NA,4\n", "table", TABLE, ":4:", ["time_col"]),
    ("log.csv", "user,item,r\n1,2,3\n", "table", TABLE, None, ["config.dataset.time_col='ts'"]),
    ("log.csv", "user,item\n1,2\n1,2,3\n", "table", {}, ":3:", ["expected 2 fields"]),
    ("log.csv", "user;item\n1;2\n", "table", {}, None, ["','-separated"]),
    ("log.csv", "user,item\n", "table", {}, None, ["empty file"]),
    ("log.csv", "", "table", {}, None, ["empty file"]),
    ("log.csv", "user,item\n1,2\n".encode("utf-16"), "table", {}, None, ["UTF-16"]),
    ("log.csv", RANDOM_BYTES, "table", {}, None, ["not a text file"]),
    ("log.csv.gz", _truncated_gzip("user,item\n1,2\n"), "table", {}, None, ["cannot read"]),
    # table: tsv
    ("log.tsv", "user\titem\n1\t2\nN/A\t3\n", "table", {}, ":3:", ["'N/A'", "user_col"]),
    ("log.tsv", "user\titem\tts\n1\t2\t1.5\n", "table", dict(time_col="ts"), ":2:", ["time_col"]),
    # table: parquet (no lines: rows are named)
    ("log.parquet", _parquet(user=pa.array([b"a", b"b"]), item=[1, 2]), "table", {}, None,
     ["holds binary", "user_col"]),
    ("log.parquet", _parquet(user=[1, 2], item=pa.array([[1], [2]])), "table", {}, None,
     ["holds list", "item_col"]),
    ("log.parquet", _parquet(user=[1, 2], item=[1, 2], ts=["2020-01-01", "2020-01-02"]),
     "table", dict(time_col="ts"), None, ["holds string", "time_col"]),
    ("log.parquet", _parquet(user=[1, 2], item=[1.0, float("nan")]), "table", {}, ": row 2:",
     ["nan", "item_col"]),
    ("log.parquet", _parquet(user=pa.array([1, None]), item=[1, 2]), "table", {}, ": row 2:",
     ["user_col) is empty"]),
    ("log.parquet", _parquet(user=[1, 2], item=[1.5, 2.0]), "table", {}, ": row 1:", ["1.5"]),
    ("log.parquet", _parquet(user=[1], item=[1], r=[float("inf")]), "table",
     dict(rating_col="r"), ": row 1:", ["inf", "rating_col"]),
    ("log.parquet", RANDOM_BYTES, "table", {}, None, []),
    ("log.parquet", lambda p: (_parquet(user=[1] * 99, item=[2] * 99)(p),
                               os.truncate(p, os.path.getsize(p) // 2)), "table", {}, None, []),
    # auto-detection from the lines
    ("data.bin", RANDOM_BYTES, "auto", {}, None, ["not a text file"]),
    ("data.txt", "1 2\n".encode("utf-16"), "auto", {}, None, ["UTF-16"]),
    ("data.txt", "1 2\n" * 100 + "1 x\n", "auto", {}, ":101:", ["item 'x'", "guessed"]),
    ("data.txt", "\n\n", "auto", {}, None, ["empty file"]),
]


@pytest.mark.parametrize(
    "name, content, fmt, keys, where, words",
    CASES,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(CASES)],
)
def test_malformed_file_is_one_line_error_and_leaves_no_cache(
    tmp_path, name, content, fmt, keys, where, words
):
    path = tmp_path / name
    _write(path, content)
    with pytest.raises(DataError) as excinfo:
        load.load_dataset(_cfg(tmp_path, path, fmt, **keys), 0, log=lambda *_: None)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    if where:
        assert f"{path}{where}" in message
    for word in words:
        assert word in message
    assert not (tmp_path / "cache").exists() or os.listdir(tmp_path / "cache") == []


def test_path_errors(tmp_path, monkeypatch):
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match=r"path='.*dir': a directory, expected a file$"):
        load.load_dataset(_cfg(tmp_path, tmp_path / "dir"), 0)
    monkeypatch.chdir(tmp_path / "dir")
    with pytest.raises(DataError) as excinfo:
        load.load_dataset(_cfg(tmp_path, "../x.gz"), 0)
    assert str(excinfo.value) == (
        "config.dataset.path='../x.gz': no such file (relative paths are resolved against the "
        f"working directory {tmp_path / 'dir'})"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text(DAT_OK)
    path.chmod(0)
    with pytest.raises(DataError, match=r"ratings.dat: cannot read: Permission denied$"):
        readers.read_interactions(str(path))


def test_unwritable_cache_dir_is_one_line_error(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text(DAT_OK)
    (tmp_path / "cache").write_text("a file, not a folder")
    with pytest.raises(DataError, match=r"^config.dataset.cache_dir='.*cache': cannot write "):
        load.load_dataset(_cfg(tmp_path, path), 0, log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == ["cache", "ratings.dat"]


def test_full_disk_while_writing_the_cache_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ratings.dat"
    path.write_text(DAT_OK)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(DataError, match=r"cache_dir=.*: No space left on device$"):
        load.load_dataset(_cfg(tmp_path, path), 0, log=lambda *_: None)
    assert os.listdir(tmp_path / "cache") == []


# --- odd files that are fine ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, fmt, keys",
    [
        ("ratings.dat", "1::10::5::100\n2::11::4::101\n", "auto", {}),
        ("u.data", "1\t10\t5\t100\n2\t11\t4\t101\n", "auto", {}),
        ("ratings.csv", CSV_HEADER + "1,10,5,100\n2,11,4,101\n", "auto", {}),
        ("seq.txt", "1 10\n2 11\n", "auto", {}),
        ("seq.txt", "1 10\n2 11 12\n", "user_items", {}),
        ("log.csv", HEAD + "1,10,100,5\n2,11,101,4\n", "table", TABLE),
        ("log.tsv", "user\titem\n1\t10\n2\t11\n", "table", {}),
    ],
)
@pytest.mark.parametrize("variant", ["crlf", "bom", "crlf+bom"])
def test_crlf_and_utf8_bom_read_like_plain_files(tmp_path, name, text, fmt, keys, variant):
    plain = tmp_path / "plain" / name
    odd = tmp_path / variant / name
    for p in (plain, odd):
        p.parent.mkdir()
    plain.write_text(text)
    odd_text = text.replace("\n", "\r\n") if "crlf" in variant else text
    odd.write_bytes(("\ufeff" if "bom" in variant else "").encode() + odd_text.encode())
    a = readers.read_interactions(str(plain), fmt, **keys)
    b = readers.read_interactions(str(odd), fmt, **keys)
    for field in ("users", "items", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_duplicate_rows_are_kept_unless_dedup(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n1::10::5::100\n1::11::4::101\n")
    x = readers.read_interactions(str(path))
    np.testing.assert_array_equal(x.items, [10, 10, 11])
    ds = load.load_dataset(_cfg(tmp_path, path), 0, log=lambda *_: None)
    assert len(ds.items) == 3
    ds = load.load_dataset(_cfg(tmp_path, path, dedup=True), 0, log=lambda *_: None)
    assert list(ds.item_ids[ds.items]) == [10, 11]


def test_single_interaction_loads_and_the_split_says_why_it_cannot_test(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("1 2\n")
    cfg = _cfg(tmp_path, path)
    ds = load.load_dataset(cfg, 0, log=lambda *_: None)
    assert ds.num_users == 1 and ds.num_items == 1
    with pytest.raises(DataError, match="no user with a test item") as excinfo:
        splits.make_split(ds, cfg)
    assert "\n" not in str(excinfo.value) and str(path) in str(excinfo.value)


def test_long_valid_line_and_table_id_choices(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("7 " + " ".join(map(str, range(1, 100_001))) + "\n")
    x = readers.read_interactions(str(path), "user_items")
    assert len(x) == 100_000 and x.items[-1] == 100_000
    # Whole floats are integer ids, negative ids are ids; mixed text stays text.
    path = tmp_path / "log.csv"
    path.write_text("user,item\n1.0,-2\n3e0,5\n")
    x = readers.read_interactions(str(path), "table")
    assert x.users.dtype == np.int64 and list(x.users) == [1, 3] and list(x.items) == [-2, 5]
    path.write_text("user,item\n1.5,B1\nu2,B2\n")
    assert list(readers.read_interactions(str(path), "table").users) == ["1.5", "u2"]


# --- the cache --------------------------------------------------------------------------------


def _rewrite(path, **changes):
    """Write the cache again with entries changed: a new array, a function of the old, or None
    to drop it. np.savez pickles object arrays, which the cache must refuse to load."""
    with np.load(path, allow_pickle=True) as z:
        arrays = {k: z[k] for k in z.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key]) if callable(change) else change
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in arrays.items() if v is not None})


def _meta(**changes):
    return lambda meta: np.array(json.dumps({**json.loads(str(meta)), **changes}))


def _save_npy(path):
    with open(path, "wb") as f:
        np.save(f, np.arange(3))


def _flip_middle_byte(path):
    data = bytearray(pathlib.Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated": (lambda p: os.truncate(p, os.path.getsize(p) // 2), "not a zip file"),
    "random bytes": (lambda p: pathlib.Path(p).write_bytes(RANDOM_BYTES), "not an .npz"),
    "empty": (lambda p: pathlib.Path(p).write_bytes(b""), "not an .npz"),
    "text": (lambda p: pathlib.Path(p).write_text("PK? no\n"), "not an .npz"),
    "npy": (_save_npy, "not an .npz"),
    "flipped byte": (_flip_middle_byte, ""),  # the zip's CRC, or a header, catches it
    "missing meta": (lambda p: _rewrite(p, meta=None), "no meta"),
    "missing items": (lambda p: _rewrite(p, items=None), "items"),
    "meta not json": (lambda p: _rewrite(p, meta=np.array("{oops")), "meta is not JSON"),
    "meta not dict": (lambda p: _rewrite(p, meta=np.array("[2]")), "cache version None"),
    "old version": (lambda p: _rewrite(p, meta=_meta(version=1)), "cache version 1, expected"),
    "float items": (lambda p: _rewrite(p, items=lambda a: a.astype(np.float32)), "float32"),
    "short offsets": (lambda p: _rewrite(p, offsets=lambda a: a[:-1]), "offsets is int64"),
    "offsets vs items": (lambda p: _rewrite(p, offsets=lambda a: a * 0), "do not partition"),
    "item out of range": (lambda p: _rewrite(p, items=lambda a: a + 1000), "outside 1..num_items"),
    "object ids": (lambda p: _rewrite(p, user_ids=lambda a: a.astype(object)), "allow_pickle"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_cache_is_named_deleted_and_rebuilt(tmp_path, corruption):
    corrupt, why = CORRUPTIONS[corruption]
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n1::11::4::101\n2::10::3::102\n1::12::4::103\n")
    cfg = _cfg(tmp_path, path)
    fresh = load.load_dataset(cfg, 0, log=lambda *_: None)
    cache = load.cache_path(cfg, 0)
    corrupt(cache)
    logged = []
    again = load.load_dataset(cfg, 0, log=logged.append)
    assert logged[0].startswith(f"dataset cache {cache} is unreadable (") and why in logged[0]
    assert logged[0].endswith("); rebuilding") and "\n" not in logged[0]
    for field in ("offsets", "items", "user_ids", "item_ids", "timestamps"):
        np.testing.assert_array_equal(getattr(again, field), getattr(fresh, field))
    assert again.num_items == fresh.num_items and again.name == fresh.name
    logged.clear()
    load.load_dataset(cfg, 0, log=logged.append)
    assert logged == [f"dataset: {fresh.name} from cache {cache}"]
    assert os.listdir(tmp_path / "cache") == [os.path.basename(cache)]


@pytest.mark.parametrize(
    "name, text, keys",
    [
        ("ratings.dat", DAT_OK, {}),
        ("seq.txt", "1 10 11\n2 10\n", {}),
        ("log.csv", "user,item,ts\nu1,B1,2020-01-01\nu2,B2,2020-01-02\n", dict(time_col="ts")),
    ],
)
def test_fresh_caches_of_every_id_kind_read_back(tmp_path, name, text, keys):
    path = tmp_path / name
    path.write_text(text)
    cfg = _cfg(tmp_path, path, "table" if name.endswith(".csv") else "auto", **keys)
    load.load_dataset(cfg, 0, log=lambda *_: None)
    logged = []
    load.load_dataset(cfg, 0, log=logged.append)
    assert logged[0].startswith("dataset: ") and "from cache" in logged[0]
