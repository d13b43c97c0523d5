"""A trained workdir, put to use: load it, recommend from it. Imported on first use, so that
serving an exported model (exported.py, http.py) loads no flax and no model code."""

import importlib

_MODULE = {"Recommender": "recommender", "Run": "run", "load_run": "run", "load_ensemble": "run",
           "ensemble_of": "run"}
__all__ = list(_MODULE)


def __getattr__(name):
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE[name]}"), name)
