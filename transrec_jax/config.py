"""The one place defaults live: the base config, dataset presets, and validation.

Config files under `configs/` start from `base_config()`, pick a dataset preset and
override what their model needs. Code reads `config.x`; it never keeps its own defaults.
`validate(config)` runs before anything compiles and raises `ConfigError` with a
one-line message naming the offending key.
"""

from __future__ import annotations

import importlib.util
import json

import ml_collections

# The item files of the presets that have one (config word `item_features`).
PRESET_ITEM_FEATURES = {
    "ml-1m": "../shared/data/ml-1m/movies.dat",  # genres, through the preset's item_map
    "ml-1m-full": "../shared/data/ml-1m/movies.dat",
    "ml-100k": "../shared/data/ml-100k/u.item",
    "beauty": "../shared/data/amazon/s3rec_Beauty_item2attributes.json",  # categories, brand
}
ITEM_FEATURE_FORMATS = ("auto", "movies_dat", "u_item", "attributes_json", "table", "vectors")
# The user files of the presets that have one (config word `user_features`).
PRESET_USER_FEATURES = {
    "ml-1m": "../shared/data/ml-1m/users.dat",  # gender, age bucket, occupation
    "ml-1m-full": "../shared/data/ml-1m/users.dat",
    "ml-100k": "../shared/data/ml-100k/u.user",
}
USER_FEATURE_FORMATS = ("auto", "users_dat", "u_user", "table")
# Config words that set a preset's feature file: word → (files by dataset, model key, its value):
# item features through a sum tower, user features added to the inputs.
FEATURE_WORDS = {"item_features": (PRESET_ITEM_FEATURES, "item_tower", "sum"),
                 "user_features": (PRESET_USER_FEATURES, "user_features", "input")}
DATASETS = ("synthetic", "ml-1m", "ml-1m-full", "ml-100k", "beauty", "local", "tfds")
MODELS = ("sasrec", "bert4rec", "transformer_recommender", "encdec", "hstu")
SPLITS = ("leave_one_out", "temporal", "next_k", "cold_items")
LOSSES = ("bce", "ce", "sampled_softmax", "gbce")


class ConfigError(ValueError):
    """A config value is missing, mistyped or inconsistent."""


# Keys removed from base_config() (no study ever set them), each with the one value the code
# still implements -- its old default. An old run's config.json that holds one at that value
# loads as before (recorded_config drops it); at any other value it is refused.
REMOVED = {
    "loss.logq_correction": True,  # sampled_softmax subtracts log q (not for 'unseen')
    "loss.remove_accidental_hits": True,  # a negative equal to its position's positive is dropped
    "train.optimizer": "adam",
    "train.weight_decay": 0.0,
    "train.clip_norm": 0.0,  # no gradient clipping
    "model.norm": "layernorm",  # every norm is a LayerNorm (scale and bias)
}


def _removed(key: str, value, where: str) -> bool:
    """True when `key` ("a.b") is in REMOVED and `value` is the one value it still means;
    ConfigError (naming `where`) when it is removed at another value; False when not removed."""
    if key not in REMOVED:
        return False
    if value != REMOVED[key] or isinstance(value, bool) != isinstance(REMOVED[key], bool):
        raise ConfigError(f"{where}: {key}={value!r}: this version no longer implements {key}; "
                          f"it always runs as {key}={REMOVED[key]!r}")
    return True


