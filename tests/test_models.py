"""The three recommenders: masks, padding, objectives, output table, randomness, sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from transrec_jax.config import base_config
from transrec_jax.data.batching import pack_windows
from transrec_jax.losses import compute_loss
from transrec_jax.models import build_model
from transrec_jax.models.__main__ import ML1M_NUM_ITEMS, parameter_counts, reference_model_config
from transrec_jax.models.positions import start_aligned_ids
from transrec_jax.models.recommenders import cloze_mask

NUM_ITEMS, MAX_LEN = 12, 8
POSITIONS = ["learned", "sinusoidal", "rotary", "none"]
MODELS = ["sasrec", "bert4rec", "transformer_recommender"]


def model_cfg(name="sasrec", **overrides):
    cfg = base_config().model
    cfg.update(
        name=name,
        max_len=MAX_LEN,
        d_model=8,
        num_heads=2,
        d_ff=16,
        dropout=0.0,
        attention_dropout=0.0,
        init_std=0.3,
    )
    cfg.update(overrides)
    return cfg


def make(name="sasrec", seed=0, **overrides):
    return build_model(model_cfg(name, **overrides), NUM_ITEMS, rngs=nnx.Rngs(seed))


def windows(seed=0, batch=2):
    """[batch, MAX_LEN + 1] right-aligned windows; row 0 left-padded, the others full."""
    rng = np.random.default_rng(seed)
    seq = rng.integers(1, NUM_ITEMS + 1, size=(batch, MAX_LEN + 1))
    seq[0, :4] = 0
    return jnp.asarray(seq, jnp.int32)


@pytest.mark.parametrize("name", MODELS)
def test_state_is_params_only_and_splits_in_tree_mode(name):
    model = make(name)
    kinds = {
        type(v)
        for v in jax.tree.leaves(nnx.state(model), is_leaf=lambda x: isinstance(x, nnx.Variable))
    }
    assert kinds == {nnx.Param}
    graphdef, state = nnx.split(model, graph=False)
    tokens = windows()[:, 1:]
    np.testing.assert_allclose(
        nnx.merge(graphdef, state).encode(tokens), model.encode(tokens), atol=1e-6
    )


@pytest.mark.parametrize(
    "name,positions",
    [("sasrec", p) for p in POSITIONS] + [("transformer_recommender", "learned")],
)
def test_causal_models_ignore_the_future(name, positions):
    model = make(name, positions=positions)
    tokens = windows()[:, 1:]
    changed = tokens.at[:, 5:].set((tokens[:, 5:] % NUM_ITEMS) + 1)
    a, b = model.encode(tokens), model.encode(changed)
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not np.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize(
    "name,positions,placement,fused",
    [("sasrec", p, "pre", False) for p in POSITIONS]
    + [("sasrec", "learned", "post", False), ("sasrec", "rotary", "sasrec", False),
       ("sasrec", "learned", "pre", True), ("bert4rec", "rotary", "post", False),
       ("transformer_recommender", "learned", "pre", False)],
)
def test_last_only_encoding_equals_the_last_hidden_state(name, positions, placement, fused):
    model = make(name, positions=positions, norm_placement=placement, fused_attention=fused,
                 num_layers=2)
    tokens = windows()[:, 1:]
    last = model.encode(tokens, last_only=True)
    assert last.shape == (2, 1, 8)
    np.testing.assert_allclose(last, model.encode(tokens)[:, -1:], atol=1e-5)


def test_bert4rec_attends_both_ways():
    model = make("bert4rec")
    tokens = windows()[:, 1:]
    changed = tokens.at[:, 5:].set((tokens[:, 5:] % NUM_ITEMS) + 1)
    assert not np.allclose(model.encode(tokens)[:, 4], model.encode(changed)[:, 4])


@pytest.mark.parametrize(
    "name,positions",
    [("sasrec", p) for p in POSITIONS] + [("bert4rec", "learned"), ("bert4rec", "rotary")],
)
def test_extra_left_padding_changes_nothing_at_real_positions(name, positions):
    model = make(name, positions=positions)
    items = jnp.array([[3, 5, 7, 2], [1, 9, 12, 4]], jnp.int32)
    short = jnp.pad(items, ((0, 0), (1, 0)))  # length 5
    long = jnp.pad(items, ((0, 0), (4, 0)))  # length MAX_LEN
    np.testing.assert_allclose(model.encode(short)[:, 1:], model.encode(long)[:, 4:], atol=1e-5)
    history = jnp.pad(items, ((0, 0), (MAX_LEN - 4, 0)))
    assert model.user_representation(history).shape == (2, 8)


def packed_pair(lengths=(3, 9, 1, 5, 8, 2, 6), seed=0):
    """Training windows [n, MAX_LEN + 1] and the same windows packed (pack_windows)."""
    rng = np.random.default_rng(seed)
    windows = np.zeros((len(lengths), MAX_LEN + 1), np.int32)
    for row, n in zip(windows, lengths):
        row[MAX_LEN + 1 - n :] = rng.integers(1, NUM_ITEMS + 1, size=n)
    packed = pack_windows(windows, row_multiple=1)
    assert packed["seq"].shape[0] < len(lengths)
    return jnp.asarray(windows), {k: jnp.asarray(v) for k, v in packed.items()}


def packed_places(windows, packed, drop_first: bool):
    """For each window's real tokens among a model's inputs: (unpacked index, packed index)."""
    width = windows.shape[1]
    seq, seg = np.asarray(packed["seq"]), np.asarray(packed["segments"])
    cut = slice(1, None) if drop_first else slice(None, -1)  # BERT4Rec's tokens | SASRec's inputs
    plain_idx, packed_idx = [], []
    for i, row in enumerate(np.asarray(windows)):
        n = int((row != 0).sum())
        r, s = next((r, s) for r in range(len(seq)) for s in range(1, seg[r].max() + 1)
                    if tuple(seq[r][seg[r] == s][-n:]) == tuple(row[width - n :]))
        cols = np.flatnonzero(seg[r] == s)[-n:]
        for j, c in zip(range(width - n, width), cols):
            if cut.start and (j == 0 or c == 0) or cut.stop and (j == width - 1 or c == width - 1):
                continue  # not among the inputs
            plain_idx.append((i, j - (1 if drop_first else 0)))
            packed_idx.append((r, c - (1 if drop_first else 0)))
    return tuple(np.array(plain_idx).T), tuple(np.array(packed_idx).T)


@pytest.mark.parametrize("positions,start", [("learned", False), ("sinusoidal", False),
                                             ("rotary", False), ("learned", True)])
def test_packed_sasrec_rows_train_like_the_rows_they_came_from(positions, start):
    """Every loss (ce, ce with exclude_window, bce) on each position scheme: the hidden states
    do not depend on the loss, so one pair of forwards serves the three."""
    model = make("sasrec", positions=positions, positions_from="start" if start else "end")
    windows, packed = packed_pair()
    packed_kw = {"segments": packed["segments"], "positions": packed["positions"]}
    plain_out = model.training_forward(windows, key=None)
    packed_out = model.training_forward(packed["seq"], key=None, **packed_kw)
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=False)
    np.testing.assert_allclose(packed_out[0][packed_idx], plain_out[0][plain_idx], atol=1e-5)

    def loss_of(out, seq, segments, name, exclude_window):
        loss_cfg = base_config().loss
        loss_cfg.name, loss_cfg.exclude_window = name, exclude_window  # per segment when packed
        return compute_loss(loss_cfg, *out, *model.output_table(), jax.random.key(0), window=seq,
                            segments=segments)[0]

    for loss in ["ce", "ce_exclude_window", "bce"]:
        name, exclude = loss.removesuffix("_exclude_window"), loss.endswith("_exclude_window")
        plain_loss = loss_of(plain_out, windows, None, name, exclude)
        packed_loss = loss_of(packed_out, packed["seq"], packed["segments"], name, exclude)
        if loss != "bce":  # bce draws its negatives per position: same law, other draws
            np.testing.assert_allclose(packed_loss, plain_loss, rtol=1e-5, err_msg=loss)
        else:
            assert np.isfinite(packed_loss) and np.isfinite(plain_loss)
        if exclude:  # each window's own items left out, not its row-mates'
            assert packed_loss < loss_of(packed_out, packed["seq"], packed["segments"], name, False)


@pytest.mark.parametrize("first_item_target", [True, False])
def test_sasrec_targets_per_window_packed_or_not(first_item_target):
    """A window of n items trains n - 1 targets, plus its first item with first_item_target
    unless it fills max_len + 1 (no padding slot before it)."""
    model = make("sasrec", first_item_target=first_item_target)
    windows, packed = packed_pair()
    n = np.asarray((windows != 0).sum(1))
    expected = (n - 1 + ((n < MAX_LEN + 1) & (n > 0) if first_item_target else 0)).sum()
    loss_cfg = base_config().loss
    got = []
    for seq, kw in [(windows, {}), (packed["seq"], {"segments": packed["segments"],
                                                     "positions": packed["positions"]})]:
        hidden, targets, weights = model.training_forward(seq, key=None, **kw)
        assert float(weights.sum()) == expected
        got.append(compute_loss(loss_cfg, hidden, targets, weights, *model.output_table(),
                                jax.random.key(0))[0])
    np.testing.assert_allclose(got[1], got[0], rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_packed_bert4rec_rows_encode_like_the_rows_they_came_from(positions):
    model = make("bert4rec", positions=positions)
    windows, packed = packed_pair()
    plain = model.encode(windows[:, 1:])
    got = model.encode(packed["seq"][:, 1:], segments=packed["segments"][:, 1:],
                       positions=packed["positions"][:, 1:])
    plain_idx, packed_idx = packed_places(windows, packed, drop_first=True)
    np.testing.assert_allclose(got[packed_idx], plain[plain_idx], atol=1e-5)
    # every packed sequence gets a target even when the rate draws none
    masked = cloze_mask(jax.random.key(1), packed["seq"][:, 1:], 1e-6, packed["segments"][:, 1:])
    segs = np.asarray(packed["segments"][:, 1:])
    for r in range(segs.shape[0]):
        for s in range(1, segs[r].max() + 1):
            real = (segs[r] == s) & (np.asarray(packed["seq"][r, 1:]) != 0)
            assert real.any() <= (int(np.asarray(masked[r])[real].sum()) == 1)


def test_start_aligned_ids_count_real_items_from_the_oldest():
    tokens = jnp.array([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(start_aligned_ids(tokens), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])
    packed = jnp.array([[0, 4, 5, 0, 7, 8, 9]])
    segments = jnp.array([[0, 1, 1, 2, 2, 2, 2]])
    np.testing.assert_array_equal(start_aligned_ids(packed, segments), [[0, 0, 1, 0, 0, 1, 2]])
    model = make("sasrec", positions_from="start")
    items = jnp.array([[3, 5, 7, 2], [1, 9, 12, 4]], jnp.int32)
    short, long = jnp.pad(items, ((0, 0), (1, 0))), jnp.pad(items, ((0, 0), (4, 0)))
    np.testing.assert_allclose(model.encode(short)[:, 1:], model.encode(long)[:, 4:], atol=1e-5)
    assert not np.allclose(model.encode(short), make("sasrec").encode(short))


@pytest.mark.parametrize("first_item_target", [True, False])
def test_sasrec_training_forward(first_item_target):
    model = make("sasrec", first_item_target=first_item_target)
    seq = windows()
    hidden, targets, weights = model.training_forward(seq, key=jax.random.key(0))
    np.testing.assert_array_equal(targets, seq[:, 1:])
    expected = np.array(seq[:, 1:] != 0)
    if not first_item_target:  # row 0 = 4 padding slots + 5 items: its first item is no target
        expected[0, 3] = False
    np.testing.assert_array_equal(weights, expected.astype(np.float32))
    np.testing.assert_allclose(hidden, model.encode(seq[:, :-1]), atol=1e-6)
    np.testing.assert_allclose(
        model.user_representation(seq[:, 1:]), model.encode(seq[:, 1:])[:, -1], atol=1e-6
    )


def test_transformer_recommender_trains_the_last_position_only():
    model = make("transformer_recommender")
    seq = windows()
    hidden, targets, weights = model.training_forward(seq, key=jax.random.key(0))
    assert hidden.shape == (2, 1, 8)
    np.testing.assert_array_equal(targets, seq[:, -1:])
    np.testing.assert_array_equal(weights, np.ones((2, 1), np.float32))
    np.testing.assert_allclose(hidden[:, 0], model.encode(seq[:, :-1])[:, -1], atol=1e-6)


def test_cloze_masking_rate():
    mask_prob = 0.3
    tokens = np.array(windows(batch=2000)[:, 1:])
    tokens[1, :-1] = 0  # a single item
    tokens[2] = 0  # an empty row
    masked = np.asarray(cloze_mask(jax.random.key(3), jnp.asarray(tokens), mask_prob))
    assert not masked[tokens == 0].any()
    assert masked[tokens.sum(1) > 0].any(1).all() and not masked[2].any()
    # A full row that drew no mask gets one forced mask, so the rate is p + (1 - p)^n / n.
    full = (tokens != 0).all(1)
    n = MAX_LEN
    assert abs(masked[full].mean() - (mask_prob + (1 - mask_prob) ** n / n)) < 0.01


def test_bert4rec_training_forward_masks_with_the_mask_id():
    model = make("bert4rec", mask_prob=0.5)
    seq = windows()
    hidden, targets, weights = model.training_forward(seq, key=jax.random.key(3))
    tokens = np.asarray(seq[:, 1:])
    masked = np.asarray(weights) == 1
    assert masked.any(1).all() and not masked[tokens == 0].any()
    np.testing.assert_array_equal(targets, np.where(masked, tokens, 0))
    # The encoder saw the [MASK] id num_items + 1 exactly at the masked positions.
    np.testing.assert_allclose(
        hidden, model.encode(jnp.where(masked, NUM_ITEMS + 1, tokens)), atol=1e-5
    )


def test_bert4rec_user_representation_reads_an_appended_mask():
    model = make("bert4rec")
    history = windows()[:, 1:]
    appended = jnp.concatenate([history[:, 1:], jnp.full((2, 1), NUM_ITEMS + 1, jnp.int32)], axis=1)
    expected = model.encode(appended)[:, -1]
    np.testing.assert_allclose(model.user_representation(history), expected, atol=1e-6)
    oldest_changed = history.at[:, 0].set(5)
    np.testing.assert_allclose(model.user_representation(oldest_changed), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_tied_output_table_is_the_item_embedding(name):
    model = make(name)
    weight, bias = model.output_table()
    table = np.asarray(model.item_embedding.embedding[...])
    assert bias is None and weight.shape == (NUM_ITEMS + 1, 8)
    np.testing.assert_array_equal(weight, table[: NUM_ITEMS + 1])


def test_linear_head_with_bias_scores_all_items():
    model = make("sasrec", head="linear", head_bias=True)
    weight, bias = model.output_table()
    assert weight.shape == (NUM_ITEMS + 1, 8) and bias.shape == (NUM_ITEMS + 1,)
    assert not np.allclose(weight, model.item_embedding.embedding[...][: NUM_ITEMS + 1])
    hidden = jax.random.normal(jax.random.key(0), (2, MAX_LEN, 8))
    expected = np.asarray(hidden) @ np.asarray(weight).T + np.asarray(bias)
    np.testing.assert_allclose(model.score_all(hidden), expected, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("head", ["tied", "linear"])
def test_score_temperature_scores_by_scaled_cosine(name, head):
    temperature = 0.05
    plain = make(name, head=head)
    cosine = make(name, head=head, score_temperature=temperature)  # same seed: same weights
    history = windows()[:, 1:]
    u = np.asarray(plain.user_representation(history))
    w = np.asarray(plain.output_table()[0])
    expected = (u / np.linalg.norm(u, axis=1, keepdims=True)) @ (
        w / np.linalg.norm(w, axis=1, keepdims=True)).T / temperature
    np.testing.assert_allclose(cosine.score_all(cosine.user_representation(history)), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_ensemble_scores_are_the_sum_of_member_scores(name):
    ensemble = make(name, ensemble_size=3, head_bias=True)
    members = list(ensemble.members)
    assert len({float(m.item_embedding.embedding[...][1, 0]) for m in members}) == 3  # own inits
    history = windows()[:, 1:]
    expected = 0.0
    for m in members:
        w, b = (np.asarray(x) for x in m.output_table())
        expected = expected + np.asarray(m.user_representation(history)) @ w.T + b
    weight, bias = ensemble.output_table()
    got = np.asarray(ensemble.user_representation(history)) @ np.asarray(weight).T + np.asarray(bias)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("exclude_window", [False, True])
def test_ensemble_members_train_independently(exclude_window):
    """One train step: a member's update depends on its own parameters only."""
    import optax

    from transrec_jax.train import train_step

    cfg = base_config()
    cfg.loss.exclude_window = exclude_window
    cfg.model = model_cfg("sasrec", ensemble_size=2)
    graphdef, params = nnx.split(build_model(cfg.model, NUM_ITEMS, rngs=nnx.Rngs(0)))
    tx = optax.sgd(0.1)
    step = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, loss_cfg=cfg.loss,
                                     item_log_probs=None))

    def run(params):
        state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
        new_state, _ = step(state, {"seq": windows(batch=4)}, jax.random.key(0))
        return nnx.merge(graphdef, new_state["params"]).members

    other = nnx.merge(graphdef, params)  # member 1 re-drawn, member 0 unchanged
    nnx.update(other.members[1], nnx.state(make("sasrec", seed=7)))
    a, b = run(params), run(nnx.state(other))
    for x, y in zip(jax.tree.leaves(nnx.state(a[0])), jax.tree.leaves(nnx.state(b[0]))):
        np.testing.assert_array_equal(x, y)
    before = nnx.merge(graphdef, params).members[0]
    assert any(not np.array_equal(x, y) for x, y in
               zip(jax.tree.leaves(nnx.state(a[0])), jax.tree.leaves(nnx.state(before))))


