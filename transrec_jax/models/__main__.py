"""`python -m transrec_jax.models`: parameter counts of the reference ML-1M configurations.

The reference configurations are `configs/<model>.py:ml-1m` (max_len 200) with the 3,416
items of the SASRec ML-1M file; one column per model, its settings, then one row per
component (encoder layers summed over all layers).
"""

from __future__ import annotations

import collections
import importlib.util
import pathlib

from flax import nnx

from transrec_jax.models.recommenders import MODELS, build_model

ML1M_NUM_ITEMS = 3416
CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
SETTINGS = (
    "max_len",
    "d_model",
    "num_layers",
    "num_heads",
    "d_ff",
    "activation",
    "norm_placement",
    "positions",
    "head",
    "head_bias",
)
COMPONENTS = (
    "item_embedding",
    "positions",
    "layers.attention_norm",
    "layers.attention",
    "layers.ffn_norm",
    "layers.ffn",
    "layers.uvqk",
    "layers.relative_bias",
    "layers.output",
    "final_norm",
    "decoder_positions",
    "decoder_layers",
    "decoder_final_norm",
    "output_weight",
    "output_bias",
)

# Settings a model does not read (HSTU blocks have no feed-forward and no norm placement).
UNUSED = {"hstu": ("d_ff", "activation", "norm_placement")}


def reference_model_config(name: str):
    """config.model of configs/<name>.py with the ml-1m preset."""
    path = CONFIG_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"transrec_configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("ml-1m").model


def parameter_counts(model: nnx.Module) -> dict[str, int]:
    """Parameters per component; encoder layers are summed per sublayer over all layers."""
    counts: dict[str, int] = collections.defaultdict(int)
    for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        component = f"layers.{path[2]}" if path[0] == "layers" else str(path[0])
        counts[component] += value.size
    return dict(counts)


def main() -> None:
    configs = {name: reference_model_config(name) for name in MODELS}
    counts = {}
    for name, cfg in configs.items():
        model = nnx.eval_shape(lambda cfg=cfg: build_model(cfg, ML1M_NUM_ITEMS, rngs=nnx.Rngs(0)))
        counts[name] = parameter_counts(model)
    present = {component for n in counts.values() for component in n}
    rows = [("num_items", [ML1M_NUM_ITEMS] * len(configs))]
    rows += [(key, ["—" if key in UNUSED.get(name, ()) else cfg[key]
                    for name, cfg in configs.items()]) for key in SETTINGS]
    rows += [(c, [f"{n.get(c, 0):,}" for n in counts.values()]) for c in COMPONENTS if c in present]
    rows += [("total parameters", [f"{sum(n.values()):,}" for n in counts.values()])]
    width = max(len(label) for label, _ in rows) + 2
    print(f"Reference ML-1M configurations (configs/<model>.py:ml-1m, {ML1M_NUM_ITEMS} items)")
    print("".ljust(width) + "".join(name.rjust(25) for name in configs))
    for label, values in rows:
        print(label.ljust(width) + "".join(str(v).rjust(25) for v in values))


if __name__ == "__main__":
    main()
