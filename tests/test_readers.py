"""Local readers on tiny files written in each real format."""

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transrec_jax.data.errors import DataError
from transrec_jax.data.readers import read_interactions


def write(path, text, compress=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


@pytest.mark.parametrize("compress", [False, True])
def test_movielens_dat(tmp_path, compress):
    name = "ratings.dat.gz" if compress else "ratings.dat"
    path = write(tmp_path / name, "3::1193::5::978300760\n1::661::3.5::978302109\n", compress)
    x = read_interactions(path)  # detected from the name
    np.testing.assert_array_equal(x.users, [3, 1])
    np.testing.assert_array_equal(x.items, [1193, 661])
    np.testing.assert_array_equal(x.ratings, np.array([5, 3.5], np.float32))
    np.testing.assert_array_equal(x.timestamps, [978300760, 978302109])
    assert x.users.dtype == np.int64 and x.ratings.dtype == np.float32 and x.source == path


def test_ml100k(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    x = read_interactions(path)
    np.testing.assert_array_equal(x.users, [196, 186])
    np.testing.assert_array_equal(x.timestamps, [881250949, 891717742])


def test_ratings_csv(tmp_path):
    path = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n",
    )
    x = read_interactions(path)
    np.testing.assert_array_equal(x.items, [296, 306])
    np.testing.assert_array_equal(x.ratings, np.array([5.0, 3.5], np.float32))


def test_user_item_keeps_file_order(tmp_path):
    path = write(tmp_path / "ml-1m.txt", "2 5\n1 3\n\n1\t2\n", compress=False)
    x = read_interactions(path)  # detected from the lines
    np.testing.assert_array_equal(x.users, [2, 1, 1])
    np.testing.assert_array_equal(x.items, [5, 3, 2])
    assert x.timestamps is None and x.ratings is None


def test_user_items_one_row_per_item(tmp_path):
    path = write(tmp_path / "Beauty.txt.gz", "1 4 2 9\n2 3 1\n", compress=True)
    x = read_interactions(path)
    np.testing.assert_array_equal(x.users, [1, 1, 1, 2, 2])
    np.testing.assert_array_equal(x.items, [4, 2, 9, 3, 1])


def test_table_csv_with_string_ids_and_config_columns(tmp_path):
    path = write(
        tmp_path / "log.csv.gz", "ts,uid,asin,stars\n5,u1,B001,4\n7,u22,B002,2\n", compress=True
    )
    x = read_interactions(
        path, "table", user_col="uid", item_col="asin", time_col="ts", rating_col="stars"
    )
    assert x.users.dtype.kind == "U" and x.items.dtype.kind == "U"
    np.testing.assert_array_equal(x.users, ["u1", "u22"])
    np.testing.assert_array_equal(x.timestamps, [5, 7])
    np.testing.assert_array_equal(x.ratings, [4.0, 2.0])


def test_table_tsv_integer_ids_and_datetimes(tmp_path):
    path = write(tmp_path / "log.tsv", "user\titem\twhen\n10\t7\t1970-01-01 00:01:40\n")
    x = read_interactions(path, user_col="user", item_col="item", time_col="when")
    assert x.users.dtype == np.int64
    np.testing.assert_array_equal(x.timestamps, [100])


def test_table_parquet(tmp_path):
    path = str(tmp_path / "log.parquet")
    pq.write_table(
        pa.table({"user": pa.array(["3", "4"]), "item": pa.array([8, 9], pa.int32())}), path
    )
    x = read_interactions(path)
    assert x.users.dtype == np.int64 and x.items.dtype == np.int64
    np.testing.assert_array_equal(x.users, [3, 4])


def message(excinfo):
    text = str(excinfo.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "name, text, fmt, expected",
    [
        (
            "ratings.dat",
            "1::2::5::9\n1::3::4::9\nfoo::bar\n",
            "auto",
            "ratings.dat:3: expected 'UserID::MovieID::Rating::Timestamp', got 'foo::bar'",
        ),
        (
            "ratings.dat",
            "1::2::5::9\nx1::3::4::9\n",
            "auto",
            "ratings.dat:2: UserID 'x1' is not an integer in 'x1::3::4::9'",
        ),
        (
            "u.data",
            "1\t2\t5\t9\n\n1\t2\t5\n",
            "auto",
            "u.data:3: expected 'user<TAB>item<TAB>rating<TAB>timestamp', got '1\\t2\\t5'",
        ),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,good,9\n",
            "auto",
            "ratings.csv:2: rating 'good' is not a number in '1,2,good,9'",
        ),
        (
            "ratings.csv",
            "user,item\n1,2\n",
            "auto",
            "ratings.csv:1: expected header 'userId,movieId,rating,timestamp', got 'user,item'",
        ),
        ("seq.txt", "1 2\n1 2 3\n", "user_item", "seq.txt:2: expected 'user item', got '1 2 3'"),
        (
            "seq.txt",
            "1 2\n1 B00X\n",
            "user_item",
            "seq.txt:2: item 'B00X' is not an integer in '1 B00X'",
        ),
        (
            "seq.txt",
            "1 2 3\n7\n",
            "user_items",
            "seq.txt:2: expected 'user item1 item2 ...', got '7'",
        ),
    ],
)
def test_malformed_lines_are_named(tmp_path, name, text, fmt, expected):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as excinfo:
        read_interactions(path, fmt)
    assert message(excinfo) == f"{tmp_path}/{expected}"


def test_long_bad_line_is_truncated(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::2::3::4\n" + "9" * 500 + "\n")
    with pytest.raises(DataError, match=r"ratings.dat:2: expected .*\.\.\.'$") as excinfo:
        read_interactions(path)
    assert len(message(excinfo)) < len(str(tmp_path)) + 160


def test_missing_config_column(tmp_path):
    path = write(tmp_path / "log.csv", "user,item\n1,2\n")
    with pytest.raises(
        DataError, match=r"config.dataset.time_col='ts' not in columns \['user', 'item'\]"
    ):
        read_interactions(path, "table", time_col="ts")


def test_missing_file_unknown_format_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_interactions(str(tmp_path / "nope.dat"))
    path = write(tmp_path / "ratings.dat", "1::2::3::4\n")
    with pytest.raises(DataError, match="unknown format 'dat'"):
        read_interactions(path, "dat")
    for name, fmt in [
        ("ratings.dat", "auto"),
        ("empty.txt", "auto"),
        ("e.txt", "user_items"),
        ("ratings.csv", "auto"),
    ]:
        path = write(
            tmp_path / name, "\n" if name != "ratings.csv" else "userId,movieId,rating,timestamp\n"
        )
        with pytest.raises(DataError, match="empty file"):
            read_interactions(path, fmt)


def test_undetectable_format_asks_for_config(tmp_path):
    path = write(tmp_path / "data.txt", "hello world again\n")
    with pytest.raises(DataError, match="set config.dataset.format"):
        read_interactions(path)
