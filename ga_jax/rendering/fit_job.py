"""The surfel-fitting job behind launch/fit_surfels.py."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ga_jax.data.gbuffer import read_chunk
from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.fit import (
    downsample_views,
    fit_surfels,
    init_params,
    params_to_surfels,
    psnr,
)
from ga_jax.rendering.render import render_surfels


def load_views(root: Path, chunk: str, views, resolution: int):
    path = root / chunk
    data = read_chunk(path, views=views)
    if data.height % resolution:
        raise ValueError(
            f"config.resolution: {resolution} must divide the image size {data.height} of {path}"
        )
    factor = data.height // resolution
    rgb = jnp.asarray(downsample_views(data.rgb, factor))
    alpha = jnp.asarray(downsample_views(data.alpha, factor))
    return rgb, alpha, Cameras.from_rows(data.cameras, resolution, resolution)


def _grid(rows: list[np.ndarray]) -> Image.Image:
    """Rows of [V, H, W, 3] images in [0, 1] -> one PNG-ready image."""
    lines = [np.concatenate(list(r), axis=1) for r in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=1)
             for line in lines]
    return Image.fromarray((np.clip(np.concatenate(lines, 0), 0, 1) * 255).astype(np.uint8))


def run_fit(config, workdir: str) -> dict:
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"config.data_root: {root.resolve()} is not a directory")
    out_dir = Path(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rgb, alpha, cams = load_views(root, config.chunk, config.train_views, config.resolution)
    rgb_h, _, cams_h = load_views(root, config.chunk, config.held_out_views, config.resolution)
    bg = jnp.full((3,), config.background, jnp.float32)

    def render(params, cameras):
        return render_surfels(params_to_surfels(params), cameras, bg, backend=config.backend).rgb

    start_psnr = float(psnr(render(init_params(jax.random.key(config.seed), config.num_surfels),
                                   cams_h), rgb_h))
    print(f"fitting {config.num_surfels} surfels to {len(config.train_views)} views of "
          f"{config.chunk} at {config.resolution}px; held-out PSNR at start {start_psnr:.2f} dB")
    params, history = fit_surfels(
        rgb, alpha, cams, num_surfels=config.num_surfels, steps=config.steps,
        learning_rate=config.learning_rate, background=config.background, seed=config.seed,
        log_every=config.log_every_steps,
    )
    train_render, held_render = render(params, cams), render(params, cams_h)
    metrics = {
        "chunk": config.chunk,
        "resolution": config.resolution,
        "num_surfels": config.num_surfels,
        "steps": config.steps,
        "held_out_psnr_start": start_psnr,
        "held_out_psnr_end": float(psnr(held_render, rgb_h)),
        "train_psnr_end": float(psnr(train_render, rgb)),
        "history": history,
    }
    _grid([np.asarray(rgb), np.asarray(train_render)]).save(out_dir / "train_views.png")
    _grid([np.asarray(rgb_h), np.asarray(held_render)]).save(out_dir / "held_out_view.png")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"held-out PSNR {start_psnr:.2f} -> {metrics['held_out_psnr_end']:.2f} dB, train PSNR "
          f"{metrics['train_psnr_end']:.2f} dB; wrote {out_dir}/train_views.png, "
          f"held_out_view.png, metrics.json")
    return metrics
