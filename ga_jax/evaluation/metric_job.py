"""The metric evaluation job: generated objects against a reference set, under one render
protocol, with the evaluators a config names.

    python -m launch.evaluate --config=configs/eval/synthetic.py --workdir=outputs/eval

Steps: list both sets (ga_jax/evaluation/object_sets.py; every unusable object becomes a
reported problem), get each object's features from the cache or compute them in batches
sharded over the devices (ga_jax/evaluation/evaluators.py, feature_cache.py; under several
processes each computes a block of the objects on its own devices into the shared cache, and
process 0 goes on from there), run the evaluators, write `<workdir>/metrics.json` and
`metrics.md`. An object that fails while its features are computed (a corrupt PLY, a chunk that
does not decode) is reported by path and left out of every measure of its side; the job goes
on. An evaluator that cannot run on what it was given (KID on fewer objects than a subset)
reports why in its row.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from ga_jax.data.process_shards import process_range
from ga_jax.evaluation.edit_preservation import edit_preservation_views
from ga_jax.evaluation.evaluators import (
    DATA_AXIS,
    EVALUATORS,
    FEATURES,
    ClipScorer,
    EvalData,
    FeatureNetwork,
    PairedViewMetrics,
    build_network,
)
from ga_jax.evaluation.feature_cache import FeatureCache, cache_key
from ga_jax.evaluation.object_sets import (
    GeneratedObject,
    Problem,
    ReferenceObject,
    RenderProtocol,
    file_digest,
    list_generated,
    list_reference,
)
from ga_jax.pipeline.sample_files import read_sample

__all__ = ["run_evaluation"]

log = logging.getLogger(__name__)

PAIRED = "paired_views"
CLIP = "clip_score"
EDIT = "edit_preservation"
JOB_KINDS = {"cloud", PAIRED, CLIP, EDIT}  # computed here, not by a FeatureNetwork
PLUMBING = (
    "PLUMBING CHECK: feature networks with random weights ({}); these numbers test the job, "
    "they are not comparable with any paper's"
)


def _needed_kinds(evals) -> dict[str, tuple[str, ...]]:
    """eval name -> feature kinds, checking every entry's type."""
    needs = {}
    for name, spec in evals.items():
        kind = spec.get("type")
        if kind not in EVALUATORS:
            raise ValueError(
                f"evals.{name}.type: expected one of {sorted(EVALUATORS)}, got {kind!r}"
            )
        kinds = EVALUATORS[kind][0]
        needs[name] = tuple(kinds(spec) if callable(kinds) else kinds)
        unknown = [k for k in needs[name] if k not in FEATURES]
        if unknown:
            raise ValueError(
                f"evals.{name}.features: expected one of {sorted(FEATURES)}, got {unknown[0]!r}"
            )
    return needs


class _Side:
    """One set's objects and the features gathered for them."""

    def __init__(self, name: str, objects: Sequence[GeneratedObject | ReferenceObject]):
        self.name = name
        self.objects = list(objects)
        self.features: dict[str, dict[str, dict[str, np.ndarray]]] = {
            o.name: {} for o in self.objects
        }
        self.failed: dict[str, Problem] = {}

    def live(self) -> list:
        return [o for o in self.objects if o.name not in self.failed]

    def fail(self, obj, source: str, error: Exception) -> None:
        self.failed[obj.name] = Problem(
            str(_source_path(obj, source)), f"{type(error).__name__}: {error}"
        )
        log.warning("%s object %s left out: %s", self.name, obj.name, error)


def _source_path(obj, source: str) -> Path:
    """The file (or chunk) an object's `source` ("views" or "clouds") is read from."""
    if isinstance(obj, GeneratedObject):
        return obj.path
    return obj.chunk_path if source == "views" else obj.fps_path


def _digest(obj, source: str) -> str:
    if isinstance(obj, GeneratedObject):
        return obj.digest
    return obj.image_digest if source == "views" else obj.cloud_digest


