"""ODE samplers for the flow stages: integrate dx/dt = v(x, t, args) from noise (t = 0) to
data (t = 1), with reproducible per-point noise and an inpainting hook for editing.

Samplers (SamplerSettings.name):
  "euler"   fixed steps on the (optionally shifted) grid, 1 velocity evaluation per step;
  "heun"    fixed steps, Heun's second-order method (trapezoid with an Euler predictor),
            2 evaluations per step;
  "dopri5"  adaptive Dormand-Prince 5(4) through diffrax with a PID step-size controller,
            the reference's tolerances by default (rtol 1e-3, atol 1e-6, RMS error norm;
            ../shared/notes/pretrained_weights_and_samplers.md section 1). A solve that
            reaches max_steps is reported (SampleResult.success False), not raised.
NFE counts evaluations of the velocity function as the ODE sees it: with guidance one
evaluation runs the network once on a doubled batch. Dopri5 uses 7 stages with the last
reused (FSAL): 1 + 6 per attempted step, initial step size from diffrax's heuristic included
(counted at run time by tests/flow/test_flow.py).

Noise: row p of sample s of a run with seed k is normal(fold_in(fold_in(key(k), s), p)),
a pure function of (seed, sample, point), so an edit that keeps, moves or deletes points
keeps every surviving point's row bit for bit and gives new points rows from their index.

Inpainting (fixed-step samplers): rows marked known follow the path between their own noise
and their known values, x_t = a(t) x1 + b(t) x0, replaced after every step, and end exactly
at the known values, so the free rows are generated consistently with them (regenerating
one region of a shape with the rest held fixed).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from ga_jax.flow.paths import coefficients
from ga_jax.flow.timesteps import sampling_grid

__all__ = [
    "SAMPLERS",
    "Known",
    "SampleResult",
    "SamplerSettings",
    "initial_noise",
    "sample",
]

SAMPLERS = ("euler", "heun", "dopri5")

Velocity = Callable[[jax.Array, jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """How to integrate: the sampler, its steps and timestep shift (fixed-step), its
    tolerances and step limit (dopri5)."""

    name: str = "euler"
    steps: int = 25
    shift: float = 1.0
    rtol: float = 1e-3
    atol: float = 1e-6
    max_steps: int = 1024

    def __post_init__(self):
        if self.name not in SAMPLERS:
            raise ValueError(f"sampler name: expected one of {SAMPLERS}, got {self.name!r}")
        if self.name != "dopri5":
            sampling_grid(self.steps, self.shift)  # names a bad steps / shift
        elif not (self.rtol > 0 and self.atol > 0 and self.max_steps >= 1):
            raise ValueError(
                f"dopri5: expected rtol > 0, atol > 0, max_steps >= 1, got rtol {self.rtol}, "
                f"atol {self.atol}, max_steps {self.max_steps}"
            )


class Known(NamedTuple):
    """Rows held fixed by inpainting: mask [..., N] (True = known), their data values and
    their noise [..., N, D] (the rows of x0 the sample started from)."""

    mask: jax.Array
    values: jax.Array
    noise: jax.Array


class SampleResult(NamedTuple):
    """x [..., N, D] at t = 1; nfe (int32): velocity evaluations; success (bool): False when
    an adaptive solve stopped at max_steps (x is then where it stopped)."""

    x: jax.Array
    nfe: jax.Array
    success: jax.Array


def initial_noise(
    seed: int | jax.Array, samples: jax.Array, points: jax.Array, dim: int
) -> jax.Array:
    """Standard normal noise [S, N, dim], row (s, p) a function of (seed, samples[s],
    points[p]) only (module docstring)."""
    base = jax.random.key(seed)

    def row(s, p):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(base, s), p), (dim,))

    per_point = jax.vmap(row, in_axes=(None, 0))
    return jax.vmap(per_point, in_axes=(0, None))(jnp.asarray(samples), jnp.asarray(points))


def _impose(x: jax.Array, t: jax.Array, known: Known | None, path: str) -> jax.Array:
    if known is None:
        return x
    a, b, _, _ = coefficients(path, t)
    target = jnp.where(t >= 1.0, known.values, a * known.values + b * known.noise)
    return jnp.where(known.mask[..., None], target.astype(x.dtype), x)


def _fixed_step(velocity, x0, args, settings, known, path):
    grid = sampling_grid(settings.steps, settings.shift)
    heun = settings.name == "heun"

    def step(i, x):
        t, t_next = grid[i], grid[i + 1]
        v = velocity(x, t, args)
        x_next = x + (t_next - t) * v
        if heun:
            v_next = velocity(x_next, t_next, args)
            x_next = x + (t_next - t) * 0.5 * (v + v_next)
        return _impose(x_next, t_next, known, path)

    x = jax.lax.fori_loop(0, settings.steps, step, _impose(x0, grid[0], known, path))
    nfe = settings.steps * (2 if heun else 1)
    return SampleResult(x, jnp.int32(nfe), jnp.bool_(True))


def _dopri5(velocity, x0, args, settings):
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, x, a: velocity(x, t, a)),
        diffrax.Dopri5(),
        t0=0.0,
        t1=1.0,
        dt0=None,
        y0=x0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=settings.rtol, atol=settings.atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=settings.max_steps,
        throw=False,
    )
    attempted = solution.stats["num_steps"]
    nfe = 1 + 6 * attempted  # the first stage, then 6 new stages per attempted step (FSAL)
    success = solution.result == diffrax.RESULTS.successful
    return SampleResult(solution.ys[0], nfe.astype(jnp.int32), success)


@functools.partial(jax.jit, static_argnames=("velocity", "settings", "path"))
def sample(
    velocity: Velocity,
    x0: jax.Array,
    args: Any,
    settings: SamplerSettings,
    known: Known | None = None,
    path: str = "gvp",
) -> SampleResult:
    """Integrate from noise x0 [..., N, D] at t = 0 to t = 1 with velocity(x, t, args)
    (t a float32 scalar; args any pytree, e.g. (params, condition)). `path` is only used to
    place known rows (inpainting). Jitted: velocity and settings are static (hashable)."""
    coefficients(path, 0.0)  # names an unknown path
    if settings.name == "dopri5":
        if known is not None:
            raise ValueError(
                "dopri5: inpainting (known rows) needs a fixed-step sampler (euler, heun): an "
                "adaptive solver cannot replace rows between its steps"
            )
        return _dopri5(velocity, x0, args, settings)
    return _fixed_step(velocity, x0, args, settings, known, path)
