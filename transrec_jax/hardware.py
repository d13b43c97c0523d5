"""The machine a figure was measured on, without its name: CPU model and usable cores.

Speeds differ several-fold between CPU generations (experiments/benchmarks/RESULTS.md), so
every timing written to disk carries this.
"""

from __future__ import annotations

import os


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
