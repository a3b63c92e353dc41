"""From the launch environment to jax.distributed.initialize's arguments, with faked variables
(ga_jax/parallel/distributed.py; the real 2-process runs are in test_multiprocess.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ga_jax.parallel.distributed import ClusterSpec, cluster_spec, first_host

REPO = Path(__file__).resolve().parents[2]

# What `srun --nodes=2 --ntasks-per-node=4 --gpus-per-task=1` sets in its task 5.
SLURM_TASK_5 = {
    "SLURM_JOB_ID": "48213",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NODELIST": "gpu[007-008]",
    "SLURM_JOB_NODELIST": "gpu[007-008]",
    "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
}

# What Open MPI 4's `mpirun -np 4` on two hosts sets in rank 3.
OPEN_MPI_RANK_3 = {
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_RANK": "3",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "OMPI_MCA_orte_hnp_uri": "2712207360.0;tcp://10.1.2.3,172.17.0.1:40155",
}


def test_single_process_by_default():
    assert cluster_spec(environ={}) is None
    assert cluster_spec(environ={"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    assert cluster_spec("off", environ=SLURM_TASK_5) is None
    assert cluster_spec("on", environ={}) == ClusterSpec("jax")


def test_explicit_flags_win_and_must_come_together():
    spec = cluster_spec(
        coordinator_address="10.0.0.1:1234",
        num_processes=2,
        process_id=1,
        local_device_ids=["0", "1"],
        environ=SLURM_TASK_5,
    )
    assert spec == ClusterSpec("flags", "10.0.0.1:1234", 2, 1, (0, 1))
    with pytest.raises(ValueError, match="--num_processes, --process_id"):
        cluster_spec(coordinator_address="10.0.0.1:1234", environ={})
    with pytest.raises(ValueError, match="--process_id"):
        cluster_spec(coordinator_address="h:1", num_processes=2, process_id=2, environ={})
    with pytest.raises(ValueError, match="--distributed"):
        cluster_spec("yes", environ={})


def test_slurm_one_process_per_gpu():
    spec = cluster_spec(environ=SLURM_TASK_5)
    assert spec.source == "slurm"
    assert (spec.num_processes, spec.process_id, spec.local_device_ids) == (8, 5, (1,))
    host, port = spec.coordinator_address.split(":")
    assert host == "gpu007" and 1024 < int(port) < 65536
    # The port is a function of the job: every task computes the same one.
    other = cluster_spec(environ={**SLURM_TASK_5, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"})
    assert other.coordinator_address == spec.coordinator_address
    # One task per node: the process drives all of its node's GPUs.
    per_node = {**SLURM_TASK_5, "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
    per_node["SLURM_STEP_TASKS_PER_NODE"] = "1(x2)"
    assert cluster_spec(environ=per_node).local_device_ids is None
    # --gpus-per-task: SLURM shows each task its own GPU only, as device 0.
    bound = {**SLURM_TASK_5, "CUDA_VISIBLE_DEVICES": "1"}
    assert cluster_spec(environ=bound).local_device_ids is None
    assert cluster_spec(environ={**SLURM_TASK_5, "MASTER_PORT": "29500"}).coordinator_address == (
        "gpu007:29500"
    )
    with pytest.raises(ValueError, match="SLURM_NTASKS"):
        cluster_spec(environ={**SLURM_TASK_5, "SLURM_NTASKS": "eight"})


@pytest.mark.parametrize(
    "nodelist, host",
    [
        ("node17", "node17"),
        ("gpu[003-010,012],cpu1", "gpu003"),
        ("a100-[1-4]-ib", "a100-1-ib"),
        ("n1,n2", "n1"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_open_mpi():
    spec = cluster_spec(environ=OPEN_MPI_RANK_3)
    assert spec.source == "mpi"
    assert (spec.num_processes, spec.process_id, spec.local_device_ids) == (4, 3, (1,))
    assert spec.coordinator_address.startswith("10.1.2.3:")
    no_uri = {k: v for k, v in OPEN_MPI_RANK_3.items() if k != "OMPI_MCA_orte_hnp_uri"}
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        cluster_spec(environ=no_uri)
    with_master = {**no_uri, "MASTER_ADDR": "head", "MASTER_PORT": "7000"}
    assert cluster_spec(environ=with_master).coordinator_address == "head:7000"


def test_tpu_slice_leaves_the_arguments_to_jax():
    assert cluster_spec(environ={"TPU_WORKER_HOSTNAMES": "t1v-0,t1v-1,t1v-2,t1v-3"}) == (
        ClusterSpec("tpu")
    )
    assert cluster_spec(environ={"TPU_WORKER_HOSTNAMES": "localhost"}) is None  # one host


def test_single_process_launchers_refuse_a_multi_process_run():
    """A launcher whose files are not yet written per process stops before doing anything."""
    command = [
        sys.executable,
        "-m",
        "launch.edit",
        "--config=configs/sample/edit.py",
        "--coordinator_address=127.0.0.1:9",
        "--num_processes=2",
        "--process_id=1",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "runs as one process only" in done.stderr + done.stdout
