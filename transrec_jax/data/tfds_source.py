"""TFDS MovieLens ratings -> `Interactions`, through TFDS's stock `movielens` builder.

Preparing (download + build) runs the builder's own parsing, which needs TensorFlow (the optional
extra `pip install -e '.[tfds]'`). It writes array_record files, so every later read goes through
`tfds.data_source`, which needs no TensorFlow. tensorflow_datasets is imported only when called.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np

from transrec_jax.data.errors import DataError
from transrec_jax.data.interactions import Interactions

TFDS_DATASETS = (
    "movielens/100k-ratings",
    "movielens/1m-ratings",
    "movielens/20m-ratings",
    "movielens/25m-ratings",
)
# The features used, and the tf.train.Example list each is stored in.
_FEATURES = {
    "user_id": "bytes_list",
    "movie_id": "bytes_list",
    "timestamp": "int64_list",
    "user_rating": "float_list",
}
_BATCH = 1 << 16  # records fetched per data_source call: one at a time is far slower


def load_tfds(name: str, data_dir: str = "", *, download: bool = True) -> Interactions:
    """Read a prepared TFDS movielens ratings dataset, preparing it first if needed and allowed.

    `data_dir` "" is TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR). Rows come in the
    order TFDS stored them (shuffled by its example-key hash): sort by timestamp downstream.
    """
    if name not in TFDS_DATASETS:
        raise DataError(
            f"TFDS dataset {name!r} (config.dataset.tfds_name) is not supported; "
            f"expected one of {TFDS_DATASETS}"
        )
    import tensorflow_datasets as tfds
    from tensorflow_datasets.structured import movielens  # noqa: F401  registers the builder

    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
        if not download:
            raise DataError(
                f"{name}: not prepared under {builder.data_dir}; allow download to prepare it"
            )
        _prepare(builder, name)
    formats = {f.value for f in builder.info.available_file_formats()}
    if "array_record" not in formats:
        raise DataError(
            f"{name}: {builder.data_dir} holds {sorted(formats)} files, but reading needs "
            "array_record: delete that folder to have it prepared again, or use another data_dir"
        )
    records = builder.as_data_source(
        split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    return _records_to_interactions(records, name)


def _has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _prepare(builder, name: str) -> None:
    """Download and build as array_record; on failure remove what this attempt wrote."""
    if not _has_tensorflow():
        raise DataError(
            f"{name}: preparing TFDS movielens needs TensorFlow: pip install -e '.[tfds]' "
            "(reading an already prepared copy does not)"
        )
    variant_dir = os.fspath(builder.data_dir)  # <data_dir>/movielens/<config>/<version>
    root = os.path.dirname(os.path.dirname(os.path.dirname(variant_dir)))
    # TFDS's leftovers: the variant dir and its 'incomplete.*' siblings, and the archive and
    # extraction under downloads/ (named after the URL, which contains 'movielens').
    watched = {
        os.path.dirname(variant_dir): "",
        os.path.join(root, "downloads"): "movielens",
        os.path.join(root, "downloads", "extracted"): "movielens",
    }
    before = {folder: _entries(folder) for folder in watched}
    try:
        builder.download_and_prepare(file_format="array_record")
    except BaseException as e:
        for folder, must_contain in watched.items():
            for entry in _entries(folder) - before[folder]:
                if must_contain in entry:
                    path = os.path.join(folder, entry)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.remove(path)
        if not isinstance(e, Exception):  # KeyboardInterrupt and the like pass through
            raise
        reason = (str(e).strip().splitlines() or [""])[0]
        raise DataError(
            f"{name}: preparing under {root} failed: {type(e).__name__}: {reason}"
        ) from e


def _entries(folder: str) -> set[str]:
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def _records_to_interactions(records, name: str) -> Interactions:
    """Parse the serialized tf.train.Example records, reading only the four features used.

    TFDS's own decoding of all 12 features is several times slower.
    """
    from tensorflow_datasets.proto import tf_example_pb2

    total = len(records)
    if not total:
        raise DataError(f"{name}: the prepared dataset has no records")
    users, items = [], []
    timestamps = np.empty(total, np.int64)
    ratings = np.empty(total, np.float32)
    for start in range(0, total, _BATCH):
        stop = min(total, start + _BATCH)
        batch_users, batch_items = [], []
        # __getitems__ is the data source's batched read (the one PyTorch's DataLoader uses).
        for row, record in enumerate(records.__getitems__(range(start, stop)), start):
            feature = tf_example_pb2.Example.FromString(record).features.feature
            if row == 0:
                _check_features(feature, name)
            batch_users.append(feature["user_id"].bytes_list.value[0])
            batch_items.append(feature["movie_id"].bytes_list.value[0])
            timestamps[row] = feature["timestamp"].int64_list.value[0]
            ratings[row] = feature["user_rating"].float_list.value[0]
        users.append(np.array(batch_users))
        items.append(np.array(batch_items))
    return Interactions(
        users=_ids(np.concatenate(users)),
        items=_ids(np.concatenate(items)),
        timestamps=timestamps,
        ratings=ratings,
        source=f"tfds:{name}",
    )


def _check_features(feature, name: str) -> None:
    for key, kind in _FEATURES.items():
        if key not in feature or not getattr(feature[key], kind).value:
            raise DataError(f"{name}: TFDS records lack feature {key!r} as {kind}")


def _ids(raw: np.ndarray) -> np.ndarray:
    """Byte-string ids -> int64 when all parse as integers, else fixed-width unicode."""
    try:
        return raw.astype(np.int64)
    except ValueError:
        return raw.astype(np.str_)
