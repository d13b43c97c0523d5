"""How much of ML-1M's leave-one-out targets depends on the order of same-second ratings.

Our ML-1M sequences (../shared/data/ml-1m/ml-1m_sasrec-equiv_derived.txt.gz) have SASRec's
users, items and interactions, but ratings given in the same second appear in an arbitrary
order (see ../shared/data/README.md), while the published SASRec `ml-1m.txt` came from a stable
sort by timestamp over the raw ratings file (checked by sasrec_tie_check.py; see
early_runs/README.md). Leave-one-out takes the last item as the test target and
the one before as the validation target, so a different tie order is a different target for
every user whose last ratings share a second.

The raw ratings with timestamps exist here for users 1-2999 only. For them this script reports
how often the test and validation targets differ between our order and a stable sort by
timestamp over the raw file's line order, and how often a same-second pair stands in ascending
MovieID in either order (0.5: no MovieID order a model could learn), and writes a copy of the
sequence file in which those users follow that stable order (the other users unchanged) -- to a
path git never commits
(the data's licence forbids redistribution). Training the same model on both files measures
what the tie order is worth. The same works on the 3,706-item file (raw MovieIDs, no item map),
which ml1m_full.py's `hstu_large_stable_ties` row reads.

Run (from the repository root):
  python experiments/reproduce/tie_order.py --out=/tmp/ml-1m_stable-ties.txt.gz
  python -m transrec_jax.main --config=configs/sasrec.py:ml-1m,dataset.path=/tmp/ml-1m_stable-ties.txt.gz ...
  python experiments/reproduce/tie_order.py --item_map= \
      --sequences=../shared/data/ml-1m/ml-1m_seq_rawid.txt.gz \
      --out=experiments/reproduce/runs/data/ml-1m-full_stable-ties.txt.gz
Output: the statistics on stdout and as JSON (--json).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os

DATA = os.path.join("..", "shared", "data", "ml-1m")


def read_raw(path: str) -> dict[int, list[tuple[int, int]]]:
    """user -> [(timestamp, movie id)] in the raw file's line order."""
    raw = collections.defaultdict(list)
    with gzip.open(path, "rt") as f:
        for line_number, line in enumerate(f, 1):
            parts = line.strip().split("::")
            if len(parts) != 4:
                raise SystemExit(f"{path}:{line_number}: expected UserID::MovieID::Rating::Timestamp")
            raw[int(parts[0])].append((int(parts[3]), int(parts[1])))
    return raw


def read_sequences(path: str) -> dict[int, list[int]]:
    """user -> items, in file order (the `user item` per line format)."""
    sequences = collections.defaultdict(list)
    with gzip.open(path, "rt") as f:
        for line in f:
            user, item = map(int, line.split())
            sequences[user].append(item)
    return sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", default=os.path.join(DATA, "ml-1m_sasrec-equiv_derived.txt.gz"))
    parser.add_argument("--item_map", default=os.path.join(DATA, "ml-1m_sasrec-equiv_itemmap.tsv"),
                        help="`item_id MovieID` TSV of --sequences; '' when it holds raw MovieIDs "
                        "(ml-1m_seq_rawid.txt.gz, the `ml-1m-full` preset's file)")
    parser.add_argument("--raw", default=os.path.join(DATA, "ratings_users0001-2999_partial.dat.gz"))
    parser.add_argument("--out", required=True, help="the re-ordered sequence file (.txt.gz)")
    parser.add_argument("--json", default="", help="also write the statistics here")
    args = parser.parse_args()

    sequences = read_sequences(args.sequences)
    raw = read_raw(args.raw)
    if args.item_map:
        with open(args.item_map) as f:
            item_of = {int(movie): int(item) for item, movie in (line.split() for line in f if line[0].isdigit())}
    else:
        item_of = {m: m for ratings in raw.values() for _, m in ratings}
    movie_of = {item: movie for movie, item in item_of.items()}
    counts = collections.Counter()
    for user, ratings in raw.items():
        kept = [(t, item_of[m]) for t, m in ratings if m in item_of]
        stable = [item for _, item in sorted(kept, key=lambda r: r[0])]  # sorted() is stable
        ours = sequences[user]
        if sorted(stable) != sorted(ours):
            raise SystemExit(f"user {user}: the raw ratings and {args.sequences} hold different items")
        times = sorted(t for t, _ in kept)
        counts["users"] += 1
        counts["test_differs"] += stable[-1] != ours[-1]
        counts["validation_differs"] += stable[-2] != ours[-2]
        counts["test_tied_with_previous"] += times[-1] == times[-2]
        time_of = {item: t for t, item in kept}
        for name, order in (("stable", stable), ("ours", ours)):
            for a, b in zip(order, order[1:]):
                if time_of[a] == time_of[b]:  # a same-second pair: is it in ascending MovieID?
                    counts[f"{name}_tied_pairs"] += 1
                    counts[f"{name}_ascending"] += movie_of[b] > movie_of[a]
        sequences[user] = stable
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with gzip.open(tmp, "wt") as f:
        for user in sorted(sequences):
            f.writelines(f"{user} {item}\n" for item in sequences[user])
    os.replace(tmp, args.out)

    n = counts["users"]
    stats = {
        "users_with_timestamps": n,
        "users_in_file": len(sequences),
        "test_target_differs": counts["test_differs"] / n,
        "validation_target_differs": counts["validation_differs"] / n,
        "test_item_shares_its_second_with_the_previous": counts["test_tied_with_previous"] / n,
        # Whether a tie order carries a signal a model could learn: 0.5 is no MovieID order
        "same_second_pairs": counts["stable_tied_pairs"],
        "same_second_pairs_in_ascending_movie_id_stable":
            counts["stable_ascending"] / max(counts["stable_tied_pairs"], 1),
        "same_second_pairs_in_ascending_movie_id_ours":
            counts["ours_ascending"] / max(counts["ours_tied_pairs"], 1),
        "written": args.out,
    }
    for key, value in stats.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(stats, f, indent=2)


if __name__ == "__main__":
    main()
