"""Print a model's parameter counts for a config, from jax.eval_shape (nothing is allocated):
the VAE of a configs/vae/*.py file, or the stage DiT of a configs/flow/*.py file.

    python -m launch.param_count --config=configs/vae/paper.py
    python -m launch.param_count --config=configs/vae/tiny.py --full   # every parameter
    python -m launch.param_count --config=configs/flow/small.py:2,text

Paper config: encoder 14,049,500 (DESIGN.md ~14.1M), decoder 156,548,258 (~156.6M; DiT
128,140,142 + surfel head 28,408,116). Takes about a second.
"""

from __future__ import annotations

from absl import app, flags
from clu import parameter_overview
from ml_collections import config_flags

from ga_jax.models.flow.build import abstract_dit_params, build_dit
from ga_jax.models.vae import (
    abstract_variables,
    build_vae,
    count_params,
    param_breakdown,
    param_counts,
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).")
_FULL = flags.DEFINE_bool("full", False, "Also print clu's per-parameter table.")
_DEPTH = flags.DEFINE_integer("depth", 2, "Path depth of the module breakdown.")


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/vae/paper.py")
    if config.get("task") == "flow":
        params = abstract_dit_params(build_dit(config.model))
        totals = {"total": count_params(params)}
    else:
        params = abstract_variables(build_vae(config.model))["params"]
        totals = param_counts(params)
    rows = param_breakdown(params, _DEPTH.value)
    width = max(len(name) for name in rows) + 2
    print(f"{'module':<{width}}{'params':>14}")
    for name, count in rows.items():
        print(f"{name:<{width}}{count:>14,}")
    print()
    for name, count in totals.items():
        print(f"{name:<{width}}{count:>14,}")
    if _FULL.value:
        from flax import linen as nn

        print(parameter_overview.get_parameter_overview(nn.unbox(params), include_stats=False))


if __name__ == "__main__":
    app.run(main)
