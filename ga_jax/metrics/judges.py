"""Judges of generated objects on the synthetic set: which shape class, which colour word.

Fixed before any flow model is trained (issue 17); the generation evaluation
(ga_jax/evaluation/generation.py) builds them from a training set and applies them to samples.

Shape class (ShapeJudge). A bank of ground-truth training clouds, `per_class` per class, each
reduced by farthest point sampling to the latent's point count P (FPS from the cloud's first
point). A query cloud [P, 3] gets the class of the bank cloud with the smallest Chamfer
distance ("l2_mean": the mean of both directions' mean nearest Euclidean distances),
minimised over `rotations` rotations of the query about z by 360 / rotations degrees: objects
are randomly rotated about z and captions say nothing about heading. Ties go to the lowest
bank index. The judge's ceiling is its accuracy on held-out ground-truth clouds (never in the
bank), measured the same way.

Colour (ColourJudge). The renders bake in shading (ambient + key + head light), so colour is
judged in render space: the alpha-weighted mean straight colour of a sample's renders on the
fixed judge cameras (judge_cameras), sum(rgb - (1 - alpha) * background) / sum(alpha) over
all pixels of all views, is matched to the nearest (Euclidean, in display RGB) of the
per-colour-word references, each the mean of the same measure over ground-truth renders of
training objects of that colour. For a two-part object, each part is rendered alone (the other
part's surfels removed, or the other primitive left out of the ground-truth scene) and judged
the same way; samples are split into parts by split_height (below).

Part split rule (split_height): the synthetic compositions put a narrower part (its
footprint inside the bottom's flat top face, anywhere on it) on a flat-topped one, so the
object's horizontal extent about the bottom part's vertical axis (through the median x, y of
the lowest quarter of the points) drops where the parts meet. Each candidate height whose
2 cm slab below holds one of the object's widest points (90% of the largest distance from that
axis) is scored by the widest point in that slab minus the widest point anywhere above it;
the split is the best-scoring height. Points above the split are the top part.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.synthetic.cameras import orbit_cameras
from ga_jax.metrics.pointcloud import chamfer_distance, pairwise_chamfer

__all__ = [
    "JUDGE_AZIMUTHS",
    "JUDGE_ELEVATION",
    "JUDGE_RADIUS",
    "ColourJudge",
    "ShapeJudge",
    "foreground_colour",
    "judge_cameras",
    "rotation_min_chamfer",
    "rotations_about_z",
    "split_height",
]

# The judge cameras: 8 views around the object at 45 deg steps, 20 deg above the equator, at
# the synthetic data's mean orbit radius.
JUDGE_AZIMUTHS = tuple(float(a) for a in range(0, 360, 45))
JUDGE_ELEVATION = 20.0
JUDGE_RADIUS = 1.75
CHAMFER = "l2_mean"


def judge_cameras(resolution: int) -> np.ndarray:
    """float32 [8, 25] c.npy rows of the judge cameras at H = W = resolution."""
    return orbit_cameras(JUDGE_AZIMUTHS, JUDGE_ELEVATION, JUDGE_RADIUS, resolution)


def rotations_about_z(count: int) -> np.ndarray:
    """float32 [count, 3, 3]: rotations about z by 360 k / count degrees, k = 0 .. count-1."""
    if count < 1:
        raise ValueError(f"rotations: expected >= 1, got {count}")
    angle = 2.0 * np.pi * np.arange(count) / count
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros(count), np.ones(count)
    rot = np.stack([c, -s, zero, s, c, zero, zero, zero, one], axis=-1).reshape(count, 3, 3)
    return rot.astype(np.float32)


def _fps_to(cloud: np.ndarray, points: int, where: str) -> np.ndarray:
    cloud = np.asarray(cloud, np.float32)
    if cloud.ndim != 2 or cloud.shape[1] != 3 or cloud.shape[0] < points:
        raise ValueError(f"{where}: expected a cloud [M >= {points}, 3], got {tuple(cloud.shape)}")
    if not np.isfinite(cloud).all():
        raise ValueError(f"{where}: the cloud has non-finite coordinates")
    if cloud.shape[0] == points:
        return cloud
    return cloud[farthest_point_sample(cloud, points)]


@dataclasses.dataclass(frozen=True)
class ShapeJudge:
    """Nearest class by rotation-minimised Chamfer against a labelled bank (module docstring).

    classes: the class names; bank: float32 [B, P, 3]; labels: int [B] indices into classes.
    """

    classes: tuple[str, ...]
    bank: np.ndarray
    labels: np.ndarray
    rotations: int = 24
    # How distances are computed (benchmarks/judges.py): the expanded form ranks the bank the
    # same way several times faster; pair_batch pairs at a time.
    expanded: bool = True
    pair_batch: int = 64

    @classmethod
    def from_clouds(
        cls, clouds: dict[str, list[np.ndarray]], points: int, per_class: int, rotations: int = 24
    ) -> ShapeJudge:
        """A judge from ground-truth clouds per class (the first `per_class` of each, FPS'd
        to `points`); every class needs at least per_class clouds."""
        bank, labels = [], []
        for k, name in enumerate(sorted(clouds)):
            if len(clouds[name]) < per_class:
                raise ValueError(
                    f"shape judge: class {name!r} has {len(clouds[name])} clouds, "
                    f"expected at least {per_class}"
                )
            for i, cloud in enumerate(clouds[name][:per_class]):
                bank.append(_fps_to(cloud, points, f"shape judge bank {name}[{i}]"))
                labels.append(k)
        return cls(tuple(sorted(clouds)), np.stack(bank), np.asarray(labels, np.int32), rotations)

    @property
    def points(self) -> int:
        return int(self.bank.shape[1])

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """float32 [Q, B]: per query and bank cloud, the Chamfer distance minimised over
        the rotations of the query about z."""
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 3 or queries.shape[1:] != (self.points, 3):
            raise ValueError(
                f"shape judge: expected queries [Q, {self.points}, 3] (the bank's point "
                f"count), got {tuple(queries.shape)}"
            )
        rot = rotations_about_z(self.rotations)
        rotated = np.einsum("rij,qpj->qrpi", rot, queries).reshape(-1, self.points, 3)
        d = pairwise_chamfer(
            jnp.asarray(rotated),
            jnp.asarray(self.bank),
            CHAMFER,
            pair_batch=self.pair_batch,
            expanded=self.expanded,
        )
        d = np.asarray(jax.device_get(d)).reshape(len(queries), self.rotations, -1)
        return d.min(axis=1)

    def judge(self, queries: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(class name per query, its distance to the nearest bank cloud [Q])."""
        d = self.distances(queries)
        index = np.argmin(d, axis=1)
        return [self.classes[self.labels[i]] for i in index], d[np.arange(len(d)), index]

    def points_of(self, cloud: np.ndarray) -> np.ndarray:
        """A cloud FPS'd to the bank's point count (for ground-truth or denser queries)."""
        return _fps_to(cloud, self.points, "shape judge query")


