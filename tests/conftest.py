"""Test-wide settings. Tests are tiny: XLA's compile time dominates them on CPU, so cheap
backend optimisation and XLA's older CPU fusion emitters (a quarter less compile time here) make
the suite faster overall. Neither changes what a program computes; rounding may differ from the
default flags in the last bits, which no test depends on (every comparison runs under the same
flags, subprocesses included, as they inherit the environment).

Many tests compile the same programs (every tiny end-to-end run trains the same model), so the
suite keeps JAX's persistent compilation cache for the length of one pytest run: a program
compiled once is loaded, not compiled again, by later tests, by the subprocesses they start and,
under pytest-xdist, by the other workers. The cache lives in a fresh temporary directory that the
run deletes at its end, so every run starts cold and no run depends on an earlier one; a
JAX_COMPILATION_CACHE_DIR set by the caller is used, and kept, instead. A cache hit loads the
executable XLA built for the same program, flags and backend, so results do not change.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
)

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The pytest process (the xdist controller) makes the directory before its workers start;
    # they and their subprocesses inherit the variables, so all of them share one cache.
    _cache_dir = tempfile.mkdtemp(prefix="transrec-jax-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # tiny programs too
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
