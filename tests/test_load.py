"""The processed-dataset cache: written once, atomically, keyed by source and options."""

import json
import os

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data import load
from transrec_jax.data.errors import DataError


def _cfg(tmp_path, **kw):
    c = config_lib.base_config()
    c.dataset.cache_dir = str(tmp_path / "cache")
    c.dataset.synthetic.update(num_users=200, num_items=60)
    c.dataset.update(kw)
    return c.dataset


def test_cache_round_trip_equals_fresh_build(tmp_path):
    cfg = _cfg(tmp_path)
    first = load.load_dataset(cfg, 0, log=lambda *_: None)
    path = load.cache_path(cfg, 0)
    assert os.path.exists(path)
    np.load(path, allow_pickle=False)  # loads without pickle
    again = load.load_dataset(cfg, 0, log=lambda *_: None)
    for name in ("offsets", "items", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert again.num_items == first.num_items
    assert load.cached_stats(path)["interactions"] == len(first.items)


def test_key_changes_with_options_seed_and_file(tmp_path):
    base = load.cache_path(_cfg(tmp_path), 0)
    assert load.cache_path(_cfg(tmp_path), 1) != base
    assert load.cache_path(_cfg(tmp_path, dedup=True), 0) != base
    f = tmp_path / "data.txt"
    f.write_text("1 1\n1 2\n")
    local = _cfg(tmp_path, source="local", path=str(f), format="user_item", name="local")
    key = load.cache_path(local, 0)
    f.write_text("1 1\n1 2\n1 3\n")
    assert load.cache_path(local, 0) != key


def test_crash_while_writing_leaves_no_loadable_cache(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        load.load_dataset(cfg, 0, log=lambda *_: None)
    assert os.listdir(tmp_path / "cache") == []


def test_missing_local_file_is_one_line_error(tmp_path):
    cfg = _cfg(tmp_path, source="local", path=str(tmp_path / "nope.txt"), name="local")
    with pytest.raises(DataError, match="config.dataset.path=.*no such file"):
        load.load_dataset(cfg, 0)


def test_cache_meta_records_version_and_shapes(tmp_path):
    cfg = _cfg(tmp_path)
    ds = load.load_dataset(cfg, 0, log=lambda *_: None)
    with np.load(load.cache_path(cfg, 0), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["version"] == load.CACHE_VERSION
    assert meta["shapes"]["items"] == [len(ds.items)] and "timestamps" not in meta["shapes"]
