"""HSTU: its block against a numpy reference, the relative position and time biases, masks,
packing, chunking, and a run with times end to end."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError, base_config
from transrec_jax.data.batching import pack_windows
from transrec_jax.losses import compute_loss
from transrec_jax.models import build_model
from transrec_jax.models.attention import causal_mask, combine_masks, key_padding_mask
from transrec_jax.models.hstu import (HSTUBlock, RelativePositionBias, hstu_attention_core,
                                      time_buckets)

from test_models import MAX_LEN, NUM_ITEMS, packed_pair, packed_places


def hstu_cfg(**overrides):
    cfg = base_config().model
    cfg.update(name="hstu", max_len=MAX_LEN, d_model=8, num_heads=2, num_layers=2, dropout=0.0,
               attention_dropout=0.0, positions_from="start", scale_embeddings=True)
    cfg.update(overrides)
    return cfg


def make(seed=0, **overrides):
    return build_model(hstu_cfg(**overrides), NUM_ITEMS, rngs=nnx.Rngs(seed))


def silu(x):
    return x / (1.0 + np.exp(-x))


def layer_norm(x, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def numpy_time_buckets(delta, num_buckets):
    """The authors' bucketization_fn (hstu.py lines 610-612) on float32, as torch computes it."""
    seconds = np.maximum(np.abs(np.asarray(delta, np.int64)), 1).astype(np.float32)
    return np.clip((np.log(seconds) / np.float32(0.301)).astype(np.int64), 0, num_buckets)


def numpy_block(block, x, allowed, max_len, heads, times=None, time_query="target"):
    """The authors' block (hstu.py lines 316-339, 204-212, 419-434) in float64 numpy.

    allowed: bool [B, L, L], query i may use key j. times [B, L + 1]: the authors' time bias
    (lines 87-147) for query i and key j, bucket of times[i + 1] - times[j]; with time_query
    "last_item", of times[i] - times[j].
    """
    x = np.asarray(x, np.float64)
    w_uvqk = np.asarray(block.uvqk.kernel[...], np.float64)
    w_o = np.asarray(block.output.kernel[...], np.float64)
    b_o = np.asarray(block.output.bias[...], np.float64)
    rab = np.asarray(block.relative_bias.weight[...], np.float64)
    batch, length, d = x.shape
    dh = d // heads
    u, v, q, k = np.split(silu(layer_norm(x) @ w_uvqk), 4, axis=-1)
    out = np.zeros_like(x)
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            for i in range(length):
                for j in range(length):
                    if allowed[b, i, j]:
                        bias = rab[max_len - 1 + j - i]
                        if times is not None:
                            ts_w = np.asarray(block.time_bias.weight[...], np.float64)
                            query = i + 1 if time_query == "target" else i
                            delta = times[b, query] - times[b, j]
                            bias += ts_w[numpy_time_buckets(delta, len(ts_w) - 1)]
                        weight = silu(q[b, i, cols] @ k[b, j, cols] + bias) / max_len
                        out[b, i, cols] += weight * v[b, j, cols]
    return x + (u * layer_norm(out)) @ w_o + b_o


def test_relative_bias_is_one_scalar_per_offset():
    bias = RelativePositionBias(MAX_LEN, rngs=nnx.Rngs(0))
    w = np.asarray(bias.weight[...])
    assert w.shape == (2 * MAX_LEN - 1,)
    table = np.asarray(bias(MAX_LEN, MAX_LEN))
    expected = np.array([[w[MAX_LEN - 1 + j - i] for j in range(MAX_LEN)] for i in range(MAX_LEN)])
    np.testing.assert_array_equal(table, expected)
    np.testing.assert_array_equal(np.asarray(bias(1, 5)), expected[4:5, :5])  # last query of 5


