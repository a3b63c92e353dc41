"""ODE samplers for the flow stages: integrate dx/dt = v(x, t, args) from noise (t = 0) to
data (t = 1), with reproducible per-point noise and an inpainting hook for editing.

Samplers (SamplerSettings.name):
  "euler"   fixed steps on the (optionally shifted) grid of ga_jax/flow/timesteps.py,
            1 velocity evaluation per step;
  "heun"    fixed steps, Heun's second-order method (trapezoid with an Euler predictor),
            2 evaluations per step;
  "dopri5"  adaptive Dormand-Prince 5(4) through diffrax with a PID step-size controller,
            the reference's tolerances by default (rtol 1e-3, atol 1e-6, RMS error norm
            over the whole batch, so all samples share the step sizes, as in the
            reference; ../shared/notes/pretrained_weights_and_samplers.md section 1).
            First step 0.01: what diffrax 0.7 uses for dt0=None, since its Hairer
            heuristic (the reference's) is skipped for the wrapped terms diffeqsolve
            passes it; we state the value rather than depend on that. A solve that stops
            early (max_steps reached, or another solver failure) is reported in the
            result (success, status, message), not raised: a sampling job keeps its
            other samples and logs the failure.
DESIGN.md section 6 calls Dopri5 the faithful default; the fixed-step samplers trade that
accuracy for a known, small cost, and SamplerSettings defaults to Euler so that a quick run
never meets an open-ended adaptive solve.

NFE counts evaluations of the velocity function the solver integrates. With guidance
(ga_jax/flow/guidance.py) an evaluation inside the guidance interval is one network call on
the doubled batch [condition; null], outside it one call on the batch: the NFE is the number
of sequential network calls, and each guided one costs about twice the compute. Dopri5 has 7
stages with the last reused as the next step's first (FSAL): 1 + 6 per attempted step
(accepted or rejected). The counts are checked against run-time evaluations in
tests/flow/test_samplers.py.

Noise: row p of sample s of a run with seed k and stream r is
normal(fold_in(fold_in(fold_in(key(k), r), s), p)), a pure function of (seed, stream, sample,
point), so an edit that keeps, moves or deletes points keeps every surviving point's row bit
for bit and gives new points rows from their index.

Inpainting (every sampler): rows marked known follow the path between their own noise (their
rows of x0) and their known values, x_t = a(t) x1 + b(t) x0. Before every velocity evaluation
the known rows of x are replaced by that x_t, so the network only ever sees known rows on
their path; their velocity is the path's, so they also stay on it between evaluations; the
result holds the known values exactly. The free rows are thereby generated consistently with
the fixed ones (regenerating one region of a shape with the rest held fixed).
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
    "STATUS_MESSAGES",
    "Known",
    "SampleResult",
    "SamplerSettings",
    "initial_noise",
    "sample",
]

SAMPLERS = ("euler", "heun", "dopri5")

# SampleResult.status codes, in the order of this tuple.
STATUS_MESSAGES = (
    "success",
    "dopri5: the maximum number of solver steps was reached before t = 1; raise max_steps "
    "or loosen rtol/atol",
    "dopri5: the solver stopped before t = 1 (step size underflow or a non-finite velocity)",
)

Velocity = Callable[[jax.Array, jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """How to integrate: the sampler, its steps and timestep shift (fixed-step), its
    tolerances, step limit and first step size dt0 (dopri5). Hashable: `sample` takes it as
    a static argument."""

    # The default is Heun, 12 steps: the best class accuracy per evaluation in the
    # quality-versus-NFE table of the synthetic text stages (docs/results.md, issue 17).
    name: str = "heun"
    steps: int = 12
    shift: float = 1.0
    rtol: float = 1e-3
    atol: float = 1e-6
    max_steps: int = 1024
    dt0: float = 0.01

    @classmethod
    def from_config(cls, section: Any) -> SamplerSettings:
        """The settings of a config section with the same field names (missing: defaults)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: section[name] for name in names if name in section})

    def __post_init__(self):
        if self.name not in SAMPLERS:
            raise ValueError(f"sampler name: expected one of {SAMPLERS}, got {self.name!r}")
        if self.name != "dopri5":
            sampling_grid(self.steps, self.shift)  # names a bad steps / shift
        elif not (self.rtol > 0 and self.atol > 0 and self.max_steps >= 1 and 0 < self.dt0 <= 1):
            raise ValueError(
                f"dopri5: expected rtol > 0, atol > 0, max_steps >= 1, 0 < dt0 <= 1, got rtol "
                f"{self.rtol}, atol {self.atol}, max_steps {self.max_steps}, dt0 {self.dt0}"
            )


class Known(NamedTuple):
    """Rows held fixed by inpainting: mask [..., N] (True = known) and their clean data
    values [..., N, D] (free rows ignored). Their noise is their rows of x0, the stored
    noise the sample starts from."""

    mask: jax.Array
    values: jax.Array


class SampleResult(NamedTuple):
    """x [..., N, D] at t = 1 (where the solver stopped when success is False); nfe (int32):
    velocity evaluations (module docstring); success (bool); status (int32): an index into
    STATUS_MESSAGES."""

    x: jax.Array
    nfe: jax.Array
    success: jax.Array
    status: jax.Array

    @property
    def message(self) -> str:
        """The status in words (outside jit: reads the status value)."""
        return STATUS_MESSAGES[int(self.status)]


