"""A run's best model as a `jax.export` artifact: serving without the model code.

`export_run(workdir, output)` writes a directory that `serving/exported.py` loads with jax and
numpy alone (export copies that file into it, so the directory is all a server needs):

  model.jaxexport  the top-K function, params baked in as constants: history int32[b, max_len]
                   (internal ids, 0 = padding, newest last) and exclude int32[b, e] (ids not
                   to recommend, 0-padded) -> items int32[b, K], scores float32[b, K]. b and e
                   are symbolic: one artifact serves any batch size and history length. An
                   HSTU with a time bias also takes times int32[b, max_len] (aligned with
                   history) and query_time int32[b], in seconds (only differences count); a
                   model with user features then, per feature of its user tower, each
                   history's user's row of that feature (user.<name>: int32[b, m] vocabulary
                   indices, or float32[b, dim]), so a user need not be in the training data.
  ids.json         {"ids": original id of each internal id (entry 0 null), "titles": ... or null}
  users.json       {"ids": the dataset's user ids} (user-feature models, and with vectors=True);
                   a user-feature model's also has "features": each feature's name, kind and
                   how the loader turns raw values into its row (vocabulary; mean and std)
  user_features.npz  a user-feature model's feature rows of every user number (row 0: a user
                   without features, row n: users.json's user n - 1), as the model read them
  manifest.json    what was exported and from what (model, config hash, protocol, versions,
                   the signature above)
  exported.py      the loader (a copy of serving/exported.py)

It computes what `Recommender.top_k` does (the same `_top_k`, so the same `ranking.rank_full`):
the scores of every item after the history, the history excluded, the best K, ties to the
lower id. Several runs export as one artifact of their ensemble (scores summed; the
manifest's "model" is then "ensemble" and "members" names each run). `vectors=True` also
writes the output item table (item_vectors.npy, item_bias.npy when the model has one:
score = user . W[item] + b[item]) and each dataset user's vector (user_vectors.npy, in
users.json's order; an ensemble's are its members' side by side), for retrieval outside JAX
(experiments/export/ann.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from transrec_jax import config as config_lib
from transrec_jax import evaluate
from transrec_jax.config import ConfigError
from transrec_jax.data import load, side_info
from transrec_jax.data.batching import gather_windows
from transrec_jax.serving import exported
from transrec_jax.serving.recommender import _BATCH, Recommender, _top_k

# jax.export lowers for each; the loader's jax picks its own backend's.
PLATFORMS = ("cpu", "cuda")


def unsupported(model_cfg) -> str | None:
    """Why a model cannot be exported (its inputs are more than a history), or None."""
    if model_cfg.name == "encdec":
        return ("model.name='encdec' generates its list by beam search; export serves the models "
                "that rank every item")
    return None


def export_run(workdir, output: str, k: int = 10, vectors: bool = False,
               platforms=PLATFORMS) -> dict:
    """Write the artifact of the run in `workdir` (its best checkpoint) to `output`; returns
    the manifest. `workdir` a list of two or more: their ensemble (serving/run.py
    `ensemble_of`: item scores summed), one artifact. A model `unsupported` names, or an
    ensemble of user-feature models, is refused with only the config.json files read."""
    workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
    for w in workdirs:
        config = config_lib.recorded_config(os.path.join(w, "config.json"))
        reason = unsupported(config.model)
        if reason:
            raise ConfigError(f"{w}: {reason}")
        if len(workdirs) > 1 and config.model.user_features != "off":
            raise ConfigError(f"{w}: config.model.user_features={config.model.user_features!r}: "
                              "export serves ensembles of models without user features")
    rec = Recommender(workdir)
    config = rec.config
    num_items = rec.dataset.num_items
    if not 1 <= k <= num_items:
        raise ConfigError(f"k={k}: expected 1 <= k <= {num_items:,} (the catalogue's items)")
    graphdef, params = rec.run.graphdef, rec.run.params
    user_features = None if config.model.user_features == "off" else config.model.user_features
    features, tables = user_feature_tables(rec) if user_features else ([], [])
    timed = ("times", "query_time") if config.model.time_buckets else ()

    def top_k(history, exclude, *extra):
        inputs = dict(zip(timed, extra))
        state = params
        if features:  # the requests' user rows stand in for the tables: user i reads row i
            state = with_user_tables(graphdef, params, extra[len(timed):])
            inputs["users"] = jnp.arange(history.shape[0], dtype=jnp.int32)
        return _top_k(graphdef, state, history, exclude, inputs,
                      k=k, item_chunk=config.eval.item_chunk, mesh=None)

    os.makedirs(output, exist_ok=True)
    catalog = rec.catalog
    runs = rec.run.members or (rec.run,)
    sources = [{"model": r.config.model.name, "workdir": os.path.abspath(r.workdir), "step": r.step,
                "config_sha256": config_hash(r.config)} for r in runs]
    about = {**(sources[0] if len(runs) == 1 else {"model": "ensemble", "members": sources}),
             "dataset": config.dataset.name, "protocol": evaluate.protocol(config),
             "time_query": config.model.time_query if config.model.time_buckets else None,
             "user_features": user_features}
    return write_artifact(output, top_k, ids=catalog.ids[1:].tolist(),
                          titles=None if catalog.titles is None else catalog.titles[1:].tolist(),
                          users=rec.dataset.user_ids.tolist() if user_features or vectors else None,
                          user_features=features, user_tables=tables,
                          max_len=config.model.max_len, k=k, platforms=platforms, about=about,
                          extra_files=_write_vectors(rec, output) if vectors else [])


def user_feature_tables(rec: Recommender) -> tuple[list[dict], list[np.ndarray]]:
    """Each user-tower feature's description (name, kind; a categorical one's vocabulary, a
    numeric one's raw mean and std, as data/side_info.py encodes them) and its table as the
    model holds it (row 0: a user without features), in the tower's order."""
    config, dataset = rec.config, rec.dataset
    stem = os.path.splitext(load.cache_path(config.dataset, config.seed))[0]
    info = side_info.read_user_features(config.dataset, dataset, stem, log=lambda *_: None)
    tower = nnx.merge(rec.run.graphdef, rec.run.params).user_tower
    now = side_info.user_tower_inputs(info)  # the vocabularies must be the ones it trained with
    names = now.names  # the tower's order
    features = []
    for name in names:
        f = info.features[name]
        features.append({"name": name, "kind": f.kind,
                         **({"vocab": f.vocab} if f.kind == "categorical" else {}),
                         **({"mean": f.stats["mean"], "std": f.stats["std"]}
                            if f.kind == "numeric" else {})})
    tables = [np.asarray(t[...]) for t in [*tower.categorical, *tower.dense]]
    if not all(np.array_equal(t, {**now.categorical, **now.dense}[n]) for n, t in zip(names, tables)):
        raise ConfigError(f"config.dataset.user_features={config.dataset.user_features!r}: the "
                          "file no longer gives the users the features the model trained on")
    return features, tables


