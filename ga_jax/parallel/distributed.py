"""Multi-process runs: from the launch environment to `jax.distributed.initialize`, for every
launcher (launch/cluster.py holds the flags they share).

Where the arguments come from, first match wins:

1. explicit values (the launchers' --coordinator_address, --num_processes, --process_id,
   --local_device_ids flags): all three of the first must be given together;
2. SLURM, inside an `srun` step with more than one task: the coordinator is the first host of
   the step's node list, process id / count are SLURM_PROCID / SLURM_NTASKS, and with several
   tasks per node each process takes the accelerator of its SLURM_LOCALID (one process per
   GPU; launch/slurm_gpu.sbatch) unless SLURM already gave it a single visible GPU;
3. Open MPI (`mpirun -np N`, N > 1): OMPI_COMM_WORLD_RANK / _SIZE, the coordinator on the
   launcher's host (from OMPI_MCA_orte_hnp_uri, or MASTER_ADDR), one device per local rank
   when a host runs several ranks;
4. a multi-host TPU slice (TPU_WORKER_HOSTNAMES lists several workers): no arguments, JAX reads
   the TPU runtime's own description of the slice (launch/tpu_pod.sh).

The coordinator port is GA_JAX_COORDINATOR_PORT, else MASTER_PORT, else one derived from the
job id (so that two jobs sharing a node do not collide). `cluster_spec` is pure (environment in,
arguments out) so that every branch is tested with faked variables
(tests/parallel/test_distributed.py); `initialize` is the one place that calls JAX.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence

import jax

__all__ = ["ClusterSpec", "cluster_spec", "first_host", "initialize"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 12321


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The arguments of jax.distributed.initialize and where they came from.

    source: 'flags', 'slurm', 'mpi', 'tpu' (JAX reads the slice itself: the other fields None)
    or 'jax' (--distributed=on with nothing detected: JAX's own cluster detection).
    """

    source: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None

    def describe(self) -> str:
        if self.coordinator_address is None:
            return f"{self.source}: the cluster as JAX detects it"
        devices = (
            "" if self.local_device_ids is None else f", local devices {self.local_device_ids}"
        )
        return (
            f"{self.source}: process {self.process_id} of {self.num_processes}, coordinator "
            f"{self.coordinator_address}{devices}"
        )


def cluster_spec(
    mode: str = "auto",
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSpec | None:
    """How this process joins a multi-process run, or None for a single-process run.

    mode: 'auto' (explicit values, else a detected multi-process launch, else single process),
    'on' (as auto, but with nothing detected JAX's own detection: source 'jax') or 'off'.
    Raises ValueError naming the flag or variable that is missing or malformed.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--distributed: expected auto, on or off, got {mode!r}")
    if mode == "off":
        return None
    env = os.environ if environ is None else environ
    local = None if local_device_ids is None else tuple(int(i) for i in local_device_ids)
    explicit = {
        "--coordinator_address": coordinator_address,
        "--num_processes": num_processes,
        "--process_id": process_id,
    }
    given = [name for name, value in explicit.items() if value not in (None, "")]
    if given:
        missing = [name for name in explicit if name not in given]
        if missing:
            raise ValueError(f"{', '.join(given)} given without {', '.join(missing)}")
        if not 0 <= int(process_id) < int(num_processes):
            raise ValueError(
                f"--process_id: expected 0 <= id < --num_processes={num_processes}, got "
                f"{process_id}"
            )
        return ClusterSpec("flags", coordinator_address, int(num_processes), int(process_id), local)
    for detect in (_slurm, _open_mpi, _tpu):
        spec = detect(env)
        if spec is not None:
            if local is not None:
                spec = dataclasses.replace(spec, local_device_ids=local)
            return spec
    return ClusterSpec("jax") if mode == "on" else None


def initialize(spec: ClusterSpec | None) -> None:
    """jax.distributed.initialize with spec's arguments (nothing for None). Call it before any
    other JAX call of the process."""
    if spec is None:
        return
    log.info("jax.distributed.initialize (%s)", spec.describe())
    jax.distributed.initialize(
        coordinator_address=spec.coordinator_address,
        num_processes=spec.num_processes,
        process_id=spec.process_id,
        local_device_ids=None if spec.local_device_ids is None else list(spec.local_device_ids),
    )
    log.info(
        "process %d of %d: %d local devices of %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _int(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: expected an integer, got {value!r}"
        ) from None


def _port(env: Mapping[str, str], job_id: str) -> int:
    for name in ("GA_JAX_COORDINATOR_PORT", "MASTER_PORT"):
        if env.get(name):
            return _int(env, name)
    digits = re.sub(r"\D", "", job_id)
    return DEFAULT_PORT + (int(digits) % 20_000 if digits else 0)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[003-010,012],cpu1' -> 'gpu003'."""
    text = nodelist.strip()
    match = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?([^,]*)", text)
    if not text or match is None or not (match.group(1) or match.group(2)):
        raise ValueError(f"SLURM node list: cannot read a host name from {nodelist!r}")
    prefix, ranges, suffix = match.groups()
    if ranges is None:
        return prefix + suffix
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}{suffix}"