def base_config() -> ml_collections.ConfigDict:
    """Every key the code reads, with its default."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # --- data -------------------------------------------------------------
    c.dataset = d = ml_collections.ConfigDict()
    d.name = "synthetic"  # one of DATASETS; presets fill the fields below
    d.source = "synthetic"  # synthetic | local | tfds
    d.path = ""  # local file (plain or .gz)
    d.format = "auto"  # auto | movielens_dat | ml100k | ratings_csv | user_item | user_items | table
    d.user_col = "user"  # table format: column names
    d.item_col = "item"
    d.time_col = ""  # optional
    d.rating_col = ""  # optional
    d.tfds_name = "movielens/1m-ratings"
    d.tfds_data_dir = ""  # "" = TFDS default (~/tensorflow_datasets)
    d.min_rating = 0.0  # keep rating >= min_rating; 0 keeps everything
    d.dedup = False  # keep the first (user, item) occurrence only
    d.min_user_interactions = 0  # iterated k-core; 0 disables
    d.min_item_interactions = 0
    d.split = "leave_one_out"  # leave_one_out | temporal | next_k | cold_items
    d.next_k = 5  # next_k split: the last next_k items per user are test, the next_k before them validation
    d.val_time = 0  # temporal split: interactions at t >= val_time are validation...
    d.test_time = 0  # ...and t >= test_time test (unix seconds)
    # cold_items split: leave-one-out, with this seeded fraction of the items (drawn from seed)
    # removed from all training data; validation and test keep them as targets and in
    # histories, and results.json slices test metrics by withheld | warm target (data/splits.py)
    d.cold_item_fraction = 0.1
    # > 0: every validation and test history is cut to its last max_history items before the
    # target, model input and history masking alike (the few-interaction regime; training is
    # unchanged). 0 = whole histories
    d.max_history = 0
    # leave_one_out: training also reads each user's validation item (everything but the test
    # item, as [ZL24]'s ML-1M runs train). Validation then scores items the model trained on and
    # picks no checkpoint: the test evaluates the final state (needs train.patience=0)
    d.train_on_val_item = False
    # > 0: this seeded fraction of the users (drawn from seed) is withheld from training,
    # validation and test entirely: the non-members of privacy/membership.py's attack
    d.holdout_users = 0.0
    # For people, not training: the file's item id → original id (CSV/TSV with a header), and
    # original id → title (movies.dat, u.item, or CSV/TSV with a 'title' column); data/catalog.py
    d.item_map = ""
    d.item_titles = ""
    d.cache_dir = ""  # "" = ~/.cache/transrec_jax
    # Item side information for model.item_tower (data/side_info.py), by original item id
    # (through item_map where the dataset renumbered its items): "" = none. Format: auto (by
    # name: movies.dat, u.item, *.json of {"item": [attributes]}) | movies_dat | u_item |
    # attributes_json | table (CSV/TSV/Parquet: item_features_id_col, and item_features_columns
    # as "col:categorical,col:numeric,col:multi:|") | vectors (Parquet: item_features_id_col
    # and a list column `vector`). The config word `item_features` sets the preset's file.
    d.item_features = ""
    d.item_features_format = "auto"
    d.item_features_id_col = "id"
    d.item_features_columns = ""
    # User side information for model.user_features, by the dataset's user id: "" = none.
    # Format: auto (by name: users.dat, u.user, .csv/.tsv/.parquet = table) | users_dat (ML-1M:
    # gender, age, occupation) | u_user (ML-100K: the same, age bucketed) | table (CSV/TSV/Parquet:
    # user_features_id_col, and user_features_columns as item_features_columns). The config
    # word `user_features` sets the preset's file.
    d.user_features = ""
    d.user_features_format = "auto"
    d.user_features_id_col = "id"
    d.user_features_columns = ""
    # Synthetic generator (planted sequential structure).
    d.synthetic = s = ml_collections.ConfigDict()
    s.num_users = 2000
    s.num_items = 500
    s.num_topics = 10
    s.min_len = 20
    s.max_len = 60
    s.topic_stay = 0.9  # probability to stay in the current topic per step
    s.markov_weight = 0.6  # probability the next item follows the last item's successor set
    s.successors = 4  # size of each item's successor set

    # --- model ------------------------------------------------------------
    c.model = m = ml_collections.ConfigDict()
    m.name = "sasrec"  # one of MODELS
    m.max_len = 50  # items the model sees
    m.d_model = 64
    m.num_layers = 2
    m.num_heads = 2
    m.d_ff = 256
    m.dropout = 0.2
    m.attention_dropout = 0.2
    m.activation = "gelu"  # gelu | relu | swiglu
    m.norm_placement = "pre"  # pre | post | sasrec
    m.positions = "learned"  # learned | sinusoidal | rotary | none
    # end: the most recent item is position 0 (padding-invariant); start: the oldest item in the
    # window is 0, as SASRec's original code numbers its right-padded rows
    m.positions_from = "end"
    m.scale_embeddings = False  # multiply item embeddings by sqrt(d_model)
    # sasrec: also train each window's first item, predicted from the padding slot before it.
    # SASRec's and [KV23]'s code do not (their targets start at the second item).
    m.first_item_target = True
    m.head = "tied"  # tied | linear
    m.head_bias = False
    # > 0: score items by cosine(user vector, output row) / score_temperature: both are
    # L2-normalised before the dot product (HSTU's generative-recommenders, 0.05 there). 0: dot.
    m.score_temperature = 0.0
    # > 1: a deep ensemble of this many independently initialised copies, each trained on its
    # own loss over the same batches, scores summed (models/ensemble.py). Costs K x compute.
    m.ensemble_size = 1
    # Item content (models/item_tower.py): "off" (ids only), or how an item's id row and its
    # dataset.item_features combine: sum | gated | concat. id_dropout: the probability, while
    # training, that an input item's id row, and an item's row of the output table (once a
    # step), is replaced by the learned "unknown id" vector.
    m.item_tower = "off"
    m.id_dropout = 0.0
    # User content (models/user_tower.py): "off", or where each sequence's user vector (from
    # dataset.user_features) is added: input (to every input position's embedding, so every
    # layer reads it) | output (to the hidden state that scores the items).
    m.user_features = "off"
    m.fused_attention = False  # use jax.nn.dot_product_attention for the core
    # > 0: explicit attention in query chunks of this many rows (e.g. 128), so training holds
    # no [B, H, L, L] float tensors: for long max_len. The loss then grows with B·L·num_items
    # (full CE): with large catalogues also set loss.ce_chunk_size (measured in
    # experiments/benchmarks/RESULTS.md, "max_len 1024/2048") or use a sampled loss.
    m.attention_chunk = 0
    m.mask_prob = 0.2  # bert4rec Cloze masking rate
    m.num_decoder_layers = 2  # encdec: DecoderLayers after the encoder
    m.next_k = 5  # encdec: items the decoder is trained to emit (and at most generates)
    m.beam_width = 1  # encdec generation: 1 = greedy, > 1 = beam search
    m.init_std = 0.02
    # > 0: std of the Q/K/V projection weights alone. PyTorch's nn.MultiheadAttention starts
    # them from xavier_uniform over its [3d, d] in_proj, std sqrt(1 / (2 d)): 0.088 at d = 64.
    m.qkv_init_std = 0.0
    # > 0: std of the embedding tables alone (items, learned positions, a linear head's output
    # embeddings). PyTorch's nn.Embedding starts from N(0, 1), which gSASRec's code keeps.
    m.embedding_init_std = 0.0
    # > 0: std of the learned position table alone (HSTU's code: sqrt(1 / d_model)).
    m.position_init_std = 0.0
    # hstu: > 0 adds a learned bias per bucket of log time gaps to the relative position bias
    # (models/hstu.py; HSTU's code: 128 buckets). Needs a dataset with timestamps. 0 = none.
    m.time_buckets = 0
    # hstu with time_buckets: the time each query measures gaps from. target: that of the item
    # it predicts ([ZL24]; at evaluation the held-out item's). last_item: its own item's, so
    # nothing reads when the target happened.
    m.time_query = "target"

    # --- loss -------------------------------------------------------------
    c.loss = lo = ml_collections.ConfigDict()
    lo.name = "ce"  # one of LOSSES
    lo.num_negatives = 1
    lo.sampler = "uniform"  # uniform | popularity | in_batch | unseen (sampled_softmax only)
    lo.gbce_t = 0.75
    lo.ce_chunk_size = 0  # 0 = unchunked; else items per chunk
    lo.label_smoothing = 0.0
    # ce: each position's softmax leaves out its row's other items, as evaluation leaves out
    # the history (per window when rows are packed; no chunking, no label smoothing)
    lo.exclude_window = False
    # sampled_softmax: one draw of num_negatives per training sequence, shared by its positions
    # (SASRec+), or one per position (HSTU's LocalNegativesSampler); bce / gbce: per position
    lo.sample_per = "sequence"

    # --- training ---------------------------------------------------------
    c.train = t = ml_collections.ConfigDict()
    t.batch_size = 128  # global, split over devices
    t.num_epochs = 20
    t.num_steps = 0  # > 0 overrides num_epochs
    t.learning_rate = 1e-3  # plain Adam (optax.adam): no weight decay, no gradient clipping
    t.schedule = "constant"  # constant | cosine
    t.warmup_steps = 0
    t.warmup_epochs = 0.0  # > 0 overrides warmup_steps: a warm-up that scales with the data
    t.adam_b2 = 0.98
    t.window = "last"  # last | random | shifted: which window of a history trains (TrainBatcher)
    t.pack_rows = False  # pack each batch's windows into fewer rows (same loss, less padding)
    t.bf16 = False
    t.log_every = 50
    t.eval_every_epochs = 1
    t.eval_every_steps = 0  # > 0 overrides eval_every_epochs
    t.patience = 5  # evaluations without improvement before stopping; 0 disables
    t.early_stop_metric = "ndcg@10"
    t.checkpoint_every_steps = 500
    t.keep_checkpoints = 2

    # --- evaluation -------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.ks = (1, 5, 10, 20)
    e.mode = "full"  # full | sampled100 (pre-2020 protocol, labelled as such)
    e.mask_history = True
    e.batch_size = 256
    e.item_chunk = 0  # 0 = score all items at once
    e.length_buckets = 4  # batch users of similar history length, cut padding columns; 1 = off
    # Score the test items at every validation too (metrics.jsonl kind `test_every_eval`, and
    # results.json): to study protocols that read a figure off a test curve ([ZL24]'s train.py
    # tests every epoch). It picks nothing; the tested checkpoint is chosen as without it.
    e.test_every_eval = False

    # --- devices: a (data, model) mesh; README "Running on a cluster" -------------------
    # The batch splits over `data`; the rows of the item tables (input embedding, output
    # table and bias) split over `model`; everything else is replicated. -1 = the devices left.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.model = 1  # a positive integer: the item tables' rows are padded to a multiple of it

    # --- processes: jax.distributed, off by default (see cluster.py) ------------------
    c.cluster = cl = ml_collections.ConfigDict()
    cl.launch = "single"  # single | auto (TPU pods, SLURM: JAX detects) | explicit (below)
    cl.coordinator_address = ""  # explicit: host:port of process 0
    cl.num_processes = 0  # explicit: how many processes
    cl.process_id = -1  # explicit: this process, 0..num_processes - 1
    cl.timeout_s = 300  # how long to wait for the coordinator and the other processes

    # --- privacy: user-level DP-SGD, off by default (transrec_jax/privacy/, README "Privacy") ---
    c.privacy = p = ml_collections.ConfigDict()
    # off | dp_sgd | fedavg (simulated federated averaging, not private) | dp_fedavg (its
    # updates clipped and noised like DP-SGD's gradients, accounted the same way)
    p.mode = "off"
    p.epsilon = 8.0  # the run's target epsilon (when noise_multiplier = 0)
    p.delta = 0.0  # 0 = 1 / the number of training users
    p.clip_norm = 1.0  # each user's gradient (all their windows) is clipped to this L2 norm
    p.noise_multiplier = 0.0  # noise std / clip_norm; 0 = the smallest that meets epsilon
    p.users_per_step = 128  # expected users a step (poisson: each with q = this / users)
    p.windows_per_user = 1  # training windows of each sampled user, one privacy unit
    p.sampling = "poisson"  # poisson | fixed (users_per_step users without replacement)
    p.local_steps = 4  # fedavg, dp_fedavg: SGD steps of each client on its own windows a round
    p.client_learning_rate = 0.1  # ... at this learning rate
    return c


def apply_dataset_preset(c: ml_collections.ConfigDict, name: str) -> None:
    """Set dataset fields (and the dataset-dependent model/train defaults) for `name`."""
    d = c.dataset
    d.name = name
    if name == "synthetic":
        d.source = "synthetic"
    elif name == "ml-1m":
        d.source, d.format = "local", "user_item"
        d.path = "../shared/data/ml-1m/ml-1m_sasrec-equiv_derived.txt.gz"
        d.item_map = "../shared/data/ml-1m/ml-1m_sasrec-equiv_itemmap.tsv"  # → MovieIDs
        d.item_titles = "../shared/data/ml-1m/movies.dat"
        c.model.max_len = 200
    elif name == "ml-1m-full":
        # All 3,706 rated movies (the HSTU papers' ML-1M), by original MovieID; items a user
        # rated in the same second keep the file's order (its source's, not a timestamp sort).
        d.source, d.format = "local", "user_item"
        d.path = "../shared/data/ml-1m/ml-1m_seq_rawid.txt.gz"
        d.item_titles = "../shared/data/ml-1m/movies.dat"
        c.model.max_len = 200
    elif name == "ml-100k":
        d.source, d.format = "local", "ml100k"
        d.path = "../shared/data/ml-100k/u.data.gz"
        d.item_titles = "../shared/data/ml-100k/u.item"
        c.model.max_len = 200
    elif name == "beauty":
        d.source, d.format = "local", "user_items"
        d.path = "../shared/data/amazon/s3rec_Beauty.txt.gz"
        c.model.max_len = 50
    elif name == "tfds":
        d.source = "tfds"
        d.min_item_interactions = 5
        c.model.max_len = 200
    elif name == "local":
        d.source = "local"
    else:
        raise ConfigError(f"dataset preset {name!r} unknown; expected one of {DATASETS}")


def parse_arg(arg: str | None) -> dict[str, str]:
    """Parse big_vision-style `variant,key=value,...` strings: bare words map to True."""
    out: dict[str, str] = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        out[key.strip()] = value.strip() if sep else "True"
    return out


def validate(c: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raise ConfigError naming the first bad key, section by section."""
    _validate_dataset(c.dataset)
    _validate_model(c.model, c.dataset)
    _validate_loss(c.loss, c.model, c.train)
    _validate_train(c.train, c.model)
    _validate_eval(c.eval, c.train)
    _validate_cluster(c.cluster)
    _validate_mesh(c.mesh, c.train, c.eval, num_devices)
    _validate_privacy(c.privacy, c, num_devices)
    if c.dataset.train_on_val_item and c.dataset.split != "leave_one_out":
        raise ConfigError(f"config.dataset.train_on_val_item: only with dataset.split='leave_one_out' "
                          f"(it is {c.dataset.split!r})")
    if c.dataset.train_on_val_item and c.train.patience:
        raise ConfigError(f"config.train.patience={c.train.patience}: with dataset.train_on_val_item "
                          "validation scores trained items and must not stop the run: expected 0")
    if c.model.item_tower != "off" and mesh_shape(c.mesh, num_devices)[1] > 1:
        raise ConfigError("config.model.item_tower: not supported with the item tables split over "
                          "devices (mesh.model > 1) yet; use mesh.model=1")


