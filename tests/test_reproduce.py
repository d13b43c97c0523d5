"""experiments/reproduce/reproduce.py: table files → named runs, dry-run commands, the runner
(finished runs skipped, failures recorded, the tables written anyway), the results JSON and
RESULTS.md (protocol, published vs ours, mean ± std, Δ, the findings of the table's Markdown
file), --markdown_only, and one real tiny run end to end."""

import importlib.util
import json
import os
import shlex
import sys
import textwrap

import numpy as np
import pytest

from transrec_jax.config import REMOVED
from transrec_jax.studies import runner, study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "reproduce", os.path.join(REPO, "experiments", "reproduce", "reproduce.py"))
reproduce = sys.modules["reproduce"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(reproduce)


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # config paths in table files are relative to the repository root


TABLE = '''
    """Toy table of the reproduce tests."""
    _WIDE = {"model.d_model": 32, "model.d_ff": 32}
    ROWS = [
        dict(name="small", config="configs/sasrec.py:debug", published=(0.25, 0.095), source="toy paper"),
        dict(name="wide", config="configs/sasrec.py:debug", overrides=_WIDE, published=(0.3, 0.2),
             source="toy paper, wide"),
        dict(name="broken", config="configs/sasrec.py:debug", overrides={"model.num_heads": 3},
             published=None, source="a row whose runs fail", seeds=(0,)),
        dict(name="later", config="configs/bert4rec.py:debug", published=None, source="never launched"),
        dict(name="paper_only", published=(0.4, 0.25), source="a published reference"),
    ]
    SEEDS = (0, 1)
    BUDGET = {"train.num_steps": 4}
    GOAL = "toy goal: NDCG@10 ≥ 0.3"
    REFERENCES = {"T24": "Toy & Paper, 2024"}
'''

# The table's words, beside it: RESULTS.md quotes the `## Findings` section, and only that
WORDS = """# Toy table

The protocol in full, not quoted.

## Findings

- `wide` misses: the toy paper counts ties in its favour,
  measured twice.
- `small` lands above.

## Later

Not quoted either.
"""
FINDINGS = """- `wide` misses: the toy paper counts ties in its favour,
  measured twice.
- `small` lands above."""


def write_table(tmp_path, body: str = TABLE, name: str = "toy", words: str | None = WORDS) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    if words is not None:
        (tmp_path / f"{name}.md").write_text(words)
    return str(path)


def test_table_expands_to_named_runs(tmp_path):
    table = reproduce.load_table(write_table(tmp_path))
    assert table.title == "Toy table of the reproduce tests"
    assert [r.name for r in table.runs] == [  # seed by seed: every row once before seed 1
        "small,seed=0", "wide,seed=0", "broken,seed=0", "later,seed=0",
        "small,seed=1", "wide,seed=1", "later,seed=1"]
    wide = table.runs[5]
    assert wide.point == "wide" and wide.seed == 1
    assert wide.workdir == os.path.join("experiments", "reproduce", "runs", "toy", "wide,seed=1")
    assert wide.command() == [
        "python", "-m", "transrec_jax.main", f"--workdir={wide.workdir}",
        "--config=configs/sasrec.py:debug", "--config.train.num_steps=4",
        "--config.model.d_model=32", "--config.model.d_ff=32", "--config.seed=1"]
    assert [row.seeds for row in table.rows] == [(0, 1), (0, 1), (0,), (0, 1), ()]

    forced = reproduce.load_table(write_table(tmp_path), seeds="3", root=str(tmp_path / "r"))
    assert [r.name for r in forced.runs] == ["small,seed=3", "wide,seed=3", "broken,seed=3", "later,seed=3"]
    assert forced.runs[0].workdir == str(tmp_path / "r" / "small,seed=3")
    assert [r.name for r in reproduce.select(forced, "wide,later")] == ["wide,seed=3", "later,seed=3"]


@pytest.mark.parametrize("body, flags, message", [
    (TABLE, ["--rows=small,nope"], "--rows: no row 'nope' in"),
    (TABLE, ["--rows=paper_only"], "row 'paper_only' is a published reference"),
    (TABLE, ["--seeds=a"], "seeds 'a': expected integers"),
    (TABLE.replace('"model.num_heads": 3', '"model.nope": 3'), [],
     "row 'broken': config key 'model.nope' unknown"),
    (TABLE.replace("SEEDS = (0, 1)", "SEED = 1"), [], "unknown name SEED"),
    (TABLE.replace("    SEEDS = (0, 1)", '    FINDINGS = ["x"]\n    SEEDS = (0, 1)'), [],
     "FINDINGS: findings are Markdown, not Python: write them under '## Findings' in"),
    (TABLE.replace('source="toy paper")', 'source="")'), [], "row 'small': no source"),
    (TABLE.replace("(0.25, 0.095)", "0.25"), [], "published=0.25: expected (hr@10, ndcg@10)"),
    (TABLE.replace('name="wide"', 'name="small"'), [], "row 'small' appears twice"),
    (TABLE.replace("configs/bert4rec.py", "configs/nope.py"), [], "config file 'configs/nope.py' not found"),
    (TABLE.replace('"train.num_steps": 4', '"seed": 4'), [], "config.seed is set by SEEDS"),
    (TABLE.replace("seeds=(0,)", 'seeds=("x",)'), [], "row 'broken': seeds=('x',): expected integers"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, capsys, body, flags, message):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main([f"--table={write_table(tmp_path, body)}", "--dry_run", *flags])
    assert message in str(exit_.value) and "\n" not in str(exit_.value)


def test_missing_table_file():
    with pytest.raises(SystemExit, match="--table=nope.py: no such file"):
        reproduce.main(["--table=nope.py"])


FAKE_MAIN = """
    import json, os, sys
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    workdir = args["workdir"]
    with open(os.path.join(workdir, "calls.txt"), "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    if args.get("config.model.num_heads") == "3":
        sys.exit("error: config.model.d_model=16 is not divisible by model.num_heads=3")
    if os.path.isdir(os.path.join(workdir, "checkpoints")):
        print("resumed from step 2")
    seed, d = int(args["config.seed"]), int(args.get("config.model.d_model", 16))
    test = {"hr@10": 0.2 + 0.01 * seed + d / 1000, "ndcg@10": 0.1 + 0.007 * seed ** 2 + d / 2000}
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 2, "kind": "val", "hr@10": 0.5, "ndcg@10": 0.3}) + "\\n")
        f.write(json.dumps({"step": 4, "kind": "val", "hr@10": 0.4, "ndcg@10": 0.2}) + "\\n")
    results = {
        "test": test, "test_popularity": {"hr@10": 0.05, "ndcg@10": 0.02},
        "best_validation": {"ndcg@10": 0.3}, "best_step": 2, "steps": 4, "epochs": 2.0,
        "steps_per_epoch": 2, "num_params": 1000, "wall_time_s": 30.0 + seed, "train_time_s": 20.0,
        "steps_per_s": 0.2, "versions": {"jax": "0"},
        "config": {"seed": seed, "model": {k.split(".")[-1]: int(v) for k, v in args.items()
                                           if k.startswith("config.model.")}},
        "device": {"kind": "cpu", "count": 1, "platform": "cpu", "host": "secret-host"},
        "dataset": {"name": "synthetic", "users": 200, "items": 50, "interactions": 8000},
        "protocol": {"split": "leave_one_out", "ranking": "full (all items)", "history_masked": True,
                     "ties": "pessimistic", "loss": "ce", "negatives": None},
    }
    with open(os.path.join(workdir, "results.json"), "w") as f:
        if seed == 1:  # runs since hardware.host() went into results.json name their CPU there
            results["device"].update(cpu="Fake CPU", cpu_cores=1)
        json.dump(results, f)
"""


def test_runner_skips_records_failures_and_writes_tables(tmp_path, monkeypatch, capsys):
    """A stand-in for transrec_jax.main (writes results.json from its flags): the runner and
    the tables without training."""
    (tmp_path / "fake_main.py").write_text(textwrap.dedent(FAKE_MAIN))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(study, "MAIN", "fake_main")
    path, root, out = write_table(tmp_path), str(tmp_path / "runs"), str(tmp_path / "out")
    flags = [f"--table={path}", f"--workdir_root={root}", f"--out_dir={out}"]
    table = reproduce.load_table(path, root=root)
    runs = {run.name: run for run in table.runs}
    os.makedirs(runs["small,seed=1"].path("checkpoints"))  # interrupted earlier: resumed in place

    with pytest.raises(SystemExit, match="1 runs failed"):
        reproduce.main(flags + ["--rows=small,wide,broken", "--parallel=2"])
    assert "5 runs in" in capsys.readouterr().out
    assert {n: r.status() for n, r in runs.items()} == {
        "small,seed=0": "done", "wide,seed=0": "done", "broken,seed=0": "failed",
        "later,seed=0": "not run", "small,seed=1": "done", "wide,seed=1": "done", "later,seed=1": "not run"}

    with open(os.path.join(out, "results", "toy.json")) as f:
        doc = json.load(f)
    records = {r["run"]: r for r in doc["runs"]}
    assert list(records) == list(runs)  # every run of the table, launched or not
    assert records["broken,seed=0"]["error"] == (
        "exit code 1: error: config.model.d_model=16 is not divisible by model.num_heads=3")
    wide = records["wide,seed=1"]
    assert wide["test"]["ndcg@10"] == pytest.approx(0.1 + 0.007 + 0.016)
    assert wide["val"] == {"hr@10": 0.5, "ndcg@10": 0.3}  # the validation row of the best step
    assert wide["best_epoch"] == 1.0 and wide["epochs"] == 2.0 and wide["test_popularity"]["hr@10"] == 0.05
    assert wide["hardware"]["accelerator"] is None
    # results.json's CPU wins; without it, the one the runner noted at launch (hardware.json)
    assert (wide["hardware"]["cpu"], wide["hardware"]["cpu_cores"]) == ("Fake CPU", 1)
    assert records["wide,seed=0"]["hardware"]["cpu_cores"] >= 1
    assert records["wide,seed=0"]["hardware"].get("cpu") != "Fake CPU"
    assert "secret-host" not in json.dumps(doc)  # hostname-free
    assert records["small,seed=1"]["resumed"] and not records["small,seed=0"]["resumed"]
    assert doc["rows"][0]["published"] == {"hr@10": 0.25, "ndcg@10": 0.095}
    assert "findings" not in doc  # words live in toy.md, not in the data

    md = open(os.path.join(out, "RESULTS.md")).read()
    assert "**Protocol (every table):** leave-one-out" in md and "## Toy table of the reproduce tests\n" in md
    assert "- **Goal:** toy goal: NDCG@10 ≥ 0.3." in md
    assert "- **Seeds:** 0, 1; fewer for `broken` (0)." in md
    for row, published in (("small", (0.25, 0.095)), ("wide", (0.3, 0.2))):  # golden: numpy over the JSON
        done = [r for r in doc["runs"] if r["row"] == row]
        hr, ndcg = (np.array([r["test"][m] for r in done]) for m in ("hr@10", "ndcg@10"))
        delta = ndcg.mean() - published[1]
        mark = " ✓" if delta >= -0.006 else ""  # within noise of the published figure, or above
        assert bool(mark) == (row == "small")  # small lands above its published NDCG@10
        assert (f"| `{row}` | {hr.mean():.4f} ± {hr.std(ddof=1):.4f} (2) | {published[0]:.4f} | "
                f"{hr.mean() - published[0]:+.4f} | {ndcg.mean():.4f} ± {ndcg.std(ddof=1):.4f} | "
                f"{published[1]:.4f} | {delta:+.4f}{mark} | 1/2 |") in md
    assert "| 1/2 | 30 s* | " in md  # small: one seed resumed
    assert "| `broken` | failed (1 of 1) | — |" in md and "- `broken,seed=0`: exit code 1: error:" in md
    assert "| `later` | not run yet | — |" in md
    assert "| `paper_only` | reference, not run | 0.4000 |" in md
    assert "| *popularity* | 0.0500 | | | 0.0200 |" in md and "- [T24] Toy & Paper, 2024" in md
    assert f"**Findings:**\n\n{FINDINGS}\n\n**Rows**" in md and "not quoted" not in md.lower()
    assert ("- `wide`: `configs/sasrec.py:debug` + `model.d_model=32` `model.d_ff=32`. "
            "Source: toy paper, wide.") in md

    calls = {n: len(open(r.path("calls.txt")).readlines())
             for n, r in runs.items() if r.status() != "not run"}
    with pytest.raises(SystemExit, match="1 runs failed"):
        reproduce.main(flags + ["--rows=small,wide,broken"])  # finished runs skipped, the failure retried
    assert "4 finished (skipped), 1 to run" in capsys.readouterr().out
    assert {n: len(open(runs[n].path("calls.txt")).readlines()) for n in calls} == {
        **calls, "broken,seed=0": 2}

    reproduce.main(flags + ["--dry_run"])
    assert capsys.readouterr().out.splitlines() == [
        shlex.join(runs[n].command()) for n in ("broken,seed=0", "later,seed=0", "later,seed=1")]

    other = write_table(tmp_path, TABLE.replace("Toy table", "Second toy table"), "second", words=None)
    reproduce.main([f"--table={other}", f"--workdir_root={tmp_path / 'runs2'}", f"--out_dir={out}",
                    "--report_only"])
    md = open(os.path.join(out, "RESULTS.md")).read()
    assert md.count("**Protocol (every table):**") == 1  # both tables, one protocol on top
    assert md.index("## Second toy table") < md.index("## Toy table")  # results/second.json, toy.json
    assert sorted(os.listdir(os.path.join(out, "results"))) == ["second.json", "toy.json"]
    assert md.count("**Findings:**") == 1  # second.py has no second.md


def test_markdown_only_rewrites_results_md_from_the_json_and_the_words(tmp_path, monkeypatch):
    """--markdown_only: RESULTS.md from results/*.json and each table's <table>.md as they are
    now; nothing runs and no JSON is written."""
    (tmp_path / "fake_main.py").write_text(textwrap.dedent(FAKE_MAIN))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(study, "MAIN", "fake_main")
    path, out = write_table(tmp_path), str(tmp_path / "out")
    reproduce.main([f"--table={path}", f"--workdir_root={tmp_path / 'runs'}", f"--out_dir={out}",
                    "--rows=small"])
    json_path, md_path = (os.path.join(out, *p) for p in (("results", "toy.json"), ("RESULTS.md",)))
    with open(json_path) as f:
        data = f.read()
    before = open(md_path).read()
    assert reproduce.results_markdown(out) == before

    (tmp_path / "toy.md").write_text(WORDS.replace("measured twice", "measured three times"))
    os.remove(md_path)
    reproduce.main(["--markdown_only", f"--out_dir={out}"])
    after = open(md_path).read()
    assert after == before.replace("measured twice", "measured three times") != before
    assert open(json_path).read() == data

    (tmp_path / "toy.md").unlink()  # no words: no findings block, the rest as it was
    reproduce.main(["--markdown_only", f"--out_dir={out}"])
    assert open(md_path).read() == before.replace(f"\n**Findings:**\n\n{FINDINGS}\n", "")

    for flags in (["--markdown_only", f"--table={path}"], []):
        with pytest.raises(SystemExit):
            reproduce.main(flags)


def test_recorded_runs_survive_a_fresh_checkout(tmp_path, monkeypatch, capsys):
    """Run directories are never committed, results/<table>.json is: on a fresh checkout a run
    recorded there as finished with today's settings is skipped and tabled as recorded; one
    whose row changed since trains again."""
    (tmp_path / "fake_main.py").write_text(textwrap.dedent(FAKE_MAIN))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(study, "MAIN", "fake_main")
    path, out = write_table(tmp_path), str(tmp_path / "out")
    first = [f"--table={path}", f"--workdir_root={tmp_path / 'runs'}", f"--out_dir={out}"]
    reproduce.main(first + ["--rows=small,wide"])
    with open(os.path.join(out, "results", "toy.json")) as f:
        before = {r["run"]: r for r in json.load(f)["runs"]}

    fresh = [f"--table={path}", f"--workdir_root={tmp_path / 'fresh'}", f"--out_dir={out}"]
    capsys.readouterr()
    reproduce.main(fresh + ["--dry_run"])  # only the rows never run are left to launch
    assert [shlex.split(line)[3] for line in capsys.readouterr().out.splitlines()] == [
        f"--workdir={tmp_path / 'fresh' / name}"
        for name in ("broken,seed=0", "later,seed=0", "later,seed=1")]
    reproduce.main(fresh + ["--rows=small,wide"])
    assert "4 finished (skipped; 4 of them recorded in results/toy.json), 0 to run" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "fresh")  # nothing launched
    with open(os.path.join(out, "results", "toy.json")) as f:
        after = {r["run"]: r for r in json.load(f)["runs"]}
    assert {n: after[n] for n in before if before[n]["status"] == "done"} == {
        n: r for n, r in before.items() if r["status"] == "done"}
    hr = np.array([before[f"small,seed={seed}"]["test"]["hr@10"] for seed in (0, 1)])
    assert f"| `small` | {hr.mean():.4f} ± {hr.std(ddof=1):.4f} (2) |" in open(
        os.path.join(out, "RESULTS.md")).read()

    changed = write_table(tmp_path, TABLE.replace('"model.d_ff": 32', '"model.d_ff": 64'))
    reproduce.main([f"--table={changed}", f"--workdir_root={tmp_path / 'fresh'}", f"--out_dir={out}",
                    "--rows=small,wide"])
    assert "2 finished (skipped; 2 of them recorded in results/toy.json), 2 to run" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "fresh")) == ["wide,seed=0", "wide,seed=1"]

    with open(os.path.join(out, "results", "toy.json")) as f:
        doc = json.load(f)
    records = {r["run"]: r for r in doc["runs"]}
    assert records["wide,seed=0"]["settings"] == {"model.d_model": 32, "model.d_ff": 64}
    del records["small,seed=0"]["settings"]  # recorded before settings were: trusted on its arguments
    records["small,seed=1"]["settings"]["train.num_steps"] = 5  # same arguments, other settings now
    with open(os.path.join(out, "results", "toy.json"), "w") as f:
        json.dump(doc, f)
    reproduce.main([f"--table={changed}", f"--workdir_root={tmp_path / 'fresh'}", f"--out_dir={out}",
                    "--rows=small"])
    assert "1 finished (skipped; 1 of them recorded in results/toy.json), 1 to run" in capsys.readouterr().out
    with open(os.path.join(out, "results", "toy.json")) as f:
        records = {r["run"]: r for r in json.load(f)["runs"]}
    assert records["small,seed=0"]["settings"]["train.num_steps"] == 4  # stamped from today's row
    assert records["small,seed=1"]["workdir"] == str(tmp_path / "fresh" / "small,seed=1")  # trained again

    reproduce.main([f"--table={changed}", f"--workdir_root={tmp_path / 'fresh'}", f"--out_dir={out}", "--rows=small", "--seeds=0,5"])  # launches small,seed=5 only ...
    with open(os.path.join(out, "results", "toy.json")) as f:
        runs_now = {r["run"]: r["status"] for r in json.load(f)["runs"]}
    assert runs_now["small,seed=5"] == "done"  # ... and keeps every other seed's record
    assert [n for n in runs_now if n.endswith("seed=5")] == ["small,seed=5"]  # no other row's seed 5
    assert all(runs_now[n] == "done" for n in before if before[n]["status"] == "done")
    capsys.readouterr()

    with open(os.path.join(out, "results", "toy.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(SystemExit, match=r"toy.json: not a study results file"):
        reproduce.main(fresh + ["--report_only"])


def test_recorded_settings_may_hold_removed_keys_at_the_value_still_implemented(tmp_path):
    """Records written before a config key was removed (config.REMOVED) still count as finished
    when they hold it at the one value the code still implements, and train again otherwise."""
    runs = [study.Run(name=f"row,seed={seed}", labels={"row": "row"}, point="row", seed=seed,
                      config="configs/sasrec.py:debug", overrides={}, workdir=str(tmp_path / str(seed)))
            for seed in (0, 1, 2)]
    now = {"model.d_model": 16, "loss.name": "ce"}
    recorded = {0: {**now, **REMOVED}, 1: {**now, **REMOVED, "train.optimizer": "adamw"},
                2: {**now, **REMOVED, "loss.logq_correction": False}}
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({"runs": [
        {"run": run.name, "row": "row", "status": "done", "config_args": run.config_args(),
         "settings": recorded[run.seed]} for run in runs]}))
    assert list(runner.recorded(str(path), runs, {"row": now})) == ["row,seed=0"]


@pytest.mark.slow
def test_real_tiny_runs_end_to_end(tmp_path):
    """One real debug run and one that cannot build (3 heads for d=16): the failure is recorded
    and the table still written, with what the real run measured."""
    path = write_table(tmp_path, f'''
        """Tiny real table."""
        ROWS = [
            dict(name="sasrec", config="configs/sasrec.py:debug,dataset.synthetic.num_users=200,"
                 "dataset.synthetic.num_items=50", published=(0.5, 0.3), source="none"),
            dict(name="broken", config="configs/sasrec.py:debug", overrides={{"model.num_heads": 3}},
                 published=None, source="none"),
        ]
        SEEDS = (0,)
        BUDGET = {{"train.num_steps": 4, "train.eval_every_steps": 2, "dataset.cache_dir": {str(tmp_path)!r}}}
    ''', "tiny")
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match="1 runs failed"):
        reproduce.main([f"--table={path}", f"--workdir_root={tmp_path / 'runs'}", f"--out_dir={out}",
                        "--parallel=2"])
    with open(os.path.join(out, "results", "tiny.json")) as f:
        real, broken = json.load(f)["runs"]
    assert real["status"] == "done" and broken["status"] == "failed"
    assert broken["error"].startswith("exit code 1: error: config.model.d_model=16 is not divisible")
    assert set(real["val"]) >= {"hr@10", "ndcg@10"} and 0 <= real["test"]["ndcg@10"] <= 1
    assert real["steps"] == 4 and real["best_step"] in (2, 4) and real["device"]["platform"] == "cpu"
    assert "host" not in real["device"] and real["dataset"]["users"] == 200
    md = open(os.path.join(out, "RESULTS.md")).read()
    assert f"| `sasrec` | {real['test']['hr@10']:.4f} (1) | 0.5000 |" in md
    assert "- **Dataset:** synthetic, 200 users, 50 items" in md
