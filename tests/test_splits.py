"""Leave-one-out and temporal splits, as positions into the ragged sequences."""

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data import splits
from transrec_jax.data.dataset import SequenceDataset, ragged_from_sorted
from transrec_jax.data.errors import DataError


def _ds(seqs, times=None):
    users = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    items = np.concatenate([np.asarray(s) for s in seqs]).astype(np.int32)
    return SequenceDataset(
        offsets=ragged_from_sorted(users, len(seqs)), items=items, num_items=int(items.max()),
        user_ids=np.arange(len(seqs)), item_ids=np.arange(items.max() + 1),
        timestamps=None if times is None else np.concatenate(times).astype(np.int64), name="toy",
    )


def test_leave_one_out_positions_and_short_users():
    ds = _ds([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    sp = splits.leave_one_out(ds)
    assert list(sp.train_end) == [2, 2, 1]
    assert list(sp.val_pos) == [2, -1, 1] and list(sp.test_pos) == [3, -1, 2]
    assert list(sp.eval_users("test")) == [0, 2]
    # the user with 2 items trains on both and is never evaluated
    assert sp.summary()["test_users"] == 2 and sp.summary()["train_interactions"] == 5


def test_train_on_val_item_trains_up_to_the_test_item():
    ds = _ds([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    cfg = config_lib.base_config().dataset
    cfg.train_on_val_item = True
    sp = splits.make_split(ds, cfg)
    # validated users train on their validation item too; the short user is unchanged
    assert list(sp.train_end) == [3, 2, 2] and sp.val_trained
    assert list(sp.val_pos) == [2, -1, 1] and list(sp.test_pos) == [3, -1, 2]
    assert sp.summary()["train_interactions"] == 7 and sp.summary()["val_item_trained"]
    with pytest.raises(ValueError, match="only with a leave_one_out split"):
        splits.train_on_val_item(splits.temporal(_ds([[1, 2, 3]], times=[[1, 2, 3]]), 2, 3))


def test_temporal_split_uses_global_cut_points():
    ds = _ds([[1, 2, 3, 4], [5, 6, 7], [8, 9]], times=[[1, 2, 5, 9], [1, 6, 7], [8, 9]])
    sp = splits.temporal(ds, val_time=5, test_time=8)
    assert list(sp.train_end) == [2, 1, 0]
    assert list(sp.val_pos) == [2, 1, -1]  # first item in [5, 8)
    assert list(sp.test_pos) == [3, -1, -1]  # user 2 has nothing before the test cut to predict from


def test_make_split_errors_when_nobody_is_tested():
    cfg = config_lib.base_config().dataset
    with pytest.raises(DataError, match="no user with a test item"):
        splits.make_split(_ds([[1, 2], [3]]), cfg)
