"""Flow-matching maths shared by the two generation stages (DESIGN.md section 6): probability
paths and their velocity targets (paths), training and sampling times (timesteps),
classifier-free guidance (guidance) and the ODE samplers with reproducible per-point noise
(samplers). Model-agnostic: a velocity is any function of (x, t, args).

Time runs from t = 0 (noise) to t = 1 (data), GaussianAnything's convention."""

from ga_jax.flow.guidance import Guidance, drop_condition, guide, guided_velocity
from ga_jax.flow.paths import PATHS, coefficients, data_estimate, interpolate, noise_estimate
from ga_jax.flow.samplers import (
    SAMPLERS,
    STATUS_MESSAGES,
    Known,
    SampleResult,
    SamplerSettings,
    initial_noise,
    sample,
)
from ga_jax.flow.timesteps import TIME_DISTRIBUTIONS, sample_times, sampling_grid, shift_times

__all__ = [
    "PATHS",
    "SAMPLERS",
    "STATUS_MESSAGES",
    "TIME_DISTRIBUTIONS",
    "Guidance",
    "Known",
    "SampleResult",
    "SamplerSettings",
    "coefficients",
    "data_estimate",
    "drop_condition",
    "guide",
    "guided_velocity",
    "initial_noise",
    "interpolate",
    "noise_estimate",
    "sample",
    "sample_times",
    "sampling_grid",
    "shift_times",
]
