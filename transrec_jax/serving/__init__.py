"""A trained workdir, put to use: load it, recommend from it."""

from transrec_jax.serving.recommender import Recommender
from transrec_jax.serving.run import Run, load_run

__all__ = ["Recommender", "Run", "load_run"]
