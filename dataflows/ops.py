"""eddy's stages as Bytewax operators, for a dataflow of your own.

``decode`` turns raw JSON-line batches into typed batches (``.oks``) and dead-letter rows
(``.errs``); ``stages`` runs every stage of a spec over typed batches; ``features``,
``detect`` and ``decide`` run one declaration each. They all carry micro-batches, never single
events, and keep their state in one Bytewax key (``"eddy"``), snapshotted with recovery.

>>> import numpy as np
>>> from bytewax.dataflow import Dataflow
>>> from bytewax.testing import TestingSink, TestingSource, run_main
>>> from eddy.schemas.batch import EventBatch
>>> from eddy.schemas.spec import FeaturesSpec, FieldSpec, StreamSpec, Window
>>> fields = (FieldSpec("host", "string"), FieldSpec("cpu", "float"))
>>> stream = StreamSpec("jobs", "jsonl:-", "ts", fields)
>>> spec = FeaturesSpec("load", "jobs", "host", ("cpu",), tumbling=(Window(60_000, "1m"),))
>>> batch = EventBatch("jobs", np.array([0, 30_000, 90_000]), np.array(["a", "b", "c"], object),
...                    {"host": np.array(["h1"] * 3, object), "cpu": np.array([1.0, 3.0, 5.0])})
>>> flow = Dataflow("demo")
>>> out = []
>>> results = features("load", op.input("in", flow, TestingSource([batch])), spec, stream)
>>> op.output("out", results, TestingSink(out))
>>> run_main(flow)
>>> windows = Results.combine(out).tables["window_aggregates"]
>>> windows["window"].tolist(), windows["mean"].tolist()
(['tumbling_1m', 'tumbling_1m'], [2.0, 5.0])
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from eddy.operators.engine import PipelineEngine
from eddy.operators.stats import lag_gauge
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import TimeBound, decode_lines, eligibility_checks
from eddy.schemas.results import Results, dead_letter_results
from eddy.schemas.spec import DecideSpec, DetectSpec, FeaturesSpec, PipelineSpec, StreamSpec
from eddy.sources.base import RawBatch

__all__ = ["DecodeStreams", "decide", "decode", "detect", "features", "raw_decoder", "stages"]

_KEY = "eddy"


@dataclass(frozen=True)
class DecodeStreams:
    """``oks``: ``(partition, EventBatch)`` items; ``errs``: ``Results`` of dead letters."""

    oks: Stream[tuple[int, EventBatch]]
    errs: Stream[Results]


def raw_decoder(spec: PipelineSpec) -> Callable[[RawBatch], tuple[Results, EventBatch]]:
    """Decode one raw batch of ``spec``'s streams (``schemas.decode``): its dead letters and
    decode counters (events in and out, dead letters, what the input partition still holds),
    and its valid events."""
    streams = {s.name: s for s in spec.streams}
    checks = eligibility_checks(spec)

    def one(item: RawBatch) -> tuple[Results, EventBatch]:
        now_ms = time.time_ns() // 1_000_000
        batch, dead = decode_lines(
            streams[item.stream],
            item.lines,
            item.positions,
            item.source,
            item.ingest_ns,
            spec.max_event_bytes,
            checks.get(item.stream, ()),
            raw=item.raw,
            time_bound=TimeBound(now_ms, spec.max_ahead_ms),
        )
        report = dead_letter_results(dead, now_ms)
        report.count("decode.events_in", len(item))
        report.count("decode.events_out", len(batch))
        report.count("decode.dead_letters", len(dead))
        if item.lag >= 0:  # what the partition still holds (Kafka records, file bytes)
            report.gauges[lag_gauge(item.stream, item.partition, item.lag_unit)] = item.lag
        return report, batch

    return one


@operator
def decode(step_id: str, up: Stream[RawBatch], spec: PipelineSpec) -> DecodeStreams:
    """Decode raw JSON-line batches of ``spec``'s streams (:func:`raw_decoder`). ``errs``
    carries, per input batch, its dead letters and the decode counters."""
    one = raw_decoder(spec)

    def items(raw: RawBatch) -> list[Any]:
        report, batch = one(raw)
        return [report, (raw.partition, batch)] if len(batch) else [report]

    decoded = op.flat_map("decode", up, items)
    split = op.branch("split", decoded, lambda x: isinstance(x, Results))
    return DecodeStreams(oks=split.falses, errs=split.trues)


class _Logic(StatefulBatchLogic[Any, Results, bytes]):
    def __init__(self, spec: PipelineSpec, resume: bytes | None) -> None:
        self._engine = (
            PipelineEngine.restore(spec, pickle.loads(resume)) if resume else PipelineEngine(spec)
        )
        self._step_rows = spec.batch_size

    def on_batch(self, values: list[Any]) -> tuple[list[Results], bool]:
        items = [v if isinstance(v, tuple) else (0, v) for v in values]
        return [self._engine.process_many(items, time.time_ns(), self._step_rows)], False

    def on_eof(self) -> tuple[list[Results], bool]:
        return [self._engine.finish(time.time_ns())], False

    def snapshot(self) -> bytes:
        return pickle.dumps(self._engine.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)


@operator
def stages(
    step_id: str, up: Stream[tuple[int, EventBatch]] | Stream[EventBatch], spec: PipelineSpec
) -> Stream[Results]:
    """Every stage of ``spec`` over typed batches (``(partition, batch)`` or bare batches of
    partition 0): rows for the result tables as :class:`Results`."""
    keyed = op.key_on("key", up, lambda _: _KEY)
    out = op.stateful_batch("engine", keyed, lambda resume: _Logic(spec, resume))
    return op.key_rm("unkey", out)


def _alone(streams: tuple[StreamSpec, ...], **stage: Any) -> PipelineSpec:
    return PipelineSpec(name="stage", streams=streams, **stage)


@operator
def features(
    step_id: str,
    up: Stream[EventBatch],
    spec: FeaturesSpec,
    stream: StreamSpec,
    allowed_lateness_ms: int = 0,
    late_policy: str = "drop",
) -> Stream[Results]:
    """One ``[[features]]`` declaration over batches of ``stream``."""
    pipeline = _alone(
        (stream,),
        features=(spec,),
        allowed_lateness_ms=allowed_lateness_ms,
        late_policy=late_policy,
    )
    return stages("stages", up, pipeline)


@operator
def detect(
    step_id: str, up: Stream[EventBatch], spec: DetectSpec, stream: StreamSpec
) -> Stream[Results]:
    """One ``[[detect]]`` declaration over batches of ``stream``."""
    return stages("stages", up, _alone((stream,), detect=(spec,)))


@operator
def decide(
    step_id: str,
    up: Stream[EventBatch],
    spec: DecideSpec,
    decisions: StreamSpec,
    outcomes: StreamSpec,
) -> Stream[Results]:
    """One ``[[decide]]`` declaration over batches of its decision and outcome streams (merged
    into ``up`` in arrival order; context features from other stages are not available here:
    use :func:`stages` with the whole spec for those)."""
    plain = replace(spec, context=replace(spec.context, features=(), arm_features=()))
    numbered = op.map("number", up, lambda b: (0 if b.stream == decisions.name else 1_000, b))
    return stages("stages", numbered, _alone((decisions, outcomes), decide=(plain,)))
