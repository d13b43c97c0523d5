"""config.dataset → SequenceDataset, through a processed-dataset cache.

The cache is one `.npz` file (no pickle) per (source, preprocessing options). Its name
carries a hash of the source's identity — a local file's absolute path, size and mtime; a
TFDS name and data dir; the synthetic generator's options and seed — and of every
preprocessing option, so changing any of them builds a new entry. It is written to a
temporary file and renamed into place, so a crash never leaves a cache that loads. It is
checked when read (version, keys, dtypes, shapes, offsets, item range): a file that fails
(corrupt, truncated, foreign, older) is named in the log, deleted and rebuilt, so it can
never make every relaunch fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time

import numpy as np

from transrec_jax.data import preprocess as preprocess_lib
from transrec_jax.data import synthetic
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError
from transrec_jax.data.interactions import Interactions

CACHE_VERSION = 2  # 2: meta records the version and the array shapes
_PREPROCESS_KEYS = ("min_rating", "dedup", "min_user_interactions", "min_item_interactions")


def load_dataset(dataset_cfg, seed: int, *, log=print) -> SequenceDataset:
    """Return the processed dataset, building and caching it on first use."""
    path = cache_path(dataset_cfg, seed)
    if os.path.exists(path):
        try:
            ds = _read_cache(path)
        except Exception as e:  # whatever is wrong with it, a cache can be rebuilt
            why = _first_line_of(e)
            if not isinstance(e, _BadCache):
                why = f"{type(e).__name__}: {why}"
            log(f"dataset cache {path} is unreadable ({why}); rebuilding")
            _remove(path, dataset_cfg)
        else:
            log(f"dataset: {ds.name} from cache {path}")
            return ds
    start = time.perf_counter()
    ds = preprocess_lib.preprocess(read_source(dataset_cfg, seed), dataset_cfg)
    try:
        _write_cache(path, ds)
    except OSError as e:
        raise DataError(
            f"config.dataset.cache_dir={dataset_cfg.cache_dir!r}: cannot write {path}: "
            f"{e.strerror or _first_line_of(e)}"
        ) from None
    log(f"dataset: {ds.name} prepared in {time.perf_counter() - start:.1f} s, cached at {path}")
    return ds


def read_source(dataset_cfg, seed: int) -> Interactions:
    d = dataset_cfg
    if d.source == "synthetic":
        return synthetic.generate(d.synthetic, seed)
    if d.source == "local":
        from transrec_jax.data import readers

        return readers.read_interactions(
            d.path, d.format, user_col=d.user_col, item_col=d.item_col,
            time_col=d.time_col, rating_col=d.rating_col,
        )
    if d.source == "tfds":
        from transrec_jax.data import tfds_source

        return tfds_source.load_tfds(d.tfds_name, d.tfds_data_dir)
    raise DataError(f"config.dataset.source={d.source!r}: expected synthetic, local or tfds")


def cache_path(dataset_cfg, seed: int) -> str:
    d = dataset_cfg
    if d.source == "synthetic":
        identity = {"synthetic": d.synthetic.to_dict(), "seed": seed}
    elif d.source == "local":
        path = os.path.abspath(os.path.expanduser(d.path))
        if not os.path.isfile(path):
            problem = "a directory, expected a file" if os.path.isdir(path) else "no such file"
            if not os.path.isabs(os.path.expanduser(d.path)):
                cwd = os.getcwd()
                problem += f" (relative paths are resolved against the working directory {cwd})"
            raise DataError(f"config.dataset.path={d.path!r}: {problem}")
        st = os.stat(path)
        identity = {
            "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "format": d.format,
            "columns": [d.user_col, d.item_col, d.time_col, d.rating_col],
        }
    else:
        identity = {"tfds": d.tfds_name, "data_dir": d.tfds_data_dir}
    options = {k: d[k] for k in _PREPROCESS_KEYS}
    blob = json.dumps({"v": CACHE_VERSION, "source": identity, "options": options}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    cache_dir = os.path.expanduser(d.cache_dir or "~/.cache/transrec_jax")
    return os.path.join(cache_dir, f"{d.name}-{digest}.npz")


def _write_cache(path: str, ds: SequenceDataset) -> None:
    arrays = dict(offsets=ds.offsets, items=ds.items, user_ids=ds.user_ids, item_ids=ds.item_ids)
    if ds.timestamps is not None:
        arrays["timestamps"] = ds.timestamps
    meta = {
        "version": CACHE_VERSION, "num_items": ds.num_items, "name": ds.name, "stats": ds.stats(),
        "shapes": {key: list(a.shape) for key, a in arrays.items()},
    }
    write_npz(path, meta, arrays)


def write_npz(path: str, meta: dict, arrays: dict) -> None:
    """`arrays` and a JSON `meta` in one .npz, through a temporary file renamed into place: a
    crash never leaves a partial cache (side_info.py writes its caches so too)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# The cached arrays and their dtypes: ids keep the source's int64 or str; timestamps are optional.