def _tasks_on_first_node(value: str) -> int:
    """SLURM_STEP_TASKS_PER_NODE '4(x2),3' -> 4."""
    match = re.match(r"\s*(\d+)", value)
    return int(match.group(1)) if match else 1


def _slurm(env: Mapping[str, str]) -> ClusterSpec | None:
    if "SLURM_PROCID" not in env or "SLURM_NTASKS" not in env:
        return None
    num_processes = _int(env, "SLURM_NTASKS")
    if num_processes <= 1:
        return None
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise ValueError("SLURM: SLURM_STEP_NODELIST / SLURM_JOB_NODELIST not set (run under srun)")
    address = f"{first_host(nodelist)}:{_port(env, env.get('SLURM_JOB_ID', ''))}"
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "1"
    local = None
    # Several tasks per node and every GPU of the node visible (--gpus-per-node): each process
    # takes the one of its local rank. Under --gpus-per-task SLURM already narrows
    # CUDA_VISIBLE_DEVICES to the task's GPU, which JAX then sees as its only device.
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if _tasks_on_first_node(per_node) > 1 and len(visible) != 1:
        local = (_int(env, "SLURM_LOCALID"),)
    return ClusterSpec("slurm", address, num_processes, _int(env, "SLURM_PROCID"), local)


def _open_mpi(env: Mapping[str, str]) -> ClusterSpec | None:
    if "OMPI_COMM_WORLD_SIZE" not in env:
        return None
    num_processes = _int(env, "OMPI_COMM_WORLD_SIZE")
    if num_processes <= 1:
        return None
    uri = env.get("OMPI_MCA_orte_hnp_uri", "")
    match = re.search(r"tcp://([^,:/]+)", uri)
    host = match.group(1) if match else env.get("MASTER_ADDR")
    if not host:
        raise ValueError(
            "Open MPI: cannot tell the coordinator host (no OMPI_MCA_orte_hnp_uri); set "
            "MASTER_ADDR or pass --coordinator_address"
        )
    address = f"{host}:{_port(env, uri.split('.')[0] if uri else '')}"
    local = None
    if "OMPI_COMM_WORLD_LOCAL_SIZE" in env and _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE") > 1:
        local = (_int(env, "OMPI_COMM_WORLD_LOCAL_RANK"),)
    return ClusterSpec("mpi", address, num_processes, _int(env, "OMPI_COMM_WORLD_RANK"), local)


def _tpu(env: Mapping[str, str]) -> ClusterSpec | None:
    workers = [w for w in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if w.strip()]
    return ClusterSpec("tpu") if len(workers) > 1 else None