def _validate_privacy(p, c, num_devices):
    _choice("privacy.mode", p.mode, ("off", "dp_sgd", "fedavg", "dp_fedavg"))
    if p.mode == "off":
        return
    if importlib.util.find_spec("dp_accounting") is None:
        raise ConfigError(f"config.privacy.mode={p.mode!r} needs dp_accounting: pip install -e '.[privacy]'")
    if not p.epsilon > 0:
        raise ConfigError(f"config.privacy.epsilon={p.epsilon}: expected a positive epsilon")
    if not 0.0 <= p.delta < 1.0:
        raise ConfigError(f"config.privacy.delta={p.delta}: expected a value in (0, 1), or 0 for "
                          "1 / the number of training users")
    if not p.clip_norm > 0:
        raise ConfigError(f"config.privacy.clip_norm={p.clip_norm}: expected a positive norm")
    if not p.noise_multiplier >= 0:
        raise ConfigError(f"config.privacy.noise_multiplier={p.noise_multiplier}: expected >= 0 "
                          "(0: solved from privacy.epsilon)")
    _positive("privacy.users_per_step", p.users_per_step)
    _positive("privacy.windows_per_user", p.windows_per_user)
    _choice("privacy.sampling", p.sampling, ("poisson", "fixed"))
    _positive("privacy.local_steps", p.local_steps)
    if not p.client_learning_rate > 0:
        raise ConfigError(f"config.privacy.client_learning_rate={p.client_learning_rate}: expected > 0")
    # A user's data must reach only that user's gradient, which must come whole from one device.
    if c.train.pack_rows:
        raise ConfigError(f"config.train.pack_rows=True with privacy.mode={p.mode!r}: a packed row "
                          "mixes users' windows; expected train.pack_rows=False")
    if c.loss.sampler in ("in_batch", "popularity"):
        raise ConfigError(f"config.loss.sampler={c.loss.sampler!r} with privacy.mode={p.mode!r}: its "
                          "negatives come from other users' items; expected 'uniform' or 'unseen'")
    if c.model.ensemble_size > 1:
        raise ConfigError(f"config.model.ensemble_size={c.model.ensemble_size} with privacy.mode="
                          f"{p.mode!r}: per-user gradients of an ensemble are not implemented")
    if mesh_shape(c.mesh, num_devices)[1] > 1:
        raise ConfigError(f"config.mesh.model={c.mesh.model} with privacy.mode={p.mode!r}: per-user "
                          "gradients of a vocab-parallel loss are not implemented; expected 1")