class _Extractor:
    def __init__(self, protocol, networks, cache, batch_objects: int):
        self.protocol = protocol
        self.networks = networks
        self.cache = cache
        self.batch = batch_objects

    def key(self, obj, kind: str) -> str:
        if kind == "cloud":
            return cache_key("cloud", "none", self.protocol.cloud_fields(), _digest(obj, "clouds"))
        net = self.networks[kind]
        fields = (
            self.protocol.image_fields() if net.source == "views" else self.protocol.cloud_fields()
        )
        return cache_key(kind, net.weights, fields, _digest(obj, net.source))

    def _from_cache(self, side: _Side, kind: str) -> list:
        """Fill what the cache has; the live objects still missing `kind`."""
        missing = []
        for obj in side.live():
            arrays = self.cache.get(kind, self.key(obj, kind))
            if arrays is None:
                missing.append(obj)
            else:
                side.features[obj.name][kind] = arrays
        return missing

    def clouds(self, side: _Side) -> None:
        missing = self._from_cache(side, "cloud")
        for obj in missing:
            try:
                cloud, distinct = obj.cloud(self.protocol)
            except Exception as e:  # noqa: BLE001 - any unreadable object is reported
                side.fail(obj, "clouds", e)
                continue
            arrays = {"cloud": cloud, "distinct": np.asarray(distinct)}
            self.cache.put("cloud", self.key(obj, "cloud"), arrays)
            side.features[obj.name]["cloud"] = arrays

    def _run_batches(
        self, side: _Side, kinds: list[str], source: str, todo: list, make_input
    ) -> None:
        """Compute `kinds` for the objects `todo` in fixed-size batches (one compilation)."""
        start, done = time.perf_counter(), 0
        for b in range(0, len(todo), self.batch):
            objs, inputs = [], []
            for obj in todo[b : b + self.batch]:
                try:
                    inputs.append(make_input(obj))
                    objs.append(obj)
                except Exception as e:  # noqa: BLE001 - any unreadable object is reported
                    side.fail(obj, source, e)
            if not objs:
                continue
            x = np.stack(inputs)
            if len(x) < self.batch:  # pad to the batch size: the same shape every call
                x = np.concatenate([x, np.repeat(x[-1:], self.batch - len(x), axis=0)])
            for kind in kinds:
                out = self.networks[kind].apply(x)
                for i, obj in enumerate(objs):
                    arrays = {k: v[i] for k, v in out.items()}
                    self.cache.put(kind, self.key(obj, kind), arrays)
                    side.features[obj.name][kind] = arrays
            done += len(todo[b : b + self.batch])
            rate = done / (time.perf_counter() - start)
            log.info(
                "%s %s: %d/%d objects computed, %.2f objects/s, ETA %.0f s",
                side.name,
                "+".join(kinds),
                done,
                len(todo),
                rate,
                (len(todo) - done) / rate,
            )

    def network_features(self, side: _Side, kinds: list[str], source: str) -> None:
        missing = {kind: {o.name for o in self._from_cache(side, kind)} for kind in kinds}
        todo = [o for o in side.live() if any(o.name in m for m in missing.values())]
        if not todo:
            return
        # Objects missing only some kinds get all of them recomputed (rare: a new network).
        if source == "views":
            self._run_batches(side, kinds, source, todo, lambda o: o.views(self.protocol))
        else:
            self._run_batches(
                side, kinds, source, todo, lambda o: side.features[o.name]["cloud"]["cloud"]
            )


def _paired_views(extractor, generated: _Side, reference: _Side, metrics) -> dict[str, dict]:
    """reference name -> PairedViewMetrics arrays of every pair matched by name (cached)."""
    by_name = {o.name: o for o in generated.live()}
    out = {}
    for ref in reference.live():
        gen = by_name.get(ref.name)
        if gen is None:
            continue
        fields = extractor.protocol.image_fields()
        key = cache_key(PAIRED, metrics.weights, fields, gen.digest + ref.image_digest)
        arrays = extractor.cache.get(PAIRED, key)
        if arrays is None:
            try:
                target, cameras = ref.views_and_cameras(extractor.protocol)
            except Exception as e:  # noqa: BLE001 - any unreadable object is reported
                reference.fail(ref, "views", e)
                continue
            try:
                rendered = gen.views(extractor.protocol, cameras=cameras)
            except Exception as e:  # noqa: BLE001
                generated.fail(gen, "views", e)
                continue
            arrays = metrics.compare(rendered, target)
            extractor.cache.put(PAIRED, key, arrays)
        out[ref.name] = arrays
    return out


