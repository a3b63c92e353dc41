"""Editing a generated object's point cloud while keeping its noise (DESIGN.md section 6).

GaussianAnything's latent is a point cloud (stage 1) plus per-point features (stage 2), so a
user can change the points and rerun stage 2 to regenerate a texture that fits. What keeps
the appearance consistent is the noise: stage 2 starts from one noise row per point, and an
edit carries every surviving point's rows along with it.

An `EditableCloud` is the points [N, 3] with, per point, its stage-1 noise row [3], its
stage-2 noise row [C] and a row id. Rows of points the generator made are
initial_noise(seed, stream, sample, id) (ga_jax/flow/samplers.py), stream = the stage number;
an edit gives new points fresh ids (above every id in use) and their rows from the same
function, so the result is a pure function of (sample, operations).

Operations (each returns a new cloud; region None = every point):
  translate / scale / rotate   move the points inside a Box or Sphere; rows stay with points
  delete                       drop the points inside a region, then `resample` back to N
  merge                        the union of two clouds (the second optionally moved), then
                               `resample` down to N
  from_edited_points           a cloud edited in another tool (a PLY): rows matched by index
                               when the count is unchanged, else by position (below)
The decoder and stage 2 work at a fixed point count N (the latent's), so a count change is
resampled by farthest point sampling (FPS):
  more than N   FPS down to N from the first point (merge: the first cloud's first point);
  fewer than N  densify: candidate points at the midpoints between each point and its 3
                nearest neighbours, then FPS continued from all kept points picks the
                missing N - M candidates where the kept cloud is sparsest (repeated on the
                grown cloud while candidates run short). Every kept point survives with its
                rows; new points get new ids and rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from ga_jax.data.fps import farthest_point_sample

# A new point's rows: (ids [M]) -> (stage-1 rows [M, 3], stage-2 rows [M, C]).
NoiseRows = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

# Densification: candidates between each point and this many nearest neighbours.
_DENSIFY_NEIGHBOURS = 3
# from_edited_points: a point within this distance of an original point is that point.
MATCH_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class EditableCloud:
    """xyz [N, 3] float32 (the latent frame, inside [-0.45, 0.45]^3), noise_xyz [N, 3] and
    noise_features [N, C] float32 (each point's stage-1 and stage-2 noise rows), ids [N]
    int64 (the rows' point indices for initial_noise)."""

    xyz: np.ndarray
    noise_xyz: np.ndarray
    noise_features: np.ndarray
    ids: np.ndarray

    def __post_init__(self):
        n = len(self.xyz)
        shapes = {
            "xyz": (np.shape(self.xyz), (n, 3)),
            "noise_xyz": (np.shape(self.noise_xyz), (n, 3)),
            "ids": (np.shape(self.ids), (n,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"EditableCloud.{name}: expected shape {want}, got {got}")
        if np.ndim(self.noise_features) != 2 or len(self.noise_features) != n:
            raise ValueError(
                f"EditableCloud.noise_features: expected shape ({n}, C), got "
                f"{np.shape(self.noise_features)}"
            )
        if not np.all(np.isfinite(self.xyz)):
            raise ValueError("EditableCloud.xyz: expected finite coordinates, found NaN/inf")
        if len(np.unique(self.ids)) != n:
            raise ValueError("EditableCloud.ids: expected distinct row ids")

    def __len__(self) -> int:
        return len(self.xyz)

    def take(self, index: np.ndarray) -> EditableCloud:
        """The points at `index` (int indices or a bool mask), with their rows."""
        return EditableCloud(
            self.xyz[index], self.noise_xyz[index], self.noise_features[index], self.ids[index]
        )

    def with_xyz(self, xyz: np.ndarray) -> EditableCloud:
        return dataclasses.replace(self, xyz=np.asarray(xyz, np.float32))


def concatenate(clouds: list[EditableCloud]) -> EditableCloud:
    """The points of every cloud in order (ids must stay distinct: see merge)."""
    fields = ("xyz", "noise_xyz", "noise_features", "ids")
    return EditableCloud(*(np.concatenate([getattr(c, f) for c in clouds]) for f in fields))


def positions_before_edit(original: EditableCloud, edited: EditableCloud) -> np.ndarray:
    """xyz [N, 3] for the points of `edited` as they were before the edit: each point that was
    in `original` (same id) at its original position, a new point (resampling, merging) where
    the edit put it. The geometry the first part of a partial stage-2 rerun sees
    (Pipeline.edit's strength)."""
    row_of = {int(i): r for r, i in enumerate(original.ids)}
    rows = np.array([row_of.get(int(i), -1) for i in edited.ids])
    old = rows >= 0
    xyz = np.array(edited.xyz, np.float32)
    xyz[old] = original.xyz[rows[old]]
    return xyz


# -- regions ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Box:
    """The axis-aligned box centre +- half_size (per axis)."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        lo = np.asarray(self.center) - np.asarray(self.half_size)
        hi = np.asarray(self.center) + np.asarray(self.half_size)
        return np.all((xyz >= lo) & (xyz <= hi), axis=-1)


@dataclasses.dataclass(frozen=True)
class Sphere:
    """The ball |x - centre| <= radius."""

    center: tuple[float, float, float]
    radius: float

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        return np.linalg.norm(xyz - np.asarray(self.center), axis=-1) <= self.radius


Region = Box | Sphere


def region_mask(xyz: np.ndarray, region: Region | None) -> np.ndarray:
    """bool [N]: the points inside `region` (every point for None)."""
    if region is None:
        return np.ones(len(xyz), bool)
    return region.contains(np.asarray(xyz))


def _pivot(cloud: EditableCloud, mask: np.ndarray, region: Region | None, about) -> np.ndarray:
    if about is not None:
        return np.asarray(about, np.float64)
    if region is not None:
        return np.asarray(region.center, np.float64)
    return cloud.xyz[mask].mean(axis=0) if mask.any() else np.zeros(3)


# -- moving points ------------------------------------------------------------------------


def translate(cloud: EditableCloud, offset, region: Region | None = None) -> EditableCloud:
    """The points inside `region` moved by offset (3,)."""
    mask = region_mask(cloud.xyz, region)
    xyz = cloud.xyz.astype(np.float64)
    xyz[mask] += np.asarray(offset, np.float64)
    return cloud.with_xyz(xyz)


def scale(cloud: EditableCloud, factor, region: Region | None = None, about=None) -> EditableCloud:
    """The points inside `region` scaled by factor (a number or (3,)) about `about` (default:
    the region's centre, or the points' mean without a region)."""
    mask = region_mask(cloud.xyz, region)
    pivot = _pivot(cloud, mask, region, about)
    xyz = cloud.xyz.astype(np.float64)
    xyz[mask] = pivot + (xyz[mask] - pivot) * np.asarray(factor, np.float64)
    return cloud.with_xyz(xyz)


def rotation_matrix(axis, degrees: float) -> np.ndarray:
    """[3, 3] rotation by `degrees` about `axis` (3,) (right-handed: Rodrigues' formula)."""
    axis = np.asarray(axis, np.float64)
    norm = np.linalg.norm(axis)
    if not norm > 0:
        raise ValueError(f"rotate: axis: expected a nonzero vector, got {axis.tolist()}")
    kx, ky, kz = axis / norm
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    theta = np.deg2rad(degrees)
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def rotate(
    cloud: EditableCloud, axis, degrees: float, region: Region | None = None, about=None
) -> EditableCloud:
    """The points inside `region` rotated by `degrees` about the line through `about`
    (default as in scale) along `axis`."""
    mask = region_mask(cloud.xyz, region)
    pivot = _pivot(cloud, mask, region, about)
    xyz = cloud.xyz.astype(np.float64)
    xyz[mask] = pivot + (xyz[mask] - pivot) @ rotation_matrix(axis, degrees).T
    return cloud.with_xyz(xyz)


# -- changing the point count -------------------------------------------------------------


def next_ids(cloud: EditableCloud, count: int) -> np.ndarray:
    """`count` fresh row ids, above every id the cloud uses."""
    start = int(cloud.ids.max()) + 1 if len(cloud) else 0
    return np.arange(start, start + count, dtype=np.int64)


def resample(cloud: EditableCloud, num_points: int, noise_rows: NoiseRows) -> EditableCloud:
    """The cloud at exactly num_points points (module docstring: FPS down, or densify up);
    kept points keep their rows, new points get next_ids and noise_rows(ids)."""
    count = len(cloud)
    if count == 0:
        raise ValueError("resample: the edit left no points (nothing to regenerate from)")
    if count == num_points:
        return cloud
    if count > num_points:
        return cloud.take(np.sort(farthest_point_sample(cloud.xyz, num_points, start=0)))
    if count == 1:
        raise ValueError("resample: one point left; densifying needs at least two")
    return _with_new_points(cloud, densify(cloud.xyz, num_points), noise_rows)


def densify(xyz: np.ndarray, num_points: int) -> np.ndarray:
    """The num_points - M points [num_points - M, 3] to add to a cloud xyz [M, 3] (M >= 2):
    midpoints between each point and its nearest neighbours, picked by FPS continued from the
    whole cloud (so they land where it is sparsest); repeated while candidates run short."""
    xyz = np.asarray(xyz, np.float64)
    count = len(xyz)
    if count < 2:
        raise ValueError(f"densify: at least two points are needed, got {count}")
    added = np.zeros((0, 3))
    while count + len(added) < num_points:
        pool_xyz = np.concatenate([xyz, added])
        k = min(_DENSIFY_NEIGHBOURS, len(pool_xyz) - 1)
        _, nearest = cKDTree(pool_xyz).query(pool_xyz, k=k + 1)  # column 0: the point itself
        candidates = 0.5 * (pool_xyz[:, None] + pool_xyz[nearest[:, 1:]])
        candidates = np.unique(candidates.reshape(-1, 3), axis=0)
        # Midpoints made in an earlier round come back as candidates: keep only new places.
        distance, _ = cKDTree(pool_xyz).query(candidates)
        candidates = candidates[distance > 1e-9]
        if not len(candidates):
            raise ValueError("densify: the points coincide; no new places to add points")
        want = min(num_points - count - len(added), len(candidates))
        pool = np.concatenate([pool_xyz, candidates])
        picks = farthest_point_sample(pool, len(pool_xyz) + want, start=np.arange(len(pool_xyz)))
        added = np.concatenate([added, pool[np.sort(picks[len(pool_xyz) :])]])
    return added.astype(np.float32)


def _with_new_points(
    cloud: EditableCloud, xyz: np.ndarray, noise_rows: NoiseRows, ids: np.ndarray | None = None
) -> EditableCloud:
    ids = next_ids(cloud, len(xyz)) if ids is None else ids
    rows_xyz, rows_features = noise_rows(ids)
    new = EditableCloud(
        np.asarray(xyz, np.float32),
        np.asarray(rows_xyz, np.float32),
        np.asarray(rows_features, np.float32),
        ids,
    )
    return concatenate([cloud, new])


def delete(
    cloud: EditableCloud, region: Region, num_points: int, noise_rows: NoiseRows
) -> EditableCloud:
    """The points inside `region` removed, then resampled back to num_points."""
    keep = ~region_mask(cloud.xyz, region)
    return resample(cloud.take(keep), num_points, noise_rows)


def merge(
    first: EditableCloud,
    second: EditableCloud,
    num_points: int,
    noise_rows: NoiseRows,
    offset=(0.0, 0.0, 0.0),
) -> EditableCloud:
    """Both clouds (the second moved by offset) as one of num_points points (FPS from the
    first cloud's first point). Every point keeps the rows it had; the second cloud's ids are
    renumbered above the first's (only ids of new points are ever turned into rows)."""
    second = dataclasses.replace(translate(second, offset), ids=next_ids(first, len(second)))
    return resample(concatenate([first, second]), num_points, noise_rows)


def from_edited_points(
    original: EditableCloud, xyz: np.ndarray, num_points: int, noise_rows: NoiseRows
) -> EditableCloud:
    """A cloud edited in another tool (e.g. a PLY opened in a point-cloud editor): with the
    original's point count, row i of the edit keeps the original's row i (editors that move
    points keep their order); with another count, an edited point within MATCH_TOLERANCE of
    an original point keeps that point's rows and every other point is new; then resample."""
    xyz = np.asarray(xyz, np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not len(xyz):
        raise ValueError(f"edited points: expected shape [M, 3] with M >= 1, got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("edited points: expected finite coordinates, found NaN/inf")
    if len(xyz) == len(original):
        return original.with_xyz(xyz)
    distance, match = cKDTree(original.xyz).query(xyz)
    matched = distance <= MATCH_TOLERANCE
    # An original point claimed twice keeps its rows only for its first claimant.
    first = np.zeros(len(xyz), bool)
    claims = np.where(matched, match, -1 - np.arange(len(xyz)))  # unmatched: unique negatives
    _, first_index = np.unique(claims, return_index=True)
    first[first_index] = True
    matched &= first
    kept = original.take(match[matched]).with_xyz(xyz[matched])
    # New points' ids start above every original id, kept or not.
    ids = next_ids(original, int((~matched).sum()))
    grown = _with_new_points(kept, xyz[~matched], noise_rows, ids)
    return resample(grown, num_points, noise_rows)
