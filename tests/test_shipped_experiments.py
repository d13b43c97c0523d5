"""The sweep and table files we ship load, the best preset is what its docstring says, and the
table rows config docstrings link to exist and train what the docstrings say."""

import ast
import glob
import importlib.util
import os
import re
import runpy
import sys

import pytest

from transrec_jax import config as config_lib
from transrec_jax.studies import grid, study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "ablations", "*.py"))
                if not p.endswith("budget.py"))
TABLES = [os.path.join(REPO, "experiments", "reproduce", name) for name in ("ml1m.py", "ml1m_full.py", "beauty.py")]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # config paths in sweep and table files are relative to the root


def load_module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SWEEPS, ids=os.path.basename)
def test_shipped_sweep_loads_and_every_run_validates(path):
    sweep = grid.load(path)  # unknown keys and mistyped values are errors here
    assert sweep.runs
    for run in sweep.runs:
        file, _, arg = run.config.partition(":")
        config = load_module(file).get_config(arg)
        for key, value in run.overrides.items():
            study.set_value(config, key, value)
        config_lib.validate(config)


@pytest.mark.parametrize("path", TABLES, ids=os.path.basename)
def test_shipped_table_loads(path):
    spec = importlib.util.spec_from_file_location(
        "reproduce", os.path.join(REPO, "experiments", "reproduce", "reproduce.py"))
    reproduce = sys.modules["reproduce"] = importlib.util.module_from_spec(spec)  # for dataclasses
    spec.loader.exec_module(reproduce)
    table = reproduce.load_table(path)
    assert table.runs
    for run in table.runs:  # one seed a run, named in its directory, and a run directory each
        assert isinstance(run.seed, int) and run.seed >= 0 and run.name.endswith(f",seed={run.seed}")
    assert len({run.workdir for run in table.runs}) == len(table.runs)


def flat(c, prefix=""):
    """{'model.d_model': 64, ...} from a nested ConfigDict."""
    out = {}
    for key, value in c.items():
        if hasattr(value, "items"):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_best_preset_is_sasrec_plus_with_its_documented_changes():
    """configs/sasrec_best.py = the ML-1M table's sasrec_plus_ce row + 8 pre-norm blocks + the schedule."""
    best = load_module(os.path.join(REPO, "configs", "sasrec_best.py")).get_config("ml-1m")
    table = runpy.run_path(os.path.join(REPO, "experiments", "reproduce", "ml1m.py"))
    row = next(r for r in table["ROWS"] if r["name"] == "sasrec_plus_ce")
    plus = load_module(os.path.join(REPO, "configs", "sasrec.py")).get_config(
        "ml-1m," + ",".join(f"{k}={v}" for k, v in {**table["BUDGET"], **row["overrides"]}.items()))

    a, b = flat(plus), flat(best)
    changed = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert changed == {
        "model.num_layers": (2, 8),
        "model.norm_placement": ("sasrec", "pre"),
        "train.learning_rate": (1e-3, 3e-3),
        "train.warmup_steps": (0, 96),
        "train.schedule": ("constant", "cosine"),
        "train.num_epochs": (200, 80),
        "train.patience": (10, 0),
    }
    config_lib.validate(best)
    words = load_module(os.path.join(REPO, "configs", "sasrec_best.py")).get_config(
        "ml-1m,ensemble,exclude_window,rotary,two_heads")
    changed = {k: (b[k], v) for k, v in flat(words).items() if b[k] != v}
    assert changed == {"model.ensemble_size": (1, 3), "loss.exclude_window": (False, True),
                       "model.positions": ("learned", "rotary"), "model.num_heads": (1, 2)}


def docstring(path):
    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read()))


# The docstring's table of results: "configs/sasrec_best.py:ml-1m,<words>   row `<name>`"
BEST_ROWS = re.findall(r"^  configs/sasrec_best\.py:(ml-1m[a-z0-9_,]*) +row `([a-z0-9_]+)`$",
                       docstring(os.path.join(REPO, "configs", "sasrec_best.py")), re.M)


def test_best_preset_docstring_lists_its_rows():
    assert ("ml-1m", "best") in BEST_ROWS
    assert ("ml-1m,exclude_window,rotary,two_heads", "best_exclude_window_rotary_2heads") in BEST_ROWS


@pytest.mark.parametrize("arg, row_name", BEST_ROWS, ids=[name for _, name in BEST_ROWS])
def test_best_preset_words_train_what_their_ml1m_rows_train(arg, row_name):
    """The documented `configs/sasrec_best.py:ml-1m,<words>` command trains what its row trains:
    the row's overrides give back, over the table's BUDGET, every setting the preset has."""
    best = load_module(os.path.join(REPO, "configs", "sasrec_best.py"))
    table = runpy.run_path(os.path.join(REPO, "experiments", "reproduce", "ml1m.py"))
    row = next(r for r in table["ROWS"] if r["name"] == row_name)
    row_file, _, row_arg = row["config"].partition(":")
    assert row_file == "configs/sasrec_best.py"

    def kv(overrides):
        return ",".join(f"{k}={v}" for k, v in overrides.items())

    from_row = best.get_config(f"{row_arg}," + kv({**table["BUDGET"], **row["overrides"]}))
    assert flat(best.get_config(arg)) == flat(from_row)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))),
                         ids=os.path.basename)
def test_config_docstring_links_to_rows_that_exist(path):
    """A config's docstring links to its results by table row: every row it names is one."""
    rows = {row["name"] for table in TABLES for row in runpy.run_path(table)["ROWS"]}
    named = re.findall(r"\brows? `([a-z0-9_]+)`(?: \([^)]*\))?(?: and `([a-z0-9_]+)`)?",
                       docstring(path))
    named = {name for pair in named for name in pair if name}
    assert named, f"{os.path.basename(path)}: its docstring links to no table row"
    assert named <= rows, f"no such table row: {sorted(named - rows)}"
