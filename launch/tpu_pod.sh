#!/bin/bash
# Any launcher on every worker of a Cloud TPU VM slice (v4-32, v5p-64, ...), the same command on
# each host:
#
#   launch/tpu_pod.sh my-tpu us-central2-b launch.train \
#       --config=configs/flow/paper.py:1,text --workdir=/mnt/shared/runs/stage1_text
#
# What it expects:
# - gcloud configured for the TPU's project, and this repository at ~/ga-jax on every worker
#   with its virtual environment in .venv holding a TPU build of jax
#   (pip install -U "jax[tpu]") besides the project (pip install -e .); copy it with
#   `gcloud compute tpus tpu-vm scp --recurse --worker=all . my-tpu:~/ga-jax`;
# - --workdir on a filesystem every worker mounts (Filestore or GCS FUSE): orbax writes each
#   checkpoint from every host into one directory, process 0 the metrics and grids;
# - data under $GA_JAX_DATA_ROOT on every worker.
#
# --distributed=on: JAX reads the slice (hosts, this worker's index, the coordinator) from the
# TPU runtime itself, as it does for every Cloud TPU VM slice (ga_jax/parallel/distributed.py).
set -euo pipefail
TPU=${1:?usage: launch/tpu_pod.sh TPU_NAME ZONE launch.<job> --flag=value ...}
ZONE=${2:?usage: launch/tpu_pod.sh TPU_NAME ZONE launch.<job> --flag=value ...}
LAUNCHER=${3:?usage: launch/tpu_pod.sh TPU_NAME ZONE launch.<job> --flag=value ...}
shift 3
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command \
  "cd ~/ga-jax && source .venv/bin/activate && \
   GA_JAX_DATA_ROOT='${GA_JAX_DATA_ROOT:-}' python -m $LAUNCHER --distributed=on$ARGS"