def with_user_tables(graphdef, params, tables):
    """`params` with the user tower's feature tables replaced by `tables` (same order as
    `user_feature_tables`), inside a trace or outside."""
    model = nnx.merge(graphdef, params, copy=True)  # fresh variables (of the trace, inside one)
    for variable, table in zip([*model.user_tower.categorical, *model.user_tower.dense], tables):
        variable.set_value(table)
    return nnx.split(model)[1]


def write_artifact(output: str, top_k, *, ids: list, titles: list | None, max_len: int, k: int,
                   platforms=PLATFORMS, about: dict, users: list | None = None,
                   user_features: list[dict] = (), user_tables: list[np.ndarray] = (),
                   extra_files=()) -> dict:
    """Export top_k(history int32[b, max_len], exclude int32[b, e]) -> (items int32[b, k],
    scores float32[b, k]) with ids, titles (of items 1..len(ids)), the users' ids (users.json,
    when given), the loader and the manifest (`about` added to it); returns the manifest. With
    about["time_query"] set, top_k also takes times int32[b, max_len] and query_time int32[b];
    with about["user_features"] set (users, user_features and user_tables then required: each
    feature's description and its rows by user number, row 0 a user without features), then
    each feature's rows of the b users, int32[b, m] (categorical) or float32[b, dim]."""
    b, e = jax.export.symbolic_shape("b, e")
    timed = about.get("time_query") is not None
    with_users = about.get("user_features") is not None
    if with_users and (users is None or not user_features
                       or len(user_features) != len(user_tables)):
        raise ValueError("a model with user features is exported with its users' ids and each "
                         "feature's description and table")
    if with_users:
        for f, table in zip(user_features, user_tables):
            if table.shape[0] != len(users) + 1 or table.dtype not in (np.int32, np.float32):
                raise ValueError(f"user feature {f['name']!r}: expected int32 or float32 rows for "
                                 f"{len(users)} users and row 0, got {table.dtype}{table.shape}")
    inputs = [jax.ShapeDtypeStruct((b, max_len), jnp.int32), jax.ShapeDtypeStruct((b, e), jnp.int32)]
    if timed:
        inputs += [jax.ShapeDtypeStruct((b, max_len), jnp.int32), jax.ShapeDtypeStruct((b,), jnp.int32)]
    if with_users:
        inputs += [jax.ShapeDtypeStruct((b, *t.shape[1:]), t.dtype) for t in user_tables]
    artifact = jax.export.export(jax.jit(top_k), platforms=platforms)(*inputs)
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, exported.ARTIFACT), "wb") as f:
        f.write(artifact.serialize())
    _write_json(os.path.join(output, exported.IDS),
                {"ids": [None] + ids, "titles": None if titles is None else [None] + titles})
    if users is not None:
        _write_json(os.path.join(output, exported.USERS),
                    {"ids": users, **({"features": list(user_features)} if with_users else {})})
    if with_users:
        np.savez(os.path.join(output, exported.USER_FEATURES),
                 **{f"feature_{i}": t for i, t in enumerate(user_tables)})
    shutil.copy(exported.__file__, os.path.join(output, "exported.py"))
    manifest = {
        "format": exported.FORMAT,
        **about,
        "k": k,
        "max_len": max_len,
        "num_items": len(ids),
        "platforms": list(platforms),
        "versions": {"jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
                     "flax": flax.__version__, "transrec_jax": metadata.version("transrec_jax")},
        "inputs": {"history": f"int32[b, {max_len}] internal item ids, newest last, 0-padded on "
                              "the left",
                   "exclude": "int32[b, e] internal item ids not to recommend, 0-padded",
                   **(_time_inputs(max_len, about["time_query"]) if timed else {}),
                   **({f"user.{f['name']}": _user_input(f, t)
                       for f, t in zip(user_features, user_tables)} if with_users else {})},
        "outputs": {"items": f"int32[b, {k}] internal item ids, best first (0 = no item left)",
                    "scores": f"float32[b, {k}] their scores (-inf = no item left)"},
        "files": [exported.ARTIFACT, exported.IDS, exported.MANIFEST, "exported.py",
                  *([exported.USERS] if users is not None else []),
                  *([exported.USER_FEATURES] if with_users else []), *extra_files],
    }
    _write_json(os.path.join(output, exported.MANIFEST), manifest)
    return manifest


