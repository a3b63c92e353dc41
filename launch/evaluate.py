"""Metric evaluation job: generated objects against a reference set (FID, KID, P-FID, P-KID,
COV, MMD, CD-L1, F-score; ga_jax/evaluation/metric_job.py).

    python -m launch.evaluate --config=configs/eval/synthetic.py \
        --config.generated.root=outputs/heldout_samples --workdir=outputs/eval_metrics

Writes <workdir>/metrics.json and metrics.md (printed at the end) and keeps per-object
features in <workdir>/features/, so that running the same command again (after an
interruption, or with another evaluator added) computes only what is missing. Runs as several
processes too (launch/cluster.py flags, SLURM, TPU slices; the workdir on a shared file
system): each computes a block of the objects, process 0 writes the report.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.evaluation.metric_job import run_evaluation
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/eval/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "where the report and the feature cache go")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize()
    config = _CONFIG.value
    if not config.generated.root:
        raise app.UsageError("--config.generated.root: the generated objects' directory")
    if run_evaluation(config, _WORKDIR.value) is not None:  # process 0 writes the report
        print(open(f"{_WORKDIR.value}/metrics.md").read())


if __name__ == "__main__":
    app.run(main)
