"""The generation Pipeline: condition -> stage 1 (points) -> stage 2 (features) -> decode
(DESIGN.md sections 0 and 6), and the reruns that editing needs.

    pipe = Pipeline.from_pretrained()          # the shipped synthetic-set text models
    pipe = Pipeline.from_runs(vae_workdir, stage1_workdir, stage2_workdir)
    out = pipe.run(prompt="a red cube", seed=0, num_samples=4, steps=12, guidance=4.0)
    out.xyz, out.features, out.surfels          # [S, P, 3], [S, P, C], Surfels [S, ...]
    edited = pipe.edit(out.sample(0), cloud)    # stage 2 again with the stored noise

Noise: sample s of seed k starts stage 1 from initial_noise(k, s, point ids, 3, stream=1)
and stage 2 from initial_noise(k, s, point ids, C, stream=2) (ga_jax/flow/samplers.py), so
a sample is reproducible from (seed, s) alone and an edit can keep every surviving point's
rows. `points=` skips stage 1: a cloud of any size is brought to the latent's point count P
(FPS down, or densified up) and rescaled only when it falls outside the latent frame's box
[-0.45, 0.45]^3.

Each stage was trained by ga_jax/train/tasks/flow.py: stage 1's data is xyz / xyz_scale,
stage 2's is h * feature_scale (or standardised h; ga_jax.flow.scaling), both read from the
stage's training config. Guidance is
classifier-free (ga_jax/flow/guidance.py) with the null condition the training dropout used
(zeros); a pipeline without a condition (no prompt or image given) runs unguided.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.data.fps import farthest_point_sample
from ga_jax.export import FORMATS, export
from ga_jax.flow.guidance import Guidance, guide
from ga_jax.flow.samplers import Known, SampleResult, SamplerSettings, initial_noise, sample
from ga_jax.flow.scaling import StageScaling, stage_scaling
from ga_jax.models.conditioning.build import build_conditioner, sampling_fields
from ga_jax.models.flow.build import build_dit
from ga_jax.models.flow.dit import PointDiT
from ga_jax.models.flow.stage import StageVelocity, SwitchedPoints, init_stage_params
from ga_jax.models.vae.vae import VAE, build_vae
from ga_jax.pipeline.edit import (
    EditableCloud,
    Region,
    densify,
    positions_before_edit,
    region_mask,
)
from ga_jax.rendering.surfels import Surfels
from ga_jax.train.runs import load_model
from ga_jax.weights.model_files import models_directory_files, sampling_defaults

log = logging.getLogger(__name__)

# The latent frame: objects live in [-BOX, BOX]^3 (DESIGN.md section 1).
BOX = 0.45

# Pipeline.edit's stage-2 rerun: 1 = from the noise. A models directory may record a measured
# value for its stage 2 (manifest "sampling", edit_strength; docs/results.md).
EDIT_STRENGTH = 1.0

# The embedded default: the small models trained on the synthetic set (docs/results.md),
# shipped inside the package.
DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "pretrained" / "synthetic"
# What the demo and the app say beside an image a user gives them.
OUT_OF_DISTRIBUTION = (
    "the synthetic-set models know only renders of primitive shapes on white (one object, "
    "centred): a real photograph is out of their distribution"
)


@dataclasses.dataclass(frozen=True)
class FlowStage:
    """One trained stage: its DiT, parameters {'dit'[, 'condition']}, the scaling between the
    data and the stage's x (ga_jax.flow.scaling), the path it was trained on and its default
    guidance scale."""

    model: PointDiT
    params: Any
    scaling: StageScaling
    path: str = "gvp"
    guidance_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated (or edited) object: its cloud with noise rows, features h [P, C], the
    decoded surfels (finest level, unbatched) and a JSON-able record of how it was made."""

    cloud: EditableCloud
    features: np.ndarray
    surfels: Surfels
    info: dict


