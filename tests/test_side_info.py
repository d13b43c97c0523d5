"""Side information: tiny files in each real format → rows aligned to a dataset's internal ids."""

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data import side_info as si
from transrec_jax.data.dataset import SequenceDataset
from transrec_jax.data.errors import DataError


def dataset(item_ids, user_ids=(7,)):
    """Internal items 1..n carrying `item_ids` (the file's ids); users carrying `user_ids`."""
    n = len(item_ids)
    return SequenceDataset(
        offsets=np.array([0] + [n] * len(user_ids), np.int64),
        items=np.arange(1, n + 1, dtype=np.int32), num_items=n,
        user_ids=np.array(user_ids), item_ids=np.array([0, *item_ids]))


def flags(*names):
    return "|".join("1" if g in names else "0" for g in si.ML100K_GENRES)


# --- each format, golden values -------------------------------------------------------------------


def test_movies_dat_through_the_item_map(tmp_path):
    # The file renumbered its items: file id 1 is MovieID 2571, ...; 4 (MovieID 9999) has no genres.
    (tmp_path / "map.tsv").write_text("item_id\tMovieID\n1\t2571\n2\t1196\n3\t260\n4\t9999\n")
    (tmp_path / "movies.dat").write_bytes(
        "260::Star Wars: Episode IV (1977)::Action|Adventure|Sci-Fi\n"
        "1196::Empire Strikes Back, The (1980)::Action|Sci-Fi|Action\n"
        "2571::Matrix, The (1999)::Sci-Fi\n"
        "4973::Amélie (2001)::Comedy|Romance\n".encode("latin-1"))
    info = si.read_movies_dat(str(tmp_path / "movies.dat"), dataset([1, 2, 3, 4]),
                              item_map=str(tmp_path / "map.tsv"))
    genres = info.features["genres"]
    assert info.entity == "item" and info.rows == 5
    # Sorted vocabulary of the dataset's rows only (Amélie's Comedy and Romance are not in it).
    assert genres.vocab == ["<pad>", "<unknown>", "Action", "Adventure", "Sci-Fi"]
    assert genres.values.dtype == np.int32
    assert genres.values.tolist() == [
        [0, 0, 0],  # padding item
        [4, 0, 0],  # 2571: Sci-Fi
        [2, 4, 0],  # 1196: Action, Sci-Fi (the repeated Action counts once)
        [2, 3, 4],  # 260: Action, Adventure, Sci-Fi
        [1, 0, 0],  # 9999: not in movies.dat → unknown
    ]
    assert genres.missing.tolist() == [False, False, False, False, True]
    year = info.features["year"]  # the year that ends the title
    assert year.vocab == ["<pad>", "<unknown>", "1977", "1980", "1999"]
    assert year.values.tolist() == [[0], [4], [3], [2], [1]]
    stats = {k: v for k, v in info.stats()["genres"].items() if k != "source"}
    assert stats == {"rows": 4, "missing": 1, "unmatched": 1, "values": 3, "vocab_size": 5,
                     "max_values": 3, "empty": 0, "mean_values": 2.0}


def test_u_item_genre_flags(tmp_path):
    toy_story = flags("Animation", "Children's", "Comedy")
    (tmp_path / "u.item").write_bytes(
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{toy_story}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://y|{flags('Action', 'Thriller')}\n"
        f"3|Café (1996)|01-Jan-1996||http://z|{flags()}\n".encode("latin-1"))
    info = si.read_u_item(str(tmp_path / "u.item"), dataset([2, 1, 3, 5]))
    genres = info.features["genres"]
    assert genres.vocab == ["<pad>", "<unknown>", "Action", "Animation", "Children's", "Comedy",
                            "Thriller"]
    # Item 3 is listed with no genre (empty), item 5 not at all (missing): both read as unknown.
    assert genres.values.tolist() == [[0, 0, 0], [2, 6, 0], [3, 4, 5], [1, 0, 0], [1, 0, 0]]
    assert genres.missing.tolist() == [False, False, False, False, True]
    assert info.stats()["genres"]["empty"] == 1 and info.stats()["genres"]["missing"] == 1
    assert info.stats()["genres"]["mean_values"] == pytest.approx(5 / 3)
    year = info.features["year"]  # of the release date
    assert year.vocab == ["<pad>", "<unknown>", "1995", "1996"]
    assert year.values.tolist() == [[0], [2], [2], [3], [1]]


