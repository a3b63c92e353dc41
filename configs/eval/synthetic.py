"""Metric evaluation of generated synthetic objects against the held-out synthetic set
(ga_jax/evaluation/metric_job.py; the evaluators and feature networks are listed in
ga_jax/evaluation/evaluators.py).

    python -m launch.evaluate --config=configs/eval/synthetic.py \
        --config.generated.root=outputs/heldout_samples --workdir=outputs/eval_metrics
    python -m launch.evaluate --config=configs/eval/synthetic.py:dinov2 ...  # + FD/KD-DINOv2
    python -m launch.evaluate --config=configs/eval/synthetic.py:tiny ...    # tests

Fields:
    name                  the report's title
    generated.root        sample directories (layout "samples") or surfel PLYs ("ply") under it,
                          named by their path below root (a reference object's name pairs them)
    reference.fps_root    <fps_root>/<name>/fps-4096.ply: the reference objects and clouds
    reference.gbuffer_root  <gbuffer_root>/<name>/<protocol.reference_chunk>/: their views
    protocol              ga_jax/evaluation/object_sets.RenderProtocol: views, resolution,
                          camera orbit, background, cloud points and opacity rule, reference views
    networks.<kind>       weights: a local file in the format users have (pytorch-fid's
                          pt_inception-2015-12-05-6726825d.pth, pyiqa's
                          musiq_koniq_ckpt-e95806b9.pth or the original koniq_ckpt.npz,
                          Point-E's pointnet.pt, DINOv2 with registers' model.safetensors,
                          the LPIPS npz of launch.convert_lpips, a CLIP directory saved by
                          transformers); '' = seeded random weights (seed), reported as a
                          plumbing check (CLIP: the score is not computed without weights)
    evals.<name>          type (an evaluator) and its options
    batch_objects         objects per feature-network call (one compiled shape; the batch is
                          split over every device)
"""

import ml_collections
from ml_collections import config_dict

from configs.paths import data_root


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "generated synthetic objects vs the held-out synthetic set"
    c.generated = ml_collections.ConfigDict(
        dict(root=config_dict.placeholder(str), layout="samples")
    )
    c.data_root = data_root()
    c.reference = ml_collections.ConfigDict()
    c.reference.fps_root = c.get_ref("data_root") + "/synthetic_eval_fps"
    c.reference.gbuffer_root = c.get_ref("data_root") + "/synthetic_eval"
    c.protocol = ml_collections.ConfigDict(
        dict(
            views=8,
            resolution=128,
            elevation_deg=20.0,
            radius=1.75,
            background=(1.0, 1.0, 1.0),
            opacity_threshold=0.1,
            points=4096,
            reference_chunk="1",
            reference_views=(1, 3, 5, 7, 9, 11, 13, 15),
            backend="native",
        )
    )
    c.networks = ml_collections.ConfigDict(
        dict(
            inception=dict(weights="", seed=0),
            musiq=dict(weights="", seed=0),
            pointnet=dict(weights="", seed=0),
            lpips=dict(weights="", seed=0),
            clip=dict(weights=""),  # the CLIP score runs only with real weights
        )
    )
    c.evals = ml_collections.ConfigDict(
        dict(
            fid=dict(type="frechet", features="inception"),
            kid=dict(type="kid", features="inception", subsets=100, subset_size=100, seed=2020),
            musiq=dict(type="musiq"),
            p_fid=dict(type="frechet", features="pointnet"),
            p_kid=dict(type="kid", features="pointnet", subsets=100, subset_size=32, seed=2020),
            cov_mmd=dict(type="cov_mmd", points=1024, distance="chamfer", variant="squared_sum"),
            geometry=dict(type="geometry", points=4096, tau=0.01),
            reconstruction=dict(type="reconstruction"),
            clip_score=dict(type="clip_score"),
            edit_preservation=dict(type="edit_preservation"),  # edited sample directories
        )
    )
    c.batch_objects = 8
    variants = [v for v in (arg or "").split(",") if v]
    unknown = sorted(set(variants) - {"tiny", "dinov2"})
    if unknown:
        raise ValueError(f"configs/eval/synthetic.py: variants: tiny, dinov2; got {unknown}")
    if "dinov2" in variants:  # ViT-L at 224 px: ~30x Inception's cost per view
        c.networks.dinov2 = dict(weights="", seed=0, preset="large", image_size=224)
        c.evals.fd_dinov2 = dict(type="frechet", features="dinov2")
        c.evals.kd_dinov2 = dict(type="kid", features="dinov2", subsets=100, subset_size=100)
    if "tiny" in variants:  # tests: few objects, small views
        c.protocol.views = 2
        c.protocol.resolution = 32
        c.protocol.points = 512
        c.protocol.reference_views = (1, 3)
        c.protocol.backend = "xla"
        c.evals.kid.subset_size = 3
        c.evals.p_kid.subset_size = 2
        c.evals.cov_mmd.points = 128
        c.evals.geometry.points = 512
        c.batch_objects = 2
        if "dinov2" in variants:
            c.networks.dinov2.preset = "tiny"
            c.networks.dinov2.image_size = 28
            c.evals.kd_dinov2.subset_size = 3
    return c
