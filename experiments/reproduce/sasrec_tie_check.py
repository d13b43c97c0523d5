"""Which order of same-second ratings does a copy of SASRec's ML-1M file use?

tie_order.py re-orders our ML-1M sequences by a stable sort by timestamp over the raw ratings
file, for the users 1-2999 whose timestamps we have. This script checks, on any copy (or tail
excerpt) of SASRec's own `ml-1m.txt`, which within-second order that file has. SASRec renumbers
users and items, so it first matches SASRec users to raw users: a candidate has the same number
of ratings, and wherever the raw timestamps separate two ratings SASRec's sequence must hold the
same movies in the same stretch (the file is sorted by time). Each SASRec item id is pinned to
the movies it can be, intersected over the matched users; a SASRec user is matched when exactly
one candidate leaves no id without a movie. Then, for every same-second group whose ids are all
pinned, it compares SASRec's order with: the raw file's line order (a stable sort), our file's
order, and movie ids ascending / descending.

Run (from the repository root; SASRec's file: `user item` per line, or `user item item ...`):
  python experiments/reproduce/sasrec_tie_check.py --sasrec=ml-1m.txt --json=/tmp/ties.json
A tail excerpt works too (--skip_first_line drops its cut first line). The data's licence
forbids committing either file.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tie_order import DATA, read_raw, read_sequences  # noqa: E402

ORDERS = ("raw_file_stable_sort", "our_file", "movie_id_ascending", "movie_id_descending")


def read_sasrec(path: str, skip_first_line: bool) -> dict[int, list[int]]:
    """SASRec user -> SASRec item ids, from either text layout (plain or .gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found: expected a copy of SASRec's ml-1m.txt") from None
    first = 1 if skip_first_line else 0
    users = collections.defaultdict(list)
    for number, line in enumerate(lines[first:], first + 1):
        fields = line.split()
        if fields and (len(fields) == 1 or not all(x.isdigit() for x in fields)):
            raise SystemExit(f"error: {path}:{number}: expected `user item ...` (integers), "
                             f"got {line[:60]!r}")
        if fields:
            users[int(fields[0])].extend(int(x) for x in fields[1:])
    return users


def tie_groups(ratings: list[tuple[int, int]], order: list[int]) -> list[int]:
    """Group number of each position of `order` (movies): equal timestamps share a group."""
    time = {movie: t for t, movie in ratings}
    groups = []
    for k, movie in enumerate(order):
        new = k == 0 or time[movie] != time[order[k - 1]]
        groups.append((groups[-1] + new) if groups else 0)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sasrec", required=True, help="a copy or tail excerpt of SASRec's ml-1m.txt")
    parser.add_argument("--skip_first_line", action="store_true", help="the excerpt starts mid-line")
    parser.add_argument("--sequences", default=os.path.join(DATA, "ml-1m_sasrec-equiv_derived.txt.gz"))
    parser.add_argument("--item_map", default=os.path.join(DATA, "ml-1m_sasrec-equiv_itemmap.tsv"))
    parser.add_argument("--raw", default=os.path.join(DATA, "ratings_users0001-2999_partial.dat.gz"))
    parser.add_argument("--min_shared", type=int, default=10,
                        help="pinned ids a match must share with earlier matches (after the first)")
    parser.add_argument("--json", default="", help="also write the counts here")
    args = parser.parse_args()

    sasrec = read_sasrec(args.sasrec, args.skip_first_line)
    with open(args.item_map) as f:
        movie_of = {int(item): int(movie) for item, movie in (l.split() for l in f if l[0].isdigit())}
    movies = set(movie_of.values())
    raw = {u: [(t, m) for t, m in r if m in movies] for u, r in read_raw(args.raw).items()}
    ours = {u: [movie_of[i] for i in items] for u, items in read_sequences(args.sequences).items()
            if u in raw}
    groups = {u: tie_groups(raw[u], ours[u]) for u in ours}
    by_length = collections.defaultdict(list)
    for u, order in ours.items():
        by_length[len(order)].append(u)

    def constraints(s, u):
        members = collections.defaultdict(set)
        for movie, g in zip(ours[u], groups[u]):
            members[g].add(movie)
        return [(a, members[g]) for a, g in zip(sasrec[s], groups[u])]

    def add(pinned, s, u):
        """(pinned ids after matching s to u, ids left without a movie)."""
        new, empty = dict(pinned), 0
        for a, movies in constraints(s, u):
            both = new[a] & movies if a in new else set(movies)
            empty += not both
            new[a] = both or new.get(a, movies)
        return new, empty

    pinned, matched = {}, {}
    progress = True
    while progress:
        progress = False
        for s in sorted(sasrec, key=lambda s: -len(sasrec[s])):
            if s in matched:
                continue
            shared = sum(a in pinned for a in set(sasrec[s]))
            fits = [u for u in by_length[len(sasrec[s])]
                    if u not in matched.values() and add(pinned, s, u)[1] == 0]
            if len(fits) == 1 and (shared >= args.min_shared or not matched):
                matched[s] = fits[0]
                pinned = add(pinned, s, fits[0])[0]
                progress = True

    counts = collections.Counter()
    for s, u in matched.items():
        line_of = {m: k for k, (_, m) in enumerate(raw[u])}
        for g in sorted(set(groups[u])):
            positions = [k for k, gg in enumerate(groups[u]) if gg == g]
            if len(positions) < 2:
                continue
            ids = [sasrec[s][k] for k in positions]
            if any(len(pinned[a]) != 1 for a in ids):
                counts["groups_not_pinned"] += 1
                continue
            theirs = [next(iter(pinned[a])) for a in ids]
            group = set(theirs)
            counts["groups_compared"] += 1
            candidates = {
                "raw_file_stable_sort": sorted(group, key=line_of.get),
                "our_file": [ours[u][k] for k in positions],
                "movie_id_ascending": sorted(group),
                "movie_id_descending": sorted(group, reverse=True),
            }
            for name in ORDERS:
                counts[name] += candidates[name] == theirs
    result = {
        "sasrec_users_read": len(sasrec),
        "matched_to_raw_users_1_2999": len(matched),
        "matches": {str(s): u for s, u in sorted(matched.items())},
        "same_second_groups_compared": counts["groups_compared"],
        "groups_with_unpinned_ids": counts["groups_not_pinned"],
        "groups_in_the_same_order_as": {name: counts[name] for name in ORDERS},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "matches"}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
