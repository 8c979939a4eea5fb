"""Simulated request and outcome streams as Kafka records (open loop), for tests and benchmarks.

:func:`open_loop_events` draws ``n`` requests from :class:`sources.simulator.Simulator`, answers
each with a seeded random partner (open loop: the outcomes do not depend on the pipeline's
decisions, so they can be produced before the pipeline runs) and returns both streams as JSON
records in the event format of ``schemas.events`` (``REQUEST_FIELDS``, ``OUTCOME_FIELDS``), with
their event times and partitions (request ``i`` and its outcome go to partition ``i % partitions``;
within a partition, records are in event-time order). :func:`produce_records` writes records to a
topic with an idempotent producer and fails loudly if any is not delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from confluent_kafka import Producer

from eddy.schemas.events import OUTCOME_FIELDS, REQUEST_FIELDS
from eddy.sinks.kafka import encode_json_rows
from eddy.sources.simulator import SimConfig, Simulator

__all__ = ["EventRecords", "open_loop_events", "produce_records"]


@dataclass(frozen=True)
class EventRecords:
    """Records of one stream: ``values[i]`` (JSON) keyed ``keys[i]`` with event time ``ts[i]``,
    destined for ``partitions[i]``; ``index[i]`` is the request number it belongs to."""

    keys: list[bytes]
    values: list[bytes]
    ts: np.ndarray
    partitions: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def open_loop_events(
    n: int,
    *,
    seed: int = 0,
    rate_per_s: float = 2_000.0,
    partitions: int = 3,
    start_ms: int | None = None,
) -> tuple[EventRecords, EventRecords]:
    """``n`` simulated requests and their outcomes (all of them that the simulator does not
    lose), as :class:`EventRecords` ``(requests, outcomes)``; request ids are ``r<seed>-<i>``."""
    if n < 1 or partitions < 1:
        raise ValueError(
            f"open_loop_events: expected n >= 1 and partitions >= 1, got {n}, {partitions}"
        )
    cfg = SimConfig(seed=seed, n_events=n, rate_per_s=rate_per_s)
    if start_ms is not None:
        cfg = SimConfig(seed=seed, n_events=n, rate_per_s=rate_per_s, start_ms=start_ms)
    sim = Simulator(cfg)
    rng = np.random.default_rng([seed, 4242])
    req = sim.next_requests(n)
    arms = rng.integers(0, len(sim.partners), n)
    sim.respond(req.id, arms)
    out = sim.due_outcomes(np.iinfo(np.int64).max)
    req_cols = {f.name: getattr(req, f.name) for f in REQUEST_FIELDS}
    out_cols = {f.name: getattr(out, f.name) for f in OUTCOME_FIELDS}
    req_index = np.arange(n)
    out_index = Simulator.index_of(out.decision_id)
    requests = EventRecords(
        keys=[s.encode() for s in req.id.tolist()],
        values=encode_json_rows(req_cols),
        ts=req.ts,
        partitions=req_index % partitions,
        index=req_index,
    )
    outcomes = EventRecords(
        keys=[s.encode() for s in out.decision_id.tolist()],
        values=encode_json_rows(out_cols),
        ts=out.ts,
        partitions=out_index % partitions,
        index=out_index,
    )
    return requests, outcomes


def produce_records(
    bootstrap: str, topic: str, records: EventRecords, timeout_s: float = 60.0
) -> None:
    """Produce every record to its partition, in order; raise if any is not delivered."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200_000,
        }
    )
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    produce = producer.produce
    parts = records.partitions.tolist()
    for key, value, part in zip(records.keys, records.values, parts, strict=True):
        while True:
            try:
                produce(topic, value=value, key=key, partition=part, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(timeout_s)
    if errors or left:
        raise RuntimeError(f"produce to {topic!r}: {left} undelivered, errors {errors}")
