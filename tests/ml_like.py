"""Tiny files in the SASRec ML-1M layout (renumbered items, an id map, movies.dat titles) and
the base config that reads them: what recommend and export show people (ids and titles)."""

import numpy as np

from transrec_jax import config as config_lib


def ml_like_config(tmp, users: int):
    """(config, movie_ids): `users` users of 8 interactions over 30 items, item i being
    MovieID movie_ids[i - 1]; the caller sets the model and training sizes."""
    rng = np.random.default_rng(0)
    movie_ids = rng.choice(np.arange(1, 4000), size=30, replace=False)
    lines = [f"{u} {rng.integers(1, 31)}" for u in range(1, users + 1) for _ in range(8)]
    (tmp / "ml.txt").write_text("\n".join(lines) + "\n")
    (tmp / "itemmap.tsv").write_text(
        "item_id\tMovieID\n" + "".join(f"{i}\t{m}\n" for i, m in enumerate(movie_ids, 1)))
    (tmp / "movies.dat").write_bytes("".join(
        f"{m}::Film {m} (1999)::Drama\n" for m in movie_ids).encode("latin-1"))
    c = config_lib.base_config()
    c.dataset.update(name="local", source="local", format="user_item", path=str(tmp / "ml.txt"),
                     item_map=str(tmp / "itemmap.tsv"), item_titles=str(tmp / "movies.dat"),
                     cache_dir=str(tmp / "cache"))
    return c, movie_ids
