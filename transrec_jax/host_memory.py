"""Keep freed host memory in the process, so XLA:CPU reuses it from one step to the next.

XLA:CPU mallocs every step's temporaries (hundreds of MiB for SASRec on ML-1M) and frees
them after the step. glibc returns such blocks to the kernel (mmap'd chunks, per-thread arena
heaps unmapped when empty), so each step page-faults them back in and the kernel zeroes
them: much of a CPU step's wall time was system time (experiments/benchmarks/ARCHIVE.md).
With one arena, no mmap'd chunks and no trimming, the memory is reused and resident memory
stays at its peak instead. That peak also holds the heap's fragments: steps of several shapes
(packed rows, evaluation buckets) leave free pages that nothing hands back, so a large run
(a `best_x3` ensemble) grew to several times its step's temporaries. `release_free_memory`
returns the free pages; the training loop calls it after each validation.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def release_free_memory() -> bool:
    """Return the heap's free pages to the kernel (glibc malloc_trim); False without glibc.

    The next step page-faults back in only what it uses: one step's worth of system time.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def keep_freed_memory() -> bool:
    """Apply the policy through glibc's mallopt; False where there is no glibc (nothing done).

    Call it before JAX starts its CPU threads (i.e. before the first computation): threads
    that already own a malloc arena keep it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
    return all(mallopt(param, value) == 1 for param, value in settings)
