"""Preprocessing: filters, stable time sort, dedup, iterated k-core, id remapping."""

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data.errors import DataError
from transrec_jax.data.interactions import Interactions
from transrec_jax.data.preprocess import preprocess


def _cfg(**kw):
    c = config_lib.base_config()
    c.dataset.update(kw)
    return c.dataset


def _raw(rows, with_time=True, with_rating=False):
    rows = np.array(rows)
    return Interactions(
        users=rows[:, 0].astype(np.int64), items=rows[:, 1].astype(np.int64),
        timestamps=rows[:, 2].astype(np.int64) if with_time else None,
        ratings=rows[:, 3].astype(np.float32) if with_rating else None, source="toy",
    )


def test_stable_sort_keeps_file_order_for_same_second_ties():
    # user 7: items 30, 10, 20 in the same second, then 40 earlier; file order must survive ties.
    raw = _raw([[7, 30, 100], [7, 10, 100], [7, 20, 100], [7, 40, 50], [3, 10, 1]])
    ds = preprocess(raw, _cfg())
    assert list(ds.user_ids) == [3, 7]
    seq7 = ds.item_ids[ds.sequence(1)]
    assert list(seq7) == [40, 30, 10, 20]
    assert list(ds.timestamps[ds.offsets[1]:]) == [50, 100, 100, 100]


def test_item_ids_are_contiguous_from_one_and_map_back():
    raw = _raw([[1, 500, 1], [1, 20, 2], [2, 7, 1], [2, 500, 2]])
    ds = preprocess(raw, _cfg())
    assert ds.num_items == 3 and ds.items.min() == 1 and ds.items.max() == 3
    assert list(ds.item_ids) == [0, 7, 20, 500]  # entry 0 = padding placeholder, then sorted ids
    assert list(ds.item_ids[ds.items]) == [500, 20, 7, 500]


def test_rating_threshold_and_dedup_keep_earliest():
    raw = _raw([[1, 1, 3, 5], [1, 2, 1, 1], [1, 1, 2, 4], [1, 3, 4, 4]], with_rating=True)
    ds = preprocess(raw, _cfg(min_rating=4.0, dedup=True))
    assert list(ds.item_ids[ds.sequence(0)]) == [1, 3]  # item 1 at t=2 kept, its t=3 repeat dropped


def test_iterated_k_core_needs_more_than_one_pass():
    # 2-core: item 9 has one interaction; removing it leaves user 3 with one item, which then goes,
    # leaving item 5 with a single interaction, which goes too.
    rows = [[1, 1, 1], [1, 2, 2], [2, 1, 1], [2, 2, 2], [3, 9, 1], [3, 5, 2], [4, 5, 1], [4, 1, 2],
            [4, 2, 3]]
    ds = preprocess(_raw(rows), _cfg(min_user_interactions=2, min_item_interactions=2))
    assert list(ds.user_ids) == [1, 2, 4]
    assert list(ds.item_ids[1:]) == [1, 2]
    lengths = np.diff(ds.offsets)
    assert list(lengths) == [2, 2, 2]
    counts = np.bincount(ds.items)[1:]
    assert counts.min() >= 2 and lengths.min() >= 2


def test_string_ids_are_supported():
    raw = Interactions(users=np.array(["b", "a", "b"]), items=np.array(["x", "y", "y"]), source="s")
    ds = preprocess(raw, _cfg())
    assert list(ds.user_ids) == ["a", "b"] and list(ds.item_ids) == ["", "x", "y"]


@pytest.mark.parametrize(
    "kw, raw_kw, match",
    [
        ({"min_rating": 6.0}, {"with_rating": True}, "min_rating"),
        ({"min_rating": 4.0}, {}, "has no ratings"),
        ({"min_user_interactions": 50}, {}, "k-core"),
        ({"split": "temporal"}, {"with_time": False}, "no timestamps"),
    ],
)
def test_errors_are_one_line_and_name_the_key(kw, raw_kw, match):
    raw = _raw([[1, 1, 1, 5], [1, 2, 2, 5], [2, 1, 1, 5]], **raw_kw)
    with pytest.raises(DataError, match=match) as err:
        preprocess(raw, _cfg(**kw))
    assert "\n" not in str(err.value)