def _time_inputs(max_len: int, time_query: str) -> dict:
    """The manifest's words for a time model's two extra inputs."""
    unread = " (read by no position: time_query='last_item')" if time_query == "last_item" else ""
    return {"times": f"int32[b, {max_len}] seconds of each history item, aligned with history",
            "query_time": f"int32[b] seconds: the time each list is for{unread}"}


def _user_input(feature: dict, table: np.ndarray) -> str:
    """The manifest's words for one user feature's input."""
    if feature["kind"] == "categorical":
        return (f"int32[b, {table.shape[1]}] the user's {feature['name']!r} values as indices "
                "of users.json's vocabulary (0 padding, 1 unknown)")
    scaled = " standardised with users.json's mean and std" if feature["kind"] == "numeric" else ""
    return f"float32[b, {table.shape[1]}] the user's {feature['name']!r}{scaled}"


def config_hash(config) -> str:
    """sha256 of the recorded config as canonical JSON: two exports of one run share it."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def item_and_user_vectors(rec: Recommender) -> dict[str, np.ndarray]:
    """The output item table (item_vectors [num_items + 1, D], item_bias [num_items + 1] when
    the model has one) and every dataset user's vector (user_vectors [num_users, D], after
    their whole sequence, as `recommend --users=all` ranks for, at their last item's time for a
    model with a time bias, with their own features for a model with user features):
    score = user . W + b."""
    ds, graphdef, params = rec.dataset, rec.run.graphdef, rec.run.params
    W, bias = rec.run.model().output_table()
    out = {"item_vectors": np.asarray(W, np.float32)[: ds.num_items + 1]}
    if bias is not None:
        out["item_bias"] = np.asarray(bias, np.float32)[: ds.num_items + 1]
    history = gather_windows(ds.items, ds.offsets[:-1], ds.offsets[1:], rec.config.model.max_len)
    inputs = {}
    if rec.times is not None:
        inputs = {"times": gather_windows(rec.times, ds.offsets[:-1], ds.offsets[1:],
                                          rec.config.model.max_len),
                  "query_time": rec.times[ds.offsets[1:] - 1]}
    if rec.config.model.user_features != "off":  # user numbers: dense index + 1
        inputs["users"] = np.arange(1, ds.num_users + 1, dtype=np.int32)
    user_vector = jax.jit(lambda params, h, inputs: nnx.merge(graphdef, params).user_representation(
        h, **inputs))
    rows = []
    for first in range(0, len(history), _BATCH):
        n = len(history[first : first + _BATCH])

        def padded(a):  # one compiled shape
            return np.pad(a[first : first + _BATCH], ((0, _BATCH - n),) + ((0, 0),) * (a.ndim - 1))

        batch_inputs = {name: padded(a) for name, a in inputs.items()}
        rows.append(np.asarray(user_vector(params, padded(history), batch_inputs), np.float32)[:n])
    out["user_vectors"] = np.concatenate(rows)
    return out


def _write_vectors(rec: Recommender, output: str) -> list[str]:
    """`item_and_user_vectors` as .npy files (np.load-able, no pickle)."""
    written = []
    for name, array in item_and_user_vectors(rec).items():
        np.save(os.path.join(output, f"{name}.npy"), array)
        written.append(f"{name}.npy")
    return written


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
