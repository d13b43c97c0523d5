"""Compiled XLA programs kept on disk, so the next run with the same programs skips compiling.

A run compiles its train step once per packed row count (up to 8 shapes) and its evaluation
step once per history-length bucket and split, and every seed of a study row, every resumed run
and every rerun compiles exactly those programs again. JAX's persistent compilation cache serves
them from disk instead; a hit is the same executable, so the numbers do not change. The cache is
bounded and least-recently-used entries go first; its file lock (the `filelock` package) keeps a
run from reading an entry that a parallel run is still writing.
"""

from __future__ import annotations

import os

from transrec_jax.cli import UsageError

DEFAULT_DIR = "~/.cache/transrec_jax/xla"
MAX_BYTES = 4 * 2**30


def enable(path: str) -> None:
    """Use `path` as the cache ('' = off). JAX_COMPILATION_CACHE_DIR, when set, wins."""
    import jax

    path = os.path.expanduser(os.environ.get("JAX_COMPILATION_CACHE_DIR") or path)
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as e:
        raise UsageError(f"--compilation_cache_dir={path!r}: cannot write there ({e}); expected a "
                         "writable directory, or '' to turn the cache off") from None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
