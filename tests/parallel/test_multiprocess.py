"""Two processes of 4 CPU devices each (JAX's CPU collectives) train like one process of 8
(issue 20, acceptance 1): `launch.train` started twice with explicit --coordinator_address /
--num_processes / --process_id, against the same command run as one process. The sampling and
metric jobs (`launch.sample`, `launch.evaluate`) likewise write what one process writes.

What must agree (relative 1e-5): every logged loss, the evaluation metrics, the final
parameters; the files must exist once (metrics.jsonl lines and the evaluation grid written by
process 0 only, one checkpoint). The mesh is data 4 x fsdp 2, so parameters are sharded across
the two processes. Adam runs with eps = 1 so that updates follow the gradient rather than its
sign (tests/train/test_vae_task_mesh_and_resume.py explains why).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from ga_jax.data.latents import LatentDataset
from ga_jax.export.ply import write_surfel_ply
from ga_jax.train.metrics_writer import read_jsonl
from tests.data.fake_vae_data import make_fake_dataset
from tests.train.test_flow_task import write_latents

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
TIMEOUT_S = 600
VAE_CONFIG = "configs/vae/tiny.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MESH = {"mesh.shape.data": 4, "mesh.shape.fsdp": 2}
TRAIN = {
    "train.total_steps": STEPS,
    "train.log_every_steps": 1,
    "train.checkpoint_every_steps": STEPS,
    "train.eval_every_steps": STEPS,
    "train.eval_batches": 1,
    "optimizer.eps": 1.0,
}


def launcher(module: str, config: str, workdir: Path, overrides: dict, *extra: str) -> list[str]:
    """`python -m module --config=config --workdir=workdir --config.<k>=<v> ... extra`, on the
    tests' data 4 x fsdp 2 mesh."""
    flags = {**MESH, **overrides}
    return [
        sys.executable,
        "-m",
        module,
        f"--config={config}",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in flags.items()),
        *extra,
    ]


def train_command(config: str, workdir: Path, overrides: dict[str, object]) -> list[str]:
    return launcher("launch.train", config, workdir, {**TRAIN, **overrides})


