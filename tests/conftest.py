"""Test-wide settings. Tests are tiny: XLA's compile time dominates them on CPU, so cheap
backend optimisation makes the suite faster overall (it never changes what is computed)."""

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
