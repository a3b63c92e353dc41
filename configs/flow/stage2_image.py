"""Stage 2 (image) on the synthetic set's latents (configs/flow/synthetic.py).

    python -m launch.train --config=configs/flow/stage2_image.py --workdir=outputs/flow_stage2_image
"""

import ml_collections

from configs.flow.synthetic import synthetic_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/flow/stage2_image.py: takes no variant, got {arg!r}")
    return synthetic_config(2, "image").lock()
