#!/usr/bin/env bash
# Rebuild the small synthetic-set models (issue 17) from nothing, step by step: the data, the
# KL-0 VAE, the latent dataset, the two text flow stages (with CONDITIONS including image: the
# image encoder's pretraining and the two image stages), and their float16 model files.
#
#     GA_JAX_DATA_ROOT=/path/to/data [CONDITIONS="text image"] \
#         launch/synthetic_models.sh [VAE_MINUTES] [FLOW_STEPS]
#
# Every step is skipped when its output already exists (a finished marker file), so the
# script resumes after an interruption; training steps resume from their checkpoints.
# Generated data goes under $GA_JAX_DATA_ROOT (data sets: syn_*, latents: synthetic_latents/),
# runs under outputs/ (the stage-2 config decodes its render grid with outputs/vae_syn17),
# model files in the models directory outputs/models/ (model files + manifest.json: what
# Pipeline.from_pretrained reads; the shipped default is such a directory,
# ga_jax/pretrained/synthetic). CONDITIONS: the flow stages to train, "text" by default.
# Two jobs run side by side where they can (2 cores).
# Wall times on the 2-core CPU: docs/results.md, "Generation on the synthetic set".
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GA_JAX_DATA_ROOT:?set GA_JAX_DATA_ROOT to the directory for the generated data}"
export GA_JAX_DATA_ROOT
VAE_MINUTES=${1:-40}
FLOW_STEPS=${2:-2000}
CONDITIONS=${CONDITIONS:-text}
PY=${PY:-.venv/bin/python}
D=$GA_JAX_DATA_ROOT
MODELS=outputs/models
mkdir -p "$D" "$MODELS"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# step NAME COMMAND...: run COMMAND unless NAME finished before.
step() {
  local name=$1
  shift
  if [[ -e "$D/.done_$name" ]]; then
    log "skip $name (done)"
    return 0
  fi
  log "start $name"
  "$@"
  touch "$D/.done_$name"
  log "done $name"
}

synthetic() {  # OUT NUM START CHUNKS SEED WORKERS
  $PY -m launch.make_synthetic --out="$D/$1" --num_objects="$2" --start="$3" \
    --num_chunks="$4" --seed="$5" --workers="$6" --resolution=128
}

VAE_DATA=(--config=configs/vae/small.py --workdir=outputs/vae_syn17
  --config.data.gbuffer_root="$D/syn1000" --config.data.fps_root="$D/syn1000_fps"
  --config.eval_data.gbuffer_root="$D/syn_eval" --config.eval_data.fps_root="$D/syn_eval_fps")

latents() {  # NAME GBUFFER_SET [extra flags]
  local name=$1 set=$2
  shift 2
  $PY -m launch.extract_latents --config=configs/vae/small.py --workdir=outputs/vae_syn17 \
    --out="$D/synthetic_latents/$name" --cond_size=64 \
    --config.data.gbuffer_root="$D/$set" --config.data.fps_root="$D/${set}_fps" "$@"
}

flow() {  # STAGE (configs/flow/STAGE.py, run in outputs/flow_STAGE)
  $PY -m launch.train --config="configs/flow/$1.py" --workdir="outputs/flow_$1" \
    --config.optimizer.decay_steps="$FLOW_STEPS" --config.train.total_steps="$FLOW_STEPS" \
    --config.train.time_limit_minutes=600
}

vae_and_flow_data() {
  # The flow-only objects and the held-out set are generated beside the VAE's training.
  (step syn_flow synthetic syn_flow 2000 1000 1 0 1 && step syn_heldout synthetic syn_heldout 96 0 1 1 1) &
  local data=$!
  $PY -m launch.train "${VAE_DATA[@]}" --config.train.time_limit_minutes="$VAE_MINUTES"
  wait $data
}

all_latents() {  # training sets leave out the held-out combinations
  latents train_vae_objects syn1000 --exclude_heldout_combos &
  local first=$!
  latents train_more syn_flow --exclude_heldout_combos
  latents heldout syn_heldout
  wait $first
}

image_encoder() {  # the image stages start from the caption-contrastive pretrained encoder
  $PY -m launch.train --config=configs/image_text/synthetic.py --workdir=outputs/image_text
  $PY -m launch.export_model --workdir=outputs/image_text --dtype=float32 \
    --out=outputs/image_text/encoder.safetensors
}

stage_flows() {  # CONDITION: both stages side by side
  if [[ $1 == image ]]; then
    step image_encoder image_encoder
  fi
  flow "stage1_$1" &
  local first=$!
  flow "stage2_$1"
  wait $first
}

export_models() {  # float16 files (EMA parameters of the flows) in a models directory
  local data="seed 0 objects 0-2999 (VAE: 0-999), held-out combinations left out"
  $PY -m launch.export_model --workdir=outputs/vae_syn17 --models_dir="$MODELS" --name=vae \
    --note=config=configs/vae/small.py --note="data=synthetic $data"
  for condition in $CONDITIONS; do
    for stage in 1 2; do
      $PY -m launch.export_model --workdir="outputs/flow_stage${stage}_$condition" \
        --models_dir="$MODELS" --name="stage${stage}_$condition" \
        --note="config=configs/flow/stage${stage}_$condition.py" \
        --note="data=latents of the VAE above, $data"
    done
  done
}

step syn_eval synthetic syn_eval 32 0 3 1 1
step syn1000 synthetic syn1000 1000 0 3 0 2
step vae vae_and_flow_data
step latents all_latents
for condition in $CONDITIONS; do
  step "flows_$condition" stage_flows "$condition"
done
step export export_models
log "models in $MODELS (Pipeline.from_pretrained('$MODELS'))"
