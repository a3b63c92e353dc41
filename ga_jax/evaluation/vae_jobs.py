"""Jobs on a trained VAE: reconstruction evaluation and latent extraction.

    python -m launch.eval_vae --config=C --workdir=W          # W/eval_recon.{json,md}
    python -m launch.extract_latents --config=C --workdir=W --out=DIR

Both restore the latest checkpoint of `W/checkpoints` and read `config.eval_data` (evaluation)
or `config.data` (extraction) in one ordered pass, without jitter. In a multi-process run each
process loads its block of every global batch, the results are gathered to every process in
the global batch's order, and process 0 alone writes the files: the same files as one process.

Evaluation: the posterior mean of each record's encoded views is decoded and rendered with the
record's supervision cameras (views of both halves: ones the encoder saw and ones it did not);
PSNR and SSIM at the finest render size over all of them and over the novel ones only (the
other half's), per object (mean over its records) and overall, as JSON and a markdown table,
and where the novel views' squared error lies (background, silhouette band, the interior's
mean-colour offset and spatial rest: ga_jax/evaluation/error_regions.py).

Extraction: every record of every chunk (both halves, so an object with 3 chunks gets 6
encodings) is encoded; the FPS points, a posterior sample, the mean and the log-variance are
written per object in the latent dataset format (ga_jax/data/latents.py), with the caption
and, optionally, the object's views at `cond_size` px without its top and bottom views
(views 0 and 8 of a chunk) as conditioning images. Each object is written as soon as the
ordered pass is beyond its records, so host memory holds about a batch of objects; every
object keeps the encoding count all objects have, and an object that lost records (a bad
record skipped, or the last incomplete batch) is left out with a warning and counted in the
index metadata ('left_out_incomplete').
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image

from ga_jax.data.gbuffer import read_chunk
from ga_jax.data.latents import LatentWriter
from ga_jax.data.loader import make_source, make_vae_loader
from ga_jax.data.synthetic.splits import has_heldout_combo
from ga_jax.data.transforms import VaeBatch
from ga_jax.evaluation.error_regions import (
    REGIONS,
    accumulate_error_regions,
    summarise_error_regions,
)
from ga_jax.metrics.image import VIEW_METRICS
from ga_jax.models.vae.reconstruct import reconstruct
from ga_jax.models.vae.vae import VAE, abstract_variables, build_vae
from ga_jax.parallel.batch import gather_host_batch, to_global_batch, to_host
from ga_jax.parallel.mesh import batch_axes, make_mesh, rules_context, sharded_abstract
from ga_jax.train.checkpoint import restore_params

__all__ = ["evaluate_reconstruction", "extract_latents", "restore_vae"]

log = logging.getLogger(__name__)


def _ordered(data_config) -> Any:
    """The data config for one ordered pass without augmentation."""
    data = data_config.copy_and_resolve_references()
    with data.unlocked():
        data.shuffle = False
        data.num_epochs = 1
        data.jitter_prob = 0.0
    return data


def restore_vae(config, workdir: str | Path, mesh) -> tuple[VAE, Any, int]:
    """(model, params, step) of the latest checkpoint in workdir/checkpoints: the parameters
    only (no optimiser state, no discriminator, nothing initialised at random), sharded by
    their logical axis names. Call inside ga_jax.parallel.mesh.rules_context."""
    model = build_vae(config.model)
    abstract = sharded_abstract(abstract_variables(model)["params"], mesh, config.mesh.get("rules"))
    params, step = restore_params(Path(workdir) / "checkpoints", abstract)
    return model, params, step


def _object_of(chunk: str) -> str:
    return chunk.rsplit("/", 1)[0]


def evaluate_reconstruction(
    config,
    workdir: str | Path,
    *,
    latent: str = "mean",
    noise_std: np.ndarray | None = None,
    seed: int = 0,
    tag: str = "",
) -> dict[str, Any]:
    """Per-object and mean PSNR/SSIM of held-out reconstructions; writes
    eval_recon{tag}.{json,md}. latent / noise_std: which h is decoded
    (ga_jax.models.vae.reconstruct)."""
    workdir = Path(workdir)
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.get("num_devices", -1))
    rules = config.mesh.get("rules")
    data = _ordered(config.eval_data)
    source = make_source(data)
    with rules_context(mesh, rules):
        model, params, step = restore_vae(config, workdir, mesh)
        size = int(config.train.render_sizes[-1])
        fn = jax.jit(
            lambda p, b, rng: reconstruct(
                model,
                p,
                b,
                size,
                backend=config.train.render_backend,
                capacity_per_surfel=config.train.capacity_per_surfel,
                latent=latent,
                noise_std=noise_std,
                rng=rng,
            )
        )
        per_object: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
        regions: dict[str, float] = {}
        loader = make_vae_loader(data, source=source)
        axes = batch_axes(mesh, rules)
        for n, batch in enumerate(loader):
            rng = jax.random.fold_in(jax.random.key(seed), n)
            out = to_host(fn(params, to_global_batch(VaeBatch.from_sample(batch), mesh, axes), rng))
            records = gather_host_batch(batch["record_index"])  # the global batch's, in order
            novel = slice(out.images.shape[1] // 2, None)  # the other half's views
            accumulate_error_regions(
                regions,
                out.images[:, novel, 0],
                out.images[:, novel, 1],
                out.target_alpha[:, novel],
            )
            for i, record in enumerate(records):
                name = _object_of(source[int(record)].chunk)
                per_object[name].append({k: float(out.metrics[k][i]) for k in VIEW_METRICS})
        loader.close()
    if not per_object:
        raise ValueError(
            f"eval_data: no full batch of {data.batch_size} records in {data.gbuffer_root}"
        )
    rows = {
        name: {k: float(np.mean([v[k] for v in vals])) for k in VIEW_METRICS}
        | {"records": len(vals)}
        for name, vals in sorted(per_object.items())
    }
    result = {
        "step": step,
        "render_size": size,
        "latent": latent,
        "noise_std": None if noise_std is None else np.asarray(noise_std).tolist(),
        **{f"mean_{k}": float(np.mean([r[k] for r in rows.values()])) for k in VIEW_METRICS},
        "objects": rows,
        "novel_error_regions": summarise_error_regions(regions),
    }
    if jax.process_index() != 0:  # every process holds the result; process 0 writes it
        return result
    (workdir / f"eval_recon{tag}.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"Reconstruction of held-out views, checkpoint step {step}, "
        f"{result['render_size']} px (h: {latent}"
        + ("" if noise_std is None else " + noise")
        + ")",
        "",
        "Novel = the views of the half the encoder did not see; all = novel + encoded views.",
        "",
        "| object | records | PSNR novel dB | SSIM novel | PSNR all dB | SSIM all |",
        "|---|---|---|---|---|---|",
        *[
            f"| {n} | {r['records']} | {r['psnr_novel']:.2f} | {r['ssim_novel']:.4f} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} |"
            for n, r in rows.items()
        ],
        f"| **mean** | {sum(r['records'] for r in rows.values())} | "
        f"**{result['mean_psnr_novel']:.2f}** | **{result['mean_ssim_novel']:.4f}** | "
        f"**{result['mean_psnr']:.2f}** | **{result['mean_ssim']:.4f}** |",
        "",
        "Where the novel views' squared error lies (pooled over all of them: "
        f"{result['novel_error_regions']['all']['psnr']:.2f} dB; "
        "ga_jax/evaluation/error_regions.py):",
        "",
        "| region | share of squared error | pooled PSNR if it were zero |",
        "|---|---|---|",
        *[
            f"| {r} | {100 * result['novel_error_regions'][r]['share']:.1f}% | "
            f"{result['novel_error_regions'][r]['psnr_without']:.2f} dB |"
            for r in REGIONS
        ],
    ]
    (workdir / f"eval_recon{tag}.md").write_text("\n".join(lines) + "\n")
    return result


@dataclasses.dataclass
class _Pending:
    caption: str
    arrays: dict[str, list[np.ndarray]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )


def _cond_images(chunk_dirs: list[Path], views_per_half: int, size: int):
    """Views of the object's chunks except each chunk's top (0) and bottom (views_per_half)."""
    images, cameras = [], []
    for path in chunk_dirs:
        chunk = read_chunk(path)
        keep = [v for v in range(chunk.num_views) if v not in (0, views_per_half)]
        for v in keep:
            rgb = Image.fromarray((chunk.rgb[v] * 255).round().astype(np.uint8))
            images.append(np.asarray(rgb.resize((size, size), Image.BICUBIC)))
            cameras.append(chunk.cameras[v])
    return np.stack(images), np.stack(cameras)


def extract_latents(
    config,
    workdir: str | Path,
    out: str | Path,
    *,
    cond_size: int = 0,
    seed: int = 0,
    exclude_heldout_combos: bool = False,
) -> Path:
    """Encode every record of config.data and write the latent dataset to `out`.

    exclude_heldout_combos: leave out (and count, in the log and the index metadata) every
    object whose caption names one of ga_jax.data.synthetic.splits.HELDOUT_COMBOS, so that a
    flow training set never sees them."""
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.get("num_devices", -1))
    rules = config.mesh.get("rules")
    data = _ordered(config.data)
    source = make_source(data)
    # Record 2c and 2c + 1 encode chunk c; the ordered pass reads records in index order, so an
    # object is complete once the pass is beyond its last record, and is written then: host
    # memory holds the objects of about one batch, not the dataset.
    last_record: dict[str, int] = {}
    chunks_of: dict[str, list[str]] = collections.defaultdict(list)
    for c, chunk in enumerate(source.chunks):
        last_record[_object_of(chunk)] = 2 * c + 1
        chunks_of[_object_of(chunk)].append(chunk)
    excluded = set()
    if exclude_heldout_combos:
        excluded = {
            _object_of(chunk)
            for c, chunk in enumerate(source.chunks)
            if has_heldout_combo(source.caption(2 * c))
        }
        log.info(
            "leaving out %d objects whose captions name a held-out shape/colour combination",
            len(excluded),
        )
    kept = [name for name in chunks_of if name not in excluded]
    if not kept:
        raise ValueError(f"data: no object to encode in {data.gbuffer_root}")
    # Every object keeps the encodings every object has (objects may have more chunks).
    encodings = min(2 * len(chunks_of[name]) for name in kept)
    writer = None
    if jax.process_index() == 0:  # one copy of the dataset: process 0 writes it
        writer = LatentWriter(
            out,
            num_points=int(config.model.num_points),
            latent_dim=int(config.model.latent_dim),
            metadata={
                "vae_workdir": str(workdir),
                "cond_size": cond_size,
                "gbuffer_root": str(data.gbuffer_root),
                "excluded_heldout_combos": len(excluded),
            },
        )
    incomplete: list[str] = []
    complete: list[str] = []

    def finish(name: str, entry: _Pending) -> None:
        """Write a complete object (process 0), or count it when records went missing (bad
        records skipped, or cut by the last incomplete batch)."""
        count = len(entry.arrays["xyz"])
        if count < encodings:
            incomplete.append(name)
            log.warning(
                "object %s: %d of %d encodings (bad records or the last incomplete batch); "
                "left out",
                name,
                count,
                encodings,
            )
            return
        complete.append(name)
        if writer is None:
            return
        stacked = {k: np.stack(v[:encodings]) for k, v in entry.arrays.items()}
        cond = {}
        if cond_size > 0:
            images, cameras = _cond_images(
                [source.gbuffer_root / c for c in sorted(chunks_of[name])],
                data.views_per_half,
                cond_size,
            )
            cond = {"cond_images": images, "cond_cameras": cameras}
        writer.add(name, entry.caption, **stacked, **cond)

    with rules_context(mesh, rules):
        model, params, step = restore_vae(config, workdir, mesh)
        if writer is not None:
            writer.metadata["vae_step"] = step

        @jax.jit
        def encode(params, encoder_input, fps_xyz, rng):
            posterior = model.apply({"params": params}, encoder_input, fps_xyz, method=VAE.encode)
            return posterior.mean, posterior.logvar, posterior.sample(rng)

        pending: dict[str, _Pending] = collections.OrderedDict()
        loader = make_vae_loader(data, source=source)
        rng = jax.random.key(seed)
        axes = batch_axes(mesh, rules)
        start = time.perf_counter()
        for n, batch in enumerate(loader):
            if n and n % 100 == 0:
                log.info(
                    "extract_latents: %d records, %.1f records/s",
                    n * len(batch["record_index"]),
                    n * len(batch["record_index"]) / (time.perf_counter() - start),
                )
            inputs = to_global_batch(
                {k: batch[k] for k in ("encoder_input", "fps_xyz")}, mesh, axes
            )
            mean, logvar, sample = to_host(
                encode(
                    params, inputs["encoder_input"], inputs["fps_xyz"], jax.random.fold_in(rng, n)
                )
            )
            # The global batch's records in order (every process's block: a collective).
            host = gather_host_batch({k: batch[k] for k in ("record_index", "fps_xyz")})
            for i, record in enumerate(host["record_index"]):
                rec = source[int(record)]
                name = _object_of(rec.chunk)
                if name in excluded:
                    continue
                entry = pending.setdefault(name, _Pending(source.caption(int(record))))
                for key, value in (
                    ("xyz", host["fps_xyz"][i]),
                    ("mean", mean[i]),
                    ("logvar", logvar[i]),
                    ("sample", sample[i]),
                ):
                    entry.arrays[key].append(np.asarray(value))
            passed = int(np.max(host["record_index"]))
            for name in [m for m in pending if last_record[m] <= passed]:
                finish(name, pending.pop(name))
        loader.close()
    for name in list(pending):  # cut by the end of the pass
        finish(name, pending.pop(name))
    if not complete:
        raise ValueError(f"data: no full batch of records in {data.gbuffer_root}")
    # Objects none of whose records was encoded (after the last full batch) never started.
    never = len(kept) - len(complete) - len(incomplete)
    if never:
        log.warning("%d objects after the last full batch were not encoded; left out", never)
    if writer is None:
        return Path(out)
    writer.metadata["left_out_incomplete"] = len(incomplete) + never
    writer.close()
    log.info("wrote %d objects x %d encodings to %s", len(complete), encodings, out)
    return Path(out)