def _clip_scores(extractor, generated: _Side, scorer) -> dict[str, dict]:
    """generated name -> {"scores": [V]} for every live object with a prompt (cached)."""
    out = {}
    for obj in generated.live():
        if obj.prompt is None:
            continue
        fields = extractor.protocol.image_fields()
        key = cache_key(CLIP, scorer.weights, fields, obj.digest + "\0" + obj.prompt)
        arrays = extractor.cache.get(CLIP, key)
        if arrays is None:
            try:
                views = obj.views(extractor.protocol)
            except Exception as e:  # noqa: BLE001 - any unreadable object is reported
                generated.fail(obj, "views", e)
                continue
            arrays = {"scores": scorer.scores(views, obj.prompt)}
            extractor.cache.put(CLIP, key, arrays)
        out[obj.name] = arrays
    return out


def _edit_preservation(extractor, generated: _Side, metrics) -> dict[str, dict]:
    """edited sample name -> the edit measure's arrays, for every live object that records
    its original (cached; a missing or unreadable original is reported by path)."""
    out = {}
    for obj in generated.live():
        if obj.edited_from is None:
            continue
        edited, original = obj.path.parent.resolve(), Path(obj.edited_from).resolve()
        try:
            files = [d / f for d in (edited, original) for f in ("surfels.ply", "latent.npz")]
            digest = file_digest(files, Path("/"))
            key = cache_key(EDIT, metrics.weights, extractor.protocol.image_fields(), digest)
            arrays = extractor.cache.get(EDIT, key)
            if arrays is None:
                before, after = read_sample(original), read_sample(edited)
                views_before, views_after, kept = edit_preservation_views(
                    before, after, extractor.protocol
                )
                arrays = metrics.compare(views_after, views_before)
                arrays["unedited_fraction"] = np.asarray(kept)
                extractor.cache.put(EDIT, key, arrays)
        except Exception as e:  # noqa: BLE001 - any unreadable sample is reported
            generated.fail(obj, "views", e)
            continue
        out[obj.name] = arrays
    return out


def _stack(side: _Side, kinds: set[str]) -> dict[str, dict[str, np.ndarray]]:
    kinds = kinds - {PAIRED, CLIP, EDIT}
    live = side.live()
    return {
        kind: {
            name: np.stack([side.features[o.name][kind][name] for o in live])
            for name in side.features[live[0].name][kind]
        }
        for kind in kinds
    }


