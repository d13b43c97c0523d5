"""Export a trained workdir's best checkpoint for serving without the model code.

  python -m transrec_jax.export --workdir=RUN --output=DIR [--k=10] [--vectors]
  python -m transrec_jax.export --workdir=RUN1 --workdir=RUN2 [...] --output=DIR

DIR then holds a `jax.export` artifact of the top-K function (params baked in; any batch size),
the catalogue's original ids and titles, manifest.json and the loader exported.py, which needs
only jax and numpy (transrec_jax/serving/export.py: the files; `python -m transrec_jax.serve
--export=DIR` answers HTTP requests from it). --vectors adds the output item table and every
dataset user's vector as .npy files, for retrieval with an ANN index (experiments/export/ann.py).
Two or more --workdir export their ensemble, one artifact that scores each item by the sum of
the runs' scores (experiments/reproduce/ensemble.py tests such sums): the runs share the
catalogue, max_len and inputs, and none has user features.
An HSTU with a time bias exports a function that also takes each item's time (the loader and
the server take seconds), a model with user features one that also takes each history's user's
feature rows (the loader reads them from a dataset user's id or a new user's raw values:
users.json and user_features.npz hold the users, vocabularies and rows). Encdec models generate
their lists and are refused; only the workdir's config.json is read before that.
"""

from __future__ import annotations

import os

from absl import flags

from transrec_jax import cli
from transrec_jax.serving import export

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "A workdir written by transrec_jax.main; "
                                     "repeated: their ensemble (scores summed).")
_OUTPUT = flags.DEFINE_string("output", None, "The directory to write (made if missing).")
_K = flags.DEFINE_integer("k", 10, "How many items the exported function returns (the most a "
                          "request can ask for).")
_VECTORS = flags.DEFINE_bool("vectors", False, "Also write the item table and the dataset's "
                             "user vectors (.npy).")
_PLATFORMS = flags.DEFINE_list("platforms", list(export.PLATFORMS), "Backends the artifact runs "
                               "on (jax.export platforms).")
_KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def main(argv):
    del argv
    if _WORKDIR.value is None or _OUTPUT.value is None:
        raise cli.UsageError("--workdir and --output are required: a directory written by "
                             "transrec_jax.main and the directory to export to")
    if _K.value < 1:
        raise cli.UsageError(f"--k={_K.value}: expected a positive integer")
    unknown = sorted(set(_PLATFORMS.value) - set(_KNOWN_PLATFORMS))
    if unknown or not _PLATFORMS.value:
        raise cli.UsageError(f"--platforms={','.join(_PLATFORMS.value)}: expected some of "
                             f"{', '.join(_KNOWN_PLATFORMS)}")
    parent = os.path.dirname(os.path.abspath(_OUTPUT.value))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise cli.UsageError(f"--output={_OUTPUT.value!r}: {parent} is not a writable directory")
    workdirs = _WORKDIR.value[0] if len(_WORKDIR.value) == 1 else _WORKDIR.value
    manifest = export.export_run(workdirs, _OUTPUT.value, k=_K.value, vectors=_VECTORS.value,
                                 platforms=tuple(_PLATFORMS.value))
    steps = (", ".join(f"{m['model']} step {m['step']}" for m in manifest["members"])
             if "members" in manifest else f"step {manifest['step']}")
    print(f"exported {manifest['model']} ({steps}; top-{manifest['k']} of "
          f"{manifest['num_items']:,} items) to {_OUTPUT.value}: {', '.join(manifest['files'])}")


if __name__ == "__main__":
    cli.run(main)
