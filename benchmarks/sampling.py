"""Sampling time per object: stage 1 + stage 2 + decode with random weights, per sampler.

    python -m benchmarks.sampling                          # small configs, this machine
    python -m benchmarks.sampling --size=paper --samples=4 # on a GPU
    python -m benchmarks.sampling --condition=text         # MiniLM (small) / CLIP (paper)

Random weights give the real shapes and cost but an arbitrary velocity field, so an adaptive
solver's NFE here says how hard *that* field is, not a trained model's (issue 17 measures
those). Each variant is run once to compile (its time reported apart) and then `--repeats`
times; the table gives the best repeat per object (time / samples), split into the stages.
The VAE is configs/vae/<size>.py, the stages configs/flow/<size>.py (tiny: no conditioner).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax

from configs.loading import load_config
from ga_jax.flow.samplers import SamplerSettings
from ga_jax.pipeline.generate import Pipeline

VARIANTS = (
    ("euler 12", SamplerSettings("euler", steps=12)),
    ("euler 25", SamplerSettings("euler", steps=25)),
    ("heun 12", SamplerSettings("heun", steps=12)),
    ("dopri5", SamplerSettings("dopri5")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--condition", default="image", choices=("image", "text"))
    parser.add_argument("--samples", type=int, default=1, help="objects per call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=None, help="default: the config's")
    args = parser.parse_args()

    stage_arg = (lambda s: f"{s},{args.condition}") if args.size != "tiny" else str
    pipe = Pipeline.from_configs(
        load_config(f"configs/vae/{args.size}.py"),
        load_config(f"configs/flow/{args.size}.py:{stage_arg(1)}"),
        load_config(f"configs/flow/{args.size}.py:{stage_arg(2)}"),
    )
    prompt = "a red cube on a blue sphere" if args.condition == "text" else None
    image = None
    if args.condition == "image":
        import numpy as np  # noqa: PLC0415

        image = np.full((224, 224, 3), 200, np.uint8)
    device = jax.devices()[0]
    print(
        f"sampling, random weights, size {args.size}, condition {args.condition}, "
        f"{args.samples} object(s) per call, {pipe.num_points} points | "
        f"{device.platform} {getattr(device, 'device_kind', '')}, {platform.node()}, "
        f"jax {jax.__version__}"
    )
    header = (
        f"{'sampler':<10}{'NFE 1/2':>10}{'compile s':>11}{'stage 1 s':>11}{'stage 2 s':>11}"
        f"{'decode s':>10}{'total s/obj':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, settings in VARIANTS:
        start = time.perf_counter()
        first = pipe.run(
            prompt,
            image,
            seed=0,
            num_samples=args.samples,
            sampler=settings,
            guidance=args.guidance,
        )
        first_s = time.perf_counter() - start
        best = None
        for r in range(args.repeats):
            start = time.perf_counter()
            out = pipe.run(
                prompt,
                image,
                seed=r + 1,
                num_samples=args.samples,
                sampler=settings,
                guidance=args.guidance,
            )
            total = time.perf_counter() - start
            if best is None or total < best[0]:
                best = (total, out)
        total, out = best
        t = out.info["timings"]
        nfe = f"{out.info['stages']['1']['nfe']}/{out.info['stages']['2']['nfe']}"
        per = lambda s: s / args.samples  # noqa: E731
        print(
            f"{name:<10}{nfe:>10}{first_s - total:>11.2f}{per(t['stage1_s']):>11.3f}"
            f"{per(t['stage2_s']):>11.3f}{per(t['decode_s']):>10.3f}{per(total):>13.3f}"
        )
        del first


if __name__ == "__main__":
    main()
