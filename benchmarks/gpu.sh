#!/usr/bin/env bash
# GPU checks for the rasterizer (issue 2, acceptance 5), run on a machine with one NVIDIA GPU and
# jax[cuda] installed:  bash benchmarks/gpu.sh [LOG_DIR]
# 1. the compiled (Triton) Pallas kernel against interpret mode and the dense oracle (pytest -m gpu);
# 2. the target case, 8 views x 73,728 surfels at 512 px forward+backward, for xla and pallas;
# 3. the benchmark table on the GPU, with the dense oracle at the small sizes.
# Each step has its own time limit so one failure does not hide the others.
set -u
LOG=${1:-outputs/gpu}
mkdir -p "$LOG"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd) PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
timeout 200 $PY -m pytest -p no:cacheprovider -q -m gpu tests/kernels 2>&1 | tee "$LOG/gpu_tests.log"
for backend in xla pallas; do
  timeout 150 $PY -m benchmarks.rasterizer --backends=$backend --sizes=73728x512 --views=8 \
    --repeats=10 2>&1 | tee "$LOG/target_$backend.log"
done
timeout 240 $PY -m benchmarks.rasterizer --backends=dense,xla,pallas --repeats=5 \
  --sizes=4096x128,24576x128,24576x256,73728x256,73728x512 2>&1 | tee "$LOG/table.log"