def test_amazon_attributes_json(tmp_path):
    (tmp_path / "attrs.json").write_text('{"1": [10, 2, 2],\n "2": [],\n "3": [7, 10], "9": [1]}')
    info = si.read_item_attributes(str(tmp_path / "attrs.json"), dataset([3, 2, 1, 4]))
    attributes = info.features["attributes"]
    assert attributes.vocab == ["<pad>", "<unknown>", "2", "7", "10"]  # integers sort as numbers
    assert attributes.values.tolist() == [[0, 0], [3, 4], [1, 0], [4, 2], [1, 0]]
    assert attributes.missing.tolist() == [False, False, False, False, True]
    stats = info.stats()["attributes"]
    assert (stats["missing"], stats["empty"], stats["unmatched"]) == (1, 1, 1)
    assert stats["mean_values"] == pytest.approx(4 / 3)


def test_users_dat(tmp_path):
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n"
                                        "3::M::25::15::55117\n")
    info = si.read_users_dat(str(tmp_path / "users.dat"), dataset([1], user_ids=[3, 1, 4]))
    f = info.features
    assert info.entity == "user" and list(f) == ["gender", "age", "occupation"]
    assert f["gender"].vocab == ["<pad>", "<unknown>", "F", "M"]
    assert f["gender"].values.tolist() == [[3], [2], [1]]  # user 4 is not in users.dat
    assert f["age"].vocab == ["<pad>", "<unknown>", "0-17", "25-34"]
    assert f["age"].values[:, 0].tolist() == [3, 2, 1]
    assert f["occupation"].vocab == ["<pad>", "<unknown>", "10", "15"]
    assert all(f[n].missing.tolist() == [False, False, True] for n in f)
    assert info.stats()["age"]["unmatched"] == 1  # user 2 is not in the dataset


def test_u_user_age_bucketed_or_numeric(tmp_path):
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n"
                                     "3|17|M|writer|32067\n")
    users = dataset([1], user_ids=[1, 2, 3, 4])
    bucketed = si.read_u_user(str(tmp_path / "u.user"), users).features
    assert bucketed["age"].vocab == ["<pad>", "<unknown>", "0-17", "18-24", "50-55"]
    assert bucketed["age"].values[:, 0].tolist() == [3, 4, 2, 1]
    assert bucketed["occupation"].vocab[2:] == ["other", "technician", "writer"]
    numeric = si.read_u_user(str(tmp_path / "u.user"), users, age="numeric")
    age = numeric.features["age"]
    assert age.kind == "numeric" and age.values.dtype == np.float32 and age.values.shape == (4, 1)
    mean, std = np.mean([24, 53, 17]), np.std([24, 53, 17])
    np.testing.assert_allclose(age.values[:, 0], [(24 - mean) / std, (53 - mean) / std,
                                                  (17 - mean) / std, 0.0], rtol=1e-6)
    assert age.missing.tolist() == [False, False, False, True]
    assert numeric.stats()["age"]["mean"] == pytest.approx(mean)
    assert numeric.stats()["age"]["std"] == pytest.approx(std)


TABLE = [["asin", "brand", "tags", "price"],
         ["B1", "acme", "soap|lavender", "2.5"],
         ["B2", "zeta", "", "4.5"],
         ["B3", "acme", "soap", ""]]


def write_table(tmp_path, kind):
    path = tmp_path / f"items.{kind}"
    if kind == "parquet":
        header, *rows = TABLE
        columns = {name: [row[i] or None for row in rows] for i, name in enumerate(header)}
        columns["price"] = [float(v) if v else None for v in columns["price"]]
        columns["tags"] = [v.split("|") if v else None for v in columns["tags"]]  # a list column
        pq.write_table(pa.table(columns), path)
    else:
        sep = "\t" if kind == "tsv" else ","
        path.write_text("".join(sep.join(row) + "\n" for row in TABLE))
    return str(path)


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet"])
def test_generic_table_with_string_ids(tmp_path, kind):
    info = si.read_table(write_table(tmp_path, kind), dataset(["B3", "B1", "B2", "B9"]),
                         entity="item", id_col="asin",
                         columns={"brand": "categorical", "tags": "multi:|", "price": "numeric"})
    f = info.features
    assert f["brand"].vocab == ["<pad>", "<unknown>", "acme", "zeta"]
    assert f["brand"].values[:, 0].tolist() == [0, 2, 2, 3, 1]
    assert f["tags"].vocab == ["<pad>", "<unknown>", "lavender", "soap"]
    assert f["tags"].values.tolist() == [[0, 0], [3, 0], [3, 2], [1, 0], [1, 0]]
    # An empty cell is missing for that column only: B2 has no tags, B3 no price.
    assert f["tags"].missing.tolist() == [False, False, False, True, True]
    assert f["price"].missing.tolist() == [False, True, False, False, True]
    np.testing.assert_allclose(f["price"].values[:, 0], [0, 0, -1, 1, 0])  # (x - 3.5) / 1
    assert info.stats()["price"]["missing"] == 2 and info.stats()["brand"]["missing"] == 1


