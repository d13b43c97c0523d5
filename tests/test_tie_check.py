"""experiments/reproduce/sasrec_tie_check.py on tiny files written in the real formats."""

import gzip
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "reproduce", "sasrec_tie_check.py")

# user -> [(movie, timestamp)] in the raw file's line order; ties: user 1 (30, 20), user 3 (60, 70)
RAW = {1: [(30, 2), (10, 1), (20, 2), (40, 3)], 2: [(20, 5), (30, 6), (50, 7)],
       3: [(60, 1), (70, 1), (20, 2), (30, 3), (10, 4)], 4: [(70, 1), (60, 2)]}
OURS = {1: [10, 20, 30, 40], 2: [20, 30, 50], 3: [70, 60, 20, 30, 10], 4: [70, 60]}  # ties reversed
OUR_ID = {10: 1, 20: 2, 30: 3, 40: 4, 50: 5, 60: 6, 70: 7}
SASREC_USER = {1: 4, 2: 3, 3: 2, 4: 1}
SASREC_ID = {10: 7, 20: 6, 30: 5, 40: 4, 50: 3, 60: 2, 70: 1}


def test_a_stable_sorted_renumbered_copy_matches_the_raw_file_order(tmp_path):
    with gzip.open(tmp_path / "raw.dat.gz", "wt") as f:
        f.writelines(f"{u}::{m}::4::{t}\n" for u, ratings in RAW.items() for m, t in ratings)
    with gzip.open(tmp_path / "ours.txt.gz", "wt") as f:
        f.writelines(f"{u} {OUR_ID[m]}\n" for u, movies in OURS.items() for m in movies)
    (tmp_path / "map.tsv").write_text(
        "item_id\tMovieID\n" + "".join(f"{i}\t{m}\n" for m, i in OUR_ID.items()))
    with open(tmp_path / "sasrec.txt", "w") as f:  # one user per line, stable time order
        for u in sorted(RAW, key=SASREC_USER.get):
            order = [m for m, _ in sorted(RAW[u], key=lambda r: r[1])]
            f.write(" ".join(map(str, [SASREC_USER[u]] + [SASREC_ID[m] for m in order])) + "\n")
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, SCRIPT, f"--sasrec={tmp_path / 'sasrec.txt'}",
                    f"--sequences={tmp_path / 'ours.txt.gz'}", f"--item_map={tmp_path / 'map.tsv'}",
                    f"--raw={tmp_path / 'raw.dat.gz'}", "--min_shared=1", f"--json={out}"],
                   check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["matches"] == {str(s): u for u, s in SASREC_USER.items()}
    assert result["same_second_groups_compared"] == 2
    assert result["groups_in_the_same_order_as"] == {
        "raw_file_stable_sort": 2, "our_file": 0, "movie_id_ascending": 1, "movie_id_descending": 1}


def test_a_malformed_line_is_a_one_line_error_naming_it(tmp_path):
    bad = tmp_path / "sasrec.txt"
    bad.write_text("1 5 6 7\n2 x 9\n")
    proc = subprocess.run([sys.executable, SCRIPT, f"--sasrec={bad}"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"error: {bad}:2: expected `user item ...` (integers), got '2 x 9'"