def _distinct_points(sides: dict[str, _Side]) -> dict[str, Any]:
    """Per side, the fewest and mean distinct points of the clouds (a cloud with fewer than
    the protocol's points repeats them: object_sets.RenderProtocol)."""
    out = {}
    for name, side in sides.items():
        counts = [int(side.features[o.name]["cloud"]["distinct"]) for o in side.live()
                  if "cloud" in side.features[o.name]]  # fmt: skip
        if counts:
            out[name] = {"min": min(counts), "mean": float(np.mean(counts))}
    return out


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Metric evaluation: {report['config_name']}", ""]
    if report["plumbing_check"]:
        lines += [f"**{report['plumbing_check']}**", ""]
    lines += [
        f"Protocol: {report['protocol_text']}.",
        "",
        f"Generated: {report['generated']['used']} of {report['generated']['listed']} objects "
        f"({report['generated']['root']}); reference: {report['reference']['used']} of "
        f"{report['reference']['listed']} ({report['reference']['fps_root']}).",
        "",
        "| metric | value | scale | objects (generated, reference) | protocol |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["metrics"].items():
        if "error" in r:
            lines.append(f"| {name} | not computed: {r['error']} | | | |")
            continue
        count = ", ".join(str(c) for c in r.get("count", []))
        scale, protocol = r.get("scale", ""), r.get("protocol", "")
        lines.append(f"| {name} | {r['display']} | {scale} | {count} | {protocol} |")
    counts = [
        f"{k} {v['computed']} computed / {v['cached']} cached"
        for k, v in report["features"].items()
    ]
    lines += [
        "",
        f"Features (per object, over {report['devices']} device(s) in {report['processes']} "
        "process(es)): " + ", ".join(counts) + ".",
    ]
    if report["cloud_points"]:
        lines += ["", "Distinct cloud points (fewest / mean): " + ", ".join(
            f"{side} {c['min']} / {c['mean']:.0f}" for side, c in report["cloud_points"].items()
        ) + "."]  # fmt: skip
    problems = report["problems"]
    lines += ["", f"Problems: {len(problems)} object(s) left out" + (":" if problems else ".")]
    lines += [f"- {p['side']}: `{p['path']}`: {p['error']}" for p in problems]
    return "\n".join(lines) + "\n"


def _compute(extractor, kinds, networks, sides, *, paired, lpips, clip, pair_with=None):
    """Every feature and per-object measure the evals need for the objects of `sides`, from the
    cache or computed into it: (paired, edit, clip arrays by object name). pair_with: the
    generated objects the reference ones pair with (default: sides["generated"])."""
    network_kinds = sorted(kinds - JOB_KINDS)
    for side in sides.values():
        if "cloud" in kinds or any(n.source == "clouds" for n in networks.values()):
            extractor.clouds(side)
        for source in ("views", "clouds"):
            group = [k for k in network_kinds if networks[k].source == source]
            if group:
                extractor.network_features(side, group, source)
    generated = sides["generated"]
    paired_arrays = (
        _paired_views(extractor, pair_with or generated, sides["reference"], paired)
        if paired
        else {}
    )
    edit_arrays = _edit_preservation(extractor, generated, lpips) if EDIT in kinds else {}
    clip_arrays = _clip_scores(extractor, generated, clip) if clip is not None else None
    return paired_arrays, edit_arrays, clip_arrays


def _counted_kinds(kinds: set[str]) -> list[str]:
    """The cache kinds a job can compute, in one order on every process (clouds also feed the
    point-cloud networks)."""
    return sorted(kinds | {"cloud"})


def _compute_process_blocks(compute, sides, cache, kinds: set[str]) -> np.ndarray:
    """Several processes: each computes its contiguous block of each side's objects into the
    shared cache; when all are done process 0 reads them all from it (an object that failed is
    tried again there and reported). Returns the cache entries computed in this step,
    [process, kind] over _counted_kinds(kinds) (the report counts them as computed, not
    cached, and shows each process's share)."""
    index, count = jax.process_index(), jax.process_count()
    blocks = {
        name: _Side(name, [side.objects[i] for i in process_range(len(side.objects), index, count)])
        for name, side in sides.items()
    }
    # Each reference object of this block pairs with its generated object, wherever it is.
    compute(blocks, pair_with=_Side("generated", sides["generated"].objects))
    kinds = _counted_kinds(kinds)
    mine = np.asarray([cache.counts[k]["computed"] for k in kinds], np.int64)
    # A collective: it also waits for every process's block.
    computed = np.asarray(multihost_utils.process_allgather(mine)).reshape(count, len(kinds))
    log.info("entries computed by each process: %s", computed.sum(1).tolist())
    cache.counts.clear()  # from here on process 0 counts what it reads (_feature_counts)
    return computed


def _feature_counts(cache, kinds, blocks: np.ndarray | None) -> dict[str, dict[str, int]]:
    """cache.summary(), with the entries the process blocks computed moved from 'cached' (how
    process 0 found them) to 'computed'."""
    summary = cache.summary()
    before = {} if blocks is None else dict(zip(_counted_kinds(kinds), blocks.sum(0)))
    for kind, n in before.items():
        if kind in summary:
            summary[kind] = {
                "computed": summary[kind]["computed"] + int(n),
                "cached": summary[kind]["cached"] - int(n),
            }
    return summary


def run_evaluation(config: Any, workdir: str | Path) -> dict[str, Any] | None:
    """Run the job of `config` (configs/eval/*.py) and write workdir/metrics.{json,md}; returns
    the report. Under several processes every process computes a block of the objects' features
    (cached in workdir), then process 0 writes the report and returns it; the others return
    None."""
    start = time.perf_counter()
    workdir = Path(workdir)
    protocol = RenderProtocol.from_config(config.protocol)
    needs = _needed_kinds(config.evals)
    kinds = {k for v in needs.values() for k in v}
    network_kinds = sorted(kinds - JOB_KINDS)
    if any(config.networks[k].get("weights") is None for k in network_kinds):
        raise ValueError("networks.<name>.weights: expected a path, or '' for random weights")
    # Under several processes each computes its objects' features on its own devices.
    devices = jax.devices() if jax.process_count() == 1 else jax.local_devices()
    mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
    networks: dict[str, FeatureNetwork] = {
        k: build_network(k, config.networks[k], mesh) for k in network_kinds
    }
    batch = int(config.batch_objects)
    if batch < 1:
        raise ValueError(f"batch_objects: expected >= 1, got {batch}")

    generated, problems_g = list_generated(config.generated.root, config.generated.layout)
    needs_lpips = PAIRED in kinds or EDIT in kinds
    lpips = PairedViewMetrics(config.networks.lpips) if needs_lpips else None
    paired = lpips if PAIRED in kinds else None
    needs_views = paired is not None or any(n.source == "views" for n in networks.values())
    reference, problems_r = list_reference(
        config.reference.fps_root,
        config.reference.gbuffer_root if needs_views else None,
        protocol,
    )
    sides = {"generated": _Side("generated", generated), "reference": _Side("reference", reference)}
    listed = {
        "generated": len(generated) + len(problems_g),
        "reference": len(reference) + len(problems_r),
    }
    log.info(
        "%d generated objects (%d problems), %d reference objects (%d problems), %d device(s), "
        "%d process(es)", len(generated), len(problems_g), len(reference), len(problems_r),
        jax.device_count(), jax.process_count(),
    )  # fmt: skip

    cache = FeatureCache(workdir / "features")
    extractor = _Extractor(protocol, networks, cache, batch)
    clip_weights = config.networks.get("clip", {}).get("weights")
    clip = ClipScorer(config.networks.clip) if CLIP in kinds and clip_weights else None
    compute = functools.partial(
        _compute, extractor, kinds, networks, paired=paired, lpips=lpips, clip=clip
    )
    blocks = None
    if jax.process_count() > 1:
        blocks = _compute_process_blocks(compute, sides, cache, kinds)
        if jax.process_index() != 0:
            return None
    paired_arrays, edit_arrays, clip_arrays = compute(sides)
    for side in sides.values():
        if not side.live():
            raise ValueError(f"{side.name}: no usable object (see the problems logged above)")
    data = EvalData(
        features={name: _stack(side, kinds) for name, side in sides.items()},
        names={name: [o.name for o in side.live()] for name, side in sides.items()},
        paired=paired_arrays,
        clip=clip_arrays,
        edits=edit_arrays,
    )
    metrics = {}
    for name, spec in config.evals.items():
        try:
            metrics[name] = EVALUATORS[spec["type"]][1](spec, data)
        except ValueError as e:  # e.g. fewer objects than a KID subset: reported, not fatal
            metrics[name] = {"error": str(e)}
        log.info("%s: %s", name, metrics[name].get("display", metrics[name].get("error")))

    random = [k for k in network_kinds if networks[k].random]
    if lpips is not None and lpips.random:
        random.append("lpips")
    problems = [dict(vars(p), side="generated") for p in problems_g]
    problems += [dict(vars(p), side="reference") for p in problems_r]
    for side in sides.values():
        problems += [dict(vars(p), side=side.name) for p in side.failed.values()]
    report = {
        "config_name": config.get("name", "evaluation"),
        "plumbing_check": PLUMBING.format(", ".join(random)) if random else "",
        "protocol": protocol.as_dict(),
        "protocol_text": protocol.describe(),
        "generated": {
            "root": str(config.generated.root),
            "layout": config.generated.layout,
            "listed": listed["generated"],
            "used": len(sides["generated"].live()),
        },
        "reference": {
            "fps_root": str(config.reference.fps_root),
            "gbuffer_root": str(config.reference.gbuffer_root),
            "listed": listed["reference"],
            "used": len(sides["reference"].live()),
        },
        "networks": {
            k: {
                "weights": config.networks[k].weights or f"random (seed {config.networks[k].seed})",
                "digest": networks[k].weights,
            }
            for k in network_kinds
        },  # fmt: skip
        "features": _feature_counts(cache, kinds, blocks),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        # Cache entries each process computed in its block (None: one process).
        "computed_by_process": None if blocks is None else blocks.sum(1).tolist(),
        "cloud_points": _distinct_points(sides),
        "problems": problems,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - start, 2),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    (workdir / "metrics.md").write_text(_markdown(report))
    for p in problems:
        log.warning("left out (%s): %s: %s", p["side"], p["path"], p["error"])
    return report