def _validate_cluster(cl):
    _choice("cluster.launch", cl.launch, ("single", "auto", "explicit"))
    _positive("cluster.timeout_s", cl.timeout_s)
    if cl.launch != "explicit":
        return
    host, _, port = cl.coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"config.cluster.coordinator_address={cl.coordinator_address!r}: "
                          "launch='explicit' needs host:port of process 0 (e.g. '10.0.0.1:1234')")
    _positive("cluster.num_processes", cl.num_processes)
    if not isinstance(cl.process_id, int) or not 0 <= cl.process_id < cl.num_processes:
        raise ConfigError(f"config.cluster.process_id={cl.process_id!r}: expected 0 <= process_id < "
                          f"cluster.num_processes={cl.num_processes}")


def _choice(key, value, options):
    if value not in options:
        raise ConfigError(f"config.{key}={value!r}: expected one of {tuple(options)}")


def _positive(key, value, allow_zero=False):
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"config.{key}={value!r}: expected {kind} integer")


def _validate_dataset(d):
    _choice("dataset.name", d.name, DATASETS)
    _choice("dataset.source", d.source, ("synthetic", "local", "tfds"))
    _choice("dataset.split", d.split, SPLITS)
    _positive("dataset.next_k", d.next_k)
    _positive("dataset.max_history", d.max_history, allow_zero=True)
    if not 0.0 <= d.holdout_users < 1.0:
        raise ConfigError(f"config.dataset.holdout_users={d.holdout_users}: expected a value in [0, 1)")
    if d.split == "cold_items" and not 0.0 < d.cold_item_fraction < 1.0:
        raise ConfigError(f"config.dataset.cold_item_fraction={d.cold_item_fraction}: "
                          "dataset.split='cold_items' expects a value in (0, 1)")
    if d.source == "local" and not d.path:
        raise ConfigError("config.dataset.path is empty: a local dataset needs a file path")
    if d.split == "temporal" and not (0 < d.val_time <= d.test_time):
        raise ConfigError(
            "config.dataset.val_time/test_time: a temporal split needs 0 < val_time <= test_time"
        )


