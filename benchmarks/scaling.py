"""Per-device memory and per-step collective bytes of the paper models' train steps, from the
compiled HLO on 1 / 2 / 4 / 8 simulated devices (launch.compile_check in a subprocess per
device count: the CPU device count is fixed when a process starts). A markdown table.

    python -m benchmarks.scaling                        # paper VAE and paper stage-1 DiT
    python -m benchmarks.scaling --models=dit --remat=full

Wall time on 2 CPU cores says nothing about a cluster; what transfers is the compiled program's
memory and communication (docs/scaling.md). Compiling the paper VAE takes about a minute per
mesh here, the DiT seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "vae": "configs/vae/paper.py",
    "dit": "configs/flow/paper.py:1,image",
}
# (devices, mesh) pairs: FSDP over every device, and 2-way tensor parallel from 4 devices on.
MESHES = (
    (1, "fsdp=1"),
    (2, "fsdp=2"),
    (4, "fsdp=4"),
    (8, "fsdp=8"),
    (4, "fsdp=2,tensor=2"),
    (8, "fsdp=4,tensor=2"),
)


def compile_report(config: str, devices: int, mesh: str, remat: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-m",
            "launch.compile_check",
            f"--config={config}",
            f"--mesh={mesh}",
            f"--devices={devices}",
            f"--json={out}",
        ]
        if remat:
            command.append(f"--config.model.remat_policy={remat}")
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env.pop("XLA_FLAGS", None)
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def row(model: str, report: dict) -> str:
    mib = lambda b: f"{b / 2**20:,.0f}"
    c = report["collectives"]
    mesh = " x ".join(f"{k} {v}" for k, v in report["mesh"].items() if v > 1) or "1 device"
    return (
        f"| {model} | {report['devices']} | {mesh} | {mib(report['state_device_bytes'])} | "
        f"1/{report['state_total_bytes'] / report['state_device_bytes']:.2f} | "
        f"{mib(report['temp_bytes'])} | {report['flops'] / 1e12:.2f} | "
        f"{c['all-gather']['count']} / {mib(c['all-gather']['bytes'])} | "
        f"{c['all-reduce']['count']} / {mib(c['all-reduce']['bytes'])} | "
        f"{c['reduce-scatter']['count']} / {mib(c['reduce-scatter']['bytes'])} | "
        f"{c['all-to-all']['count'] + c['collective-permute']['count']} / "
        f"{mib(c['all-to-all']['bytes'] + c['collective-permute']['bytes'])} | "
        f"{report['compile_seconds']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vae,dit", help="comma list of vae, dit")
    parser.add_argument("--remat", default="", help="model.remat_policy for every model")
    args = parser.parse_args()
    print(
        "| model | devices | mesh | state / device MiB | share | temporaries / device MiB | "
        "TFLOP / device / step | all-gather n / MiB | all-reduce n / MiB | "
        "reduce-scatter n / MiB | all-to-all + permute n / MiB | compile s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for devices, mesh in MESHES:
            report = compile_report(MODELS[model], devices, mesh, args.remat)
            print(row(model, report), flush=True)


if __name__ == "__main__":
    main()
