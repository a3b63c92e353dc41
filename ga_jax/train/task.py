"""What the training loop (ga_jax/train/loop.py) needs from a model type: a Task.

A task owns its model, its data, its loss and its evaluation; the loop owns everything
that is the same for every model: the mesh, the sharded state, the optimiser step,
checkpoints, resume, logging, the NaN stop, the time limit, EMA parameters. The VAE (with
its PatchGAN) is ga_jax/train/tasks/vae.py; tests/train/test_loop.py trains a toy
regression through the same loop.

Random streams: the loop draws one key per step, fold_in(key, step), and splits it into
`rng_streams` named keys for `loss` (the VAE: its posterior sample and LPIPS' crop).
Frozen networks (LPIPS' VGG, later a decoder VAE or conditioners) come from `frozen()` and
reach `loss` and `evaluate` as arguments of the jitted functions, not as constants in them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["Task", "save_grid"]


class Task:
    """Base class: override the methods a model type needs (the others do nothing)."""

    # Names of the per-step random keys `loss` receives.
    rng_streams: tuple[str, ...] = ()
    # Metrics shown beside the loss in the progress lines (all are written to the logs).
    log_metrics: tuple[str, ...] = ()

    def init_params(self, rng: jax.Array) -> Any:
        """The model's parameters (leaves may be boxed with logical axis names: they decide
        the shardings). Traced under jax.eval_shape and jax.jit: no side effects."""
        raise NotImplementedError

    def init_extra(self, rng: jax.Array) -> Any:
        """State trained beside the parameters by `update_extra` (None: nothing). Gets the
        same key as init_params: derive another stream from it."""
        return None

    def extra_shardings(self, abstract_extra: Any, mesh: Mesh) -> Any:
        """Shardings of the extra state: replicated unless overridden."""
        replicated = NamedSharding(mesh, PartitionSpec())
        return jax.tree.map(lambda _: replicated, abstract_extra)

    def frozen(self) -> Any:
        """Frozen parameters the loss and the evaluation read (None: none)."""
        return None

    def abstract_frozen(self) -> Any:
        """The shapes of `frozen()` without reading weight files, for an ahead-of-time compile
        of the step with abstract_batch's inputs (None: no frozen parameters)."""
        return None

    def loss(
        self,
        params: Any,
        batch: Any,
        rngs: dict[str, jax.Array],
        step: jax.Array,
        frozen: Any,
        extra: Any,
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
        """(total, (metrics, aux)): the scalar to minimise, every term as a metric (scalars),
        and anything `update_extra` needs from the forward pass."""
        raise NotImplementedError

    def update_extra(
        self, extra: Any, aux: Any, step: jax.Array
    ) -> tuple[Any, dict[str, jax.Array]]:
        """(extra, metrics) after the parameter update (the VAE: one discriminator step)."""
        return extra, {}

    def train_data(self) -> Iterator[Any]:
        """Host batches, endlessly; with get_state/set_state (a grain iterator) the position is
        checkpointed with the state."""
        raise NotImplementedError

    def eval_data(self) -> list[Any]:
        """The host batches each evaluation reads (read once per run; [] = no evaluation)."""
        return []

    def abstract_batch(self, num_points: int) -> Any:
        """The device batch's shapes and dtypes (jax.ShapeDtypeStruct leaves) for the global
        batch of config.data, without reading data: what an ahead-of-time compile of the step
        needs (launch.compile_check). num_points: the latent's point count, for tasks whose
        data config does not fix it (the flow stages)."""
        raise NotImplementedError

    def device_batch(self, host_batch: Any) -> Any:
        """The part of a host batch the jitted functions read (the task's batch contract), as
        a pytree of arrays with a leading batch axis."""
        return host_batch

    def evaluate(self, params: Any, batch: Any, frozen: Any) -> tuple[dict[str, jax.Array], Any]:
        """(metrics per sample [B], images or None) of one evaluation batch; jitted once."""
        raise NotImplementedError

    def save_images(self, path: Path, images: Any) -> None:
        """Write the first evaluation batch's images [B, V, 2, R, R, 3] (generated or
        reconstructed, then target, per sample and view) as one PNG grid (save_grid)."""
        save_grid(path, images)


def save_grid(path: Path, images: np.ndarray) -> None:
    """images [B, V, 2, R, R, 3] in [0, 1] -> one PNG: rows = (sample, generated/target),
    columns = views."""
    from PIL import Image  # noqa: PLC0415

    b, v, two, r = images.shape[:4]
    grid = np.asarray(images).transpose(0, 2, 3, 1, 4, 5).reshape(b * two * r, v * r, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(path)