def run_processes(commands: list[list[str]], devices: int, logs: Path) -> None:
    """Start the commands together (each with `devices` CPU devices); fail with their logs."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.pop("PYTEST_XDIST_WORKER", None)
    procs, outputs = [], []
    for i, command in enumerate(commands):
        out = open(logs / f"process_{i}.log", "w")  # noqa: SIM115 - closed below
        outputs.append(out)
        procs.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        )
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for out in outputs:
            out.close()
    if any(codes):
        text = "\n".join(
            f"--- process {i} (exit {c}):\n" + (logs / f"process_{i}.log").read_text()[-4000:]
            for i, c in enumerate(codes)
        )
        pytest.fail(f"a process failed:\n{text}")


def train_both_ways(tmp_path: Path, config: str, overrides: dict[str, object]) -> tuple[Path, Path]:
    """(workdir of the 1-process 8-device run, workdir of the 2 x 4-device run)."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    for d in (single, multi):
        d.mkdir()
    address = f"127.0.0.1:{free_port()}"
    pair = [
        train_command(config, multi, overrides)
        + [f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"]
        for i in (0, 1)
    ]
    run_processes(pair, 4, multi)
    run_processes([train_command(config, single, overrides)], 8, single)
    return single, multi


def final_params(workdir: Path) -> dict:
    """The checkpoint's parameters, read onto this process's first device (the runs saved
    them sharded over devices of other processes)."""
    path = workdir / "checkpoints" / str(STEPS) / "state"
    checkpointer = ocp.StandardCheckpointer()
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    state = checkpointer.restore(path, target)
    return jax.tree.map(np.asarray, state["params"])


def assert_same_runs(single: Path, multi: Path, loss_names: tuple[str, ...]) -> None:
    a, b = read_jsonl(single / "metrics.jsonl"), read_jsonl(multi / "metrics.jsonl")
    # Process 0 alone writes: one line per logged step, then the evaluation.
    assert [r["step"] for r in b] == [r["step"] for r in a] == [1, 2, 3, STEPS]
    assert set(loss_names) <= set(a[0])
    for ra, rb in zip(a, b, strict=True):
        assert set(ra) == set(rb)
        for name in set(ra) - {"step", "time"}:  # every loss term, norm and eval metric
            np.testing.assert_allclose(rb[name], ra[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert any(name.startswith("eval/") for name in a[-1])
    grids = sorted(p.name for p in (multi / "eval").iterdir())
    assert grids == sorted(p.name for p in (single / "eval").iterdir())
    assert grids == [f"step_{STEPS:07d}.png"]
    grid_a, grid_b = (
        np.asarray(Image.open(d / "eval" / grids[0]), np.int16) for d in (single, multi)
    )
    assert grid_a.shape == grid_b.shape and np.abs(grid_a - grid_b).max() <= 1
    assert sorted(p.name for p in (multi / "checkpoints").iterdir()) == [str(STEPS)]
    pa, pb = final_params(single), final_params(multi)
    leaves_a, leaves_b = jax.tree.leaves(pa), jax.tree.leaves(pb)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        scale = max(float(np.max(np.abs(x))), 1e-12)
        assert float(np.max(np.abs(x - y))) / scale <= 1e-5


# About 4 minutes on the 2-core CI machine (9 processes compile the VAE): `make test-slow`, or
# `pytest -m slow tests/parallel/test_multiprocess.py`. The flow-stage test below keeps the
# multi-process training path in the suite.
@pytest.mark.slow
def test_vae_two_processes_train_extract_and_evaluate_like_one(tmp_path):
    gbuffer, fps, _ = make_fake_dataset(
        tmp_path / "data", classes={"Spheres": 4}, chunks_per_object=1, views=4, size=32, points=256
    )
    overrides = {
        "data.gbuffer_root": gbuffer,
        "data.fps_root": fps,
        "data.jitter_prob": 0.0,
        "eval_data.gbuffer_root": gbuffer,
        "eval_data.fps_root": fps,
        "eval_data.jitter_prob": 0.0,
    }
    single, multi = train_both_ways(tmp_path, VAE_CONFIG, overrides)
    assert_same_runs(single, multi, ("total", "grad_norm", "rgb_l1/1", "kl"))

    # Latent extraction and reconstruction evaluation of the trained VAE, both ways.
    runs = {}
    for name in ("one", "two"):
        runs[name] = tmp_path / f"jobs_{name}"
        shutil.copytree(single / "checkpoints", runs[name] / "checkpoints")
    pairs = []
    for module, extra in (
        ("launch.extract_latents", ["--out={workdir}/latents", "--cond_size=16"]),
        ("launch.eval_vae", []),
    ):
        address = f"127.0.0.1:{free_port()}"
        job = [e.format(workdir=runs["two"]) for e in extra]
        pairs += [
            launcher(module, VAE_CONFIG, runs["two"], overrides, *job)
            + [f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"]
            for i in (0, 1)
        ]
    run_processes(pairs, 4, runs["two"])
    singles = [
        launcher(
            "launch.extract_latents",
            VAE_CONFIG,
            runs["one"],
            overrides,
            f"--out={runs['one']}/latents",
            "--cond_size=16",
        ),
        launcher("launch.eval_vae", VAE_CONFIG, runs["one"], overrides),
    ]
    run_processes(singles, 8, runs["one"])

    a, b = (LatentDataset(runs[n] / "latents") for n in ("one", "two"))
    assert len(a) == len(b) == 4
    for i in range(len(a)):
        ra, rb = a[i], b[i]
        assert ra["instance_id"] == rb["instance_id"] and ra["caption"] == rb["caption"]
        for key in ("xyz", "mean", "logvar", "sample", "cond_images"):
            np.testing.assert_allclose(rb[key], ra[key], rtol=1e-5, atol=1e-6, err_msg=key)
    ea, eb = (json.loads((runs[n] / "eval_recon.json").read_text()) for n in ("one", "two"))
    assert list(ea["objects"]) == list(eb["objects"]) and len(ea["objects"]) == 4
    for name, row in ea["objects"].items():
        for key, value in row.items():
            np.testing.assert_allclose(eb["objects"][name][key], value, rtol=1e-5, err_msg=key)


def test_flow_stage_two_processes_train_like_one(tmp_path):
    latents = write_latents(tmp_path / "latents")
    overrides = {"data.root": str(latents), "eval_data.root": str(latents)}
    single, multi = train_both_ways(tmp_path, "configs/flow/tiny.py:1", overrides)
    assert_same_runs(single, multi, ("total", "grad_norm", "flow_mse"))


def pair_commands(command: list[str]) -> list[list[str]]:
    """`command` as processes 0 and 1 of a 2-process run."""
    address = f"127.0.0.1:{free_port()}"
    return [
        command + [f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"]
        for i in (0, 1)
    ]


def test_sampling_and_metric_jobs_two_processes_like_one(tmp_path):
    """3 samples over 2 processes (blocks of 2 and 1) give the sample directories and index
    one process gives; the metric job over 3 objects (features in blocks, the report by
    process 0) gives the same report, every feature counted once as computed."""
    from tests.evaluation.test_metric_job import sphere_surfels  # noqa: PLC0415

    outdirs = {n: tmp_path / f"samples_{n}" for n in ("one", "two")}

    def sample(outdir: Path) -> list[str]:
        return [sys.executable, "-m", "launch.sample",
                "--config=configs/sample/default.py:random_tiny", "--config.num_samples=3",
                "--config.sampler.steps=2", "--config.render.size=32",
                f"--config.outdir={outdir}"]  # fmt: skip

    logs = {n: tmp_path / f"logs_{n}" for n in ("one", "two")}
    for d in logs.values():
        d.mkdir()
    run_processes(pair_commands(sample(outdirs["two"])), 2, logs["two"])
    run_processes([sample(outdirs["one"])], 4, logs["one"])
    index_a, index_b = (json.loads((outdirs[n] / "sample_s0.json").read_text()) for n in outdirs)
    assert index_b == {**index_a, "processes": 2} and index_a["processes"] == 1
    assert index_a["samples"] == [f"sample_s0_{i}" for i in range(3)]
    for i, name in enumerate(index_a["samples"]):
        a, b = (np.load(outdirs[n] / name / "latent.npz") for n in outdirs)
        assert json.loads(str(b["info"]))["sample_index"] == i
        for key in ("xyz", "features", "noise_xyz", "noise_features", "ids"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)

    # The metric job: reference spheres, a displaced sphere generated for each (same names).
    objects = 3
    gbuffer, fps, truth = make_fake_dataset(
        tmp_path / "data", classes={"Spheres": objects}, chunks_per_object=1, views=4, size=32,
        points=600,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    generated = tmp_path / "generated"
    for chunk, t in truth.items():
        directory = generated / chunk.rsplit("/", 1)[0]
        directory.mkdir(parents=True)
        surfels = sphere_surfels(t["centre"] + 0.02, t["radius"] * 1.1, (0.8, 0.2, 0.2), 700, rng)
        write_surfel_ply(directory / "surfels.ply", surfels)
    # PointNet features, clouds and paired views: each kind of per-object work the job does.
    config = tmp_path / "eval_config.py"
    config.write_text(
        "import ml_collections\n\nfrom configs.eval.synthetic import get_config as base\n\n\n"
        "def get_config():\n"
        "    c = base('tiny')\n"
        "    keep = ('p_fid', 'cov_mmd', 'geometry', 'reconstruction')\n"
        "    c.evals = ml_collections.ConfigDict({k: c.evals[k] for k in keep})\n"
        f"    c.generated.root = {str(generated)!r}\n"
        f"    c.reference.fps_root = {str(fps)!r}\n"
        f"    c.reference.gbuffer_root = {str(gbuffer)!r}\n"
        "    return c\n"
    )
    workdirs = {n: tmp_path / f"eval_{n}" for n in ("one", "two")}

    def evaluate(workdir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "launch.evaluate",
            f"--config={config}",
            f"--workdir={workdir}",
        ]

    run_processes(pair_commands(evaluate(workdirs["two"])), 2, logs["two"])
    run_processes([evaluate(workdirs["one"])], 4, logs["one"])
    a, b = (json.loads((workdirs[n] / "metrics.json").read_text()) for n in workdirs)
    assert (a["processes"], b["processes"]) == (1, 2) and a["devices"] == b["devices"] == 4
    assert a["problems"] == b["problems"] == []
    assert a["generated"]["used"] == a["reference"]["used"] == objects
    assert b["features"] == a["features"]
    # Blocks of 2 and 1 objects per side: clouds, PointNet features, paired views.
    assert a["computed_by_process"] is None and b["computed_by_process"] == [10, 5]
    assert a["features"]["pointnet"] == {"computed": 2 * objects, "cached": 0}
    assert a["features"]["paired_views"] == {"computed": objects, "cached": 0}
    assert a["metrics"].keys() == b["metrics"].keys()
    for name, row in a["metrics"].items():
        assert "error" not in row, (name, row)
        assert row["count"] == b["metrics"][name]["count"]
        value, other = row["value"], b["metrics"][name]["value"]
        for key in value if isinstance(value, dict) else [None]:
            x, y = (value, other) if key is None else (value[key], other[key])
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