def test_dense_vectors_from_parquet(tmp_path):
    path = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"id": [20, 10], "vector": [[1.0, 2.0], [3.0, 4.5]]}), path)
    info = si.read_vectors(str(path), dataset([10, 30, 20]), name="text")
    text = info.features["text"]
    assert text.kind == "dense" and text.values.dtype == np.float32
    assert text.values.tolist() == [[0, 0], [3, 4.5], [0, 0], [1, 2]]
    assert text.missing.tolist() == [False, False, True, False]
    assert info.stats()["text"]["dim"] == 2 and info.stats()["text"]["missing"] == 1
    users = si.read_vectors(str(path), dataset([1], user_ids=[10, 20]), entity="user")
    assert users.features["vector"].values.tolist() == [[3, 4.5], [1, 2]]


def test_missing_item_map_entry_is_named(tmp_path):
    (tmp_path / "map.tsv").write_text("item_id\tMovieID\n1\t2571\n")
    (tmp_path / "movies.dat").write_text("2571::Matrix, The (1999)::Sci-Fi\n")
    with pytest.raises(DataError, match=r"no original id for the dataset's items \['2'\]"):
        si.read_movies_dat(str(tmp_path / "movies.dat"), dataset([1, 2]),
                           item_map=str(tmp_path / "map.tsv"))


# --- combining and caching ------------------------------------------------------------------------


def sample(tmp_path):
    items = dataset([1, 2, 3])
    (tmp_path / "movies.dat").write_text("1::A (1990)::Drama|War\n3::B (1991)::Comedy\n")
    (tmp_path / "t.csv").write_text("id,budget\n1,1990\n2,1995\n")
    pq.write_table(pa.table({"id": [2], "vector": [[0.5, -1.0, 2.0]]}), tmp_path / "v.parquet")
    return si.combine(si.read_movies_dat(str(tmp_path / "movies.dat"), items),
                      si.read_table(str(tmp_path / "t.csv"), items, entity="item", id_col="id",
                                    columns={"budget": "numeric"}),
                      si.read_vectors(str(tmp_path / "v.parquet"), items))


def assert_same(a, b):
    assert a.entity == b.entity and list(a.features) == list(b.features)
    for name, f in a.features.items():
        g = b.features[name]
        assert (f.kind, f.vocab, f.stats) == (g.kind, g.vocab, g.stats)
        assert f.values.dtype == g.values.dtype and np.array_equal(f.values, g.values)
        assert f.missing.dtype == g.missing.dtype and np.array_equal(f.missing, g.missing)


def test_combine_and_cache_round_trip(tmp_path):
    info = sample(tmp_path)
    assert list(info.features) == ["genres", "year", "budget", "vector"] and info.rows == 4
    path = str(tmp_path / "cache" / "items.npz")
    si.save(info, path)
    assert_same(si.load(path), info)
    with np.load(path, allow_pickle=False) as z:  # plain arrays and a JSON string, no pickle
        assert all(z[k].dtype != object for k in z.files)


def test_combine_refuses_mismatches(tmp_path):
    info = sample(tmp_path)
    with pytest.raises(ValueError, match="feature 'genres' comes from two files"):
        si.combine(info, info)
    users = si.read_vectors(str(tmp_path / "v.parquet"), dataset([1], user_ids=[2]),
                            entity="user")
    with pytest.raises(ValueError, match="cannot combine user features of 1 rows"):
        si.combine(info, users)