_CACHE_DTYPES = {
    "offsets": ("int64",), "items": ("int32",), "user_ids": ("int64", "str"),
    "item_ids": ("int64", "str"), "timestamps": ("int64",),
}


class _BadCache(ValueError):
    """A cache file that reads but is not one this version wrote whole."""


def _read_cache(path: str) -> SequenceDataset:
    """The cached dataset; raises _BadCache (or whatever np.load raises) unless it is whole."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise _BadCache("not an .npz (zip) file")
    with np.load(path, allow_pickle=False) as z:
        if "meta" not in z.files:
            raise _BadCache("no meta entry")
        try:
            meta = json.loads(str(z["meta"]))
        except json.JSONDecodeError:
            raise _BadCache("meta is not JSON") from None
        version = meta.get("version") if isinstance(meta, dict) else None
        if version != CACHE_VERSION:
            raise _BadCache(f"cache version {version!r}, expected {CACHE_VERSION}")
        shapes = meta["shapes"]
        if not set(_CACHE_DTYPES) - {"timestamps"} <= set(shapes) <= set(_CACHE_DTYPES):
            raise _BadCache(f"meta lists arrays {sorted(shapes)}")
        arrays = {}
        for key, shape in shapes.items():
            a = arrays[key] = z[key]
            dtype = "str" if a.dtype.kind == "U" else a.dtype.name
            if dtype not in _CACHE_DTYPES[key] or list(a.shape) != shape:
                expected = " or ".join(_CACHE_DTYPES[key])
                raise _BadCache(f"{key} is {dtype}{list(a.shape)}, expected {expected}{shape}")
    ds = SequenceDataset(
        offsets=arrays["offsets"], items=arrays["items"], num_items=int(meta["num_items"]),
        user_ids=arrays["user_ids"], item_ids=arrays["item_ids"],
        timestamps=arrays.get("timestamps"), name=str(meta["name"]),
    )
    _check_consistent(ds)
    return ds


def _check_consistent(ds: SequenceDataset) -> None:
    offsets, items = ds.offsets, ds.items
    if offsets[0] != 0 or offsets[-1] != len(items) or (np.diff(offsets) < 0).any():
        raise _BadCache("offsets do not partition items")
    if len(items) and not (1 <= items.min() and items.max() <= ds.num_items):
        raise _BadCache(f"item ids outside 1..num_items={ds.num_items}")
    if len(ds.user_ids) != ds.num_users or len(ds.item_ids) != ds.num_items + 1:
        raise _BadCache("user_ids/item_ids do not match offsets/num_items")
    if ds.timestamps is not None and len(ds.timestamps) != len(items):
        raise _BadCache("timestamps do not match items")


def _remove(path: str, dataset_cfg) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:  # another process got there first
        pass
    except OSError as e:
        raise DataError(
            f"config.dataset.cache_dir={dataset_cfg.cache_dir!r}: cannot remove the unreadable "
            f"cache {path}: {e.strerror or _first_line_of(e)}"
        ) from None


def _first_line_of(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cached_stats(path: str) -> dict:
    """The statistics stored beside a cached dataset."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))["stats"]
