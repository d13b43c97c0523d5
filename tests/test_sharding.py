"""A (data, model) mesh computes what one device computes.

The item-parallel kernels (full softmax per item shard, sampled losses gathering their rows,
full ranking by per-shard counts and top-K) match whole-array results on every mesh shape of
8 simulated CPU devices; a whole training run (`train_and_evaluate`, 3 steps; slow tier) gives
the same losses, gradient norms, parameters, validation and test metrics and `recommend`
top-10 lists on each mesh as on one device; and bad meshes fail in one line before anything
compiles. The devices are
simulated in subprocesses (tests/mesh_kernels.py, tests/mesh_run.py): a process fixes its
device count when JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
MESHES = ("8x1", "4x2", "2x4", "1x8")


def _run(args):
    return subprocess.Popen([sys.executable, *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["2x4", "every_mesh"])
def test_item_parallel_kernels_match_whole_arrays(every):
    """Losses and their gradients (hidden states, table, bias) to float32 rounding; ranks and
    top-10 ids exactly, ties included (rows 7 and 8 score alike)."""
    out = json.loads(_wait(_run([os.path.join(TESTS, "mesh_kernels.py"), *(["--all"] if every else [])]))
                     .strip().splitlines()[-1])
    for case, by_mesh in out.items():
        for mesh, value in by_mesh.items():
            if case.startswith("rank_full"):
                assert value is True, (case, mesh)
            else:
                assert value <= 1e-5, (case, mesh, value)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# The attention key bias has an exactly zero gradient (a shift of every key by the same
# q · b_k leaves the softmax unchanged): what it gets is float rounding, which Adam scales
# up to learning-rate-sized steps, different on every mesh. Nothing downstream depends on it.
_ZERO_GRADIENT = "key_proj"


def assert_same_run(got, reference, mesh):
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, err_msg=f"{mesh} {key}")
    metrics = [k for k in reference if k.startswith(("val/", "test/"))]
    assert metrics and set(metrics) <= set(got)
    for key in metrics:
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, atol=1e-7, err_msg=f"{mesh} {key}")
    np.testing.assert_array_equal(got["top10"], reference["top10"], err_msg=f"{mesh} top-10")
    np.testing.assert_array_equal(got["top10_twice"], got["top10"],  # scores doubled, same lists
                                  err_msg=f"{mesh} top-10 of the run's ensemble with itself")
    params = [k for k in reference if k.startswith("params/")]
    assert len(params) > 10 and set(params) == {k for k in got if k.startswith("params/")}
    for key in params:
        if _ZERO_GRADIENT in key and "bias" in key:
            continue
        scale = np.max(np.abs(reference[key]))
        # Adam divides each gradient by its running RMS: the rounding of a near-zero gradient
        # (the query bias's) moves its parameter by up to ~1e-5 of its scale per step.
        np.testing.assert_allclose(got[key], reference[key], rtol=0, atol=1e-4 * scale,
                                   err_msg=f"{mesh} {key}")


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bce"])
def test_a_training_run_on_every_mesh_is_the_one_device_run(tmp_path, loss):
    worker = os.path.join(TESTS, "mesh_run.py")
    one = _run([worker, "1", str(tmp_path), loss, "1x1"])
    many = _run([worker, "8", str(tmp_path), loss, *MESHES])
    _wait(one), _wait(many)
    reference = _load(tmp_path / loss / "1x1.npz")
    assert len(reference["loss"]) == 3 and len(reference["top10"]) > 50
    for mesh in MESHES:
        assert_same_run(_load(tmp_path / loss / f"{mesh}.npz"), reference, mesh)


@pytest.mark.parametrize("mesh,devices,message", [
    ({"model": 2}, 1, "config.mesh.model=2 does not divide the 1 devices"),
    ({"model": 3}, 8, "config.mesh.model=3 does not divide the 8 devices"),
    ({"data": 3, "model": 2}, 8, "config.mesh.data=3 x mesh.model=2 is 6 devices; there are 8"),
    ({"model": 0}, 8, "config.mesh.model=0: expected a positive integer"),
    ({"model": -1}, 8, "config.mesh.model=-1: expected a positive integer"),
    ({"data": 0}, 8, "config.mesh.data=0: expected a positive integer"),
    ({"model": 4, "batch": 25}, 8, "config.eval.batch_size=25 is not divisible by the 2 devices of mesh.data"),
])
def test_a_mesh_that_does_not_fit_the_devices_is_one_line(mesh, devices, message):
    c = config_lib.base_config()
    c.mesh.data = mesh.get("data", -1)
    c.mesh.model = mesh.get("model", 1)
    c.eval.batch_size = mesh.get("batch", 256)
    with pytest.raises(ConfigError) as error:
        config_lib.validate(c, devices)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


_SMALL_CATALOGUE = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    from transrec_jax import train
    from transrec_jax import config as config_lib
    c = config_lib.base_config()
    c.dataset.update(name="local", source="local", format="user_item", path=sys.argv[1],
                     cache_dir=sys.argv[2])
    c.mesh.model = 4
    c.train.batch_size = 4
    c.eval.batch_size = 4
    try:
        train.train_and_evaluate(c, sys.argv[3])
    except config_lib.ConfigError as e:
        sys.exit(f"error: {e}")
""")


def test_a_catalogue_smaller_than_the_item_shards_is_refused_before_the_workdir(tmp_path):
    data = tmp_path / "three_items.txt"
    data.write_text("".join(f"{user} {item}\n" for user in range(1, 6) for item in (1, 2, 3)))
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _SMALL_CATALOGUE, str(data), str(tmp_path / "cache"),
                           str(workdir)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: config.mesh.model=4 splits the item table over more devices than local has "
        "items (3); expected at most 3")
    assert not workdir.exists()