@dataclasses.dataclass(frozen=True)
class Generation:
    """num_samples objects: xyz [S, P, 3], features h [S, P, C], surfels Surfels [S, ...],
    the noise rows they started from, info (seed, settings, NFE and solver status per
    stage, condition, timings) and, when run was given formats, the files written for each
    sample ({format: path}, ga_jax/export)."""

    xyz: np.ndarray
    features: np.ndarray
    surfels: Surfels
    noise_xyz: np.ndarray
    noise_features: np.ndarray
    ids: np.ndarray
    info: dict
    files: tuple[dict[str, Path], ...] = ()

    def sample(self, i: int) -> Sample:
        cloud = EditableCloud(self.xyz[i], self.noise_xyz[i], self.noise_features[i], self.ids[i])
        surfels = jax.tree.map(lambda x: np.asarray(x[i]), self.surfels)
        info = {**self.info, "sample_index": int(self.info["samples"][i])}
        info.pop("samples")
        return Sample(cloud, self.features[i], surfels, info)


def prepare_points(points: np.ndarray, num_points: int) -> tuple[np.ndarray, dict]:
    """A user's cloud [M, 3] of any size as the latent's P points: FPS (from point 0) when
    M > P, densified as an edit that deleted points is (ga_jax/pipeline/edit.py densify) when
    M < P, then rescaled about its bounding-box centre only when it leaves [-BOX, BOX]^3.
    Returns (points, what was done)."""
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
        raise ValueError(f"points: expected shape [M, 3] with M >= 2, got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points: expected finite coordinates, found NaN/inf")
    count = len(points)
    done = {"input_points": count, "fps": count > num_points, "densified": 0, "rescale": None}
    if count > num_points:
        points = points[np.sort(farthest_point_sample(points, num_points, start=0))]
    elif count < num_points:
        added = densify(points, num_points)
        points = np.concatenate([points, added])
        done["densified"] = len(added)
    extent = float(np.max(np.abs(points)))
    if extent > BOX:
        center = 0.5 * (points.min(0) + points.max(0))
        factor = BOX / float(np.max(np.abs(points - center)))
        points = ((points - center) * factor).astype(np.float32)
        done["rescale"] = {"center": center.tolist(), "factor": factor}
    return points, done


