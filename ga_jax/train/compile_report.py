"""Ahead-of-time compile of a task's train step on a mesh, without data or weights, and what
the compiled program says about it: per-device memory, FLOPs and the bytes every collective
moves per step (launch.compile_check; docs/scaling.md).

The state, batch and frozen inputs are jax.ShapeDtypeStructs (Task.abstract_batch,
Task.abstract_frozen), so a paper-size model compiles on simulated CPU devices with none of
its memory allocated. Collectives are read from the optimised HLO of the SPMD program (one
device's program): each all-gather / all-reduce / reduce-scatter / all-to-all /
collective-permute with the bytes of its result, multiplied by the trip count of the while
loops around it (scanned layers run their body once per layer).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import time
from typing import Any

import jax
import numpy as np

from ga_jax.parallel.mesh import rules_context
from ga_jax.train.loop import jit_train_step
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import abstract_train_state

__all__ = ["CompileReport", "collective_bytes", "compile_train_step", "sharded_bytes"]

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")

_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
    "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_OP = re.compile(r"=\s*(?P<shape>.+?)\s+(?P<op>" + "|".join(COLLECTIVES) + r")(?P<start>-start)?\(")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?(?P<name>[\w.\-]+)\s.*\{\s*$")
_WHILE = re.compile(r"\bwhile\(.*?body=%?(?P<body>[\w.\-]+)")
_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLS = re.compile(
    r"\b(?:to_apply|calls|body|condition|branch_computations)=(\{[^}]*\}|%?[\w.\-]+)"
)


def _array_bytes(text: str) -> list[int]:
    return [
        _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
        for dtype, dims in _ARRAY.findall(text)
    ]


def collective_bytes(hlo_text: str) -> dict[str, dict[str, int]]:
    """{collective: {'count': executions per step, 'bytes': result bytes per step}} of one
    device's optimised HLO (compiled.as_text()). An asynchronous '-start' op counts its
    largest result (the output buffer); ops in a while body count once per trip when the
    loop's trip count is known (once otherwise)."""
    bodies: dict[str, list[str]] = {}
    name = entry = None
    for line in hlo_text.splitlines():
        match = _COMPUTATION.match(line.strip())
        if match and not line.startswith(" "):
            name = match.group("name")
            bodies[name] = []
            if line.startswith("ENTRY"):
                entry = name
        elif name is not None:
            bodies[name].append(line)
    # How many times each computation runs per step: from the entry down through calls,
    # with while bodies multiplied by their trip counts.
    entry = entry or next(iter(bodies), None)
    runs: dict[str, int] = collections.defaultdict(int)

    def visit(computation: str, times: int, depth: int = 0) -> None:
        if computation not in bodies or depth > 50:
            return
        runs[computation] += times
        for line in bodies[computation]:
            loop = _WHILE.search(line)
            trips = _TRIPS.search(line)
            for called in _called(line):
                factor = int(trips.group(1)) if loop and trips and called == loop["body"] else 1
                visit(called, times * factor, depth + 1)

    if entry is not None:
        visit(entry, 1)
    totals: dict[str, dict[str, int]] = {op: {"count": 0, "bytes": 0} for op in COLLECTIVES}
    for computation, lines in bodies.items():
        times = runs.get(computation, 0)
        for line in lines:
            match = _OP.search(line)
            if match is None or times == 0:
                continue
            sizes = _array_bytes(match["shape"])
            size = max(sizes) if match["start"] else sum(sizes)
            totals[match["op"]]["count"] += times
            totals[match["op"]]["bytes"] += times * size
    return totals


def _called(line: str) -> list[str]:
    names = []
    for group in _CALLS.findall(line):
        names += [n.strip().lstrip("%") for n in group.strip("{}").split(",") if n.strip()]
    return names


def sharded_bytes(abstract_tree: Any) -> tuple[int, int]:
    """(bytes of the whole tree, bytes one device holds) of ShapeDtypeStructs with shardings
    (every device holds one shard of each leaf: the shardings split axes evenly)."""
    total = per_device = 0
    for leaf in jax.tree.leaves(abstract_tree):
        size = np.dtype(leaf.dtype).itemsize
        total += size * math.prod(leaf.shape)
        per_device += size * math.prod(leaf.sharding.shard_shape(leaf.shape))
    return total, per_device


@dataclasses.dataclass
class CompileReport:
    """What compile_train_step measured (bytes per device unless named otherwise)."""

    mesh: dict[str, int]
    devices: int
    params: int  # parameter count
    state_total_bytes: int  # parameters + optimiser state (+ EMA), unsharded
    state_device_bytes: int  # the same, on the device holding most of it
    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    generated_code_bytes: int
    flops: float  # cost analysis of one device's program
    collectives: dict[str, dict[str, int]]
    compile_seconds: float
    model_flops: float | None = None  # analytic, where the task counts them (the DiTs)

    def table(self) -> str:
        mib = lambda b: f"{b / 2**20:,.1f} MiB"
        rows = [
            ("mesh", " x ".join(f"{k} {v}" for k, v in self.mesh.items())),
            ("devices", str(self.devices)),
            ("parameters", f"{self.params:,}"),
            ("state (params + optimiser), unsharded", mib(self.state_total_bytes)),
            (
                "state per device",
                f"{mib(self.state_device_bytes)} "
                f"(1/{self.state_total_bytes / max(self.state_device_bytes, 1):.2f})",
            ),
            ("arguments per device", mib(self.argument_bytes)),
            ("outputs per device", mib(self.output_bytes)),
            ("temporaries per device", mib(self.temp_bytes)),
            ("FLOPs per device per step (XLA; scanned layers once)", f"{self.flops:.4g}"),
            ("compile time", f"{self.compile_seconds:.1f} s"),
        ]
        for op, value in self.collectives.items():
            rows.append(
                (f"{op}: count / bytes per step", f"{value['count']} / {mib(value['bytes'])}")
            )
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def compile_train_step(task, config, mesh, *, num_points: int) -> tuple[Any, CompileReport]:
    """(compiled step, report) of the task's train step on `mesh`, ahead of time: nothing is
    allocated or run. num_points: the latent's point count (flow stages)."""
    rules = config.mesh.get("rules")
    ema = float(config.train.get("ema_decay", 0.0)) > 0
    with rules_context(mesh, rules):
        optimizer = make_optimizer(config.optimizer)
        abstract, shardings = abstract_train_state(
            task, optimizer, mesh, rules, jax.random.key(0), ema=ema
        )
        # The jitted step's in_shardings place the batch and the frozen inputs.
        step = jit_train_step(task, optimizer, config.train, mesh, rules, shardings)
        start = time.perf_counter()
        lowered = step.lower(
            abstract, task.abstract_batch(num_points), jax.random.key(1), task.abstract_frozen()
        )
        compiled = lowered.compile()
        seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    state = (abstract.params, abstract.opt_state, abstract.ema_params)
    total, per_device = sharded_bytes(state)
    report = CompileReport(
        mesh=dict(mesh.shape),
        devices=mesh.size,
        params=sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params)),
        state_total_bytes=total,
        state_device_bytes=per_device,
        argument_bytes=int(getattr(memory, "argument_size_in_bytes", 0)),
        output_bytes=int(getattr(memory, "output_size_in_bytes", 0)),
        temp_bytes=int(getattr(memory, "temp_size_in_bytes", 0)),
        generated_code_bytes=int(getattr(memory, "generated_code_size_in_bytes", 0)),
        flops=float((cost or {}).get("flops", float("nan"))),
        collectives=collective_bytes(compiled.as_text()),
        compile_seconds=seconds,
    )
    return compiled, report
