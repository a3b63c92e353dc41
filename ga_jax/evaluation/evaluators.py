"""What a metric job can compute, registered by name and chosen in config (big_vision's
`config.evals` is the model): the per-object feature extractors and the evaluators built on
them.

Feature extractors (`FEATURES`), each cached per object (ga_jax/evaluation/feature_cache.py):

  cloud      the object's cloud by the render protocol ([points, 3]; no network)
  inception  pytorch-fid's FID Inception-v3 pool features of the object's views [V, 2048]
  dinov2     DINOv2 ViT-L/14 (with registers; the image condition's module) CLS features [V,
             1024] at [image_size] px (224: the protocol of Stein et al. 2023's FD-DINOv2)
  musiq      pyiqa's MUSIQ score [V] (KonIQ MOS with the KonIQ weights) and cls feature of
             each view
  pointnet   Point-E's PointNet++ P-FID feature [512] and log-probabilities [40] of its cloud
             (FPS start 0 for every cloud: Point-E starts at the cloud's position in its
             64-cloud batch, which would tie a feature to the batch it was computed in)

Evaluators (`EVALUATORS`, the `type` of a `config.evals` entry; options in brackets). The
paper's names are entries of one type: FID = frechet on inception, P-FID = frechet on
pointnet, FD-DINOv2 = frechet on dinov2, and likewise KID, P-KID, KD-DINOv2:

  frechet   Frechet distance of generated vs reference [features] (a view network: one row per
            view; pointnet: one per object)
  kid       KID x 100 of [features], torch-fidelity's subsets [subsets, subset_size, seed]
  musiq     mean MUSIQ score of the generated views (and, beside it, of the reference views)
  cov_mmd   COV (%) and MMD x 1000 between the sets' clouds, FPS'd to [points], under the
            Chamfer [variant] (or exact EMD with distance="emd", for small [points])
  clip_score  CLIP score of the generated views against each sample's prompt (when CLIP
            weights are given: networks.clip.weights, a local directory)
  edit_preservation  edited sample directories (launch.edit records the original's path):
            PSNR, SSIM, LPIPS of the unedited part before and after the edit
            (ga_jax/evaluation/edit_preservation.py), per view
  reconstruction  pairs matched by name: the generated object rendered with the reference
            chunk's cameras for the protocol's reference views; PSNR, SSIM, LPIPS-VGG per view
  geometry  pairs matched by name: CD-L1 x 1000 (the "l2_mean" Chamfer) and F-score at [tau]
            between the generated and reference clouds, FPS'd to [points]

A network's weights come from the file its config names (`weights`); without one it gets
seeded random weights, and every number it feeds is marked a plumbing check.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ga_jax.data.fps import farthest_point_sample
from ga_jax.evaluation.object_sets import file_digest
from ga_jax.metrics.distributions import (
    frechet_distance_of_features,
    kid,
    pairwise_emd,
)
from ga_jax.metrics.pointcloud import chamfer_distance, coverage_mmd, f_score, pairwise_chamfer

__all__ = ["EVALUATORS", "FEATURES", "FeatureNetwork", "build_network", "weights_digest"]

DATA_AXIS = "data"


def weights_digest(path: str, seed: int) -> str:
    """SHA-256 of the weights file, or 'random:<seed>' for seeded random weights."""
    if not path:
        return f"random:{seed}"
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: weights file not found")
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def he_random_params(abstract: Any, seed: int) -> Any:
    """Seeded random weights for a plumbing check, shaped like `abstract` (a Linen param tree
    of ShapeDtypeStructs, e.g. from jax.eval_shape of init: nothing compiles). Kernels draw
    normal * sqrt(2 / fan_in) (He: the activations stay O(1) through deep ReLU stacks, where
    Linen's default init shrinks them towards zero and every feature looks alike); biases 0;
    BatchNorm leaves the identity (scale 1, bias 0, mean 0, var 1)."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    out = []
    for path, leaf in leaves:
        name = getattr(path[-1], "key", str(path[-1]))
        shape = tuple(leaf.shape)
        if name == "kernel":
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name in ("scale", "var"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        out.append(jnp.asarray(value, leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


@dataclasses.dataclass
class FeatureNetwork:
    """One feature extractor: `apply(batch)` maps a batch of inputs (views [B, V, R, R, 3] or
    clouds [B, N, 3]) to per-object arrays {name: [B, ...]}; the parameters load on first use,
    so a job whose features are all cached never builds the network."""

    kind: str
    source: str  # "views" or "clouds"
    weights: str  # the digest the cache is keyed by
    random: bool
    load: Callable[[], Any]
    forward: Callable[[Any, Any], dict[str, jax.Array]]
    mesh: Mesh
    prepare: Callable[[np.ndarray], Any] = jnp.asarray  # host-side input transform
    _params: Any = None
    _jitted: Any = None

    def apply(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Per-object outputs {name: [B, ...]} of views [B, V, R, R, 3] (the network sees the
        B * V images; outputs come back [B, V, ...]) or clouds [B, N, 3]."""
        if self._params is None:
            replicated = NamedSharding(self.mesh, PartitionSpec())
            self._params = jax.device_put(self.load(), replicated)
            self._jitted = jax.jit(self.forward)
        lead = batch.shape[:2] if self.source == "views" else batch.shape[:1]
        n = int(np.prod(lead))
        inputs = self.prepare(batch.reshape((n,) + batch.shape[len(lead) :]))
        pad = (-n) % self.mesh.size  # equal shards: the leading axis is split over every device

        def shard(x):
            x = np.asarray(x)
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            return jax.device_put(x, NamedSharding(self.mesh, PartitionSpec(DATA_AXIS)))

        out = self._jitted(self._params, jax.tree.map(shard, inputs))
        return {k: np.asarray(v)[:n].reshape(lead + v.shape[1:]) for k, v in out.items()}


def _inception(config, mesh: Mesh) -> FeatureNetwork:
    from ga_jax.evaluation.features.inception import (
        INPUT_SIZE,
        FIDInceptionV3,
        fid_features,
        load_fid_inception,
    )

    def load():
        if config.weights:
            return load_fid_inception(config.weights)
        x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
        abstract = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x)["params"]
        return he_random_params(abstract, config.seed)

    def forward(params, images):
        return {"features": fid_features(params, images)[0]}

    return _network("inception", "views", config, load, forward, mesh)


def _dinov2(config, mesh: Mesh) -> FeatureNetwork:
    from ga_jax.models.conditioning.dinov2 import PRESETS, Dinov2, read_safetensors
    from ga_jax.models.conditioning.images import prepare_images

    module = Dinov2(**PRESETS[config.get("preset", "large")])
    size = int(config.get("image_size", 224))

    def prepare(images):
        return prepare_images(images, size, "dinov2")

    def load():
        if config.weights:
            return read_safetensors(config.weights, module)
        x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
        abstract = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
        return he_random_params(abstract, config.seed)

    def forward(params, images):
        return {"features": module.apply({"params": params}, images)[1]}

    return _network("dinov2", "views", config, load, forward, mesh, prepare)


def _musiq(config, mesh: Mesh) -> FeatureNetwork:
    from ga_jax.evaluation.features.musiq import (
        MUSIQ,
        load_musiq,
        musiq_forward,
        preprocess_musiq,
    )

    # Every protocol view has one size, so one padded length serves every batch.
    def prepare(images):
        return preprocess_musiq(list(images), length_multiple=64)

    def load():
        if config.weights:
            return load_musiq(config.weights)
        x = prepare(np.zeros((1, 32, 32, 3), np.float32))
        abstract = jax.eval_shape(MUSIQ().init, jax.random.key(0), x)["params"]
        return he_random_params(abstract, config.seed)

    def forward(params, inputs):
        scores, features = musiq_forward(params, inputs)
        return {"scores": scores, "features": features}

    return _network("musiq", "views", config, load, forward, mesh, prepare)


def _pointnet(config, mesh: Mesh) -> FeatureNetwork:
    from ga_jax.evaluation.features.pointnet2 import (
        MIN_POINTS,
        PointNet2Classifier,
        load_pointe_pointnet,
        pointnet_features,
    )

    def load():
        if config.weights:
            return load_pointe_pointnet(config.weights)
        x = jax.ShapeDtypeStruct((1, MIN_POINTS, 3), jnp.float32)
        start = jax.ShapeDtypeStruct((1,), jnp.int32)
        abstract = jax.eval_shape(PointNet2Classifier().init, jax.random.key(0), x, start)
        return he_random_params(abstract["params"], config.seed)

    def forward(params, clouds):
        start = jnp.zeros(clouds.shape[0], jnp.int32)
        features, log_probs = pointnet_features(params, clouds, start)
        return {"features": features, "log_probs": log_probs}

    return _network("pointnet", "clouds", config, load, forward, mesh)


def _network(kind, source, config, load, forward, mesh, prepare=jnp.asarray) -> FeatureNetwork:
    digest = weights_digest(config.weights, config.seed)
    return FeatureNetwork(kind, source, digest, not config.weights, load, forward, mesh, prepare)


class PairedViewMetrics:
    """PSNR, SSIM and LPIPS-VGG per view of a generated object rendered with its reference's
    cameras against the reference's views (ga_jax/metrics/image.py, ga_jax/losses/lpips.py;
    LPIPS weights from `weights`, the npz of launch.convert_lpips, or seeded random ones)."""

    def __init__(self, config):
        self.config = config
        self.weights = weights_digest(config.weights, config.seed)
        self.random = not config.weights
        self._params = None

    def compare(self, rendered: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        from ga_jax.losses.lpips import load_lpips_params, random_lpips_params
        from ga_jax.metrics.image import psnr, ssim

        if self._params is None:
            self._params = (
                load_lpips_params(self.config.weights)
                if self.config.weights
                else random_lpips_params(jax.random.key(self.config.seed))
            )
        a, b = jnp.asarray(rendered), jnp.asarray(target)
        return {
            "psnr": np.asarray(psnr(a, b)),
            "ssim": np.asarray(ssim(a, b)),
            "lpips": np.asarray(_lpips(self._params, a, b)),
        }


@jax.jit
def _lpips(params, a, b):
    from ga_jax.losses.lpips import lpips_distance

    return lpips_distance(params, a, b, precision=jax.lax.Precision.HIGHEST)


class ClipScorer:
    """CLIP score as torchmetrics' CLIPScore computes it (100 x max(cos(image, text), 0) per
    image-prompt pair, averaged), with transformers' Flax CLIP read from a local directory
    (`weights`: config.json, the weights (model.safetensors written by PyTorch also loads) and
    the tokenizer files, e.g. openai/clip-vit-large-patch14 saved locally). Images go through
    CLIPImageProcessor's defaults at the model's image size (shortest side resized bicubic,
    centre crop, OpenAI mean / std); prompts through the directory's tokenizer."""

    def __init__(self, config):
        if not config.weights:
            raise ValueError("networks.clip.weights: the CLIP score needs a local CLIP directory")
        self.path = Path(config.weights)
        if not self.path.is_dir():
            raise FileNotFoundError(f"networks.clip.weights: {self.path} is not a directory")
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        self.weights = file_digest(files, self.path)
        self._model = None

    def _load(self):
        from transformers import CLIPImageProcessor, CLIPTokenizer, FlaxCLIPModel

        self._model = FlaxCLIPModel.from_pretrained(str(self.path))
        self._tokenizer = CLIPTokenizer.from_pretrained(str(self.path))
        size = self._model.config.vision_config.image_size
        self._processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size=size)

    def scores(self, views: np.ndarray, prompt: str) -> np.ndarray:
        """float32 [V]: the score of each view [V, R, R, 3] in [0, 1] against the prompt."""
        if self._model is None:
            self._load()
        pixels = self._processor(
            images=list((np.clip(views, 0, 1) * 255).round().astype(np.uint8)),
            return_tensors="np",
        )["pixel_values"]
        text = self._tokenizer([prompt], padding=True, truncation=True, return_tensors="np")
        image = np.asarray(self._model.get_image_features(pixel_values=pixels))
        words = np.asarray(self._model.get_text_features(**text))
        image = image / np.linalg.norm(image, axis=-1, keepdims=True)
        words = words / np.linalg.norm(words, axis=-1, keepdims=True)
        return (100.0 * np.maximum(image @ words[0], 0.0)).astype(np.float32)


# kind -> builder(network config, mesh); "cloud", "paired_views" (PairedViewMetrics, its
# config networks.lpips), "clip_score" (ClipScorer, networks.clip) and "edit_preservation"
# (ga_jax/evaluation/edit_preservation.py, with PairedViewMetrics) are computed by the job itself.
FEATURES: dict[str, Callable[[Any, Mesh], FeatureNetwork] | None] = {
    "cloud": None,
    "paired_views": None,
    "clip_score": None,
    "edit_preservation": None,
    "dinov2": _dinov2,
    "inception": _inception,
    "musiq": _musiq,
    "pointnet": _pointnet,
}


def build_network(kind: str, config, mesh: Mesh) -> FeatureNetwork:
    builder = FEATURES.get(kind)
    if builder is None:
        raise ValueError(f"networks: unknown feature network {kind!r}; expected one of "
                         f"{[k for k, v in FEATURES.items() if v is not None]}")  # fmt: skip
    return builder(config, mesh)


# --------------------------------------------------------------------------------------------
# Evaluators


@dataclasses.dataclass(frozen=True)
class EvalData:
    """What evaluators read: per side ('generated', 'reference') and kind, the per-object
    feature arrays stacked in object order; the name pairs for paired measures."""

    features: dict[str, dict[str, dict[str, np.ndarray]]]
    names: dict[str, list[str]]
    paired: dict[str, dict[str, np.ndarray]]  # reference name -> paired_views arrays
    clip: dict[str, dict[str, np.ndarray]] | None  # generated name -> clip_score arrays
    edits: dict[str, dict[str, np.ndarray]]  # edited sample name -> edit_preservation arrays

    def stacked(self, side: str, kind: str, name: str) -> np.ndarray:
        return self.features[side][kind][name]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(generated index [K], reference index [K]) of the objects paired by name."""
        index = {n: i for i, n in enumerate(self.names["generated"])}
        pairs = [(index[n], j) for j, n in enumerate(self.names["reference"]) if n in index]
        g, r = zip(*pairs) if pairs else ((), ())
        return np.asarray(g, np.int64), np.asarray(r, np.int64)


# type -> (needed feature kinds, or a function of the spec giving them; function(spec, data)
# -> result dict)
EVALUATORS: dict[str, tuple[Any, Callable[[Any, EvalData], dict[str, Any]]]] = {}


def register(name: str, needs: tuple[str, ...]):
    def wrap(fn):
        EVALUATORS[name] = (needs, fn)
        return fn

    return wrap


def _rows(x: np.ndarray) -> np.ndarray:
    """Per-object arrays [N, ...] as feature rows [N * ..., D]."""
    return x.reshape(-1, x.shape[-1])


def _feature_kind(spec) -> tuple[str, ...]:
    return (spec.get("features", "inception"),)


@register("frechet", _feature_kind)
def _frechet_eval(spec, data: EvalData) -> dict[str, Any]:
    kind = spec.get("features", "inception")
    gen = _rows(data.stacked("generated", kind, "features"))
    ref = _rows(data.stacked("reference", kind, "features"))
    value = frechet_distance_of_features(gen, ref)
    per = (
        "view" if gen.shape[0] > data.stacked("generated", kind, "features").shape[0] else "object"
    )
    return {
        "value": value,
        "display": f"{value:.3f}",
        "count": [len(gen), len(ref)],
        "protocol": f"{kind} features, one per {per}",
    }


@register("kid", _feature_kind)
def _kid_eval(spec, data: EvalData) -> dict[str, Any]:
    kind = spec.get("features", "inception")
    gen = _rows(data.stacked("generated", kind, "features"))
    ref = _rows(data.stacked("reference", kind, "features"))
    subsets, size = spec.get("subsets", 100), spec.get("subset_size", 1000)
    seed = spec.get("seed", 2020)
    mean, std = kid(gen, ref, subsets=subsets, subset_size=size, seed=seed)
    return {
        "value": mean * 100,
        "std": std * 100,
        "scale": "x100",
        "display": f"{mean * 100:.3f} +- {std * 100:.3f}",
        "count": [len(gen), len(ref)],
        "protocol": f"{kind} features; {subsets} subsets of {size}, seed {seed}",
    }


@register("musiq", ("musiq",))
def _musiq_eval(spec, data: EvalData) -> dict[str, Any]:
    gen = data.stacked("generated", "musiq", "scores")
    ref = data.stacked("reference", "musiq", "scores")
    return {
        "value": float(gen.mean()),
        "reference": float(ref.mean()),
        "display": f"{gen.mean():.2f} (reference views: {ref.mean():.2f})",
        "count": [gen.size, ref.size],
        "protocol": "mean over every view, no reference needed",
    }


@register("clip_score", ("clip_score",))
def _clip_score_eval(spec, data: EvalData) -> dict[str, Any]:
    if data.clip is None:
        raise ValueError("needs CLIP weights (networks.clip.weights: a local CLIP directory)")
    if not data.clip:
        raise ValueError("no generated object has a prompt (sample directories store theirs)")
    scores = np.concatenate([c["scores"] for c in data.clip.values()])
    return {
        "value": float(scores.mean()),
        "display": f"{scores.mean():.2f}",
        "count": [len(data.clip)],
        "protocol": f"{len(data.clip)} objects with prompts x their views; 100 x max(cos, 0)",
    }


@register("edit_preservation", ("edit_preservation",))
def _edit_preservation_eval(spec, data: EvalData) -> dict[str, Any]:
    if not data.edits:
        raise ValueError(
            "no generated object is an edited sample (launch.edit records its original)"
        )
    values = {
        k: float(np.mean([e[k] for e in data.edits.values()])) for k in ("psnr", "ssim", "lpips")
    }
    kept = float(np.mean([e["unedited_fraction"] for e in data.edits.values()]))
    return {
        "value": {**values, "unedited_fraction": kept},
        "display": f"PSNR {values['psnr']:.2f} dB, SSIM {values['ssim']:.4f}, "
        f"LPIPS {values['lpips']:.4f}",
        "count": [len(data.edits)],
        "protocol": f"{len(data.edits)} edited samples vs their originals: the unedited points' "
        f"surfels alone (mean {kept:.0%} of the points), per view",
    }


@register("reconstruction", ("paired_views",))
def _reconstruction_eval(spec, data: EvalData) -> dict[str, Any]:
    if not data.paired:
        raise ValueError("no generated object shares a name with a reference object")
    values = {
        k: float(np.mean([p[k] for p in data.paired.values()])) for k in ("psnr", "ssim", "lpips")
    }
    views = sum(len(p["psnr"]) for p in data.paired.values())
    return {
        "value": values,
        "display": f"PSNR {values['psnr']:.2f} dB, SSIM {values['ssim']:.4f}, "
        f"LPIPS {values['lpips']:.4f}",
        "count": [len(data.paired)],
        "protocol": f"{len(data.paired)} pairs matched by name, {views} views rendered with the "
        "reference's cameras; PSNR/SSIM/LPIPS-VGG per view, then the mean",
    }


def _subsample(clouds: np.ndarray, points: int) -> np.ndarray:
    if clouds.shape[1] <= points:
        return clouds
    return np.stack([c[farthest_point_sample(c, points)] for c in clouds])


@register("cov_mmd", ("cloud",))
def _cov_mmd_eval(spec, data: EvalData) -> dict[str, Any]:
    points = spec.get("points", 2048)
    distance = spec.get("distance", "chamfer")
    gen = _subsample(data.stacked("generated", "cloud", "cloud"), points)
    ref = _subsample(data.stacked("reference", "cloud", "cloud"), points)
    if distance == "chamfer":
        variant = spec.get("variant", "squared_sum")
        d = np.asarray(pairwise_chamfer(jnp.asarray(gen), jnp.asarray(ref), variant=variant))
        what = f"Chamfer '{variant}'"
    elif distance == "emd":
        d = pairwise_emd(gen, ref)
        what = "exact EMD"
    else:
        raise ValueError(f"cov_mmd.distance: expected 'chamfer' or 'emd', got {distance!r}")
    cov, mmd = (float(v) for v in coverage_mmd(jnp.asarray(d)))
    return {
        "value": {"cov": cov * 100, "mmd": mmd * 1000},
        "scale": "COV %, MMD x1000",
        "display": f"COV {cov * 100:.1f}%, MMD {mmd * 1000:.3f}",
        "count": [len(gen), len(ref)],
        "protocol": f"{what} on {gen.shape[1]}-point clouds",
    }


@register("geometry", ("cloud",))
def _geometry_eval(spec, data: EvalData) -> dict[str, Any]:
    points = spec.get("points", 4096)
    tau = spec.get("tau", 0.01)
    g, r = data.pairs()
    if not len(g):
        raise ValueError("no generated object shares a name with a reference object")
    gen = _subsample(data.stacked("generated", "cloud", "cloud")[g], points)
    ref = _subsample(data.stacked("reference", "cloud", "cloud")[r], points)
    cd = np.asarray(chamfer_distance(jnp.asarray(gen), jnp.asarray(ref), "l2_mean"))
    fs = np.asarray(f_score(jnp.asarray(gen), jnp.asarray(ref), tau).f)
    return {
        "value": {"cd_l1": float(cd.mean() * 1000), "f_score": float(fs.mean())},
        "scale": "CD-L1 x1000",
        "display": f"CD-L1 {cd.mean() * 1000:.2f}, F-score@{tau:g} {fs.mean():.3f}",
        "count": [len(g)],
        "protocol": f"{len(g)} pairs matched by name, {gen.shape[1]}-point clouds",
        "per_pair": {
            data.names["reference"][j]: [float(c * 1000), float(f)] for j, c, f in zip(r, cd, fs)
        },
    }
