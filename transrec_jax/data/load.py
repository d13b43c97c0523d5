"""config.dataset → SequenceDataset, through a processed-dataset cache.

The cache is one `.npz` file (no pickle) per (source, preprocessing options). Its name
carries a hash of the source's identity — a local file's absolute path, size and mtime; a
TFDS name and data dir; the synthetic generator's options and seed — and of every
preprocessing option, so changing any of them builds a new entry. It is written to a
temporary file and renamed into place, so a crash never leaves a cache that loads.
"""

from __future__ import annotations

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

CACHE_VERSION = 1
_PREPROCESS_KEYS = ("min_rating", "dedup", "min_user_interactions", "min_item_interactions")


def load_dataset(dataset_cfg, seed: int, *, log=print) -> SequenceDataset:
    """Return the processed dataset, building and caching it on first use."""
    path = cache_path(dataset_cfg, seed)
    if os.path.exists(path):
        ds = _read_cache(path)
        log(f"dataset: {ds.name} from cache {path}")
        return ds
    start = time.perf_counter()
    ds = preprocess_lib.preprocess(read_source(dataset_cfg, seed), dataset_cfg)
    _write_cache(path, ds)
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
            raise DataError(f"config.dataset.path={d.path!r}: no such file")
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
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = dict(
        offsets=ds.offsets, items=ds.items, user_ids=ds.user_ids, item_ids=ds.item_ids,
        meta=np.array(json.dumps({"num_items": ds.num_items, "name": ds.name, "stats": ds.stats()})),
    )
    if ds.timestamps is not None:
        arrays["timestamps"] = ds.timestamps
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_cache(path: str) -> SequenceDataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return SequenceDataset(
            offsets=z["offsets"], items=z["items"], num_items=meta["num_items"],
            user_ids=z["user_ids"], item_ids=z["item_ids"],
            timestamps=z["timestamps"] if "timestamps" in z.files else None, name=meta["name"],
        )


def cached_stats(path: str) -> dict:
    """The statistics stored beside a cached dataset."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))["stats"]
