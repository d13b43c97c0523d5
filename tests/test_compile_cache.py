"""compile_cache.py: a second run of the same config compiles nothing and gives the same numbers."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, cache, env):
    subprocess.run(
        [sys.executable, "-m", "transrec_jax.main", "--config=configs/sasrec.py:synthetic,debug",
         f"--workdir={workdir}", f"--compilation_cache_dir={cache}", "--config.train.num_epochs=1"],
        cwd=REPO, env=env, check=True, capture_output=True)
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)["test"]


def _entries(cache):
    return sorted(name for name in os.listdir(cache) if not name.startswith("."))


def test_a_rerun_reads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "xla"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache the debug model's quick compiles too
    first = _train(tmp_path / "a", cache, env)
    entries = _entries(cache)
    assert any(name.startswith("jit_train_step") for name in entries), entries
    assert _train(tmp_path / "b", cache, env) == first  # a cached program computes the same numbers
    assert _entries(cache) == entries  # nothing compiled (and written) the second time


def test_an_empty_dir_turns_the_cache_off(tmp_path, monkeypatch):
    import jax

    from transrec_jax import compile_cache
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    before = jax.config.jax_compilation_cache_dir
    compile_cache.enable("")
    assert jax.config.jax_compilation_cache_dir == before


def test_an_unwritable_dir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "transrec_jax.main", "--config=configs/sasrec.py:synthetic,debug",
         f"--workdir={tmp_path / 'w'}", f"--compilation_cache_dir={blocker / 'xla'}"],
        cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: --compilation_cache_dir=")
    assert not (tmp_path / "w").exists()  # nothing started
