"""ClosedLoopSource + ClosedLoopFeedbackSink in a real (tiny) Bytewax dataflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from eddy.sources.base import RawBatch
from eddy.sources.simulators import make_simulator
from eddy.sources.simulators.base import ClosedLoopSimulator
from eddy.sources.simulators.source import ClosedLoopFeedbackSink, ClosedLoopSource


def _first_eligible(batch: RawBatch) -> tuple[np.ndarray, np.ndarray]:
    recs = [orjson.loads(x) for x in batch.lines]
    id_field = "shipment_id" if "shipment_id" in recs[0] else "id"
    ids = np.array([r[id_field] for r in recs], dtype=object)
    arms = np.array([r["carriers"][0] if "carriers" in r else "alpha" for r in recs], dtype=object)
    return ids, arms


def _run(
    sim: ClosedLoopSimulator,
    names: dict[str, str],
    decision_stream: str | None,
    **kw: Any,
) -> tuple[list[RawBatch], ClosedLoopSource]:
    src = ClosedLoopSource(sim, names, **kw)
    flow = Dataflow("closed_loop_test")
    items = op.input("in", flow, src)

    def decide(b: RawBatch) -> tuple[np.ndarray, np.ndarray] | None:
        return _first_eligible(b) if b.stream == decision_stream else None

    op.output("feedback", op.filter_map("decide", items, decide), ClosedLoopFeedbackSink(src, _id))
    seen: list[RawBatch] = []
    op.output("seen", items, TestingSink(seen))
    run_main(flow)
    return seen, src


def _id(x: Any) -> Any:
    return x


def _lines(seen: list[RawBatch], stream: str) -> list[bytes]:
    return [x for b in seen if b.stream == stream for x in b.lines]


def test_the_loop_closes_every_decision_gets_its_outcome() -> None:
    sim = make_simulator("logistics", {"seed": 2, "events": 3_000})
    names = {"shipments": "orders", "deliveries": "done"}
    seen, _ = _run(sim, names, "orders", batch_size=250, partition_base={"orders": 1_000})
    orders = [orjson.loads(x) for x in _lines(seen, "orders")]
    done = [orjson.loads(x) for x in _lines(seen, "done")]
    assert len(orders) == 3_000
    assert sorted(d["shipment_id"] for d in done) == sorted(o["shipment_id"] for o in orders)
    assert all(
        d["carrier"] == o["carriers"][0]
        for d, o in zip(
            sorted(done, key=lambda d: d["shipment_id"]),
            sorted(orders, key=lambda o: o["shipment_id"]),
            strict=True,
        )
    )
    assert sim.scoreboard()["decisions"] == 3_000
    for stream, source, partition in (
        ("orders", "simulator:logistics/shipments", 1_001),  # sorted: deliveries 0, shipments 1
        ("done", "simulator:logistics/deliveries", 0),
    ):
        batches = [b for b in seen if b.stream == stream]
        assert {(b.source, b.partition) for b in batches} == {(source, partition)}
        positions = [p for b in batches for p in b.positions]
        assert positions == list(range(1, len(positions) + 1))
        assert all(b.ingest_ns > 0 and len(b.positions) == len(b.lines) for b in batches)
    assert max(len(b) for b in seen if b.stream == "orders") <= 250


def test_adserving_loop_and_a_stream_left_out() -> None:
    sim = make_simulator("adserving", {"events": 4_000, "outcome_loss": 0.0})
    seen, _ = _run(sim, {"requests": "requests"}, "requests", batch_size=1_000)
    assert {b.stream for b in seen} == {"requests"}  # outcomes are not mapped: not emitted
    assert len(_lines(seen, "requests")) == 4_000
    assert sim.scoreboard()["decisions"] == 4_000


def test_paced_run_emits_the_same_lines_as_an_unpaced_one() -> None:
    def sim() -> ClosedLoopSimulator:
        return make_simulator("logistics", {"seed": 5, "events": 1_500})

    fast, _ = _run(sim(), {"shipments": "s", "deliveries": "d"}, "s", batch_size=400)
    span_ms = 1_500 / 400 * 3_600_000  # of shipments (the deliveries after the last come at once)
    t0 = time.monotonic()
    paced, _ = _run(
        sim(),
        {"shipments": "s", "deliveries": "d"},
        "s",
        batch_size=400,
        speed=span_ms / 1_000 / 0.5,
    )
    took = time.monotonic() - t0
    for s in ("s", "d"):
        assert _lines(paced, s) == _lines(fast, s)
    assert 0.4 < took < 20
    assert len([b for b in paced if b.stream == "s"]) > len([b for b in fast if b.stream == "s"])


def test_should_stop_ends_an_unbounded_run_after_the_in_flight_outcomes() -> None:
    sim = make_simulator("logistics", {"events": 0})
    box: dict[str, ClosedLoopSource] = {}
    stop: Callable[[], bool] = lambda: box["src"].emitted["shipments"] >= 5_000  # noqa: E731

    src = ClosedLoopSource(
        sim, {"shipments": "s", "deliveries": "d"}, batch_size=700, should_stop=stop
    )
    box["src"] = src
    flow = Dataflow("stop_test")
    items = op.input("in", flow, src)
    decisions = op.filter_map(
        "decide", items, lambda b: _first_eligible(b) if b.stream == "s" else None
    )
    op.output("feedback", decisions, ClosedLoopFeedbackSink(src, _id))
    seen: list[RawBatch] = []
    op.output("seen", items, TestingSink(seen))
    run_main(flow)
    n = len(_lines(seen, "s"))
    assert 5_000 <= n < 5_000 + 700
    assert len(_lines(seen, "d")) == n


def test_source_rejects_unknown_streams_and_bad_settings() -> None:
    sim = make_simulator("nab", {"categories": ["realTraffic"], "events": 10})
    with pytest.raises(ValueError, match="no stream 'readingz'"):
        ClosedLoopSource(sim, {"readingz": "r"})
    with pytest.raises(ValueError, match="batch_size"):
        ClosedLoopSource(sim, {"readings": "r"}, batch_size=0)
    seen, _ = _run(sim, {"readings": "r"}, None, batch_size=4)
    assert len(_lines(seen, "r")) == 10 and {b.source for b in seen} == {"simulator:nab/readings"}
