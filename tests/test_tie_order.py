"""experiments/reproduce/tie_order.py on tiny files written in the real formats."""

import gzip
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "reproduce", "tie_order.py")

# user -> [(movie, timestamp)] in the raw file's line order. User 1's last two share a second
# (30 before 20 in the raw file), user 2's first two (70 before 60); user 3 has no raw ratings.
RAW = {1: [(10, 1), (30, 2), (20, 2)], 2: [(70, 1), (60, 1), (20, 2), (10, 3)]}
OURS = {1: [10, 20, 30], 2: [60, 70, 20, 10], 3: [40, 50, 60]}  # ties the other way round
STABLE = {1: [10, 30, 20], 2: [70, 60, 20, 10], 3: [40, 50, 60]}
OUR_ID = {10: 7, 20: 6, 30: 5, 40: 4, 50: 3, 60: 2, 70: 1}  # reversed: ascending ids are descending MovieIDs


def _write(tmp_path, item_id):
    with gzip.open(tmp_path / "raw.dat.gz", "wt") as f:
        f.writelines(f"{u}::{m}::4::{t}\n" for u, ratings in RAW.items() for m, t in ratings)
    with gzip.open(tmp_path / "ours.txt.gz", "wt") as f:
        f.writelines(f"{u} {item_id(m)}\n" for u, movies in OURS.items() for m in movies)


def _run(tmp_path, item_map):
    out, stats = tmp_path / "stable.txt.gz", tmp_path / "stats.json"
    subprocess.run([sys.executable, SCRIPT, f"--sequences={tmp_path / 'ours.txt.gz'}",
                    f"--item_map={item_map}", f"--raw={tmp_path / 'raw.dat.gz'}",
                    f"--out={out}", f"--json={stats}"], check=True, capture_output=True, text=True)
    with gzip.open(out, "rt") as f:
        rows = [tuple(map(int, line.split())) for line in f]
    return rows, json.loads(stats.read_text())


@pytest.mark.parametrize("renumbered", [True, False], ids=["item_map", "raw_movie_ids"])
def test_users_with_raw_timestamps_take_the_stable_time_order(tmp_path, renumbered):
    item_id = OUR_ID.get if renumbered else (lambda m: m)
    _write(tmp_path, item_id)
    item_map = ""
    if renumbered:
        item_map = tmp_path / "map.tsv"
        item_map.write_text("item_id\tMovieID\n" + "".join(f"{i}\t{m}\n" for m, i in OUR_ID.items()))
    rows, stats = _run(tmp_path, item_map)
    assert rows == [(u, item_id(m)) for u in sorted(STABLE) for m in STABLE[u]]
    assert stats["users_with_timestamps"] == 2 and stats["users_in_file"] == 3
    assert stats["test_target_differs"] == 0.5  # user 1's last item changes, user 2's does not
    assert stats["validation_target_differs"] == 0.5
    assert stats["test_item_shares_its_second_with_the_previous"] == 0.5
    assert stats["same_second_pairs"] == 2  # (30, 20) and (70, 60), in MovieIDs whatever the ids
    assert stats["same_second_pairs_in_ascending_movie_id_stable"] == 0.0
    assert stats["same_second_pairs_in_ascending_movie_id_ours"] == 1.0


def test_a_user_whose_items_differ_from_the_raw_file_is_refused(tmp_path):
    _write(tmp_path, lambda m: m + 1 if m == 70 else m)  # user 2 holds 71 where the raw file has 70
    with pytest.raises(subprocess.CalledProcessError) as e:
        _run(tmp_path, "")
    assert "user 2: the raw ratings and" in e.value.stderr and "hold different items" in e.value.stderr
