"""Raw interaction logs, as every source (local file, TFDS, synthetic) hands them over."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Interactions:
    """One row per interaction, in source (file) order.

    users/items hold the source's own ids: int64 when the format has integer ids, fixed-width
    unicode ('<U…', never object) when it has string ids. timestamps (int64) and ratings
    (float32) are None when the source has none; without timestamps the file order is the
    time order (SASRec/BERT4Rec/S3-Rec files are written that way).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    source: str = ""  # path or TFDS name, for messages

    def __post_init__(self):
        n = len(self.users)
        for name in ("items", "timestamps", "ratings"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"Interactions.{name} has {len(arr)} rows, users has {n}")

    def __len__(self) -> int:
        return len(self.users)