def test_a_failed_save_leaves_the_old_cache_and_no_partial_file(tmp_path, monkeypatch):
    info = sample(tmp_path)
    path = tmp_path / "items.npz"
    si.save(info, str(path))
    before = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(si.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        si.save(info, str(path))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(["items.npz", "movies.dat", "t.csv", "v.parquet"])
    os.remove(path)
    with pytest.raises(KeyboardInterrupt):
        si.save(info, str(path))
    assert not path.exists() and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("content, problem", [
    (b"not a zip", "unreadable ("),
    (b"PK\x03\x04 cut short", "unreadable ("),
])
def test_a_bad_cache_is_a_one_line_error(tmp_path, content, problem):
    (tmp_path / "c.npz").write_bytes(content)
    with pytest.raises(DataError) as err:
        si.load(str(tmp_path / "c.npz"))
    message = str(err.value)
    assert problem in message and "written by side_info.save" in message and "\n" not in message


def test_a_cache_of_another_version_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, meta=np.array('{"version": 0, "entity": "item", "features": []}'))
    with pytest.raises(DataError, match=r"c.npz: unreadable \(version 0\); expected a side-info"):
        si.load(str(path))


# --- malformed input: one line naming the file, the line and what was expected --------------------

GOOD_FLAGS = flags("Comedy")


@pytest.mark.parametrize("name, text, read, message", [
    ("movies.dat", "1::Toy Story (1995)::Animation\n2::Jumanji (1995)\n", "movies",
     "movies.dat:2: 2 '::'-separated fields; expected 'MovieID::Title::Genres'"),
    ("movies.dat", "1::Toy Story::Comedy\n\nx1::Jumanji::Fantasy\n", "movies",
     "movies.dat:3: MovieID 'x1' is not an integer; expected 'MovieID::Title::Genres'"),
    ("movies.dat", "1::Toy Story::Comedy\n1::Toy Story again::Comedy\n", "movies",
     "movies.dat:2: id '1' listed again; expected one entry per id"),
    ("u.item", f"1|Toy Story|01-Jan-1995||http://x|{GOOD_FLAGS}\n2|GoldenEye|x||y|0|1\n", "u_item",
     "u.item:2: 7 '|'-separated fields; expected 24 fields "
     "'id|title|release date|video release date|IMDb URL|' + 19 genre flags (0/1)"),
    ("u.item", f"1|Toy Story|01-Jan-1995||http://x|{GOOD_FLAGS.replace('1', '2')}\n", "u_item",
     "u.item:1: genre flag 'Comedy' is '2'; expected 0 or 1"),
    ("u.item", f"1|Toy Story|1995||http://x|{GOOD_FLAGS}\n", "u_item",
     "u.item:1: release date '1995'; expected 'DD-Mon-YYYY' or blank"),
    ("u.item", f"one|Toy Story|01-Jan-1995||http://x|{GOOD_FLAGS}\n", "u_item",
     "u.item:1: id 'one' is not an integer; expected 24 fields "
     "'id|title|release date|video release date|IMDb URL|' + 19 genre flags (0/1)"),
    ("attrs.json", '{"1": [1, 2],\n "2": [3,, 4]}', "json",
     "attrs.json:2: not JSON (Expecting value, column 10); "
     'expected {"item_id": [attribute ids], ...}'),
    ("attrs.json", '{"1": [1, 2],\n\n "2": {"a": 3}}', "json",
     "attrs.json:3: item '2' has an object; expected a list of attribute ids"),
    ("attrs.json", '{"1": [1, 2.5]}', "json",
     "attrs.json:1: item '1' has [1, 2.5]; expected a list of attribute ids"),
    ("attrs.json", '[1, 2]', "json",
     'attrs.json:1: a JSON list; expected an object {"item_id": [attribute ids], ...}'),
    ("attrs.json", '{"1": [1],\n "2": [2],\n "1": [3]}', "json",
     "attrs.json:3: id '1' listed again; expected one entry per id"),
    ("users.dat", "1::F::1::10::48067\n2::M::56::16\n", "users",
     "users.dat:2: 4 '::'-separated fields; expected 'UserID::Gender::Age::Occupation::Zip-code'"),
    ("users.dat", "1::F::1::10::48067\n2::X::56::16::70072\n", "users",
     "users.dat:2: Gender is 'X'; expected 'M' or 'F'"),
    ("users.dat", "1::F::19::10::48067\n", "users",
     "users.dat:1: Age is '19'; expected one of the codes [1, 18, 25, 35, 45, 50, 56]"),
    ("u.user", "1|24|M|technician|85711\n2|fifty|F|other|94043\n", "u_user",
     "u.user:2: age 'fifty' is not an integer; expected 'id|age|gender|occupation|zip'"),
    ("items.csv", "id,price\n1,2.5\n2,cheap\n", "table",
     "items.csv:3: column 'price' is 'cheap'; expected a number"),
    ("items.csv", "id,price\n1,2.5\n2,3,4\n", "table",
     "items.csv:3: 3 fields; expected 2 as in the header"),
    ("items.csv", "id,cost\n1,2.5\n", "table",
     "items.csv:1: no column 'price' in ['id', 'cost']; expected columns ['id', 'price']"),
    ("items.csv", "id,price\n1,2.5\n,3\n", "table",
     "items.csv:3: column 'id' is empty; expected an id on every row"),
    ("empty.dat", "\n\n", "movies", "empty.dat: empty file; expected one line per id"),
])
def test_malformed_files_are_one_line_errors(tmp_path, name, text, read, message):
    path = tmp_path / name
    path.write_text(text)
    readers = {
        "movies": si.read_movies_dat, "u_item": si.read_u_item, "json": si.read_item_attributes,
        "users": si.read_users_dat, "u_user": si.read_u_user,
        "table": lambda p, d: si.read_table(p, d, entity="item", id_col="id",
                                            columns={"price": "numeric"}),
    }
    with pytest.raises(DataError) as err:
        readers[read](str(path), dataset([1, 2]))
    assert str(err.value) == f"{path}{message[len(name):]}"


