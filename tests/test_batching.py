"""Batchers: fixed shapes, right-aligned windows, exact state restore, padded eval batches."""

import numpy as np
import pytest

from transrec_jax.data import splits
from transrec_jax.data.batching import EvalBatcher, TrainBatcher, gather_windows
from transrec_jax.data.dataset import SequenceDataset, ragged_from_sorted


def _ds(seqs):
    users = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    items = np.concatenate([np.asarray(s) for s in seqs]).astype(np.int32)
    return SequenceDataset(
        offsets=ragged_from_sorted(users, len(seqs)), items=items, num_items=int(items.max()),
        user_ids=np.arange(len(seqs)), item_ids=np.arange(items.max() + 1), name="toy",
    )


SEQS = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10], [11, 12, 13, 14], [2, 4], [5, 6, 7, 8, 9]]


def test_gather_windows_right_aligns_and_left_pads():
    items = np.arange(1, 11, dtype=np.int32)
    out = gather_windows(items, np.array([0, 3]), np.array([2, 9]), 4)
    np.testing.assert_array_equal(out, [[0, 0, 1, 2], [6, 7, 8, 9]])


def test_train_batches_have_fixed_shape_and_last_windows():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    tb = TrainBatcher(ds, sp, max_len=3, batch_size=3, seed=0)
    # 4 training users: [8, 9, 10] keeps one training item and cannot train; [2, 4] trains on both
    assert tb.steps_per_epoch == 2
    rows = []
    for _ in range(tb.steps_per_epoch):
        seq = next(tb)["seq"]
        assert seq.shape == (3, 4) and seq.dtype == np.int32
        rows.extend(map(tuple, seq))
    assert tb.state() == {"epoch": 1, "batch": 0}
    expected = [(0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 2, 4), (0, 0, 11, 12), (0, 5, 6, 7), (2, 3, 4, 5)]
    assert sorted(rows) == expected  # the last batch is filled with all-padding rows


def test_restore_continues_the_stream_exactly():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    ref = TrainBatcher(ds, sp, 3, 2, seed=5, window="random")
    stream = [next(ref)["seq"] for _ in range(7)]
    tb = TrainBatcher(ds, sp, 3, 2, seed=5, window="random")
    for _ in range(4):
        next(tb)
    resumed = TrainBatcher(ds, sp, 3, 2, seed=5, window="random")
    resumed.restore(tb.state())
    for expected in stream[4:]:
        np.testing.assert_array_equal(next(resumed)["seq"], expected)


def test_random_windows_stay_inside_the_training_part():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    tb = TrainBatcher(ds, sp, 2, 5, seed=1, window="random")
    train_parts = [tuple(s[: sp.train_end[u]]) for u, s in enumerate(SEQS)]
    allowed = {p[max(0, j - 3) : j] for p in train_parts for j in range(2, len(p) + 1)}
    seen = set()
    for _ in range(40):
        for row in next(tb)["seq"]:
            real = tuple(row[row > 0].tolist())
            assert real in allowed or real == ()
            seen.add(real)
    assert allowed <= seen  # every prefix window of every user is drawn eventually


# user u's items are 100 u + 1, 100 u + 2, ...: a row's user is its items // 100
LONG_SEQS = [[100 * u + i for i in range(1, n + 1)]
             for u, n in enumerate((3, 12, 5, 9, 4, 15, 7, 3, 11, 6, 13, 8, 4))]