def initial_noise(
    seed: int | jax.Array, samples: jax.Array, points: jax.Array, dim: int, stream: int = 0
) -> jax.Array:
    """Standard normal float32 noise [S, N, dim]: row (s, p) is
    normal(fold_in(fold_in(fold_in(key(seed), stream), samples[s]), points[p]), (dim,)), a
    function of (seed, stream, sample index, point index) only, so subsets and reorderings
    of either index list give the same rows bit for bit. `stream` separates the noises of one
    seed (the pipeline uses the stage number: stage 1's xyz noise and stage 2's feature noise
    must not be the same draws)."""
    base = jax.random.fold_in(jax.random.key(seed), stream)

    def row(s, p):
        key = jax.random.fold_in(jax.random.fold_in(base, s), p)
        return jax.random.normal(key, (dim,), jnp.float32)

    per_point = jax.vmap(row, in_axes=(None, 0))
    return jax.vmap(per_point, in_axes=(0, None))(jnp.asarray(samples), jnp.asarray(points))


def _check_known(known: Known, x0: jax.Array) -> None:
    if known.values.shape != x0.shape or known.mask.shape != x0.shape[:-1]:
        raise ValueError(
            f"sample: known: expected mask {x0.shape[:-1]} and values {x0.shape} (x0's shape), "
            f"got mask {known.mask.shape} and values {known.values.shape}"
        )


def _inpainted(velocity: Velocity, known: Known, x0: jax.Array, path: str) -> Velocity:
    """The velocity seen by the solver when known rows ride on their path (module
    docstring): the network reads them at x_t, and they move with the path's velocity."""
    mask = known.mask[..., None]
    values = known.values.astype(jnp.float32)
    noise = x0.astype(jnp.float32)

    def field(x, t, args):
        a, b, da, db = coefficients(path, t)
        on_path = jnp.where(mask, (a * values + b * noise).astype(x.dtype), x)
        v = velocity(on_path, t, args)
        return jnp.where(mask, (da * values + db * noise).astype(v.dtype), v)

    return field


def _fixed_step(velocity, x0, args, settings):
    grid = sampling_grid(settings.steps, settings.shift)
    heun = settings.name == "heun"

    def step(i, x):
        t, t_next = grid[i], grid[i + 1]
        v = velocity(x, t, args)
        x_next = x + (t_next - t) * v
        if heun:
            v_next = velocity(x_next, t_next, args)
            x_next = x + (t_next - t) * 0.5 * (v + v_next)
        return x_next

    x = jax.lax.fori_loop(0, settings.steps, step, x0)
    nfe = settings.steps * (2 if heun else 1)
    return SampleResult(x, jnp.int32(nfe), jnp.bool_(True), jnp.int32(0))


def _dopri5(velocity, x0, args, settings):
    # Dopri5's state is (first_step, f0). Passing f0 = v(x0, 0) as already known keeps
    # diffrax from evaluating it again each time a first step is rejected, so the NFE is
    # exactly 1 + 6 per attempted step (the layout is checked by the NFE tests). The price:
    # no reverse-mode AD through this sampler (diffrax makes a passed state
    # non-differentiable); sampling needs none.
    f0 = velocity(x0, jnp.float32(0.0), args).astype(x0.dtype)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, x, a: velocity(x, t, a).astype(x.dtype)),
        diffrax.Dopri5(),
        t0=0.0,
        t1=1.0,
        dt0=settings.dt0,
        y0=x0,
        args=args,
        solver_state=(jnp.array(False), f0),
        stepsize_controller=diffrax.PIDController(rtol=settings.rtol, atol=settings.atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=settings.max_steps,
        throw=False,
    )
    nfe = 1 + 6 * solution.stats["num_steps"]  # f0, then 6 new stages per attempted step
    success = solution.result == diffrax.RESULTS.successful
    status = jnp.where(
        success, 0, jnp.where(solution.result == diffrax.RESULTS.max_steps_reached, 1, 2)
    )
    # diffrax saves t1 even when it stops early: the state where it stopped.
    return SampleResult(solution.ys[0], nfe.astype(jnp.int32), success, status.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("velocity", "settings", "path"))
def sample(
    velocity: Velocity,
    x0: jax.Array,
    args: Any,
    settings: SamplerSettings | None = None,
    known: Known | None = None,
    path: str = "gvp",
) -> SampleResult:
    """Integrate from noise x0 [..., N, D] at t = 0 to t = 1 with velocity(x, t, args)
    (t a float32 scalar; args any pytree, e.g. (params, condition); for guidance pass the
    function built by ga_jax.flow.guidance.guide). `known` fixes rows (inpainting), placed
    on `path` (the path the network was trained on). Jitted: velocity, settings and path are
    static (hashable), so build the velocity function once and reuse it across calls.
    settings None: SamplerSettings() (Heun, 12 steps)."""
    coefficients(path, 0.0)  # names an unknown path
    settings = SamplerSettings() if settings is None else settings
    x0 = jnp.asarray(x0, jnp.float32)
    if known is not None:
        _check_known(known, x0)
        velocity = _inpainted(velocity, known, x0, path)
    if settings.name == "dopri5":
        result = _dopri5(velocity, x0, args, settings)
    else:
        result = _fixed_step(velocity, x0, args, settings)
    if known is not None:  # exactly the known values (gvp's b(1) is -4e-8 in float32, not 0)
        x = jnp.where(known.mask[..., None], known.values.astype(result.x.dtype), result.x)
        result = result._replace(x=x)
    return result
