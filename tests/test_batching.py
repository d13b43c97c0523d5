"""Batchers: fixed shapes, right-aligned windows, exact state restore, padded eval batches."""

import numpy as np
import pytest

from transrec_jax.data import splits
from transrec_jax.data.batching import EvalBatcher, TrainBatcher, gather_windows, pack_windows
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


def drawn_windows(batcher, steps: int = 40) -> set[tuple]:
    """The items of every non-padding row the batcher yields in `steps` batches."""
    rows = (row for _ in range(steps) for row in next(batcher)["seq"])
    return {tuple(row[row > 0].tolist()) for row in rows} - {()}


def test_random_windows_are_every_prefix_of_the_training_part():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    train_parts = [tuple(s[: sp.train_end[u]]) for u, s in enumerate(SEQS)]
    # windows of 3 items ending anywhere after a history's second item
    allowed = {p[max(0, j - 3) : j] for p in train_parts for j in range(2, len(p) + 1)}
    assert drawn_windows(TrainBatcher(ds, sp, 2, 5, seed=1, window="random")) == allowed


def test_shifted_windows_are_full_and_cover_every_training_item():
    ds = _ds(SEQS)
    sp = splits.leave_one_out(ds)
    train_parts = [tuple(s[: sp.train_end[u]]) for u, s in enumerate(SEQS) if sp.train_end[u] >= 2]
    # a history of up to 3 items trains whole; a longer one on any 3 consecutive items, e.g.
    # [1, 2, 3, 4, 5] on (1, 2, 3), (2, 3, 4) and (3, 4, 5)
    allowed = {p[j - 3 : j] if len(p) > 3 else p for p in train_parts
               for j in range(min(3, len(p)), len(p) + 1)}
    assert drawn_windows(TrainBatcher(ds, sp, 2, 5, seed=1, window="shifted")) == allowed


# user u's items are 100 u + 1, 100 u + 2, ...
LONG_SEQS = [[100 * u + i for i in range(1, n + 1)]
             for u, n in enumerate((3, 12, 5, 9, 4, 15, 7, 3, 11, 6, 13, 8, 4))]


def segments_of(packed: dict) -> list[tuple]:
    """Every (items, positions) segment of a packed batch, read back row by row."""
    out = []
    for seq, seg, pos in zip(packed["seq"], packed["segments"], packed["positions"]):
        for s in range(1, seg.max() + 1):
            out.append((tuple(seq[seg == s]), tuple(pos[seg == s])))
    return out


def test_pack_windows_keeps_every_window_as_a_right_aligned_segment():
    rng = np.random.default_rng(0)
    width, lengths = 9, [3, 9, 1, 5, 8, 2, 0, 4, 6, 9, 2]  # 0: an all-padding window
    windows = np.zeros((len(lengths), width), np.int32)
    for row, n in zip(windows, lengths):
        row[width - n :] = rng.integers(1, 50, size=n)
    packed = pack_windows(windows, row_multiple=2)
    rows = packed["seq"].shape[0]
    assert rows % 2 == 0 and rows < len(lengths) and packed["seq"].shape[1] == width
    expected = []
    for row, n in zip(windows, lengths):
        if n:  # items plus the padding slot before them, unless the window is full
            seg = row[width - min(n + 1, width) :]
            expected.append((tuple(seg), tuple(range(len(seg) - 1, -1, -1))))
    assert sorted(segments_of(packed)) == sorted(expected)
    for seq, seg in zip(packed["seq"], packed["segments"]):
        assert (seq[seg == 0] == 0).all() and (np.diff(seg[seg > 0]) <= 0).all()  # right-aligned
        assert ((seg == 0) <= (np.arange(width) < (seg == 0).sum())).all()  # padding leads


