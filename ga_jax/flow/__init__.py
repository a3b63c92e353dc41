"""Flow-matching maths shared by the two generation stages (DESIGN.md section 6): probability
paths and their velocity targets (paths), training and sampling times (timesteps),
classifier-free guidance (guidance) and the ODE samplers with reproducible per-point noise
(samplers). Model-agnostic: a velocity is any function of (x, t, args).

Time runs from t = 0 (noise) to t = 1 (data), GaussianAnything's convention."""
