"""Editing a sample directory (ga_jax/pipeline/edit.py) and regenerating it.

    python -m launch.edit --config=configs/sample/edit.py --config.sample=S \
        --config.vae_workdir=W0 --config.stage1_workdir=W1 --config.stage2_workdir=W2 \
        --config.op=translate --config.box="0,0,0.2;0.2,0.2,0.1" --config.vector="0,0,0.05"

Fields (besides the model fields of configs/sample/default.py):
    sample        the sample directory to edit (written by launch.sample)
    op            translate | scale | rotate | delete | merge | points | regenerate
                    translate: move the region's points by `vector`
                    scale:     scale them by `factor` about the region's centre
                    rotate:    rotate them by `degrees` about `vector` (the axis)
                    delete:    remove them (resampled back to the latent's count)
                    merge:     add the points of sample directory `other`, moved by `vector`
                    points:    a cloud edited in any tool: the PLY `points`
                    regenerate: stage 1 again inside the region, the rest held fixed
    box / sphere  the region: "cx,cy,cz;hx,hy,hz" / "cx,cy,cz;r" ('' = every point)
    prompt        the condition for stage 2 (None: the sample's own prompt)
    strength      stage 2's rerun, in (0, 1]: 1 regenerates the features on the edited points
                  from the noise; less follows the original sample until t = 1 - strength, so
                  moved parts keep more of their texture (Pipeline.edit; None: the models'
                  measured default, else 1; the regenerate op always uses 1)
    out           the edited sample's directory (default: <sample>_edited)
"""

import ml_collections
from ml_collections import config_dict

from configs.sample.default import get_config as sample_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = sample_config(arg)
    with c.unlocked():
        c.sample = ""
        c.op = "translate"
        c.box = ""
        c.sphere = ""
        c.vector = "0,0,0"
        c.factor = 1.0
        c.degrees = 0.0
        c.other = ""
        c.strength = config_dict.placeholder(float)
        c.out = ""
    return c.lock()