@pytest.mark.parametrize("columns, message", [
    ({"id": [1, 2], "vector": [[1.0, 2.0], [3.0]]},
     "row 2: a vector of 1 values; expected 2 as on the first row"),
    ({"id": [1, 2], "vector": [[1.0, 2.0], None]},
     "row 2: column 'vector' holds None; expected a non-empty list of numbers"),
    ({"id": [1, 2], "vector": [[1.0, float("nan")], [1.0, 2.0]]},
     "row 1: column 'vector' is nan; expected a finite number"),
    ({"id": [1, 1], "vector": [[1.0], [2.0]]},
     "row 2: id '1' listed again; expected one entry per id"),
    ({"key": [1], "vector": [[1.0]]},
     "schema: no column 'id' in ['key', 'vector']; expected columns ['id', 'vector']"),
])
def test_malformed_vectors_name_the_row(tmp_path, columns, message):
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(DataError) as err:
        si.read_vectors(str(path), dataset([1, 2]))
    assert str(err.value) == f"{path}: {message}"


def test_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        si.read_users_dat("users.dat", dataset([1]))
    expected = f"users.dat: no such file (relative to the working directory {tmp_path})"
    assert str(err.value) == expected


# --- alignment does not depend on the file's order ------------------------------------------------

ORDERED = {  # format: (file name, header line or None, one line per file id 1..8)
    "movies_dat": ("movies.dat", None, [
        f"{i}::Film {i} (199{i})::{g}" for i, g in enumerate(
            ["Drama", "Comedy|Drama", "Sci-Fi", "Action|Sci-Fi|War", "Comedy", "War|Drama",
             "Horror", "Action"], 1)]),
    "u_item": ("u.item", None, [
        f"{i}|Film {i}|01-Jan-1995||http://x/{i}|{flags(*g)}" for i, g in enumerate(
            [("Drama",), ("Comedy", "Drama"), ("Sci-Fi",), ("Action", "Sci-Fi", "War"), (),
             ("War", "Drama"), ("Horror",), ("Action",)], 1)]),
    "attributes_json": ("attrs.json", None, [
        f'"{i}": {json.dumps(a)}' for i, a in enumerate(
            [[12, 3], [3], [], [40, 12, 7], [7], [3, 40], [100], [2]], 1)]),
    "table": ("items.csv", "id,brand,tags,price", [
        "1,acme,soap|lavender,2.5", "2,zeta,,4.5", "3,acme,soap,", "4,,rose|soap,1",
        "5,omni,lavender,3", "6,zeta,rose,7.25", "7,acme,,0.5", "8,omni,soap|rose,2"]),
}


def write_lines(path, kind, header, lines):
    if kind == "attributes_json":
        path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    else:
        path.write_text("".join(line + "\n" for line in ([header] if header else []) + lines))
    return str(path)


