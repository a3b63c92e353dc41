"""Config pieces shared by the stage configs.

`optimizer_config(groups)`, `train_config()` and `mesh_config()` are the sections every task
of the training loop reads (ga_jax/train/optimizers.py, ga_jax/train/loop.py); a stage's base
config adds its own fields to them.

`data_config()` is the VAE input pipeline's config (ga_jax.data.loader.make_vae_loader), meant
to be a field of a VAE config:

    from configs.common import data_config
    c.data = data_config()
    c.data.encoder_size = 64        # a variant overrides only what differs

and overridden from the command line as `--config.data.worker_count=4`. The defaults are the
paper's (DESIGN.md section 1): 8 encoded views at 512 px, 4 + 4 supervised views, 768 FPS
points, batch 16.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs.paths import data_root


def data_config(gbuffer: str = "objaverse_gbuffer") -> ml_collections.ConfigDict:
    """The VAE data fields, documented inline; locked (fields can change, not be added).
    gbuffer: the dataset's folder under the data root; its clouds are in `<gbuffer>_fps`
    (the real objects: objaverse_gbuffer / objaverse_fps)."""
    c = ml_collections.ConfigDict()
    # --- where the data is (configs/paths.py: one root, $GA_JAX_DATA_ROOT)
    c.data_root = data_root()
    c.gbuffer_root = c.get_ref("data_root") + f"/{gbuffer}"  # dataset.json + chunk dirs
    fps = "objaverse_fps" if gbuffer == "objaverse_gbuffer" else f"{gbuffer}_fps"
    c.fps_root = c.get_ref("data_root") + f"/{fps}"  # <fps_root>/<ins.txt>/<fps_file>
    c.fps_file = "fps-4096.ply"
    c.dataset_json = "dataset.json"  # class -> chunk paths; relative to gbuffer_root
    c.classes = ()  # tuple of class names to use; () = all classes in dataset.json
    c.max_chunks = config_dict.placeholder(int)  # None = all chunks; N = the first N

    # --- what a sample is (2 records per chunk: half A or half B encoded)
    c.views_per_half = 8  # V: half A = views [0, V), half B = [V, 2V) of a chunk
    c.num_supervise_per_half = 4  # K: supervise with K views of each half (2K in all)
    c.encoder_size = 512  # S: encoder input resolution (stored 512 px; box-averaged down)
    c.render_size = 512  # R: supervision resolution (the trainer downsamples per scale)
    c.fps_points = 768  # P: points chosen by FPS from the 4096-point cloud
    c.jitter_prob = 0.5  # probability of jittering the FPS points ...
    c.jitter_max = 0.01  # ... by N(0, sigma^2), sigma ~ U(0, jitter_max)
    c.xyz_clip = 0.45  # the xyz input map is clipped to +-xyz_clip (objects in [-.45,.45]^3)
    c.legacy_ray_depth = False  # True: treat z-depth as ray length, as the reference did
    c.on_error = "fail"  # bad chunk/PLY: "fail" raises naming the file, "skip" logs + counts
    c.cache_chunks = 0  # decoded chunks kept in memory per process (LRU; 0 = none), e.g. 15
    # for the 5 real objects read over and over (a 512 px chunk is ~134 MB decoded)

    # --- how records are served
    c.batch_size = 16  # global batch (split evenly over processes)
    c.seed = 0  # fixes the order, the views, backgrounds, FPS starts and jitter
    c.shuffle = True
    c.num_epochs = config_dict.placeholder(int)  # None = repeat forever
    c.worker_count = 0  # grain worker processes (0 = read in the main process)
    c.worker_buffer_size = 1  # samples each worker keeps ready
    c.read_threads = 2  # threads reading samples (in each worker, or the main process)
    c.read_buffer_size = 4  # samples those threads keep ready (a 512 px sample is ~190 MB)
    return c.lock()


def optimizer_config(groups: tuple) -> ml_collections.ConfigDict:
    """AdamW with clipping and an optional warmup / cosine schedule; groups = ((name, regex
    on the parameter path, lr, weight decay), ...), the first match wins."""
    o = ml_collections.ConfigDict()
    o.clip_norm = 1.0
    o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8
    o.warmup_steps = 0
    o.decay_steps = 0  # > 0: cosine decay to lr * final_lr_fraction at this step
    o.final_lr_fraction = 0.0
    o.groups = groups
    return o


def train_config(eval_batches: int) -> ml_collections.ConfigDict:
    """Steps, periods (logging, evaluation, checkpoints), the time limit and the EMA switch."""
    t = ml_collections.ConfigDict()
    t.total_steps = 1_000_000
    t.log_every_steps = 50
    t.eval_every_steps = 5_000
    t.eval_batches = eval_batches
    t.checkpoint_every_steps = 5_000
    t.keep_checkpoints = 3
    t.time_limit_minutes = 0.0  # > 0: stop (evaluate, checkpoint) after this much training
    t.ema_decay = 0.0  # > 0: keep an exponential moving average of the parameters
    t.grad_accum_steps = 1  # k > 1: each batch's gradient from k micro-batches in turn
    return t


# Named mesh shapes (-1 = the devices left over), chosen with mesh_config(preset) or
# `--config.mesh.shape.<axis>=N`. Parameters and optimiser state shard over 'fsdp' (their
# embedding / input-channel axis) and 'tensor' (their mlp / heads / output-channel axis);
# batches over ('data', 'fsdp'): ga_jax/parallel/mesh.py DEFAULT_RULES.
MESH_PRESETS = {
    "data": {"data": -1, "fsdp": 1, "tensor": 1},  # replicated state: small models
    "fsdp": {"data": 1, "fsdp": -1, "tensor": 1},  # state split over every device
    "fsdp_tensor": {"data": 1, "fsdp": -1, "tensor": 2},  # + 2-way tensor-parallel layers
}


def mesh_config(preset: str = "data") -> ml_collections.ConfigDict:
    """Axis sizes (-1 = the remaining devices), how many devices, logical-axis rules."""
    if preset not in MESH_PRESETS:
        raise ValueError(f"mesh preset: expected one of {sorted(MESH_PRESETS)}, got {preset!r}")
    m = ml_collections.ConfigDict()
    m.shape = dict(MESH_PRESETS[preset])
    m.num_devices = -1  # -1 = every device; N = the first N
    m.rules = config_dict.placeholder(tuple)  # None = ga_jax.parallel.mesh.DEFAULT_RULES
    return m