def test_attention_core_is_silu_of_scores_plus_bias_over_n():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 5, 4)).astype(np.float32) for _ in range(3))
    bias = rng.normal(size=(5, 5)).astype(np.float32)
    mask = np.tril(np.ones((5, 5), bool))[None, None] & (rng.random((2, 1, 1, 5)) > 0.3)
    out, weights = hstu_attention_core(q, k, v, jnp.asarray(mask), bias=bias, scale=1 / 7)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) + bias
    expected_w = np.where(mask, silu(scores.astype(np.float64)) / 7, 0.0)
    np.testing.assert_allclose(weights, expected_w, atol=1e-6)
    np.testing.assert_allclose(out, np.einsum("bhqk,bhkd->bhqd", expected_w, v), atol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_block_matches_numpy_with_causal_and_padding_masks(heads):
    cfg = hstu_cfg(num_heads=heads)
    block = HSTUBlock(cfg, dtype=jnp.float32, rngs=nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(1), (2, MAX_LEN, 8))
    valid = np.ones((2, MAX_LEN), bool)
    valid[0, :3] = False  # left padding of row 0
    mask = combine_masks(causal_mask(MAX_LEN), key_padding_mask(jnp.asarray(valid)))
    got = block(x, mask=mask)
    allowed = np.asarray(jnp.broadcast_to(mask, (2, 1, MAX_LEN, MAX_LEN)))[:, 0]
    np.testing.assert_allclose(got, numpy_block(block, x, allowed, MAX_LEN, heads), atol=1e-5)
    last = block(x, mask=mask, last_only=True)
    np.testing.assert_allclose(last, got[:, -1:], atol=1e-5)


def test_block_with_a_packed_row_attends_within_its_segments():
    block = HSTUBlock(hstu_cfg(), dtype=jnp.float32, rngs=nnx.Rngs(4))
    x = jax.random.normal(jax.random.key(2), (1, MAX_LEN, 8))
    segments = np.array([[1, 1, 1, 2, 2, 2, 2, 3]])
    same = segments[:, :, None] == segments[:, None, :]
    mask = combine_masks(causal_mask(MAX_LEN), jnp.asarray(same)[:, None])
    allowed = np.tril(np.ones((MAX_LEN, MAX_LEN), bool))[None] & same
    got = block(x, mask=mask)
    np.testing.assert_allclose(got, numpy_block(block, x, allowed, MAX_LEN, 2), atol=1e-5)


def test_chunked_attention_equals_unchunked():
    plain, chunked = make(), make(attention_chunk=3)
    tokens = jnp.asarray([[0, 0, 3, 5, 7, 2, 9, 4], [1, 9, 12, 4, 6, 6, 2, 11]], jnp.int32)
    np.testing.assert_allclose(chunked.encode(tokens), plain.encode(tokens), atol=1e-5)

    def loss(model):
        hidden, targets, weights = model.training_forward(
            jnp.pad(tokens, ((0, 0), (1, 0))), key=None)
        return compute_loss(base_config().loss, hidden, targets, weights, *model.output_table(),
                            None)[0]

    grads = [nnx.grad(loss)(m) for m in (plain, chunked)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_hstu_ignores_the_future_and_left_padding():
    model = make()
    items = jnp.asarray([[3, 5, 7, 2, 9], [1, 9, 12, 4, 6]], jnp.int32)
    tokens = jnp.pad(items, ((0, 0), (MAX_LEN - 5, 0)))
    changed = tokens.at[:, 6:].set((tokens[:, 6:] % NUM_ITEMS) + 1)
    a, b = model.encode(tokens), model.encode(changed)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not np.allclose(a[:, 6:], b[:, 6:])
    short = jnp.pad(items, ((0, 0), (1, 0)))  # one padding slot instead of three
    np.testing.assert_allclose(model.encode(short)[:, 1:], a[:, 3:], atol=1e-5)


@pytest.mark.parametrize("positions_from", ["start", "end"])
def test_packed_rows_give_the_unpacked_loss(positions_from):
    model = make(positions_from=positions_from)
    windows, packed = packed_pair()
    plain = model.training_forward(windows, key=None)
    packed_out = model.training_forward(packed["seq"], key=None, segments=packed["segments"],
                                        positions=packed["positions"])
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=False)
    np.testing.assert_allclose(packed_out[0][packed_idx], plain[0][plain_idx], atol=1e-5)
    for exclude_window in (False, True):
        cfg = base_config().loss
        cfg.exclude_window = exclude_window
        plain_loss = compute_loss(cfg, *plain, *model.output_table(), None, window=windows)[0]
        packed_loss = compute_loss(cfg, *packed_out, *model.output_table(), None,
                                   window=packed["seq"], segments=packed["segments"])[0]
        np.testing.assert_allclose(packed_loss, plain_loss, rtol=1e-5)


def test_hstu_trains_with_every_loss_and_dropout_comes_from_the_key():
    model = make(dropout=0.2, score_temperature=0.05)
    seq = jnp.asarray([[0, 0, 3, 5, 7, 2, 9, 4, 8], [1, 9, 12, 4, 6, 6, 2, 11, 3]], jnp.int32)
    out_a = model.training_forward(seq, key=jax.random.key(0))
    np.testing.assert_array_equal(out_a[0], model.training_forward(seq, key=jax.random.key(0))[0])
    assert not np.allclose(out_a[0], model.training_forward(seq, key=jax.random.key(1))[0])
    for name, extra in [("ce", {}), ("bce", {}), ("gbce", {"num_negatives": 4}),
                        ("sampled_softmax", {"num_negatives": 4, "sample_per": "position"})]:
        cfg = base_config().loss
        cfg.update(name=name, **extra)
        loss = compute_loss(cfg, *out_a, *model.output_table(), jax.random.key(2))[0]
        assert np.isfinite(loss) and loss > 0, name


# --- the relative time bias (model.time_buckets) ---------------------------------------------


def random_times(tokens, seed=0):
    """int32 [B, L + 1]: increasing times (gaps from a second to a year) for tokens [B, L + 1],
    and garbage in the padding slots, which no query may see."""
    rng = np.random.default_rng(seed)
    gaps = np.exp(rng.uniform(0, np.log(3e7), size=np.shape(tokens))).astype(np.int64)
    times = np.cumsum(gaps, axis=1)
    return np.where(np.asarray(tokens) != 0, times, rng.integers(0, 2**30, size=times.shape))


def test_time_buckets_are_the_authors_bucketization():
    rng = np.random.default_rng(0)
    delta = np.concatenate([np.arange(-50, 50), rng.integers(-(2**31) + 1, 2**31, size=5000),
                            np.exp(rng.uniform(0, 21, size=5000)).astype(np.int64)])
    got = np.asarray(time_buckets(jnp.asarray(delta, jnp.int32), 128))
    np.testing.assert_array_equal(got, numpy_time_buckets(delta, 128))
    # |Δ| <= 1 s: bucket 0; 2 s: ln 2 / 0.301 = 2.3; a day: 37.9; 2³¹ - 1 s: 71.4; clamped
    np.testing.assert_array_equal(
        time_buckets(jnp.asarray([0, -1, 1, 2, -2, 86400, 2**31 - 1]), 128),
        [0, 0, 0, 2, 2, 37, 71])
    np.testing.assert_array_equal(time_buckets(jnp.asarray([86400, -86400]), 10), [10, 10])


@pytest.mark.parametrize("heads,time_query", [(1, "target"), (2, "target"), (2, "last_item")])
def test_block_with_times_matches_numpy(heads, time_query):
    cfg = hstu_cfg(num_heads=heads, time_buckets=128, time_query=time_query)
    block = HSTUBlock(cfg, dtype=jnp.float32, rngs=nnx.Rngs(3))
    assert block.time_bias.weight[...].shape == (129,)
    x = jax.random.normal(jax.random.key(1), (2, MAX_LEN, 8))
    valid = np.ones((2, MAX_LEN), bool)
    valid[0, :3] = False
    times = random_times(np.pad(valid, ((0, 0), (0, 1)), constant_values=True))
    mask = combine_masks(causal_mask(MAX_LEN), key_padding_mask(jnp.asarray(valid)))
    got = block(x, mask=mask, times=jnp.asarray(times, jnp.int32))
    allowed = np.asarray(jnp.broadcast_to(mask, (2, 1, MAX_LEN, MAX_LEN)))[:, 0]
    expected = numpy_block(block, x, allowed, MAX_LEN, heads, times, time_query)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, block(x, mask=mask, times=jnp.asarray(times // 7, jnp.int32)))
    last = block(x, mask=mask, last_only=True, times=jnp.asarray(times, jnp.int32))
    np.testing.assert_allclose(last, got[:, -1:], atol=1e-5)
    with pytest.raises(ValueError, match="time_buckets"):
        block(x, mask=mask)


def test_time_bias_ignores_left_padding_and_reads_the_query_time():
    model = make(time_buckets=128)
    items = np.array([[3, 5, 7, 2, 9], [1, 9, 12, 4, 6]], np.int32)
    times = random_times(np.ones((2, 6)))  # the items' times and the query time
    padded = {}
    for pad in (1, 3):
        tokens = np.pad(items, ((0, 0), (pad, 0)))
        garbage = np.random.default_rng(pad).integers(0, 2**30, size=(2, pad))
        padded[pad] = model.encode(jnp.asarray(tokens), times=jnp.asarray(
            np.concatenate([garbage, times], axis=1), jnp.int32))
        user = model.user_representation(
            jnp.asarray(tokens), times=jnp.asarray(np.concatenate([garbage, times[:, :-1]], 1)),
            query_time=jnp.asarray(times[:, -1]))
        np.testing.assert_allclose(user, padded[pad][:, -1], atol=1e-5)
    np.testing.assert_allclose(padded[1][:, 1:], padded[3][:, 3:], atol=1e-5)
    later = times.copy()
    later[:, -1] += 10**7  # the scored item's time changes the last user vector only
    moved = model.encode(jnp.asarray(np.pad(items, ((0, 0), (1, 0)))),
                         times=jnp.asarray(np.concatenate([np.zeros((2, 1)), later], 1), jnp.int32))
    np.testing.assert_allclose(moved[:, :-1], padded[1][:, :-1], atol=1e-6)
    assert not np.allclose(moved[:, -1], padded[1][:, -1])


@pytest.mark.parametrize("time_query", ["target", "last_item"])
def test_a_position_reads_its_targets_time_only_with_time_query_target(time_query):
    """No future leakage through time: with "last_item" position i's output depends on the
    times of items 0..i alone; with [ZL24]'s "target" on item i + 1's time too, and no later."""
    model = make(time_buckets=128, time_query=time_query)
    seq = jnp.asarray([[3, 5, 7, 2, 9, 4, 8, 1]], jnp.int32)
    times = random_times(np.ones((1, 9)))
    base = np.asarray(model.encode(seq, times=jnp.asarray(times, jnp.int32)))
    reads = 1 if time_query == "target" else 0
    for slot in (3, 6, 8):  # an item's time, and the last position's query time
        moved = times.copy()
        moved[0, slot] += 10**6
        out = np.asarray(model.encode(seq, times=jnp.asarray(moved, jnp.int32)))
        unaffected = slot - reads  # positions before this read no time from the slot
        np.testing.assert_allclose(out[:, :unaffected], base[:, :unaffected], atol=1e-6)
        if unaffected < seq.shape[1]:
            assert not np.allclose(out[:, unaffected], base[:, unaffected], atol=1e-4)


def test_chunked_attention_with_times_equals_unchunked():
    plain, chunked = make(time_buckets=128), make(time_buckets=128, attention_chunk=3)
    seq = jnp.asarray([[0, 0, 3, 5, 7, 2, 9, 4, 8], [1, 9, 12, 4, 6, 6, 2, 11, 3]], jnp.int32)
    times = jnp.asarray(random_times(seq), jnp.int32)
    np.testing.assert_allclose(chunked.training_forward(seq, key=None, times=times)[0],
                               plain.training_forward(seq, key=None, times=times)[0], atol=1e-5)


def test_packed_rows_with_times_give_the_unpacked_loss():
    model = make(time_buckets=128)
    windows, _ = packed_pair()
    times = random_times(windows)
    packed = pack_windows(np.asarray(windows), 1, {"times": times.astype(np.int32)})
    packed = {k: jnp.asarray(v) for k, v in packed.items()}
    plain = model.training_forward(windows, key=None, times=jnp.asarray(times, jnp.int32))
    packed_out = model.training_forward(packed["seq"], key=None, segments=packed["segments"],
                                        positions=packed["positions"], times=packed["times"])
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=False)
    np.testing.assert_allclose(packed_out[0][packed_idx], plain[0][plain_idx], atol=1e-5)
    cfg = base_config().loss
    plain_loss = compute_loss(cfg, *plain, *model.output_table(), None, window=windows)[0]
    packed_loss = compute_loss(cfg, *packed_out, *model.output_table(), None,
                               window=packed["seq"], segments=packed["segments"])[0]
    np.testing.assert_allclose(packed_loss, plain_loss, rtol=1e-5)


def test_time_buckets_config_is_checked():
    for name, value, match in (("hstu", -1, "non-negative"), ("sasrec", 128, "only HSTU")):
        c = base_config()
        c.model.update(name=name, time_buckets=value, attention_dropout=0.0)
        with pytest.raises(ConfigError, match=f"model.time_buckets={value}.*{match}"):
            config_lib.validate(c, 1)
    c = base_config()
    c.model.time_query = "now"
    expected = re.escape("model.time_query='now': expected target | last_item")
    with pytest.raises(ConfigError, match=expected):
        config_lib.validate(c, 1)


def hstu_time_config(tmp_path, **dataset):
    """configs/hstu.py, debug, with the authors' 128 time buckets and a few steps."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "hstu_config", os.path.join(os.path.dirname(__file__), "..", "configs", "hstu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("debug,model.time_buckets=128")
    c.dataset.update(cache_dir=str(tmp_path / "cache"), **dataset)
    c.train.update(num_steps=4, eval_every_steps=2, checkpoint_every_steps=2, batch_size=16)
    c.eval.update(batch_size=32, ks=(5, 10))
    return c


def timed_table_config(tmp_path):
    """hstu_time_config on a table of 40 users' items with unix times (gaps of 1 s to ~1 week)."""
    rng = np.random.default_rng(0)
    rows = ["user,item,time"]
    for user in range(40):
        t = 1_000_000_000 + int(rng.integers(0, 10**8))
        for item in rng.integers(1, 30, size=int(rng.integers(5, 12))):
            t += int(np.exp(rng.uniform(0, 15)))
            rows.append(f"u{user},{item},{t}")
    path = tmp_path / "timed.csv"
    path.write_text("\n".join(rows) + "\n")
    return hstu_time_config(tmp_path, name="local", source="local", path=str(path),
                            format="table", time_col="time")


def test_time_bias_trains_evaluates_and_serves_from_a_table_with_times(tmp_path):
    from transrec_jax import train
    from transrec_jax.serving import Recommender

    config = timed_table_config(tmp_path)
    workdir = str(tmp_path / "run")
    results = train.train_and_evaluate(config, workdir)
    assert np.isfinite(results["test"]["ndcg@10"]) and results["steps"] == 4
    rec = Recommender(workdir)
    ds = rec.dataset
    items, scores = rec.top_k(ds.offsets[:2], ds.offsets[1:3], ds.items, 5, rec.times)
    assert items.shape == (2, 5) and not set(items[0]) & set(ds.sequence(0))
    with pytest.raises(ConfigError, match="time_buckets=128"):
        rec.top_k(ds.offsets[:1], ds.offsets[1:2], ds.items, 5)
    # The query time defaults to the last history item's; a later one moves every gap.
    last = rec.times[ds.offsets[1:3] - 1]
    same = rec.top_k(ds.offsets[:2], ds.offsets[1:3], ds.items, 5, rec.times, query_times=last)
    np.testing.assert_array_equal(same[1], scores)
    later = last + 86_400 * 30
    moved = rec.top_k(ds.offsets[:2], ds.offsets[1:3], ds.items, 5, rec.times, query_times=later)
    assert not np.allclose(moved[1], scores)
    # `recommend --history` with the user's unix times (not the dataset's relative seconds) and
    # a query time lists what top_k lists for that user, and explains it with those times.
    s, e = ds.offsets[0], ds.offsets[1]
    history = [str(i) for i in rec.catalog.ids[ds.items[s:e]]]
    proc = subprocess.run(
        [sys.executable, "-m", "transrec_jax.recommend", f"--workdir={workdir}", "--k=5",
         f"--history={','.join(history)}",
         f"--history_times={','.join(str(t) for t in ds.timestamps[s:e])}",
         f"--query_time={int(ds.timestamps[e - 1]) + 86_400 * 30}", "--explain=occlusion"],
        capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["rank", "item", "score", "because"]
    assert [r[1] for r in rows] == [str(i) for i in rec.catalog.ids[moved[0][0]]]
    np.testing.assert_allclose([float(r[2]) for r in rows], moved[1][0], atol=1e-4)
    assert all(cell.split(":")[0] in history for r in rows for cell in r[3].split(";"))
    # `recommend --users=all --query_time=T`: every user's list is for unix time T, a week after
    # the dataset's last interaction, as top_k lists them for T in the dataset's relative seconds.
    now = int(ds.timestamps.max()) + 7 * 86_400
    proc = subprocess.run(
        [sys.executable, "-m", "transrec_jax.recommend", f"--workdir={workdir}", "--k=5",
         "--users=all", f"--query_time={now}", f"--output={tmp_path / 'now.csv'}"],
        capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    want = rec.top_k(starts, ends, ds.items, 5, rec.times,
                     query_times=np.full(ds.num_users, now - int(ds.timestamps.min()), np.int32))
    at_last = rec.top_k(starts, ends, ds.items, 5, rec.times)
    import pyarrow.csv

    table = pyarrow.csv.read_csv(tmp_path / "now.csv").to_pydict()
    assert [str(i) for i in table["item"]] == [str(i) for i in rec.catalog.ids[want[0].ravel()]]
    np.testing.assert_allclose(table["score"], want[1].ravel(), atol=1e-4)
    assert not np.allclose(want[1], at_last[1])


def _time_model(**overrides):
    model = base_config().model
    model.update({"name": "hstu", "time_buckets": 128, **overrides})
    return model


def test_history_times_are_seconds_since_the_first_item():
    from transrec_jax.recommend import history_times

    times, query = history_times(["1700000000", "1700000060", "1700003600"], None, _time_model(), 3)
    np.testing.assert_array_equal(times, [0, 60, 3600])
    assert times.dtype == np.int32 and query.tolist() == [3600]
    _, query = history_times(["5", "9"], 100, _time_model(), 2)
    assert query.tolist() == [95]
    assert history_times(None, None, base_config().model, 2) == (None, None)


@pytest.mark.parametrize("values, query, model, expected", [
    (None, None, {}, "give --history_times"),
    (["1", "x"], None, {}, "expected integer seconds"),
    (["1", "2", "3"], None, {}, "3 times for --history's 2 ids"),
    (["9", "5"], None, {}, "expected times in order"),
    (["5", "9"], 8, {}, "--query_time=8: expected a time at or after the last history item's (9)"),
    (["5", "9"], 20, {"time_query": "last_item"}, "time_query='last_item'"),
    (["0", str(2**31)], None, {}, "more than int32 seconds"),
    (["5", "9"], None, {"time_buckets": 0}, "--history_times: this run's model has no time bias"),
    (None, 9, {"time_buckets": 0}, "--query_time: this run's model has no time bias"),
])
def test_bad_history_times_are_one_line_errors(values, query, model, expected):
    from transrec_jax.cli import UsageError
    from transrec_jax.recommend import history_times

    with pytest.raises(UsageError, match=re.escape(expected)) as error:
        history_times(values, query, _time_model(**model), 2)
    assert "\n" not in str(error.value)


def test_a_common_query_time_is_seconds_since_the_datasets_first_interaction():
    from types import SimpleNamespace

    from transrec_jax.cli import UsageError
    from transrec_jax.recommend import common_query_time

    ds = SimpleNamespace(timestamps=np.array([100, 150, 90, 120, 130]), offsets=np.array([0, 2, 5]),
                         user_ids=np.array(["a", "b"]), num_users=2)
    query = common_query_time(ds, 200)
    assert query.tolist() == [110, 110] and query.dtype == np.int32
    assert common_query_time(ds, 150).tolist() == [60, 60]  # at user a's last item: allowed
    for bad, expected in [(149, "--query_time=149: expected a time at or after every user's last "
                                "item (user a's is 150)"),
                          (90 + 2**31, "more than int32 seconds")]:
        with pytest.raises(UsageError, match=re.escape(expected)) as error:
            common_query_time(ds, bad)
        assert "\n" not in str(error.value)


def test_time_bias_on_a_dataset_without_timestamps_is_a_one_line_error(tmp_path):
    from transrec_jax import train

    config = hstu_time_config(tmp_path)  # the synthetic preset: no timestamps
    with pytest.raises(ConfigError) as error:
        train.train_and_evaluate(config, str(tmp_path / "run"))
    message = str(error.value)
    assert "\n" not in message and "config.model.time_buckets=128" in message
    assert "synthetic" in message
    assert not os.path.exists(tmp_path / "run" / "config.json")  # refused before binding
