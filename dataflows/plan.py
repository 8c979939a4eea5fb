"""What a spec will compute, checked against the engine: ``eddy check`` and ``eddy run``.

``schemas.spec_load`` checks a spec's shape and references; this module checks what only the
engine knows: a policy's params, a detector and its params, the reward expression, a
simulator's options and the streams it makes. Every failure is one :class:`SpecError` line
naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eddy.operators.anomaly.keyed import KeyedDetector
from eddy.operators.bandits import POLICIES
from eddy.operators.expressions import Expression, ExpressionError
from eddy.operators.stages.detect import detector_config
from eddy.schemas.batch import constant_column
from eddy.schemas.durations import span_text
from eddy.schemas.spec import PipelineSpec, SpecError
from eddy.schemas.spec_load import as_mapping
from eddy.schemas.tables import pipeline_tables
from eddy.sources.simulators import SIMULATORS, make_simulator

__all__ = ["check_engine", "describe"]


def check_engine(spec: PipelineSpec) -> None:
    """Raise :class:`SpecError` for anything the engine cannot run."""
    _check_integers(spec)
    for i, d in enumerate(spec.decide):
        where = f"decide[{i}]"
        if d.policy not in POLICIES:
            raise SpecError(
                f"key '{where}.policy': expected one of {', '.join(sorted(POLICIES))}, "
                f"got {d.policy!r}"
            )
        try:  # the policy checks its own params: build a tiny one
            POLICIES[d.policy](2, 1, **as_mapping(d.params))
        except (TypeError, ValueError) as e:
            raise SpecError(f"key '{where}.params': {e}") from None
        outcomes = spec.stream(d.reward.stream)
        try:
            Expression.parse(d.reward.value, {f.name: f.type for f in outcomes.fields})
        except ExpressionError as e:
            raise SpecError(f"key '{where}.reward.value': {e}") from None
    for i, det in enumerate(spec.detect):
        try:
            detector = KeyedDetector(detector_config(det, spec.stream(det.stream), spec.seed))
        except ValueError as e:
            raise SpecError(_keyed(f"detect[{i}].", "params", str(e))) from None
        if det.detector.startswith("river:"):
            _trial_run(detector, as_mapping(det.params), f"detect[{i}]")
    _check_simulator(spec)


# TOML integers are 64-bit, but Python's reader takes any size; a larger one passes every
# "expected an int >= N" check and then overflows inside numpy or numba mid-run
_INT64 = (-(2**63), 2**63 - 1)


def _check_integers(spec: PipelineSpec) -> None:
    tables: list[tuple[str, Any]] = [("simulator", as_mapping(spec.simulator))]
    tables += [(f"decide[{i}].params", as_mapping(d.params)) for i, d in enumerate(spec.decide)]
    tables += [(f"detect[{i}].params", as_mapping(d.params)) for i, d in enumerate(spec.detect)]
    tables += [
        (f"streams.{s.name}.fields.{f.name}.default", f.default)
        for s in spec.streams
        for f in s.fields
    ]
    for key, value in tables:
        _int64(value, key)


def _int64(value: Any, key: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _int64(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for j, v in enumerate(value):
            _int64(v, f"{key}[{j}]")
    elif isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise SpecError(f"key '{key}': expected a 64-bit integer, got {value}")


# A river model may fail only once it has seen enough values (HalfSpaceTrees with n_trees = 0
# divides by zero when its first window of `window_size` values is full): run it on a series
# longer than that before the dataflow starts, where the failure would end the run.
_TRIAL_VALUES = 512


def _trial_run(detector: KeyedDetector, params: Any, where: str) -> None:
    window = params.get("window_size")
    n = max(_TRIAL_VALUES, window + 2 if isinstance(window, int) else 0)
    n = min(n, 5_000)  # a few seconds of River at most
    m = len(detector.config.metrics)
    values = np.tile((np.arange(n) % 3 == 0).astype(np.float64)[:, None], (1, m))
    ts = 946_684_800_000 + np.arange(n, dtype=np.int64) * 1_000  # 2000-01-01, one per second
    try:
        detector.update(constant_column("trial", n), ts, values, 0)
        detector.flush(0)
    except Exception as e:  # any error of the model's own code
        raise SpecError(
            f"key '{where}.params': {detector.config.detector} fails on a trial series: "
            f"{type(e).__name__}: {e}"
        ) from None


def _keyed(prefix: str, fallback: str, message: str) -> str:
    """``"params.bucket: expected ..."`` -> ``"key '<prefix>params.bucket': expected ..."``;
    a message that does not start with a key path is put under ``fallback``."""
    head, sep, rest = message.partition(":")
    if sep and head and " " not in head.strip():
        return f"key '{prefix}{head.strip()}':{rest}"
    return f"key '{prefix}{fallback}': {message}"


def _check_simulator(spec: PipelineSpec) -> None:
    uses = [(s, s.source_target) for s in spec.streams if s.source_kind == "simulator"]
    if not uses:
        if spec.simulator:
            raise SpecError("key 'simulator': no stream reads from a simulator")
        return
    names = {t.partition("/")[0] for _, t in uses}
    if len(names) > 1:
        raise SpecError(
            f"key 'streams.{uses[0][0].name}.source': streams name several simulators "
            f"({', '.join(sorted(names))}); a pipeline uses one"
        )
    name = names.pop()
    if name not in SIMULATORS:
        raise SpecError(
            f"key 'streams.{uses[0][0].name}.source': no simulator {name!r}; known: "
            f"{', '.join(sorted(SIMULATORS))}"
        )
    cls = SIMULATORS[name]
    for stream, target in uses:
        sim_stream = target.partition("/")[2] or stream.name
        made = cls.STREAMS.get(sim_stream)
        where = f"streams.{stream.name}"
        if made is None:
            raise SpecError(
                f"key '{where}.source': simulator {name!r} makes streams "
                f"{', '.join(sorted(cls.STREAMS))}; name one as simulator:{name}/STREAM"
            )
        if stream.time != made.time:
            raise SpecError(
                f"key '{where}.time': simulator stream {sim_stream!r} has time {made.time!r}"
            )
        if stream.id is not None and stream.id != made.id:
            raise SpecError(
                f"key '{where}.id': simulator stream {sim_stream!r} has id field {made.id!r}"
            )
        for f in stream.fields:
            have = made.fields.get(f.name)
            if have is None:
                raise SpecError(
                    f"key '{where}.fields.{f.name}': simulator stream {sim_stream!r} has no such "
                    f"field; it has {', '.join(made.fields)}"
                )
            if have != f.type and not (have == "int" and f.type == "float"):
                raise SpecError(
                    f"key '{where}.fields.{f.name}': simulator stream {sim_stream!r} makes it "
                    f"{have}, not {f.type}"
                )
    options = dict(as_mapping(spec.simulator))
    seed = int(options.pop("seed", spec.seed))
    base = Path(spec.path).parent if spec.path else None
    try:
        make_simulator(name, options, seed, base_dir=base)
    except ValueError as e:
        raise SpecError(_keyed("", "simulator", str(e))) from None


def _sharding(spec: PipelineSpec) -> list[str]:
    """How the keyed stages and the decide stages split over workers."""
    from eddy.operators.engine.routing import ID, keyed_routes, why_unsplit

    count = f"{spec.shards} shards" if spec.shards else "one shard per worker"
    routes = keyed_routes(spec)
    if routes is None:
        lines = [f"shards: keyed stages on one shard ({why_unsplit(spec)})"]
    else:
        by = ", ".join(f"{s} by {'id' if f == ID else f}" for s, f in routes.items())
        lines = [f"shards: keyed state in {count}; rows routed {by}"]
    for d in spec.decide:
        shared = ""
        if d.shards > 1:
            shared = f"; what they learn shared every {span_text(d.merge_every_ms)} of event time"
        lines.append(
            f"  decide {d.name}: {d.shards} shard{'s' if d.shards > 1 else ''} "
            f"(decisions by id, outcomes by {d.reward.join}{shared})"
        )
    return lines


def describe(spec: PipelineSpec) -> str:
    """What the pipeline will compute, for people: streams, stages, tables and columns."""
    lines = [f"pipeline {spec.name!r}: results in {spec.duckdb_path}, topics {spec.topics}.*"]
    lines.append(
        f"time: watermark = max event time - {spec.allowed_lateness_ms} ms; late events: "
        f"{spec.late_policy}"
    )
    lines.append("")
    lines.append("streams:")
    for s in spec.streams:
        ident = f"id {s.id}" if s.id else "id = source position"
        fields = ", ".join(f"{f.name} {f.type}{'?' if f.optional else ''}" for f in s.fields)
        lines.append(f"  {s.name} <- {s.source}  ({ident}, time {s.time})")
        lines.append(f"    fields: {fields or '(none)'}")
    lines.append("")
    lines.append("stages:")
    for f in spec.features:
        per_event = (
            f"{len(f.columns)} per-event features" if f.trailing else "no per-event features"
        )
        windows = ", ".join(f.window_names) or "none"
        stored = f" -> features_{f.name}" if f.store else ""
        lines.append(
            f"  features {f.name}: {f.stream} by {f.key or '(all)'}; {per_event}{stored}; "
            f"windows: {windows}"
        )
    for d in spec.detect:
        lines.append(
            f"  detect {d.name}: {d.stream} by {d.key or '(all)'}; {d.detector} on "
            f"{', '.join(d.metrics)}; threshold {d.threshold}"
        )
    for dec in spec.decide:
        eligible = f", eligible from {dec.eligible}" if dec.eligible else ""
        lines.append(
            f"  decide {dec.name}: one of {', '.join(dec.arms)} per {dec.stream} event{eligible}; "
            f"{dec.policy}; reward = {dec.reward.value} from {dec.reward.stream} joined on "
            f"{dec.reward.join} within {dec.reward.ttl_ms} ms (else {dec.reward.default:g})"
        )
    lines.append("")
    lines.extend(_sharding(spec))
    lines.append("")
    lines.append("tables:")
    for t in pipeline_tables(spec).values():
        lines.append(f"  {t.name} ({', '.join(t.column_names)})")
    return "\n".join(lines)
