"""Config files, arg strings and validation: every bad value is one line naming its key."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from transrec_jax import config as config_lib
from transrec_jax import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["sasrec.py", "bert4rec.py", "transformer_recommender.py", "encdec.py", "hstu.py"]


def load(spec):
    """What `--config=configs/<file>:<arg>` does: import the file, call get_config(arg)."""
    name, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "ml-1m", "beauty,debug", "ml-100k,train.batch_size=64"])
def test_every_config_and_preset_validates(name, arg):
    c = load(f"{name}:{arg}" if arg else name)
    config_lib.validate(c)
    assert c.model.name == name[:-3]
    if "ml-1m" in arg:
        assert c.dataset.path.endswith("ml-1m_sasrec-equiv_derived.txt.gz") and c.model.max_len == 200
    if "train.batch_size=64" in arg:
        assert c.train.batch_size == 64


def test_full_ml1m_preset_reads_every_rated_movie_by_original_id():
    c = load("sasrec.py:ml-1m-full")
    config_lib.validate(c)
    assert c.dataset.path.endswith("ml-1m_seq_rawid.txt.gz") and c.dataset.format == "user_item"
    assert c.dataset.item_map == "" and c.dataset.item_titles.endswith("movies.dat")
    assert c.model.max_len == 200 and c.dataset.min_item_interactions == 0


def test_sasrec_bce_variant_is_the_original_recipe():
    c = load("sasrec.py:ml-1m,bce")
    assert (c.loss.name, c.loss.num_negatives, c.model.norm_placement) == ("bce", 1, "sasrec")


def test_config_is_locked_against_unknown_keys():
    c = load("sasrec.py")
    with pytest.raises(AttributeError):
        c.model.not_a_field = 3


def _module(name):
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CONFIGS + ["sasrec_best.py"])
def test_each_declared_word_sets_its_keys_and_is_documented(name):
    module = _module(name)
    variants = getattr(module, "VARIANTS", {})
    plain = module.get_config("ml-1m")
    for word, overrides in variants.items():
        assert re.search(rf"\b{word}\b", module.__doc__), f"configs/{name} docstring lacks {word}"
        c = module.get_config(f"ml-1m,{word}")
        assert {key: c[key.split(".")[0]][key.split(".")[1]] for key in overrides} == overrides
        now, before = config_lib.flatten(c.to_dict()), config_lib.flatten(plain.to_dict())
        changed = {k for k in now if now[k] != before[k]}
        assert changed <= set(overrides), (word, changed)  # the word touches its keys only
    with pytest.raises(config_lib.ConfigError) as err:
        module.get_config("nonsense")
    assert all(repr(word) in str(err.value) for word in variants)


@pytest.mark.parametrize(
    "arg, match",
    [
        ("nonsense", "config arg word 'nonsense' unknown"),
        ("model.nope=3", "config key 'model.nope' unknown"),
        ("model.d_model=big", r"config key model.d_model='big': expected a int"),
        ("ml-1m,beauty", "several datasets"),
    ],
)
def test_bad_arg_strings(arg, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        load(f"sasrec.py:{arg}")


def _base(**kv):
    c = config_lib.base_config()
    for k, v in kv.items():
        config_lib.set_by_path(c, k, str(v))
    return c


@pytest.mark.parametrize(
    "kv, match",
    [
        ({"model.max_len": 1}, "model.max_len=1: expected at least 2"),
        ({"model.d_model": 30, "model.num_heads": 4}, "not divisible by model.num_heads"),
        ({"model.name": "gpt"}, "config.model.name='gpt': expected one of"),
        ({"train.window": "all"}, "config.train.window='all': expected one of \\('last', 'random', 'shifted'\\)"),
        ({"model.name": "bert4rec", "loss.name": "bce"}, "cannot train model.name='bert4rec'"),
        ({"loss.num_negatives": 0}, "loss.num_negatives=0: expected a positive integer"),
        ({"eval.length_buckets": 0}, "eval.length_buckets=0: expected a positive integer"),
        ({"model.name": "transformer_recommender", "train.pack_rows": True},
         "train.pack_rows=True needs model.name 'sasrec', 'bert4rec' or 'hstu'"),
        ({"model.name": "hstu"}, "attention_dropout=0.2: HSTU's pointwise attention has no"),
        ({"model.name": "hstu", "model.attention_dropout": 0.0, "model.positions": "rotary"},
         "positions='rotary': HSTU blocks use a learned relative position bias"),
        ({"loss.sample_per": "token"}, "loss.sample_per='token': expected one of"),
        ({"loss.name": "sampled_softmax", "loss.sampler": "unseen", "loss.sample_per": "position"},
         "sample_per='position': the 'unseen' sampler draws once per training row"),
        ({"train.early_stop_metric": "ndcg@50"}, "early_stop_metric"),
        ({"dataset.source": "local"}, "dataset.path is empty"),
        ({"dataset.split": "temporal"}, "temporal split needs"),
        ({"dataset.split": "cold"}, r"dataset.split='cold': expected one of .*'cold_items'\)"),
        ({"dataset.split": "cold_items", "dataset.cold_item_fraction": 0.0},
         r"dataset.cold_item_fraction=0.0: dataset.split='cold_items' expects a value in \(0, 1\)"),
        ({"dataset.split": "cold_items", "dataset.cold_item_fraction": 1.0},
         r"dataset.cold_item_fraction=1.0: .* in \(0, 1\)"),
        ({"dataset.max_history": -1}, "dataset.max_history=-1: expected a non-negative integer"),
        ({"model.dropout": 1.5}, r"model.dropout=1.5: expected a value in \[0, 1\)"),
        ({"model.attention_chunk": -1}, "model.attention_chunk=-1: expected a non-negative"),
        ({"model.qkv_init_std": -0.1}, "model.qkv_init_std=-0.1: expected a non-negative std"),
        ({"model.embedding_init_std": -1.0},
         "model.embedding_init_std=-1.0: expected a non-negative std"),
        ({"model.score_temperature": -0.05},
         "model.score_temperature=-0.05: expected 0 .* or a positive temperature"),
        ({"model.name": "encdec", "model.score_temperature": 0.05},
         "score_temperature: not supported for model.name='encdec'"),
        ({"model.ensemble_size": 0}, "model.ensemble_size=0: expected a positive integer"),
        ({"model.name": "encdec", "model.ensemble_size": 2},
         "ensemble_size > 1: not supported for model.name='encdec'"),
        ({"model.attention_chunk": 128, "model.fused_attention": True},
         "attention_chunk=128 chunks .*model.fused_attention=False"),
        ({"loss.exclude_window": True, "loss.label_smoothing": 0.1},
         "loss.exclude_window=True: expected loss.name='ce', .*loss.label_smoothing=0"),
        ({"loss.name": "bce", "loss.sampler": "unseen"},
         "loss.sampler='unseen' .* expected loss.name='sampled_softmax', got 'bce'"),
        ({"loss.name": "sampled_softmax", "loss.sampler": "unseen", "train.pack_rows": True},
         "loss.sampler='unseen' .* expected train.pack_rows=False"),
        # every interval the loop divides by or counts with
        ({"train.log_every": 0}, "train.log_every=0: expected a positive integer"),
        ({"train.checkpoint_every_steps": -1}, "train.checkpoint_every_steps=-1: expected a positive"),
        ({"train.keep_checkpoints": 0}, "train.keep_checkpoints=0: expected a positive integer"),
        ({"train.eval_every_steps": -3}, "train.eval_every_steps=-3: expected a non-negative"),
        ({"train.eval_every_epochs": 0}, "train.eval_every_epochs=0: expected a positive integer"),
        ({"train.patience": -1}, "train.patience=-1: expected a non-negative integer"),
        ({"eval.batch_size": 0}, "eval.batch_size=0: expected a positive integer"),
        ({"dataset.train_on_val_item": True, "train.patience": 0, "dataset.split": "next_k"},
         "dataset.train_on_val_item: only with dataset.split='leave_one_out' \\(it is 'next_k'\\)"),
        ({"dataset.train_on_val_item": True, "train.patience": 5},
         "train.patience=5: with dataset.train_on_val_item .* expected 0"),
    ],
)
def test_validation_names_the_key(kv, match):
    with pytest.raises(config_lib.ConfigError, match=match) as err:
        config_lib.validate(_base(**kv))
    assert "\n" not in str(err.value)


def test_recorded_config_fills_keys_added_since_with_their_defaults(tmp_path):
    c = load("sasrec.py:ml-1m,model.d_model=32,eval.ks=5+10")
    recorded = json.loads(c.to_json())
    del recorded["model"]["first_item_target"]  # a key the code gained after this run
    path = tmp_path / "config.json"
    path.write_text(json.dumps(recorded))
    got = config_lib.recorded_config(str(path))
    assert got.model.first_item_target is True and got.model.d_model == 32
    assert got.eval.ks == (5, 10) and got.dataset.name == "ml-1m"
    assert got.to_dict() == c.to_dict()
    recorded["model"]["d_model"] = "wide"
    path.write_text(json.dumps(recorded))
    with pytest.raises(config_lib.ConfigError, match=r"config.json: model.d_model='wide'"):
        config_lib.recorded_config(str(path))
    path.write_text('{"model": ')
    with pytest.raises(config_lib.ConfigError, match=r"config.json: not JSON .* at line 1\)"):
        config_lib.recorded_config(str(path))
    with pytest.raises(config_lib.ConfigError, match=r"missing.json not found"):
        config_lib.recorded_config(str(tmp_path / "missing.json"))


def test_recorded_config_of_a_run_before_the_cold_start_keys_resumes(tmp_path):
    c = load("sasrec.py")
    recorded = json.loads(c.to_json())
    for key in ("cold_item_fraction", "max_history"):  # older runs have neither
        del recorded["dataset"][key]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(recorded))
    assert workdir_lib.config_differences(config_lib.recorded_config(str(path)), c) == []


def test_recorded_config_drops_removed_keys_at_the_value_still_implemented(tmp_path):
    c = load("sasrec.py:ml-1m")
    recorded = json.loads(c.to_json())
    for key, value in config_lib.REMOVED.items():  # as a run written before their removal has them
        section, leaf = key.split(".")
        assert leaf not in c[section]
        recorded[section][leaf] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(recorded))
    assert config_lib.recorded_config(str(path)).to_dict() == c.to_dict()


@pytest.mark.parametrize("key, value", [
    ("loss.logq_correction", False), ("loss.remove_accidental_hits", False),
    ("train.optimizer", "adamw"), ("train.weight_decay", 0.01), ("train.clip_norm", 1.0),
])
def test_recorded_config_refuses_a_removed_key_at_another_value(tmp_path, key, value):
    recorded = json.loads(load("sasrec.py").to_json())
    section, leaf = key.split(".")
    recorded[section][leaf] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(recorded))
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.recorded_config(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and f"{key}={value!r}" in message
    assert "no longer implements" in message


def test_batch_must_divide_over_devices():
    with pytest.raises(config_lib.ConfigError, match="not divisible by the 3 devices"):
        config_lib.validate(_base(**{"train.batch_size": 128}), num_devices=3)


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "transrec_jax.main", "--config=configs/sasrec.py:local",
         f"--config.dataset.path={tmp_path}/missing.txt", f"--workdir={tmp_path}/w"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config.dataset.path=")
    assert "Traceback" not in proc.stderr