def rotation_min_chamfer(a: np.ndarray, b: np.ndarray, rotations: int = 24) -> np.ndarray:
    """float32 [Q]: the Chamfer distance (the judges' variant) of a[q] [N, 3] to b[q] [M, 3],
    minimised over `rotations` rotations of a[q] about z."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim != 3 or b.ndim != 3 or len(a) != len(b) or a.shape[2] != 3 or b.shape[2] != 3:
        raise ValueError(
            f"rotation_min_chamfer: expected a [Q, N, 3] and b [Q, M, 3], got {a.shape} {b.shape}"
        )
    rot = rotations_about_z(rotations)
    rotated = jnp.asarray(np.einsum("rij,qpj->qrpi", rot, a))  # [Q, R, N, 3]
    target = jnp.broadcast_to(jnp.asarray(b)[:, None], (len(b), rotations) + b.shape[1:])
    d = chamfer_distance(rotated, target, CHAMFER)
    return np.asarray(jax.device_get(d)).min(axis=1)


def foreground_colour(rgb: np.ndarray, alpha: np.ndarray, background: float = 1.0) -> np.ndarray:
    """float64 [3]: the alpha-weighted mean straight colour of renders rgb [..., H, W, 3]
    composited over a uniform `background` with coverage alpha [..., H, W] (module
    docstring). Raises when nothing is covered."""
    rgb, alpha = np.asarray(rgb, np.float64), np.asarray(alpha, np.float64)
    if rgb.shape[:-1] != alpha.shape or rgb.shape[-1] != 3:
        raise ValueError(
            f"foreground_colour: expected rgb [..., H, W, 3] and alpha [..., H, W], got "
            f"{rgb.shape} and {alpha.shape}"
        )
    covered = alpha.sum()
    if not covered > 1e-6:
        raise ValueError("foreground_colour: the renders cover no pixel (alpha is all zero)")
    premultiplied = rgb - (1.0 - alpha[..., None]) * background
    return premultiplied.reshape(-1, 3).sum(0) / covered


@dataclasses.dataclass(frozen=True)
class ColourJudge:
    """Nearest colour word in render space: names [K], references float [K, 3]."""

    names: tuple[str, ...]
    references: np.ndarray

    @classmethod
    def from_measurements(cls, colours: dict[str, list[np.ndarray]]) -> ColourJudge:
        """References = the mean of each word's foreground colours (at least one each)."""
        names = tuple(sorted(colours))
        for name in names:
            if not colours[name]:
                raise ValueError(f"colour judge: no measurement for colour {name!r}")
        refs = np.stack([np.mean(np.stack(colours[n]), axis=0) for n in names])
        return cls(names, refs)

    def judge(self, colour: np.ndarray) -> str:
        """The colour word whose reference is nearest to a measured colour [3]."""
        colour = np.asarray(colour, np.float64)
        if colour.shape != (3,) or not np.isfinite(colour).all():
            raise ValueError(f"colour judge: expected a finite RGB [3], got {colour!r}")
        return self.names[int(np.argmin(np.linalg.norm(self.references - colour, axis=1)))]


