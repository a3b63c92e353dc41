"""Stage 1 (image) on the synthetic set's latents (configs/flow/synthetic.py).

    python -m launch.train --config=configs/flow/stage1_image.py --workdir=outputs/flow_stage1_image
"""

import ml_collections

from configs.flow.synthetic import synthetic_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/flow/stage1_image.py: takes no variant, got {arg!r}")
    return synthetic_config(1, "image").lock()
