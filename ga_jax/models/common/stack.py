"""Deep stacks of identical blocks: nn.remat by policy name and BlockStack (scan or loop).

CONVENTIONS.md item 12: scan_layers and remat_policy (ModelOptions fields) are switches on
every deep stack; modules pass them to BlockStack.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

__all__ = ["REMAT_POLICIES", "BlockStack", "remat"]

REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": None,  # recompute everything in the backward pass
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def remat(module_cls: type[nn.Module], policy: str, *, prevent_cse: bool = True):
    """`module_cls` wrapped in nn.remat with the named policy ('none' returns it as is)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat_policy: expected one of {sorted(REMAT_POLICIES)}, got {policy!r}")
    if policy == "none":
        return module_cls
    return nn.remat(module_cls, policy=REMAT_POLICIES[policy], prevent_cse=prevent_cse)


class BlockStack(nn.Module):
    """`num_layers` copies of `block_cls(**block_kwargs)` applied in sequence.

    Each block maps (x, *args) -> x; args (e.g. a conditioning tensor) are shared by all
    blocks. scan_layers=True runs one nn.scan over stacked parameters (leading 'layers'
    axis; params under `<name>/layers/...`), giving one compiled block; False unrolls a loop
    (params under `<name>/layers_<i>/...`). The two hold the same numbers: stack or unstack
    the leaves to convert. remat_policy wraps each block in nn.remat (see REMAT_POLICIES).
    Callers pass their ModelOptions' scan_layers and remat_policy.
    """

    block_cls: type[nn.Module]
    block_kwargs: dict
    num_layers: int
    scan_layers: bool = True
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, *args: jax.Array) -> jax.Array:
        # prevent_cse is only needed outside scan (scan already blocks the CSE it guards).
        block = remat(self.block_cls, self.remat_policy, prevent_cse=not self.scan_layers)
        kwargs = dict(self.block_kwargs)
        if not self.scan_layers:
            for i in range(self.num_layers):
                x = block(**kwargs, name=f"layers_{i}")(x, *args)
            return x

        def body(module, carry, *shared):
            return module(carry, *shared), None

        scanned = nn.scan(
            body,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast,) * len(args),
            length=self.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, _ = scanned(block(**kwargs, name="layers"), x, *args)
        return x