@pytest.mark.parametrize("window", ["last", "random"])
def test_train_length_buckets_cut_only_padding_and_cover_every_user(window):
    ds = _ds(LONG_SEQS)
    sp = splits.leave_one_out(ds)
    args = dict(max_len=8, batch_size=2, seed=3, window=window, length_buckets=3, pool_batches=3)
    tb = TrainBatcher(ds, sp, **args)
    assert list(tb.widths) == [3, 6, 9]
    for _ in range(3):  # epochs
        users = []
        for _ in range(tb.steps_per_epoch):
            seq = next(tb)["seq"]
            width, real = seq.shape[1], (seq != 0).sum(axis=1)
            assert width in (3, 6, 9)
            assert width == 9 or (seq[:, 0] == 0).all()  # one padding column is kept...
            assert min(real.max() + 1, 9) > width - 3  # ...in the smallest bucket that fits
            for row in seq[real > 0]:
                user = row[-1] // 100
                train_part = LONG_SEQS[user][: sp.train_end[user]]
                end = train_part.index(row[-1]) + 1  # the window's right end
                expected = gather_windows(np.asarray(train_part), np.array([0]), np.array([end]), width)
                np.testing.assert_array_equal(row, expected[0])
                assert window == "random" or end == len(train_part)
                users.append(user)
        assert sorted(users) == sorted(tb.users)  # every user trains once an epoch
    ref = TrainBatcher(ds, sp, **args)
    expected = [next(ref)["seq"] for _ in range(11)]
    head = TrainBatcher(ds, sp, **args)
    for _ in range(5):
        next(head)
    resumed = TrainBatcher(ds, sp, **args)
    resumed.restore(head.state())
    for want in expected[5:]:
        np.testing.assert_array_equal(next(resumed)["seq"], want)


def test_train_length_buckets_mix_lengths_less_than_random_batches():
    ds = _ds(LONG_SEQS)
    sp = splits.leave_one_out(ds)
    plain = TrainBatcher(ds, sp, 14, 2, seed=0)
    bucketed = TrainBatcher(ds, sp, 14, 2, seed=0, length_buckets=4, pool_batches=7)
    cells = [sum(next(b)["seq"].size for _ in range(b.steps_per_epoch) for _ in range(4))
             for b in (plain, bucketed)]
    assert cells[1] < 0.8 * cells[0]


def test_eval_batches_pad_and_mask():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    eb = EvalBatcher(ds, sp, "test", max_len=3, batch_size=3)
    batches = list(eb)
    assert len(batches) == 2 and eb.num_users == 4
    b0, b1 = batches
    np.testing.assert_array_equal(b0["history"], [[4, 5, 6], [0, 8, 9], [11, 12, 13]])
    np.testing.assert_array_equal(b0["target"], [7, 10, 14])
    assert eb.exclude_width == 6
    np.testing.assert_array_equal(b0["exclude"][0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(b1["valid"], [True, False, False])
    np.testing.assert_array_equal(b1["target"], [9, 0, 0])
    assert all(b["history"].shape == (3, 3) and b["exclude"].shape == (3, 6) for b in batches)


def test_eval_validation_history_excludes_the_validation_target():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    b = next(iter(EvalBatcher(ds, sp, "val", max_len=3, batch_size=8, mask_history=False)))
    np.testing.assert_array_equal(b["target"][:4], [6, 9, 13, 8])
    np.testing.assert_array_equal(b["history"][0], [3, 4, 5])
    assert "exclude" not in b


def test_eval_length_buckets_cut_only_padding():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    plain = {}
    for b in EvalBatcher(ds, sp, "test", max_len=6, batch_size=8):
        for row, user, ok in zip(b["history"], b["user"], b["valid"]):
            if ok:
                plain[int(user)] = row
    eb = EvalBatcher(ds, sp, "test", max_len=6, batch_size=2, length_buckets=3)  # widths 2, 4, 6
    seen, widths = [], []
    for b in eb:
        width = b["history"].shape[1]
        widths.append(width)
        assert width in (2, 4, 6) and b["exclude"].shape == (2, eb.exclude_width)
        for row, user, ok in zip(b["history"], b["user"], b["valid"]):
            if ok:
                full = plain[int(user)]
                np.testing.assert_array_equal(full[: 6 - width], 0)  # only padding is cut...
                np.testing.assert_array_equal(row, full[6 - width :])
                assert width == 6 or row[0] == 0  # ...and one padding column is kept
                seen.append(int(user))
    assert sorted(seen) == sorted(plain) and widths == sorted(widths)


def test_eval_part_is_checked():
    ds = _ds(SEQS)
    with pytest.raises(ValueError, match="part="):
        EvalBatcher(ds, splits.leave_one_out(ds), "train", 3, 2)