def split_height(xyz: np.ndarray, window: float = 0.02, widest: float = 0.9) -> float:
    """The height between a two-part object's parts from its points xyz [N, 3] (module
    docstring). With r the horizontal distance from the bottom part's vertical axis
    (through the median x, y of the lowest quarter of the points), each candidate height t
    (midway between consecutive distinct point heights) whose slab [t - window, t) holds a
    point at least `widest` times the largest r scores the slab's max r minus the max r of
    all points above t; the split is the best-scoring t (the lowest on ties)."""
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) < 2 or not np.isfinite(xyz).all():
        raise ValueError(f"split_height: expected >= 2 finite points [N, 3], got {xyz.shape}")
    z = xyz[:, 2]
    order = np.argsort(z)
    # The bottom part's vertical axis: the median x, y of the lowest quarter of the points
    # (the bottom part's base; the top part may sit off its centre).
    lowest = xyz[order[: max(1, len(z) // 4)], :2]
    radius = np.linalg.norm(xyz[:, :2] - np.median(lowest, axis=0), axis=1)
    levels = np.unique(z)
    if len(levels) < 2:
        raise ValueError("split_height: the points all lie at one height")
    candidates = (levels[:-1] + levels[1:]) / 2
    z_sorted, r_sorted = z[order], radius[order]
    above = np.append(np.maximum.accumulate(r_sorted[::-1])[::-1], 0.0)  # max r from i on
    best, split = -np.inf, float(candidates[0])
    for t in candidates:
        hi = np.searchsorted(z_sorted, t, side="right")
        lo = np.searchsorted(z_sorted, t - window, side="left")
        below = r_sorted[lo:hi].max() if hi > lo else 0.0
        if below < widest * radius.max():
            continue
        score = below - above[hi]
        if score > best:
            best, split = score, float(t)
    return split