def test_packed_train_batches_hold_the_same_windows():
    ds = _ds(LONG_SEQS)
    sp = splits.leave_one_out(ds)
    plain = TrainBatcher(ds, sp, max_len=14, batch_size=6, seed=2)
    packed = TrainBatcher(ds, sp, max_len=14, batch_size=6, seed=2, pack_row_multiple=2)
    for _ in range(2 * plain.steps_per_epoch):
        windows, batch = next(plain)["seq"], next(packed)
        assert set(batch) == {"seq", "segments", "positions"} and batch["seq"].shape[0] % 2 == 0
        assert batch["seq"].shape[0] < 6
        expected = [tuple(w[max(0, 15 - (w != 0).sum() - 1) :]) for w in windows if w.any()]
        assert sorted(items for items, _ in segments_of(batch)) == sorted(expected)
    assert packed.state() == plain.state()


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


@pytest.mark.parametrize("longest", [5, 64, 65])
def test_validation_and_test_batches_share_their_shapes(longest):
    """The test pass reuses the validation pass's compiled programs: same shapes per bucket."""
    ds = _ds([list(range(1, longest + 3))] + SEQS)  # a test history one item longer than its val one
    sp = splits.leave_one_out(ds)
    shapes = {part: [{k: v.shape for k, v in b.items()}
                     for b in EvalBatcher(ds, sp, part, max_len=8, batch_size=2, length_buckets=2)]
              for part in ("val", "test")}
    assert sorted(map(str, shapes["val"])) == sorted(map(str, shapes["test"]))


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


def _timed_ds(seqs, start=1_500_000_000):
    """_ds with each item's time a function of its id: start + 1000 (item - 1) seconds."""
    ds = _ds(seqs)
    ds.timestamps = start + 1000 * (ds.items.astype(np.int64) - 1)
    return ds


def _times_of(items):
    """The relative time `_timed_ds` gives each item id (0 for padding, as item 1)."""
    return np.where(items != 0, 1000 * (items.astype(np.int64) - 1), 0)


@pytest.mark.parametrize("pack", [0, 2])
def test_train_batches_with_times_align_them_with_seq(pack):
    ds = _timed_ds(LONG_SEQS)
    sp = splits.leave_one_out(ds)
    plain = TrainBatcher(ds, sp, max_len=5, batch_size=6, seed=0, window="random",
                         pack_row_multiple=pack)
    timed = TrainBatcher(ds, sp, max_len=5, batch_size=6, seed=0, window="random",
                         pack_row_multiple=pack, with_times=True)
    for _ in range(5):
        a, b = next(plain), next(timed)
        assert set(b) == set(a) | {"times"}
        for key in a:
            np.testing.assert_array_equal(b[key], a[key])
        assert b["times"].dtype == np.int32
        np.testing.assert_array_equal(b["times"], _times_of(b["seq"]))


def test_eval_batches_with_times_carry_the_history_and_target_times():
    ds = _timed_ds(LONG_SEQS)
    sp = splits.leave_one_out(ds)
    plain = EvalBatcher(ds, sp, "test", max_len=6, batch_size=4, length_buckets=3)
    timed = EvalBatcher(ds, sp, "test", max_len=6, batch_size=4, length_buckets=3,
                        with_times=True)
    for a, b in zip(plain, timed, strict=True):
        assert set(b) == set(a) | {"history_times", "target_time"}
        for key in a:
            np.testing.assert_array_equal(b[key], a[key])
        np.testing.assert_array_equal(b["history_times"], _times_of(b["history"]))
        np.testing.assert_array_equal(b["target_time"], _times_of(b["target"]))
        assert b["history_times"].dtype == b["target_time"].dtype == np.int32


def test_times_spanning_more_than_int32_seconds_are_refused():
    from transrec_jax.data.batching import relative_times
    from transrec_jax.data.errors import DataError

    ds = _timed_ds(SEQS)
    np.testing.assert_array_equal(relative_times(ds), _times_of(ds.items))
    ds.timestamps[-1] = ds.timestamps[0] + 2**31
    with pytest.raises(DataError, match="int32"):
        TrainBatcher(ds, splits.leave_one_out(ds), 3, 2, seed=0, with_times=True)
