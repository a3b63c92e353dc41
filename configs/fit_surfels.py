"""Fit free surfels to 4 views of a real object and render a held-out view (the demo).

    python -m launch.fit_surfels --config=configs/fit_surfels.py --workdir=outputs/demo
    python -m launch.fit_surfels --config=configs/fit_surfels.py:tiny --workdir=/tmp/fit

Default: object Animals/0/10120 chunk 1 of the real objects under the data root
(configs/paths.py) at 64 px, 2,048 surfels, 300 Adam steps. Time and PSNR: docs/results.md.
"""

import ml_collections

from configs.paths import data_root


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.data_root = data_root() + "/objaverse_gbuffer"
    c.chunk = "Animals/0/10120/1"
    c.train_views = (1, 3, 9, 11)
    c.held_out_views = (2,)
    c.resolution = 64
    c.num_surfels = 2048
    c.steps = 300
    c.learning_rate = 0.02
    c.background = 1.0
    c.seed = 0
    c.backend = "xla"
    c.log_every_steps = 25
    if arg == "tiny":
        c.resolution = 32
        c.num_surfels = 256
        c.steps = 20
        c.log_every_steps = 5
    elif arg not in (None, ""):
        raise ValueError(f"configs/fit_surfels.py: unknown variant {arg!r} (expected '' or 'tiny')")
    return c.lock()