def test_qkv_init_std_sets_only_the_qkv_projections():
    model = make("sasrec", d_model=64, d_ff=64, init_std=0.02, qkv_init_std=0.088)
    attention = model.layers[0].attention
    for proj, std in [(attention.query_proj, 0.088), (attention.key_proj, 0.088),
                      (attention.value_proj, 0.088), (attention.output_proj, 0.02)]:
        assert float(np.std(np.asarray(proj.kernel[...]))) == pytest.approx(std, rel=0.1)


def test_embedding_init_std_sets_only_the_embedding_tables():
    model = make("sasrec", d_model=64, d_ff=64, init_std=0.02, embedding_init_std=1.0,
                 head="linear")
    tables = [model.item_embedding.embedding, model.positions.embedding.embedding,
              model.output_weight]
    for table in tables:
        assert float(np.std(np.asarray(table[...]))) == pytest.approx(1.0, rel=0.1)
    kernel = model.layers[0].attention.query_proj.kernel[...]
    assert float(np.std(np.asarray(kernel))) == pytest.approx(0.02, rel=0.1)


def test_dropout_comes_from_the_key():
    model = make("sasrec", dropout=0.3, attention_dropout=0.3)
    tokens = windows()[:, 1:]
    a = model.encode(tokens, key=jax.random.key(0))
    np.testing.assert_allclose(model.encode(tokens, key=jax.random.key(0)), a)
    assert not np.allclose(model.encode(tokens, key=jax.random.key(1)), a)
    assert not np.allclose(model.encode(tokens), a)