def _validate_model(m, d):
    _choice("model.name", m.name, MODELS)
    _positive("model.max_len", m.max_len)
    if m.max_len < 2:
        raise ConfigError(f"config.model.max_len={m.max_len}: expected at least 2")
    for key in ("d_model", "num_layers", "num_heads", "d_ff"):
        _positive(f"model.{key}", m[key])
    if m.d_model % m.num_heads:
        raise ConfigError(
            f"config.model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}"
        )
    if m.positions == "rotary" and (m.d_model // m.num_heads) % 2:
        raise ConfigError("config.model.positions='rotary' needs an even head dimension")
    _choice("model.activation", m.activation, ("gelu", "relu", "swiglu"))
    _choice("model.norm_placement", m.norm_placement, ("pre", "post", "sasrec"))
    _choice("model.positions", m.positions, ("learned", "sinusoidal", "rotary", "none"))
    _choice("model.positions_from", m.positions_from, ("end", "start"))
    _choice("model.head", m.head, ("tied", "linear"))
    for key in ("dropout", "attention_dropout"):
        if not 0.0 <= m[key] < 1.0:
            raise ConfigError(f"config.model.{key}={m[key]}: expected a value in [0, 1)")
    if not m.score_temperature >= 0.0:
        raise ConfigError(f"config.model.score_temperature={m.score_temperature}: expected 0 (dot "
                          "product) or a positive temperature")
    _positive("model.ensemble_size", m.ensemble_size)
    _choice("model.item_tower", m.item_tower, ("off", "sum", "gated", "concat"))
    if not 0.0 <= m.id_dropout < 1.0:
        raise ConfigError(f"config.model.id_dropout={m.id_dropout}: expected a value in [0, 1)")
    if m.id_dropout and m.item_tower == "off":
        raise ConfigError(f"config.model.id_dropout={m.id_dropout}: needs model.item_tower "
                          "(sum | gated | concat): without content an item is its id")
    if (m.item_tower != "off") != bool(d.item_features):
        raise ConfigError(f"config.model.item_tower={m.item_tower!r} with config.dataset.item_features="
                          f"{d.item_features!r}: the tower reads item features and the features "
                          "need the tower; set both (the config word `item_features` does)")
    _choice("dataset.item_features_format", d.item_features_format, ITEM_FEATURE_FORMATS)
    _choice("model.user_features", m.user_features, ("off", "input", "output"))
    if (m.user_features != "off") != bool(d.user_features):
        raise ConfigError(f"config.model.user_features={m.user_features!r} with config.dataset."
                          f"user_features={d.user_features!r}: the model reads user features and "
                          "the features need it; set both (the config word `user_features` does)")
    _choice("dataset.user_features_format", d.user_features_format, USER_FEATURE_FORMATS)
    if m.user_features != "off" and m.name == "encdec":
        raise ConfigError("config.model.user_features: not supported for model.name='encdec' "
                          "(expected sasrec | bert4rec | transformer_recommender | hstu)")
    if m.item_tower != "off" and m.head == "linear":
        raise ConfigError("config.model.item_tower: needs model.head='tied' (a linear head's own "
                          "weights could not score an item from its content)")
    if m.ensemble_size > 1 and m.name == "encdec":
        raise ConfigError("config.model.ensemble_size > 1: not supported for model.name='encdec' "
                          "(it generates its lists; an ensemble only sums scores)")
    if m.score_temperature and m.name == "encdec":
        raise ConfigError("config.model.score_temperature: not supported for model.name='encdec' "
                          "(its encoder output feeds the decoder, not the scores)")
    for key in ("init_std", "qkv_init_std", "embedding_init_std", "position_init_std"):
        if not m[key] >= 0.0:
            raise ConfigError(f"config.model.{key}={m[key]}: expected a non-negative std")
    _positive("model.attention_chunk", m.attention_chunk, allow_zero=True)
    if m.attention_chunk and m.fused_attention:
        raise ConfigError(
            f"config.model.attention_chunk={m.attention_chunk} chunks the explicit attention "
            "core: expected model.fused_attention=False"
        )
    for key in ("num_decoder_layers", "next_k", "beam_width"):
        _positive(f"model.{key}", m[key])
    if m.name == "encdec" and d.split == "next_k" and d.next_k > m.next_k:
        raise ConfigError(
            f"config.dataset.next_k={d.next_k} > model.next_k={m.next_k}: encdec generates at most model.next_k items"
        )
    if m.name == "hstu":  # models/hstu.py: pointwise attention inside its own block
        for key, value, expected in (("attention_dropout", m.attention_dropout, 0.0),
                                     ("fused_attention", m.fused_attention, False)):
            if value != expected:
                raise ConfigError(f"config.model.{key}={value!r}: HSTU's pointwise attention has "
                                  f"no softmax core and no attention dropout; expected {expected}")
        if m.positions == "rotary":
            raise ConfigError("config.model.positions='rotary': HSTU blocks use a learned relative "
                              "position bias; expected learned | sinusoidal | none")
    _positive("model.time_buckets", m.time_buckets, allow_zero=True)
    if m.time_buckets and m.name != "hstu":
        raise ConfigError(f"config.model.time_buckets={m.time_buckets}: only HSTU blocks have a "
                          f"relative time bias; expected 0 for model.name={m.name!r}")
    if m.time_query not in ("target", "last_item"):
        raise ConfigError(f"config.model.time_query={m.time_query!r}: expected target | last_item")
    if not 0.0 < m.mask_prob < 1.0:
        raise ConfigError(f"config.model.mask_prob={m.mask_prob}: expected a value in (0, 1)")


def _validate_loss(lo, m, t):
    _choice("loss.name", lo.name, LOSSES)
    _choice("loss.sampler", lo.sampler, ("uniform", "popularity", "in_batch", "unseen"))
    if lo.sampler == "unseen" and lo.name != "sampled_softmax":
        raise ConfigError(f"config.loss.sampler='unseen' draws K distinct items per sequence: "
                          f"expected loss.name='sampled_softmax', got {lo.name!r}")
    if lo.exclude_window and (lo.name != "ce" or lo.ce_chunk_size or lo.label_smoothing):
        raise ConfigError("config.loss.exclude_window=True: expected loss.name='ce', "
                          "loss.ce_chunk_size=0 and loss.label_smoothing=0")
    if lo.sampler == "unseen" and t.pack_rows:
        raise ConfigError("config.loss.sampler='unseen' draws outside each training row's items, "
                          "and a packed row holds several users: expected train.pack_rows=False")
    _choice("loss.sample_per", lo.sample_per, ("sequence", "position"))
    if lo.sample_per == "position" and lo.sampler == "unseen":
        raise ConfigError("config.loss.sample_per='position': the 'unseen' sampler draws once per "
                          "training row; expected loss.sample_per='sequence'")
    _positive("loss.num_negatives", lo.num_negatives)
    _positive("loss.ce_chunk_size", lo.ce_chunk_size, allow_zero=True)
    if not 0.0 <= lo.gbce_t <= 1.0:
        raise ConfigError(f"config.loss.gbce_t={lo.gbce_t}: expected a value in [0, 1]")
    if m.name == "bert4rec" and lo.name in ("bce", "gbce"):
        raise ConfigError(
            f"config.loss.name={lo.name!r} cannot train model.name='bert4rec': use 'ce' or 'sampled_softmax'"
        )
    if m.name == "encdec" and lo.name in ("bce", "gbce"):
        raise ConfigError(
            f"config.loss.name={lo.name!r} cannot train model.name='encdec': its generation sums "
            "softmax log-probabilities, use 'ce' or 'sampled_softmax'"
        )


def _validate_train(t, m):
    _positive("train.batch_size", t.batch_size)
    _positive("train.num_epochs", t.num_epochs, allow_zero=True)
    _positive("train.num_steps", t.num_steps, allow_zero=True)
    if t.num_epochs == 0 and t.num_steps == 0:
        raise ConfigError("config.train.num_epochs and train.num_steps are both 0: nothing to train")
    _choice("train.schedule", t.schedule, ("constant", "cosine"))
    _choice("train.window", t.window, ("last", "random", "shifted"))
    if t.pack_rows and m.name not in ("sasrec", "bert4rec", "hstu"):
        raise ConfigError(
            "config.train.pack_rows=True needs model.name 'sasrec', 'bert4rec' or 'hstu' (targets "
            f"at every position); {m.name!r} reads each training row's last position"
        )
    for key in ("log_every", "checkpoint_every_steps", "keep_checkpoints"):
        _positive(f"train.{key}", t[key])
    _positive("train.eval_every_steps", t.eval_every_steps, allow_zero=True)
    _positive("train.eval_every_epochs", t.eval_every_epochs, allow_zero=t.eval_every_steps > 0)
    _positive("train.patience", t.patience, allow_zero=True)
    _positive("train.warmup_steps", t.warmup_steps, allow_zero=True)
    if not t.warmup_epochs >= 0:
        raise ConfigError(f"config.train.warmup_epochs={t.warmup_epochs}: expected >= 0")
    if not t.learning_rate > 0:
        raise ConfigError(f"config.train.learning_rate={t.learning_rate}: expected > 0")


def _validate_eval(e, t):
    _choice("eval.mode", e.mode, ("full", "sampled100"))
    if not e.ks or any((not isinstance(k, int)) or k < 1 for k in e.ks):
        raise ConfigError(f"config.eval.ks={tuple(e.ks)}: expected positive integers")
    metric, _, k = t.early_stop_metric.partition("@")
    if metric not in ("hr", "ndcg", "mrr", "recall") or not k.isdigit() or int(k) not in e.ks:
        raise ConfigError(
            f"config.train.early_stop_metric={t.early_stop_metric!r}: expected "
            f"hr|ndcg|mrr|recall@K with K in eval.ks={tuple(e.ks)}"
        )
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.item_chunk", e.item_chunk, allow_zero=True)
    _positive("eval.length_buckets", e.length_buckets)


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, int]:
    """(data, model) sizes of config.mesh over `num_devices`, mesh.data=-1 taking the rest."""
    _positive("mesh.model", mesh_cfg.model)
    if mesh_cfg.data != -1:
        _positive("mesh.data", mesh_cfg.data)
    if num_devices % mesh_cfg.model:
        raise ConfigError(f"config.mesh.model={mesh_cfg.model} does not divide the {num_devices} devices")
    data = num_devices // mesh_cfg.model if mesh_cfg.data == -1 else mesh_cfg.data
    if data * mesh_cfg.model != num_devices:
        raise ConfigError(f"config.mesh.data={mesh_cfg.data} x mesh.model={mesh_cfg.model} is "
                          f"{data * mesh_cfg.model} devices; there are {num_devices}")
    return data, mesh_cfg.model