class Pipeline:
    """Conditioned generation with a VAE, two flow stages and their conditioner."""

    def __init__(
        self,
        vae: VAE,
        vae_params: Any,
        stage1: FlowStage,
        stage2: FlowStage,
        condition_config: Any,
        *,
        sampler: SamplerSettings | None = None,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
        guidance_rescale: float = 0.0,
        edit_strength: float = EDIT_STRENGTH,
    ):
        self.vae, self.vae_params = vae, vae_params
        self.edit_strength = _check_strength(edit_strength)
        # Guidance options beyond the scale (ga_jax.flow.guidance.Guidance), both stages.
        self.guidance_interval = tuple(guidance_interval)
        self.guidance_rescale = float(guidance_rescale)
        self.stages = {1: stage1, 2: stage2}
        self.conditioner = build_conditioner(condition_config)
        self.frozen = None if self.conditioner.trainable else self.conditioner.load()
        self.sampler = sampler or SamplerSettings()
        self.num_points = vae.decoder.num_points
        self.latent_dim = stage2.model.out_dim
        self._decode = jax.jit(
            lambda p, xyz, h: vae.apply({"params": p}, xyz, h, method=VAE.decode)[-1]
        )
        self._encode = jax.jit(self._encode_condition)
        self._frozen_condition: tuple[Any, Any] = (None, None)  # (prompt/image key, features)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_configs(
        cls, vae_config: Any, stage1_config: Any, stage2_config: Any, seed: int = 0, **kwargs
    ) -> Pipeline:
        """Random weights from three training configs (benchmarks and tests: the shapes and
        the cost of the real thing, not its output). A fresh DiT's velocity is exactly 0 (its
        output layer is zero-initialised), which would make every sampler trivial: each
        flow parameter gets N(0, 0.02^2) added, so the field is random but not zero."""
        vae = build_vae(vae_config.model)
        key = jax.random.key(seed)
        vae_params = jax.jit(lambda k: _init_vae(vae, k))(jax.random.fold_in(key, 0))
        stages = []
        for i, config in ((1, stage1_config), (2, stage2_config)):
            model = build_dit(config.model)
            conditioner = build_conditioner(config.condition)
            init = jax.jit(functools.partial(init_stage_params, model, conditioner))
            params = init(jax.random.fold_in(key, i))
            stages.append(
                _stage(config, model, _perturbed(params, jax.random.fold_in(key, 10 + i)))
            )
        return cls(vae, vae_params, *stages, stage2_config.condition, **kwargs)

    @classmethod
    def from_runs(
        cls,
        vae: str | Path,
        stage1: str | Path,
        stage2: str | Path,
        **kwargs,
    ) -> Pipeline:
        """Three trained models, each a training run's directory (its latest checkpoint: the
        EMA parameters when the run kept them) or a model file (ga_jax/weights/model_files.py),
        with the configs they were trained with."""
        vae_config, vae_params = load_model(vae)
        stages, conditions = [], []
        for stage, path in ((1, stage1), (2, stage2)):
            config, params = load_model(path)
            if config.get("task") != "flow" or int(config.get("stage", 0)) != stage:
                raise ValueError(
                    f"{path}: expected a stage-{stage} flow model, its config has stage "
                    f"{config.get('stage')!r} (task {config.get('task')!r})"
                )
            conditions.append(sampling_fields(config.condition))
            stages.append(_stage(config, build_dit(config.model), params))
        if conditions[0] != conditions[1]:
            raise ValueError(
                f"{stage1}, {stage2}: the stages were trained with different conditioners "
                f"({conditions[0]} and {conditions[1]}); one Pipeline needs one"
            )
        vae_model = build_vae(vae_config.model)
        return cls(vae_model, vae_params, *stages, config.condition, **kwargs)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path | None = None, condition: str = "text", **kwargs
    ) -> Pipeline:
        """The VAE and the two `condition` stages ("text" or "image") of a models directory
        (ga_jax/weights/model_files.py: model files and a manifest.json); by default the
        small synthetic-set models the package ships (DEFAULT_MODELS). A stage's guidance
        scale is the manifest's "sampling" default when it has one (ga_jax/weights/model_files.py),
        else its training config's."""
        if condition not in ("text", "image"):
            raise ValueError(f"condition: expected 'text' or 'image', got {condition!r}")
        directory = DEFAULT_MODELS if directory is None else Path(directory)
        names = ["vae", f"stage1_{condition}", f"stage2_{condition}"]
        pipeline = cls.from_runs(*models_directory_files(directory, names), **kwargs)
        for stage in (1, 2):  # defaults measured on the stored files replace the configs'
            defaults = sampling_defaults(directory, names[stage])
            if "guidance_scale" in defaults:
                pipeline.stages[stage] = dataclasses.replace(
                    pipeline.stages[stage], guidance_scale=defaults["guidance_scale"]
                )
            if "edit_strength" in defaults:
                pipeline.edit_strength = defaults["edit_strength"]
        return pipeline

    # -- the parts ---------------------------------------------------------------------------

    def _encode_condition(self, params, frozen, inputs):
        weights = params if self.conditioner.trainable else frozen
        context, pooled = self.conditioner.apply(weights, inputs)
        return {"context": context, "pooled": pooled}

    def condition(self, stage: int, prompt: str | None, image: np.ndarray | None, count: int):
        """The stage's condition {'context', 'pooled'} for `count` samples, or its null
        (zeros) when neither prompt nor image is given."""
        if prompt is None and image is None:
            return self.null_condition(stage, count)
        # A frozen encoder gives both stages the same features: encode them once (the paper's
        # DINOv2-L at 518 px costs a whole ViT-L pass); a trainable one has per-stage weights.
        key = (prompt, None if image is None else hash(np.asarray(image).tobytes()))
        if self.conditioner.trainable or self._frozen_condition[0] != key:
            inputs = self.conditioner.prepare(
                captions=None if prompt is None else np.asarray([prompt]),
                images=None if image is None else np.asarray(image)[None],
            )
            params = self.stages[stage].params.get("condition")
            condition = self._encode(params, self.frozen, inputs)
            if not self.conditioner.trainable:
                self._frozen_condition = (key, condition)
        else:
            condition = self._frozen_condition[1]
        return jax.tree.map(lambda c: jnp.repeat(c, count, axis=0), condition)

    def null_condition(self, stage: int, count: int) -> dict[str, jax.Array]:
        model = self.stages[stage].model
        return {
            "context": jnp.zeros((count, 1, model.context_dim)),
            "pooled": jnp.zeros((count, model.pooled_dim)),
        }

    def integrate(
        self,
        stage: int,
        noise: jax.Array,
        condition: dict[str, jax.Array],
        *,
        xyz: jax.Array | SwitchedPoints | None = None,
        known: Known | None = None,
        guidance: Guidance | None = None,
        settings: SamplerSettings | None = None,
    ) -> SampleResult:
        """Stage `stage`'s ODE from noise [S, P, D] (in the stage's x units); stage 2's xyz may
        be SwitchedPoints (an edit rerun)."""
        s = self.stages[stage]
        guidance = guidance or Guidance(s.guidance_scale, path=s.path)
        field = guide(StageVelocity(s.model), guidance)
        args = ((s.params["dit"], xyz), condition)
        return sample(field, noise, args, settings or self.sampler, known, path=s.path)

    def decode(self, xyz: jax.Array, features: jax.Array) -> Surfels:
        """The VAE decoder's finest surfels for xyz [S, P, 3], h [S, P, C]."""
        return self._decode(self.vae_params, xyz, features)

    # -- user entry points -------------------------------------------------------------------

    def run(
        self,
        prompt: str | None = None,
        image: np.ndarray | None = None,
        points: np.ndarray | None = None,
        *,
        seed: int = 0,
        num_samples: int = 1,
        first_sample: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: SamplerSettings | None = None,
        out_dir: str | Path | None = None,
        formats: Iterable[str] = (),
        **export_options: Any,
    ) -> Generation:
        """Generate num_samples objects from a prompt or an image (uint8 [H, W, 3]) and/or a
        point cloud [M, 3] (skips stage 1). The samples are first_sample, first_sample + 1, ...
        of the seed (their noise rows depend on the index only, so a job split over processes
        generates what one process would). steps / guidance override the sampler's steps and
        both stages' guidance scale. With formats (ga_jax/export.FORMATS: "ply", "3dgs",
        "points", "obj", "glb", "gif", "mp4", "png") each sample's files are written to out_dir
        as sample_<i><suffix> (export_options go to ga_jax.export.export) and their paths
        returned in Generation.files."""
        if num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
        if first_sample < 0:
            raise ValueError(f"first_sample: expected >= 0, got {first_sample}")
        formats = tuple(formats)
        if formats and out_dir is None:
            raise ValueError(f"formats {formats}: expected an out_dir to write them to")
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"formats: unknown {unknown}, expected some of {list(FORMATS)}")
        settings = sampler or self.sampler
        if steps is not None:
            settings = dataclasses.replace(settings, steps=int(steps))
        samples = first_sample + np.arange(num_samples)
        ids = np.arange(self.num_points)
        noise_xyz = initial_noise(seed, samples, ids, 3, stream=1)
        noise_features = initial_noise(seed, samples, ids, self.latent_dim, stream=2)
        info: dict[str, Any] = {
            "seed": int(seed),
            "samples": samples.tolist(),
            "prompt": prompt,
            "image": image is not None,
            "sampler": dataclasses.asdict(settings),
            "stages": {},
        }
        timings: dict[str, float] = {}
        if points is None:
            start = time.perf_counter()
            result = self._stage(1, prompt, image, num_samples, noise_xyz, settings, guidance)
            xyz = self.stages[1].scaling.from_x(result.x)
            info["stages"]["1"] = _result_info(result, self._scale(1, guidance))
            timings["stage1_s"] = time.perf_counter() - start
        else:
            prepared, done = prepare_points(points, self.num_points)
            xyz = jnp.broadcast_to(prepared, (num_samples,) + prepared.shape)
            info["points"] = done
        start = time.perf_counter()
        result = self._stage(
            2, prompt, image, num_samples, noise_features, settings, guidance, xyz=xyz
        )
        features = self.stages[2].scaling.from_x(result.x)
        info["stages"]["2"] = _result_info(result, self._scale(2, guidance))
        timings["stage2_s"] = time.perf_counter() - start
        start = time.perf_counter()
        surfels = jax.device_get(self.decode(xyz, features))
        timings["decode_s"] = time.perf_counter() - start
        info["timings"] = timings
        generation = Generation(
            np.asarray(xyz, np.float32),
            np.asarray(features, np.float32),
            surfels,
            np.asarray(noise_xyz),
            np.asarray(noise_features),
            np.broadcast_to(ids, (num_samples, self.num_points)).copy(),
            info,
        )
        if not formats:
            return generation
        files = []
        for i in range(num_samples):
            one = generation.sample(i)
            name = f"sample_{samples[i]}"
            files.append(
                export(one.surfels, one.cloud.xyz, out_dir, formats, name, **export_options)
            )
        return dataclasses.replace(generation, files=tuple(files))

    def edit(
        self,
        original: Sample,
        cloud: EditableCloud,
        *,
        prompt: str | None = None,
        image: np.ndarray | None = None,
        guidance: float | None = None,
        sampler: SamplerSettings | None = None,
        strength: float | None = None,
    ) -> Sample:
        """Stage 2 rerun on an edited cloud with its stored noise rows, then decoded. The
        condition defaults to the original's prompt (an image condition must be passed
        again). strength (default self.edit_strength) in (0, 1]: 1 reruns stage 2 on the
        edited geometry; below 1 stage 2 sees the points where they were before the edit
        (ga_jax/pipeline/edit.positions_before_edit) until t = 1 - strength, i.e. follows the
        original sample's trajectory that far, and the edited points after: the smaller the
        strength, the more a moved part keeps its texture, while its features still adapt to
        the new geometry."""
        self._check_cloud(cloud)
        strength = _check_strength(self.edit_strength if strength is None else strength)
        prompt = original.info.get("prompt") if prompt is None and image is None else prompt
        settings = sampler or self.sampler
        xyz = jnp.asarray(cloud.xyz)[None]
        if strength < 1:
            before = jnp.asarray(positions_before_edit(original.cloud, cloud))[None]
            xyz = SwitchedPoints(before, xyz, jnp.float32(1.0 - strength))
        result = self._stage(
            2,
            prompt,
            image,
            1,
            jnp.asarray(cloud.noise_features)[None],
            settings,
            guidance,
            xyz=xyz,
        )
        features = self.stages[2].scaling.from_x(result.x)
        info = {
            **original.info,
            "edited": True,
            "sampler": dataclasses.asdict(settings),
            "edit_strength": strength,
        }
        info["stages"] = {
            **original.info.get("stages", {}),
            "2": _result_info(result, self._scale(2, guidance)),
        }
        return self._finish(cloud, features, info)

    def regenerate_region(
        self,
        original: Sample,
        region: Region,
        *,
        prompt: str | None = None,
        image: np.ndarray | None = None,
        guidance: float | None = None,
        sampler: SamplerSettings | None = None,
    ) -> Sample:
        """Stage 1 rerun for the points inside `region` with every other point held fixed
        (inpainting, ga_jax/flow/samplers.py), each point from its stored noise row; then
        stage 2 and decode as `edit`."""
        cloud = original.cloud
        self._check_cloud(cloud)
        free = region_mask(cloud.xyz, region)
        if not free.any():
            raise ValueError("regenerate_region: no point lies inside the region")
        prompt = original.info.get("prompt") if prompt is None and image is None else prompt
        settings = sampler or self.sampler
        scaling = self.stages[1].scaling
        known = Known(jnp.asarray(~free)[None], jnp.asarray(scaling.to_x(cloud.xyz))[None])
        result = self._stage(
            1,
            prompt,
            image,
            1,
            jnp.asarray(cloud.noise_xyz)[None],
            settings,
            guidance,
            known=known,
        )
        xyz = np.array(scaling.from_x(result.x[0]), np.float32)
        xyz[~free] = cloud.xyz[~free]  # exactly (to_x then from_x may round)
        regenerated = cloud.with_xyz(xyz)
        # The region holds new geometry: its features come from the noise, not the old ones.
        edited = self.edit(
            original,
            regenerated,
            prompt=prompt,
            image=image,
            guidance=guidance,
            sampler=sampler,
            strength=1.0,
        )
        stages = {**edited.info["stages"], "1": _result_info(result, self._scale(1, guidance))}
        return dataclasses.replace(
            edited, info={**edited.info, "stages": stages, "regenerated_points": int(free.sum())}
        )

    # -- helpers -----------------------------------------------------------------------------

    def _scale(self, stage: int, guidance: float | None) -> float:
        return self.stages[stage].guidance_scale if guidance is None else float(guidance)

    def _stage(self, stage, prompt, image, count, noise, settings, guidance, **kwargs):
        condition = self.condition(stage, prompt, image, count)
        conditioned = prompt is not None or image is not None
        scale = self._scale(stage, guidance) if conditioned else 1.0
        g = Guidance(
            scale,
            interval=self.guidance_interval,
            rescale=self.guidance_rescale,
            path=self.stages[stage].path,
        )
        result = self.integrate(stage, noise, condition, guidance=g, settings=settings, **kwargs)
        jax.block_until_ready(result)  # the stage's time is measured around this call
        if not bool(result.success):
            log.warning("stage %d: %s", stage, result.message)
        return result

    def _check_cloud(self, cloud: EditableCloud) -> None:
        if len(cloud) != self.num_points or cloud.noise_features.shape[1] != self.latent_dim:
            raise ValueError(
                f"edit: expected a cloud of {self.num_points} points with {self.latent_dim} "
                f"noise features (resample after changing the count), got {len(cloud)} points "
                f"with {cloud.noise_features.shape[1]}"
            )

    def _finish(self, cloud: EditableCloud, features: jax.Array, info: dict) -> Sample:
        surfels = jax.device_get(self.decode(jnp.asarray(cloud.xyz)[None], features))
        surfels = jax.tree.map(lambda x: np.asarray(x[0]), surfels)
        return Sample(cloud, np.asarray(features[0], np.float32), surfels, info)

    def noise_rows(self, seed: int, sample_index: int):
        """The editing operations' row function for new points of a sample
        (ga_jax/pipeline/edit.py NoiseRows): rows from (seed, sample, id) per stage."""

        def rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ids = jnp.asarray(ids, jnp.int32)
            s = jnp.array([sample_index])
            return (
                np.asarray(initial_noise(seed, s, ids, 3, stream=1)[0]),
                np.asarray(initial_noise(seed, s, ids, self.latent_dim, stream=2)[0]),
            )

        return rows