def test_pure_train_step():
    cfg = base_config()
    cfg.model = model_cfg("bert4rec", num_layers=1)  # the key drives the Cloze masking
    graphdef, params = nnx.split(build_model(cfg.model, NUM_ITEMS, rngs=nnx.Rngs(0)))

    @jax.jit
    def loss_and_grad(params, seq, key):
        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            forward_key, loss_key = jax.random.split(key)
            hidden, targets, weights = model.training_forward(seq, key=forward_key)
            w, b = model.output_table()
            return compute_loss(cfg.loss, hidden, targets, weights, w, b, loss_key)[0]

        return jax.value_and_grad(loss_fn)(params)

    seq = windows()
    loss, grads = loss_and_grad(params, seq, jax.random.key(0))
    again, _ = loss_and_grad(params, seq, jax.random.key(0))
    other, _ = loss_and_grad(params, seq, jax.random.key(1))
    assert np.isfinite(loss) and loss == again and loss != other
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "name,placement,activation,positions,head",
    [
        ("sasrec", "pre", "gelu", "learned", "tied"),
        ("sasrec", "sasrec", "relu", "learned", "linear"),
        ("bert4rec", "post", "swiglu", "sinusoidal", "tied"),
        ("bert4rec", "sasrec", "gelu", "rotary", "linear"),
        ("transformer_recommender", "post", "relu", "none", "tied"),
        ("transformer_recommender", "pre", "swiglu", "rotary", "linear"),
    ],
)
def test_variants_build_and_run(name, placement, activation, positions, head):
    model = make(
        name,
        norm_placement=placement,
        activation=activation,
        positions=positions,
        head=head,
        head_bias=head == "linear",
        scale_embeddings=True,
        dropout=0.1,
        attention_dropout=0.1,
    )
    hidden, targets, weights = model.training_forward(windows(), key=jax.random.key(0))
    assert hidden.shape[:2] == targets.shape == weights.shape
    scores = model.score_all(model.user_representation(windows()[:, 1:]))
    assert scores.shape == (2, NUM_ITEMS + 1) and np.isfinite(scores).all()
    assert (model.final_norm is None) == (placement == "post")


