"""The catalogue: file ids → original ids → titles, from files in MovieLens' real formats."""

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data.catalog import build_catalog
from transrec_jax.data.errors import DataError


def dataset_cfg(**paths):
    c = config_lib.base_config().dataset
    c.update(**{k: str(v) for k, v in paths.items()})
    return c


FILE_IDS = np.array([0, 1, 2, 3])  # SequenceDataset.item_ids: entry 0 is padding


def test_item_map_and_movies_dat_titles(tmp_path):
    (tmp_path / "map.tsv").write_text("item_id\tMovieID\n1\t2571\n2\t1196\n3\t260\n")
    (tmp_path / "movies.dat").write_bytes(
        "260::Star Wars: Episode IV (1977)::Action\n1196::Empire (1980)::Action\n"
        "2571::Matrix, The (1999)::Sci-Fi\n3::Amélie (2001)::Comedy\n".encode("latin-1"))
    cat = build_catalog(FILE_IDS, dataset_cfg(item_map=tmp_path / "map.tsv",
                                              item_titles=tmp_path / "movies.dat"))
    assert cat.ids.tolist() == [0, 2571, 1196, 260]
    assert cat.title(1) == "Matrix, The (1999)" and cat.title(3) == "Star Wars: Episode IV (1977)"
    assert cat.index(["260", 2571]).tolist() == [3, 1]


def test_u_item_titles_without_a_map(tmp_path):
    (tmp_path / "u.item").write_bytes(b"1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n"
                                      b"2|GoldenEye (1995)|01-Jan-1995||http://y|1|0\n")
    cat = build_catalog(FILE_IDS, dataset_cfg(item_titles=tmp_path / "u.item"))
    assert cat.ids.tolist() == FILE_IDS.tolist()
    assert [cat.title(i) for i in (1, 2, 3)] == ["Toy Story (1995)", "GoldenEye (1995)", ""]


def test_csv_titles_and_string_ids(tmp_path):
    (tmp_path / "map.csv").write_text("item,asin\n1,B0001\n2,B0002\n3,B0003\n")
    (tmp_path / "titles.csv").write_text('asin,title\nB0002,"Soap, lavender"\n')
    cat = build_catalog(FILE_IDS, dataset_cfg(item_map=tmp_path / "map.csv",
                                              item_titles=tmp_path / "titles.csv"))
    assert cat.ids[1:].tolist() == ["B0001", "B0002", "B0003"]
    assert cat.title(2) == "Soap, lavender" and cat.title(1) == ""


def test_no_files_means_file_ids_and_no_titles():
    cat = build_catalog(FILE_IDS, dataset_cfg())
    assert cat.ids is FILE_IDS and cat.titles is None and cat.title(1) == ""


@pytest.mark.parametrize("files, key, expected", [
    ({"map.tsv": "item_id\tMovieID\n1\t2571\n2\t1196\n"}, "item_map", "no original id for the dataset's items ['3']"),
    ({"map.tsv": "item_id\tMovieID\n1\t2571\n2\n3\t260\n"}, "item_map", "map.tsv:3: expected two columns"),
    ({"map.tsv": ""}, "item_map", "map.tsv: empty file"),
    ({}, "item_map", "no such file (relative to the working directory"),
    ({"titles.csv": "asin,name\nB1,x\n"}, "item_titles", "expected a header with an id column and a 'title'"),
    ({"titles.csv": "1::Toy Story\n::No id::Drama\n"}, "item_titles", "titles.csv:2: expected 'id::title::...'"),
])
def test_bad_catalogue_files_are_one_line_errors(tmp_path, monkeypatch, files, key, expected):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    name = next(iter(files), "missing.tsv")
    with pytest.raises(DataError) as err:
        build_catalog(FILE_IDS, dataset_cfg(**{key: name}))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unknown_ids_are_named():
    cat = build_catalog(FILE_IDS, dataset_cfg())
    with pytest.raises(DataError, match=r"item ids \['7', 'x'\] are not in the dataset's catalogue"):
        cat.index(["1", "7", "x"])
