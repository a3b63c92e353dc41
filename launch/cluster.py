"""The multi-process flags every launcher shares, and the one call that acts on them.

    from launch import cluster
    def main(argv):
        cluster.initialize()          # first, before any other JAX call
        ...

--distributed=auto (default) joins a multi-process run when the flags below are given or a
SLURM / Open MPI / multi-host TPU launch is detected (ga_jax/parallel/distributed.py), and runs
as one process otherwise; =on also lets JAX detect the cluster itself; =off never joins.
Launchers whose outputs are not yet written per process call `cluster.initialize(
multi_process=False)`, which refuses to run under more than one process instead of writing
every file once per host.
"""

from __future__ import annotations

import logging

import jax
from absl import flags

from ga_jax.parallel.distributed import cluster_spec
from ga_jax.parallel.distributed import initialize as initialize_cluster

__all__ = ["initialize"]

_MODE = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "join a multi-process run: auto = when flags or a SLURM / Open MPI / TPU-slice launch say "
    "so, on = also by JAX's own detection, off = never",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator (explicit multi-process)"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the run (explicit)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's id, 0-based (explicit)")
_LOCAL_DEVICES = flags.DEFINE_list(
    "local_device_ids", None, "the local accelerators this process uses, e.g. 0 or 0,1"
)


def initialize(*, multi_process: bool = True) -> None:
    """Join the run the flags and the environment describe (nothing for one process).

    multi_process=False: the launcher writes its files from every process, so a run of more
    than one process is refused with a message rather than started."""
    spec = cluster_spec(
        _MODE.value,
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
        local_device_ids=_LOCAL_DEVICES.value,
    )
    if spec is not None and not multi_process:
        raise SystemExit(
            f"this launcher runs as one process only (its outputs are not written per process "
            f"yet), but a multi-process run was requested ({spec.describe()}); run it on one "
            "host, or pass --distributed=off"
        )
    initialize_cluster(spec)
    if spec is not None and jax.process_index() != 0:
        # Progress lines once, from process 0; the others report warnings and errors.
        logging.getLogger().setLevel(logging.WARNING)