def test_fused_attention_model_matches_explicit():
    explicit, fused = (
        make("sasrec", positions="rotary"),
        make("sasrec", positions="rotary", fused_attention=True),
    )
    tokens = windows()[:, 1:]
    np.testing.assert_allclose(fused.encode(tokens), explicit.encode(tokens), atol=1e-5)


def test_bf16_compute_keeps_float32_parameters():
    model = build_model(model_cfg("sasrec"), NUM_ITEMS, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model))} == {jnp.dtype(jnp.float32)}
    hidden = model.encode(windows()[:, 1:])
    assert hidden.dtype == jnp.bfloat16 and np.isfinite(np.asarray(hidden, np.float32)).all()
    assert model.score_all(hidden).dtype == jnp.float32


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="model.name"):
        make("gru4rec")
    with pytest.raises(ValueError, match="attention_dropout"):
        make("sasrec", fused_attention=True, attention_dropout=0.1)
    with pytest.raises(ValueError, match="max_len"):
        make("sasrec").encode(jnp.ones((1, MAX_LEN + 1), jnp.int32))


def hand_count(m, items: int) -> int:
    """Parameters of a model config, counted from its sizes."""
    d, f = m.d_model, m.d_ff
    norm = 2 * d  # LayerNorm: scale and bias
    attention = 4 * (d * d + d)  # Q, K, V and output projections with biases
    ffn = 3 * d * f + 2 * f + d if m.activation == "swiglu" else (d * f + f) + (f * d + d)
    embedding = (items + (2 if m.name == "bert4rec" else 1)) * d  # + padding row (+ [MASK] row)
    positions = m.max_len * d if m.positions == "learned" else 0
    final_norm = 0 if m.norm_placement == "post" else norm
    head = ((items + 1) * d if m.head == "linear" else 0) + (items + 1 if m.head_bias else 0)
    return embedding + positions + m.num_layers * (attention + ffn + 2 * norm) + final_norm + head


