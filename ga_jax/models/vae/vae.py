"""The full 3D VAE: encoder -> posterior over h -> DiT decoder -> cascaded surfels.

    vae = build_vae(config.model)
    variables = vae.init({'params': k1, 'latent': k2}, encoder_input, fps_xyz)
    surfels, posterior = vae.apply(variables, encoder_input, fps_xyz, rngs={'latent': k3})
    posterior = vae.apply(variables, encoder_input, fps_xyz, method=VAE.encode)
    surfels = vae.apply(variables, xyz, h, method=VAE.decode)

Parameter tree (for optimizer groups, DESIGN.md section 5): 'encoder/...' (encoder),
'decoder/...' (the DiT: cond_mlp, token_embed, blocks), 'surfel_head/...' (base head
'base' and upsamplers 'upsample_<i>'). DESIGN.md's "decoder" (~156.6M) is decoder +
surfel_head; `param_counts` reports both parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.models.common import ModelOptions
from ga_jax.models.vae.decoder import Decoder
from ga_jax.models.vae.encoder import Encoder
from ga_jax.models.vae.latent import DiagonalGaussian
from ga_jax.models.vae.surfel_head import SurfelHead
from ga_jax.rendering.surfels import Surfels

__all__ = [
    "LATENT_RNG",
    "VAE",
    "abstract_variables",
    "build_vae",
    "count_params",
    "param_breakdown",
    "param_counts",
]

# The rng stream the posterior sample draws from (apply(..., rngs={LATENT_RNG: key})).
LATENT_RNG = "latent"


class VAE(nn.Module):
    """Point-cloud-latent 3D VAE (DESIGN.md sections 2-3). Submodules are fields."""

    encoder: Encoder
    decoder: Decoder
    surfel_head: SurfelHead
    logvar_limit: float = 20.0
    logvar_offset: float = 0.0
    # False: training decodes the posterior mean (an autoencoder; for short runs with KL weight
    # 0, where sampling only adds noise that the decoder learns to ignore). True: the paper.
    sample_posterior: bool = True

    def encode(self, encoder_input: jax.Array, fps_xyz: jax.Array) -> DiagonalGaussian:
        """encoder_input [B, V, S, S, 15], fps_xyz [B, P, 3] -> posterior over h [B, P, C]."""
        return DiagonalGaussian.from_moments(
            self.encoder(encoder_input, fps_xyz), self.logvar_limit, self.logvar_offset
        )

    def decode(self, xyz: jax.Array, h: jax.Array) -> list[Surfels]:
        """xyz [B, P, 3], h [B, P, C] -> Surfels per level (base first; counts P, P*f1, ...)."""
        return self.surfel_head(self.decoder(h), xyz)

    def __call__(
        self, encoder_input: jax.Array, fps_xyz: jax.Array, *, train: bool = True
    ) -> tuple[list[Surfels], DiagonalGaussian]:
        """Encode, take h (a posterior sample when train and sample_posterior, else its mean),
        decode at fps_xyz.

        Sampling needs the 'latent' rng stream. Returns (surfels per level, posterior).
        """
        posterior = self.encode(encoder_input, fps_xyz)
        if train and self.sample_posterior:
            h = posterior.sample(self.make_rng(LATENT_RNG))
        else:
            h = posterior.mode()
        return self.decode(fps_xyz, h), posterior


def _fields(section: Any) -> dict[str, Any]:
    """A config section as module fields (sequences as tuples: Linen fields stay hashable)."""
    fields = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    for key in ("ch_mult", "xyz_channels", "child_spread", "color_gain"):
        if key in fields:
            fields[key] = tuple(fields[key])
    if "levels" in fields:
        fields["levels"] = tuple(tuple(level) for level in fields["levels"])
    return fields


def _make(cls: type, fields: dict[str, Any], where: str, **common: Any):
    # `options` comes from config.model's own fields (dtype, scan_layers, ...), never from
    # a section: a section setting it would shadow them.
    known = set(cls.__dataclass_fields__) - {"parent", "name", "options"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown} for {cls.__name__} (known: {sorted(known)})"
        )
    return cls(**fields, **common)


def build_vae(cfg: Any) -> VAE:
    """The VAE described by a model config (configs/vae/model.py documents every field).

    One ModelOptions, from config.model's dtype, param_dtype, attention_impl,
    attention_chunk_size, scan_layers and remat_policy, goes to every module.
    """
    common = dict(options=ModelOptions.from_config(cfg))
    encoder = _make(
        Encoder,
        _fields(cfg.encoder),
        "config.model.encoder",
        latent_dim=cfg.latent_dim,
        **common,
    )
    decoder = _make(
        Decoder,
        _fields(cfg.decoder),
        "config.model.decoder",
        num_points=cfg.num_points,
        **common,
    )
    surfel_head = _make(SurfelHead, _fields(cfg.surfels), "config.model.surfels", **common)
    if decoder.width % decoder.num_heads or decoder.width % surfel_head.num_heads:
        raise ValueError(
            f"config.model: decoder.width={decoder.width} must be divisible by "
            f"decoder.num_heads={decoder.num_heads} and surfels.num_heads={surfel_head.num_heads}"
        )
    return VAE(
        encoder=encoder,
        decoder=decoder,
        surfel_head=surfel_head,
        logvar_limit=cfg.logvar_limit,
        logvar_offset=cfg.get("logvar_offset", 0.0),
        sample_posterior=cfg.get("sample_posterior", True),
    )


def abstract_variables(
    model: VAE, *, batch_size: int = 1, num_views: int = 1, image_size: int | None = None
) -> Any:
    """jax.eval_shape of model.init: ShapeDtypeStructs (boxed with logical names), no memory.

    The parameter shapes do not depend on the number of views or the image size, so the
    defaults use the smallest valid input (one view, one token per view).
    """
    image_size = image_size or model.encoder.downsample_factor
    enc = jax.ShapeDtypeStruct(
        (batch_size, num_views, image_size, image_size, model.encoder.in_channels), jnp.float32
    )
    fps = jax.ShapeDtypeStruct((batch_size, model.decoder.num_points, 3), jnp.float32)
    return jax.eval_shape(
        lambda e, f: model.init({"params": jax.random.key(0)}, e, f, train=False), enc, fps
    )


def count_params(tree: Any) -> int:
    """Number of scalars in a (possibly boxed, possibly abstract) parameter tree."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree.leaves(nn.unbox(tree))))


def param_breakdown(params: Mapping[str, Any], depth: int = 2) -> dict[str, int]:
    """Parameter counts per path prefix of `depth` names ('encoder/trunk', ...), in order."""
    out: dict[str, int] = {}

    def visit(tree: Any, path: tuple[str, ...]) -> None:
        if isinstance(tree, Mapping) and len(path) < depth:
            for key, value in tree.items():
                visit(value, path + (str(key),))
        else:
            out["/".join(path)] = count_params(tree)

    visit(nn.unbox(params), ())
    return out


def param_counts(params: Mapping[str, Any]) -> dict[str, int]:
    """encoder, decoder (= DiT + surfel head, DESIGN.md's split), their parts and the total.

    params: the 'params' collection (abstract or concrete).
    """
    params = nn.unbox(params)
    counts = {
        "encoder": count_params(params["encoder"]),
        "decoder/dit": count_params(params["decoder"]),
        "decoder/surfel_head": count_params(params["surfel_head"]),
    }
    counts["decoder"] = counts["decoder/dit"] + counts["decoder/surfel_head"]
    counts["total"] = counts["encoder"] + counts["decoder"]
    return counts
