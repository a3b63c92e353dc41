"""A flow stage as a task of the training loop (DESIGN.md section 6).

    python -m launch.train --config=configs/flow/tiny.py --workdir=W
    python -m launch.train --config=configs/flow/tiny.py:2 --workdir=W     # stage 2

config.stage 1 learns the xyz of the latent's points (data x1 = xyz / flow.xyz_scale,
[B, P, 3]); stage 2 learns their features given the xyz (x1 = h * flow.feature_scale, or
the standardised h, ga_jax/flow/scaling.py, [B, P, C]; the DiT reads the clean xyz). Both:
noise x0 at t = 0, data at t = 1 on flow.path, t from flow.time_sampling, the velocity
regressed with mean squared error (ga_jax.losses.flow), the whole condition of a sample
dropped with probability flow.condition_dropout so that guidance has an unconditional model
(ga_jax.flow.guidance).

The condition comes from config.condition (ga_jax.models.conditioning.build): a frozen
encoder's weights are frozen parameters (an argument of the jitted step, from `frozen()`), a
trainable one's (the small image encoder) are trained with the DiT under params['condition'].
The host batch's captions / views are turned into the encoder's arrays in `device_batch`.
condition.init_from starts the trainable encoder from an image-text run's export
(ga_jax/train/tasks/image_text.py) instead of a random init.

Evaluation: each evaluation batch's conditions sampled with eval.sampler (Euler by default),
scored against the batch's own data: Chamfer distance (stage 1, in the latent frame) or the
features' mean squared error at the given xyz (stage 2); the loss on fixed draws as well.
The first batch's first eval.grid.samples samples are drawn beside their targets on
eval.grid.views orbit views (workdir/eval/step_*.png): stage 1 the clouds as discs coloured by
height, stage 2 the surfels decoded by the VAE run in eval.vae_workdir (frozen) from the
generated and the true features at the same xyz (no grid without a VAE run).
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.flow.guidance import Guidance, drop_condition, guide
from ga_jax.flow.samplers import SamplerSettings, initial_noise, sample
from ga_jax.flow.scaling import stage_scaling
from ga_jax.losses.flow import flow_draws, flow_matching_loss
from ga_jax.metrics.pointcloud import chamfer_distance
from ga_jax.models.conditioning.build import build_conditioner
from ga_jax.models.conditioning.caption_cache import CaptionFeatureCache
from ga_jax.models.conditioning.image_encoder import with_values
from ga_jax.models.flow.build import build_dit
from ga_jax.models.flow.flops import dit_train_flops
from ga_jax.models.flow.stage import StageVelocity, init_stage_params
from ga_jax.models.vae.vae import VAE
from ga_jax.rendering.cameras import orbit_cameras
from ga_jax.rendering.render import render_surfels
from ga_jax.rendering.scenes import point_surfels
from ga_jax.rendering.surfels import Surfels
from ga_jax.train.runs import load_vae_run
from ga_jax.train.task import Task

log = logging.getLogger(__name__)

STAGES = (1, 2)


def stage_data(stage: int, batch: dict[str, jax.Array], flow: Any) -> jax.Array:
    """The stage's data x1 from a batch's xyz [B, P, 3] / h [B, P, C] (module docstring)."""
    data = batch["xyz"] if stage == 1 else batch["h"]
    return stage_scaling(stage, flow).to_x(data)


def standardise_from_data(config: Any) -> None:
    """Fill config.flow.feature_mean / feature_std from the training latents' stats (stage 2
    with flow.standardise_features), so that the run's saved config carries them to sampling.
    A config that already holds them (a resumed run) keeps its values."""
    flow = config.flow
    if int(config.stage) != 2 or not flow.get("standardise_features", False):
        return
    if tuple(flow.feature_mean):
        return
    from ga_jax.data.flow_loader import open_latent_datasets  # noqa: PLC0415 - keeps grain out
    from ga_jax.data.latents import pooled_stats  # noqa: PLC0415

    mean, std = pooled_stats(open_latent_datasets(config.data.root), config.data.latent_field)
    flow.feature_mean = tuple(float(v) for v in mean)
    flow.feature_std = tuple(float(max(v, 1e-6)) for v in std)
    log.info(
        "standardising h by the training latents' per-channel stats: std %.4g .. %.4g",
        min(flow.feature_std),
        max(flow.feature_std),
    )


class FlowTask(Task):
    """Stage config.stage of config.model, conditioned by config.condition."""

    rng_streams = ("flow", "dropout")
    log_metrics = ()

    def __init__(self, config):
        self.config = config
        self.stage = int(config.stage)
        if self.stage not in STAGES:
            raise ValueError(f"config.stage: expected one of {STAGES}, got {config.stage!r}")
        self.model = build_dit(config.model)
        expected = 3 if self.stage == 1 else config.model.in_dim
        if self.model.in_dim != expected or self.model.out_dim != expected:
            raise ValueError(
                f"config.model: stage {self.stage} needs in_dim = out_dim = {expected}, got "
                f"{self.model.in_dim} / {self.model.out_dim}"
            )
        if (self.stage == 2) != bool(self.model.xyz_condition):
            raise ValueError(
                f"config.model.xyz_condition: stage {self.stage} needs "
                f"{self.stage == 2} (stage 2 reads the stage-1 xyz)"
            )
        self.conditioner = build_conditioner(config.condition)
        # condition.cache_features: a frozen text encoder's output computed once per caption
        # on the host (the captions repeat; the encoder's forward was half a small step).
        self._feature_cache = None
        if config.condition.get("cache_features", False):
            if self.conditioner.trainable:
                raise ValueError(
                    "condition.cache_features: only a frozen conditioner's features can be "
                    f"cached; {config.condition.name!r} is trained with the DiT"
                )
            self._feature_cache = CaptionFeatureCache(self.conditioner)
        # condition.init_from: the trainable encoder starts from an image-text run's export.
        init_from = config.condition.get("init_from", "")
        self._pretrained_condition = None
        if init_from:
            if not hasattr(self.conditioner, "read_pretrained"):
                raise ValueError(
                    f"condition.init_from: {config.condition.name!r} has no pretrained start "
                    "(only the trainable image encoder has)"
                )
            try:
                self._pretrained_condition = self.conditioner.read_pretrained(init_from)
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"condition.init_from: {e} (export the image-text run first, "
                    "configs/image_text/synthetic.py; or set condition.init_from='' for a "
                    "random start)"
                ) from e
        standardise_from_data(config)
        self.flow = config.flow
        # Stage 2's grid decodes with a VAE run's decoder (frozen); stage 1 needs none.
        self.vae = self._vae_params = None
        vae_workdir = config.eval.get("vae_workdir", "")
        if self.stage == 2 and vae_workdir and config.train.eval_every_steps > 0:
            self.vae, self._vae_params = load_vae_run(vae_workdir)
            if self.vae.encoder.latent_dim != self.model.in_dim:
                raise ValueError(
                    f"eval.vae_workdir: {vae_workdir} has latent_dim "
                    f"{self.vae.encoder.latent_dim}, stage 2 learns {self.model.in_dim} channels"
                )

    # -- the network -------------------------------------------------------------------------

    def encode(self, params, frozen, inputs) -> dict[str, jax.Array]:
        """The condition {'context' [B, L, D], 'pooled' [B, Dp]} of a device batch (as is
        when device_batch took it from the feature cache)."""
        if "context" in inputs:
            return {"context": inputs["context"], "pooled": inputs["pooled"]}
        weights = params.get("condition") if self.conditioner.trainable else frozen["condition"]
        context, pooled = self.conditioner.apply(weights, inputs)
        return {"context": context, "pooled": pooled}

    # -- state -------------------------------------------------------------------------------

    def init_params(self, rng: jax.Array) -> Any:
        params = init_stage_params(self.model, self.conditioner, rng)
        if self._pretrained_condition is not None:
            where = f"condition.init_from: {self.config.condition.init_from}"
            params["condition"] = with_values(
                params["condition"], self._pretrained_condition, where
            )
        return params

    def frozen(self) -> Any:
        """{'condition': a frozen encoder's weights, 'vae': the grid's VAE} (None if not)."""
        condition = None if self.conditioner.trainable else self.conditioner.load()
        return {"condition": condition, "vae": self._vae_params}

    def model_flops(self, num_points: int) -> float:
        """Analytic FLOPs of one train step of the DiT on config.data.batch_size objects
        (ga_jax/models/flow/flops.py; the condition encoder not counted)."""
        batch = self.abstract_batch(num_points)
        params = jax.eval_shape(lambda: nn.unbox(self.init_params(jax.random.key(0))))
        condition = batch["condition"]
        if "context" in condition:
            context = condition["context"].shape[1]
        else:  # a trained encoder: its token count from a forward pass's shapes
            out = jax.eval_shape(self.conditioner.apply, params.get("condition"), condition)
            context = out[0].shape[1]
        m = self.config.model
        return dit_train_flops(
            params["dit"],
            depth=int(m.depth),
            width=int(m.width),
            batch=int(self.config.data.batch_size),
            num_points=num_points,
            context=context,
        )

    def abstract_frozen(self) -> Any:
        """Nothing the step reads: abstract_batch hands a frozen encoder's features over."""
        return {"condition": None, "vae": None}

    # -- step --------------------------------------------------------------------------------

    def loss(self, params, batch, rngs, step, frozen, extra):
        flow = self.flow
        x1 = stage_data(self.stage, batch, flow)
        condition = self.encode(params, frozen, batch["condition"])
        condition = drop_condition(rngs["dropout"], condition, p=flow.condition_dropout)
        x0, t = flow_draws(
            rngs["flow"], x1, flow.time_sampling, flow.logit_normal_mean, flow.logit_normal_std
        )
        xyz = batch["xyz"] if self.stage == 2 else None
        predict = lambda x_t, t_: self.model.apply(
            {"params": params["dit"]}, x_t, t_, condition["context"], condition["pooled"], xyz
        )
        loss = flow_matching_loss(predict, x1, x0, t, flow.path)
        metrics = {"total": loss, "flow_mse": loss, "t_mean": jnp.mean(t)}
        return loss, (metrics, None)

    # -- data and evaluation -----------------------------------------------------------------

    def train_data(self):
        from ga_jax.data.flow_loader import make_flow_loader  # noqa: PLC0415 - keeps grain out

        return make_flow_loader(self.config.data)

    def eval_data(self) -> list[Any]:
        from ga_jax.data.flow_loader import make_flow_loader  # noqa: PLC0415

        count = self.config.train.eval_batches
        if self.config.train.eval_every_steps <= 0 or count <= 0:
            return []
        loader = make_flow_loader(self.config.eval_data)
        return [b for _, b in zip(range(count), loader, strict=False)]

    def abstract_batch(self, num_points: int) -> dict[str, Any]:
        """The device batch's shapes for config.data.batch_size objects of num_points points: a
        trained conditioner's inputs (images), else the frozen encoder's features as the
        feature cache hands them over (conditions precomputed, so its weights are not needed)."""
        b, c = int(self.config.data.batch_size), int(self.config.model.in_dim)
        f32 = jnp.float32
        if self.conditioner.trainable:
            size = self.conditioner.image_size
            condition = {"images": jax.ShapeDtypeStruct((b, size, size, 3), f32)}
        else:
            length = self.conditioner.context_length
            condition = {
                "context": jax.ShapeDtypeStruct((b, length, self.conditioner.context_dim), f32),
                "pooled": jax.ShapeDtypeStruct((b, self.conditioner.pooled_dim), f32),
            }
        batch = {"xyz": jax.ShapeDtypeStruct((b, num_points, 3), f32), "condition": condition}
        if self.stage == 2:  # stage 1 never reads the features
            batch["h"] = jax.ShapeDtypeStruct((b, num_points, c), f32)
        return batch

    def device_batch(self, host_batch) -> dict[str, Any]:
        """xyz, h and the conditioner's arrays of the captions / views (or, with
        condition.cache_features, the captions' cached features)."""
        if self._feature_cache is not None:
            condition = self._feature_cache.features([str(c) for c in host_batch["caption"]])
        else:
            condition = self.conditioner.prepare(
                captions=host_batch.get("caption"), images=host_batch.get("image")
            )
        return {
            "xyz": np.asarray(host_batch["xyz"], np.float32),
            "h": np.asarray(host_batch["h"], np.float32),
            "condition": condition,
        }

    def evaluate(self, params, batch, frozen):
        flow, config = self.flow, self.config
        x1 = stage_data(self.stage, batch, flow)
        condition = self.encode(params, frozen, batch["condition"])
        xyz = batch["xyz"] if self.stage == 2 else None
        b, p, d = x1.shape
        x0 = initial_noise(config.eval.seed, jnp.arange(b), jnp.arange(p), d, stream=self.stage)
        guidance = Guidance(config.eval.guidance_scale, path=flow.path)
        field = guide(StageVelocity(self.model), guidance)
        result = sample(
            field,
            x0,
            ((params["dit"], xyz), condition),
            SamplerSettings.from_config(config.eval.sampler),
            path=flow.path,
        )
        if self.stage == 1:
            generated = stage_scaling(1, flow).from_x(result.x)
            # l2_mean: the mean nearest distance each way, summed (in the latent frame units)
            score = {"chamfer": chamfer_distance(generated, batch["xyz"], "l2_mean")}
        else:
            score = {"feature_mse": jnp.mean((result.x - x1) ** 2, axis=(1, 2))}
        score["nfe"] = jnp.full((b,), result.nfe, jnp.float32)
        return score, self._grid(frozen, batch, result.x)

    def _grid(self, frozen, batch, x: jax.Array) -> jax.Array | None:
        """[S, V, 2, R, R, 3]: the first S samples (generated, target) on V orbit views."""
        grid = self.config.eval.get("grid", None)
        count = min(int(grid.samples), x.shape[0]) if grid is not None else 0
        if count == 0 or (self.stage == 2 and self.vae is None):
            return None
        if self.stage == 1:
            generated = stage_scaling(1, self.flow).from_x(x[:count])
            pair = jnp.stack([generated, batch["xyz"][:count]], axis=1)  # [S, 2, P, 3]
            surfels = point_surfels(pair)
        else:
            h = jnp.stack([stage_scaling(2, self.flow).from_x(x[:count]), batch["h"][:count]], 1)
            xyz = jnp.broadcast_to(batch["xyz"][:count, None], h.shape[:3] + (3,))
            flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
            variables = {"params": frozen["vae"]}
            levels = self.vae.apply(variables, flat(xyz), flat(h), method=VAE.decode)
            surfels = jax.tree.map(lambda a: a.reshape((count, 2) + a.shape[1:]), levels[-1])
        return _render_grid(surfels, int(grid.views), int(grid.resolution))


def _render_grid(surfels: Surfels, views: int, resolution: int) -> jax.Array:
    """Surfels [S, 2, N] on `views` orbit cameras over white -> [S, V, 2, R, R, 3]."""
    cameras = orbit_cameras(views, resolution, resolution)
    lead = surfels.means.shape[:2]
    cameras = jax.tree.map(lambda a: jnp.broadcast_to(a, lead + a.shape), cameras)
    rgb = render_surfels(surfels, cameras, jnp.ones(3)).rgb  # [S, 2, V, R, R, 3]
    return jnp.swapaxes(rgb[..., :3], 1, 2)