def test_reference_ml1m_parameter_counts():
    configs = {name: reference_model_config(name) for name in MODELS}
    settings = {
        n: (m.max_len, m.d_model, m.num_layers, m.d_ff, m.head, m.head_bias)
        for n, m in configs.items()
    }
    assert settings == {
        "sasrec": (200, 64, 2, 64, "tied", False),
        "bert4rec": (200, 64, 2, 256, "tied", False),
        "transformer_recommender": (200, 64, 2, 256, "linear", True),
    }
    # d=64, 3,416 items, max_len 200, 2 layers; attention 4(64·64+64) = 16,640 per layer,
    # layer norms 2·128 per layer + 128 final, positions 200·64 = 12,800.
    # sasrec:   3,417·64 + 12,800 + 2(16,640 + (64·64+64 + 64·64+64) + 256) + 128 = 282,048
    # bert4rec: 3,418·64 + 12,800 + 2(16,640 + (64·256+256 + 256·64+64) + 256) + 128 = 331,648
    # transformer_recommender: bert4rec - 64 ([MASK] row) + 3,417·64 + 3,417 (linear head) = 553,689
    expected = {"sasrec": 282_048, "bert4rec": 331_648, "transformer_recommender": 553_689}
    for name, m in configs.items():
        model = nnx.eval_shape(lambda m=m: build_model(m, ML1M_NUM_ITEMS, rngs=nnx.Rngs(0)))
        counts = parameter_counts(model)
        assert sum(counts.values()) == expected[name] == hand_count(m, ML1M_NUM_ITEMS), name
        assert counts["layers.attention"] == m.num_layers * 4 * (m.d_model**2 + m.d_model)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(activation="swiglu"),
        dict(norm_placement="post", positions="rotary", head="linear", head_bias=True),
    ],
)
def test_parameter_count_formula_on_variants(overrides):
    m = model_cfg("bert4rec", **overrides)
    model = nnx.eval_shape(lambda: build_model(m, NUM_ITEMS, rngs=nnx.Rngs(0)))
    assert sum(parameter_counts(model).values()) == hand_count(m, NUM_ITEMS)
