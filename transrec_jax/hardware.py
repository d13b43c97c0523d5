"""The machine a figure was measured on, without its name: CPU model and usable cores, and
how fast it ran at the time.

Speeds differ several-fold between CPU generations (experiments/benchmarks/RESULTS.md), so
every timing written to disk carries `host()`. On a shared virtual machine the same CPU model
also runs slower in some hours than in others (experiments/benchmarks/RESULTS.md section 12)
with no load of its own and no steal time reported, so timings that are
compared across hours also carry `speed()`, measured just before and after them.
"""

from __future__ import annotations

import os
import time

import numpy as np


def host() -> dict:
    """{"cpu": model name (family / model when the name is generic), "cpu_cores": usable cores}."""
    fields = {}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the first processor's block only
                fields.setdefault(key.strip(), value.strip())
    cpu = fields.get("model name", "unknown")
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpu_cores": cores}


def speed(seconds: float = 1.0) -> dict:
    """{"matmul_gflops", "copy_gbs"}: float32 matrix products (BLAS, every core) and array
    copies (memory bandwidth) per second, each the median of its repeats over about
    `seconds`: whatever slows the timing beside it (other work, a busy host) slows it too."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((512, 512), dtype=np.float32) for _ in range(2))
    src = np.ones(8 * 2**20, np.float32)  # 32 MiB: beyond the caches
    dst = np.empty_like(src)

    def rate(work, amount: float) -> float:
        rates, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(rates) < 3:
            start = time.perf_counter()
            work()
            rates.append(amount / (time.perf_counter() - start))
        return float(np.median(rates))

    return {"matmul_gflops": round(rate(lambda: a @ b, 2 * 512**3) / 1e9, 1),
            "copy_gbs": round(rate(lambda: np.copyto(dst, src), 2 * src.nbytes) / 1e9, 1)}
