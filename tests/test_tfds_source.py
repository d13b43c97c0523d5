"""TFDS movielens through the stock builder, offline: tiny files in the real ml-1m layout."""

import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from transrec_jax.data import tfds_source
from transrec_jax.data.errors import DataError
from transrec_jax.data.tfds_source import load_tfds

NAME = "movielens/1m-ratings"
RATINGS = [(1, 1, 5, 978300760), (1, 2, 3, 978302109), (2, 2, 4, 978301968), (2, 1, 1, 978300275)]


def write_ml1m(folder, ratings=RATINGS):
    """ml-1m/{movies,users,ratings}.dat as GroupLens ships them; returns the extraction root."""
    ml1m = folder / "ml-1m"
    ml1m.mkdir(parents=True, exist_ok=True)
    (ml1m / "movies.dat").write_text(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure|Fantasy\n"
    )
    (ml1m / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (ml1m / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings))
    return str(folder)


def offline_download(root):
    import tensorflow_datasets as tfds

    return mock.patch.object(
        tfds.download.DownloadManager, "download_and_extract", return_value=root
    )


def as_rows(x):
    """(user, item, rating, timestamp) tuples, sorted: TFDS stores rows in a hashed order."""
    columns = (x.users, x.items, x.ratings, x.timestamps)
    return sorted(zip(*(column.tolist() for column in columns), strict=True))


def test_unsupported_name():
    with pytest.raises(DataError, match="config.dataset.tfds_name"):
        load_tfds("mnist")


def test_not_prepared_and_no_download(tmp_path):
    with pytest.raises(DataError, match="not prepared under"):
        load_tfds(NAME, str(tmp_path), download=False)


def test_prepare_without_tensorflow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_has_tensorflow", lambda: False)
    with pytest.raises(DataError, match=r"pip install -e '\.\[tfds\]'"):
        load_tfds(NAME, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_prepare_then_read_prepared_copy_without_tensorflow(tmp_path):
    pytest.importorskip("tensorflow")
    import tensorflow_datasets as tfds

    data_dir = str(tmp_path / "tfds")
    with offline_download(write_ml1m(tmp_path / "raw")):
        x = load_tfds(NAME, data_dir)
    assert as_rows(x) == sorted(RATINGS)
    assert x.users.dtype == np.int64 and x.items.dtype == np.int64
    assert x.timestamps.dtype == np.int64 and x.ratings.dtype == np.float32

    with mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare") as prepare:
        again = load_tfds(NAME, data_dir)
    prepare.assert_not_called()
    np.testing.assert_array_equal(again.users, x.users)  # same stored order

    # A fresh interpreter reads the prepared copy without importing TensorFlow.
    script = (
        "import sys; from transrec_jax.data.tfds_source import load_tfds; "
        f"x = load_tfds({NAME!r}, {data_dir!r}, download=False); "
        "print(len(x), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4", "False"]


def test_failed_prepare_is_cleaned_up_and_retry_works(tmp_path):
    pytest.importorskip("tensorflow")
    import tensorflow_datasets as tfds

    data_dir = tmp_path / "tfds"
    partial = data_dir / "downloads" / "files.grouplens.org_datasets_movielens_ml-1m.zip.tmp.0a1b"

    def download_breaks_midway(*args):
        partial.mkdir(parents=True)
        (partial / "ml-1m.zip").write_bytes(b"PK")
        raise ConnectionError("network unreachable")

    with (
        mock.patch.object(
            tfds.download.DownloadManager,
            "download_and_extract",
            side_effect=download_breaks_midway,
        ),
        pytest.raises(DataError, match="preparing under .* failed: ConnectionError"),
    ):
        load_tfds(NAME, str(data_dir))
    assert not partial.exists()
    assert os.listdir(data_dir / "movielens" / "1m-ratings") == []

    unknown_user = RATINGS + [(9, 1, 5, 978300000)]  # the builder's own parsing fails
    with (
        offline_download(write_ml1m(tmp_path / "bad", unknown_user)),
        pytest.raises(DataError, match="failed: KeyError"),
    ):
        load_tfds(NAME, str(data_dir))
    assert os.listdir(data_dir / "movielens" / "1m-ratings") == []

    with offline_download(write_ml1m(tmp_path / "good")):
        assert as_rows(load_tfds(NAME, str(data_dir))) == sorted(RATINGS)