@pytest.mark.parametrize("kind", list(ORDERED))
def test_shuffled_lines_give_the_same_rows(tmp_path, kind):
    name, header, lines = ORDERED[kind]
    shuffled = [lines[i] for i in np.random.default_rng(0).permutation(len(lines))]
    assert shuffled != lines
    items = dataset([5, 3, 8, 1, 9, 2, 6])  # 9 is in no file; 4 and 7 in no dataset
    readers = {
        "movies_dat": si.read_movies_dat, "u_item": si.read_u_item,
        "attributes_json": si.read_item_attributes,
        "table": lambda p, d: si.read_table(p, d, entity="item", id_col="id", columns={
            "brand": "categorical", "tags": "multi:|", "price": "numeric"}),
    }
    infos = []
    for directory, order in (("ordered", lines), ("shuffled", shuffled)):
        (tmp_path / directory).mkdir()
        infos.append(readers[kind](write_lines(tmp_path / directory / name, kind, header, order), items))
    ordered, reshuffled = infos
    assert list(ordered.features) == list(reshuffled.features)
    for feature_name, f in ordered.features.items():
        g = reshuffled.features[feature_name]
        assert f.values.dtype == g.values.dtype and np.array_equal(f.values, g.values), feature_name
        assert np.array_equal(f.missing, g.missing) and f.vocab == g.vocab
        assert {**f.stats, "source": ""} == {**g.stats, "source": ""}
        assert f.missing[5] and not f.missing[0]  # item 9 (row 5): in no file; padding never


# --- read_item_features (what a run reads): errors leave no cache, the cache is read again --------


def features_config(path, fmt="auto", columns=""):
    d = config_lib.base_config().dataset
    d.update(item_features=str(path), item_features_format=fmt, item_features_columns=columns)
    return d


@pytest.mark.parametrize("name, fmt, columns, content, problem", [
    ("movies.dat", "auto", "", "1::Toy Story (1995)::Animation\n2::Jumanji (1995)\n",
     ":2: 2 '::'-separated fields"),
    ("u.item", "auto", "", f"1|Toy Story|01-Jan-1995||http://x|{GOOD_FLAGS}\n2|GoldenEye|x\n",
     ":2: 3 '|'-separated fields"),
    ("attrs.json", "auto", "", '{"1": [1, 2],\n "2": [3,, 4]}', ":2: not JSON"),
    ("items.csv", "table", "price:numeric", "id,price\n1,2.5\n2,cheap\n",
     ":3: column 'price' is 'cheap'"),
    ("v.parquet", "vectors", "", {"id": [1, 2], "vector": [[1.0, 2.0], [3.0]]},
     ": row 2: a vector of 1 values"),
])
def test_a_malformed_file_read_for_a_run_is_one_line_and_caches_nothing(
        tmp_path, name, fmt, columns, content, problem):
    path = tmp_path / name
    if isinstance(content, dict):
        pq.write_table(pa.table(content), path)
    else:
        path.write_text(content)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError) as err:
        si.read_item_features(features_config(path, fmt, columns), dataset([1, 2]),
                              str(cache / "data"), log=lambda message: None)
    message = str(err.value)
    assert message.startswith(f"{path}{problem}") and "\n" not in message
    assert os.listdir(cache) == []  # no *-items-*.npz, no .tmp


def test_a_second_read_for_a_run_comes_from_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "movies.dat"
    path.write_text("1::A (1990)::Drama|War\n3::B (1991)::Comedy\n")
    d, items, stem = features_config(path), dataset([1, 2, 3]), str(tmp_path / "cache" / "data")
    said = []
    first = si.read_item_features(d, items, stem, log=said.append)
    assert_same(first, si.read_movies_dat(str(path), items))
    cached = os.listdir(tmp_path / "cache")
    assert len(cached) == 1 and re.fullmatch(r"data-items-[0-9a-f]{16}\.npz", cached[0])
    assert len(said) == 2 and all(cached[0] in line for line in said)  # genres, year

    def unread(*args, **kwargs):
        raise AssertionError("read the file again")

    monkeypatch.setattr(si, "read_movies_dat", unread)
    second = si.read_item_features(d, items, stem, log=said.append)
    assert_same(first, second)
    assert len(said) == 2  # nothing read, nothing cached again
