"""Per-user item sequences in ragged storage: one flat item array plus offsets.

User u's sequence is `items[offsets[u]:offsets[u + 1]]`, oldest first. Nothing is ever
copied per position: batchers gather windows straight from the flat array.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PAD_ID = 0  # item id 0 pads sequences; real items are 1..num_items; num_items + 1 is [MASK]


@dataclasses.dataclass
class SequenceDataset:
    offsets: np.ndarray  # int64[num_users + 1]
    items: np.ndarray  # int32[num_interactions], values in 1..num_items
    num_items: int
    user_ids: np.ndarray  # [num_users] original user ids
    item_ids: np.ndarray  # [num_items + 1] original item ids; entry 0 is a placeholder
    timestamps: np.ndarray | None = None  # int64[num_interactions], when the source had them
    name: str = ""

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def stats(self) -> dict:
        """Users, items, interactions, density and sequence-length percentiles."""
        lengths = self.lengths
        n = int(lengths.sum())
        pct = (0, 25, 50, 75, 90, 99, 100)
        values = np.percentile(lengths, pct) if len(lengths) else np.zeros(len(pct))
        return {
            "users": int(self.num_users),
            "items": int(self.num_items),
            "interactions": n,
            "density": n / max(1, self.num_users * self.num_items),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "length_percentiles": {f"p{p}": float(v) for p, v in zip(pct, values)},
        }


def ragged_from_sorted(users: np.ndarray, num_users: int) -> np.ndarray:
    """Offsets for rows already grouped by a dense user index 0..num_users-1."""
    counts = np.bincount(users, minlength=num_users)
    offsets = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def format_stats(stats: dict) -> str:
    p = stats["length_percentiles"]
    return (
        f"users {stats['users']:,} | items {stats['items']:,} | interactions "
        f"{stats['interactions']:,} | density {stats['density']:.5f} | length mean "
        f"{stats['mean_length']:.1f}, min {p['p0']:.0f}, p50 {p['p50']:.0f}, p90 {p['p90']:.0f}, "
        f"p99 {p['p99']:.0f}, max {p['p100']:.0f}"
    )