def _check_strength(strength: float) -> float:
    strength = float(strength)
    if not 0 < strength <= 1:
        raise ValueError(f"edit strength: expected a number in (0, 1], got {strength}")
    return strength


def _init_vae(vae: VAE, key: jax.Array) -> Any:
    from flax import linen as nn  # noqa: PLC0415

    enc = vae.encoder
    size = enc.downsample_factor
    return nn.unbox(
        vae.init(
            {"params": key, "latent": key},
            jnp.zeros((1, 1, size, size, enc.in_channels)),
            jnp.zeros((1, vae.decoder.num_points, 3)),
        )["params"]
    )


def _perturbed(params: Any, key: jax.Array, std: float = 0.02) -> Any:
    from flax import linen as nn  # noqa: PLC0415

    leaves, tree = jax.tree.flatten(nn.unbox(params))
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


def _stage(config: Any, model: PointDiT, params: Any) -> FlowStage:
    from flax import linen as nn  # noqa: PLC0415

    flow = config.flow
    scaling = stage_scaling(int(config.stage), flow)
    return FlowStage(model, nn.unbox(params), scaling, flow.path, float(flow.guidance_scale))


def _result_info(result: SampleResult, guidance_scale: float) -> dict:
    return {
        "nfe": int(result.nfe),
        "success": bool(result.success),
        "message": result.message,
        "guidance": guidance_scale,
    }