def _validate_mesh(mesh_cfg, t, e, num_devices):
    data, _ = mesh_shape(mesh_cfg, num_devices)
    for key, size in (("train.batch_size", t.batch_size), ("eval.batch_size", e.batch_size)):
        if size % data:
            raise ConfigError(f"config.{key}={size} is not divisible by the {data} devices of "
                              "mesh.data: each takes an equal share of the batch")


def finalize(c: ml_collections.ConfigDict, arg: str | None,
             variants: dict[str, dict] | None = None) -> ml_collections.ConfigDict:
    """Apply a config file's `get_config(arg)` words to its config `c`, and lock it.

    `configs/sasrec.py:ml-1m,bce,debug,loss.name=ce` → the file's variant `bce` (its entry in
    `variants`: the keys that word sets), the ml-1m preset, the debug variant (tiny model and
    budget), then config.loss.name = 'ce'. A word that is none of these is an error naming
    the words the file accepts.
    """
    words = parse_arg(arg)
    variants = variants or {}
    for word, overrides in variants.items():
        if words.pop(word, None) == "True":
            c.update_from_flattened_dict(overrides)
    dataset = [w for w, v in words.items() if w in DATASETS and v == "True"]
    if len(dataset) > 1:
        raise ConfigError(f"config arg names several datasets: {dataset}")
    apply_dataset_preset(c, dataset[0] if dataset else "synthetic")
    if words.get("debug") == "True":
        c.model.update(d_model=16, num_layers=1, num_heads=2, d_ff=32, max_len=min(c.model.max_len, 20))
        c.train.update(num_epochs=0, num_steps=30, batch_size=32, eval_every_steps=15, log_every=10)
        c.eval.batch_size = 64
    for word, (files, model_key, value) in FEATURE_WORDS.items():  # a preset's own feature file
        if words.get(word) != "True":
            continue
        if c.dataset.name not in files:
            raise ConfigError(f"config arg word {word!r}: dataset {c.dataset.name!r} has no "
                              f"{word.replace('_', ' ')} of its own (presets with them: {tuple(files)}); "
                              f"set dataset.{word} and model.{model_key}")
        c.dataset[word] = files[c.dataset.name]
        c.model[model_key] = value
    for key, value in words.items():
        if key in DATASETS or key in ("debug", "item_features", "user_features"):
            continue
        if value == "True" and "." not in key:
            raise ConfigError(f"config arg word {key!r} unknown; expected a dataset {DATASETS}, "
                              f"'debug', 'item_features', 'user_features'"
                              f"{''.join(f', {w!r}' for w in variants)} or key=value")
        set_by_path(c, key, value)
    c.lock()
    return c


