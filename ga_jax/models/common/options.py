"""ModelOptions: the numerics and memory switches every model module shares.

One frozen (hashable) dataclass instead of six fields re-declared and forwarded by hand
through every module; a Linen module holds it as one field, `options`, and passes it on
unchanged (or `options.replace(dtype=jnp.float32)` for a part that runs in float32).
They change how the model computes, never its parameter tree (except that scan_layers
stacks the blocks' parameters along a leading 'layers' axis).
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import jax.numpy as jnp

from ga_jax.models.common.stack import REMAT_POLICIES

__all__ = ["ATTENTION_IMPLEMENTATIONS", "Dtype", "ModelOptions"]

Dtype = Any

# dot_product_attention's implementations (ga_jax/models/common/attention.py).
ATTENTION_IMPLEMENTATIONS = ("xla", "chunked", "cudnn")


def _float_dtype(field: str, value: Any) -> jnp.dtype:
    try:
        if value is None:  # jnp.dtype(None) is float64
            raise TypeError
        dtype = jnp.dtype(value)
    except TypeError as error:
        raise ValueError(f"ModelOptions.{field}: expected a dtype, got {value!r}") from error
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"ModelOptions.{field}: expected a floating dtype ('float32', 'bfloat16', ...), "
            f"got {value!r}"
        )
    return dtype


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Numerics and memory switches shared by every module of a model.

    dtype                 compute dtype ('bfloat16' on accelerators); norms, softmax and
                          everything numerically delicate run in float32 regardless
    param_dtype           storage dtype of the parameters (float32)
    attention_impl        'xla' | 'chunked' | 'cudnn' (see dot_product_attention)
    attention_chunk_size  query chunk length of the 'chunked' attention
    scan_layers           BlockStack runs one nn.scan over stacked parameters (a leading
                          'layers' axis) instead of an unrolled loop
    remat_policy          nn.remat policy of every block ('none', 'full', ...; see
                          REMAT_POLICIES in ga_jax/models/common/stack.py)

    dtype and param_dtype accept names ('bfloat16') or dtypes and are stored as jnp.dtype.
    Invalid values raise ValueError naming the field.
    """

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "xla"
    attention_chunk_size: int = 1024
    scan_layers: bool = True
    remat_policy: str = "none"

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ (dtypes stay hashable).
        object.__setattr__(self, "dtype", _float_dtype("dtype", self.dtype))
        object.__setattr__(self, "param_dtype", _float_dtype("param_dtype", self.param_dtype))
        if self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"ModelOptions.attention_impl: expected one of {ATTENTION_IMPLEMENTATIONS}, "
                f"got {self.attention_impl!r}"
            )
        try:
            if isinstance(self.attention_chunk_size, bool):
                raise TypeError
            chunk = operator.index(self.attention_chunk_size)
        except TypeError:
            chunk = 0
        if chunk < 1:
            raise ValueError(
                "ModelOptions.attention_chunk_size: expected a positive int, got "
                f"{self.attention_chunk_size!r}"
            )
        object.__setattr__(self, "attention_chunk_size", chunk)
        if not isinstance(self.scan_layers, bool):
            raise ValueError(f"ModelOptions.scan_layers: expected a bool, got {self.scan_layers!r}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(
                f"ModelOptions.remat_policy: expected one of {sorted(REMAT_POLICIES)}, "
                f"got {self.remat_policy!r}"
            )

    def replace(self, **changes: Any) -> ModelOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, cfg: Any, where: str = "config.model") -> ModelOptions:
        """The options from the config fields of the same names (configs/vae/model.py:
        config.model.dtype, .param_dtype, ...); every field is required."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in cfg]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing} (ModelOptions needs {names})")
        return cls(**{name: cfg[name] for name in names})