def recorded_config(path: str) -> ml_collections.ConfigDict:
    """A run's config.json laid over base_config(), locked.

    A key added to the code since the run was written keeps its default, and defaults of new
    keys keep what the code did before them, so an old workdir still loads as it trained. A key
    removed since (REMOVED) is dropped at the value the code still implements, else refused.
    """
    try:
        with open(path) as f:
            recorded = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: expected a workdir written by transrec_jax.main") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys")
    c = base_config()

    def merge(node: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
        for key, value in values.items():
            if _removed(f"{prefix}{key}", value, path):
                continue
            if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
                merge(node[key], value, f"{prefix}{key}.")
            elif isinstance(value, list):
                node[key] = tuple(value)
            else:
                try:
                    node[key] = value
                except TypeError:
                    raise ConfigError(f"{path}: {prefix}{key}={value!r} does not fit the "
                                      f"default {node[key]!r}") from None

    merge(c, recorded, "")
    c.lock()
    return c


def flatten(tree: dict, prefix: str = "") -> dict:
    """A config dict as {"a.b": value}, in JSON types (tuples become lists): what runs compare."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.loads(json.dumps(value))
    return out


def set_by_path(c: ml_collections.ConfigDict, key: str, value: str) -> None:
    """config[a][b] = value parsed to the type of the current value; unknown keys are errors."""
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
        if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} unknown")
        node = node[p]
    if leaf not in node:
        raise ConfigError(f"config key {key!r} unknown")
    old = node[leaf]
    try:
        if isinstance(old, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            new = value.lower() in ("true", "1")
        elif isinstance(old, (tuple, list)):
            new = tuple(type(old[0])(v) for v in value.replace("+", " ").split()) if old else ()
        else:
            new = type(old)(value)
    except ValueError:
        raise ConfigError(f"config key {key}={value!r}: expected a {type(old).__name__}") from None
    node[leaf] = new
