"""The reference simulator's request and outcome streams as Kafka records (open loop), for
tests and benchmarks.

:func:`open_loop_events` plays the ``adserving`` simulator for ``n`` requests, answers each with
a seeded random partner (open loop: the outcomes do not depend on the pipeline's decisions, so
they can be produced before the pipeline runs) and returns both streams as the simulator's JSON
lines (the reference spec's ``requests`` and ``outcomes``), with their event times and
partitions (request ``i`` and its outcome go to partition ``i % partitions``; within a
partition, records are in event-time order). :func:`produce_records` writes records to a topic
with an idempotent producer and fails loudly if any is not delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from confluent_kafka import Producer

from eddy.sources.simulators.adserving import AdServingSimulator

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


def _records(lines: list[bytes], key: str, partitions: int) -> EventRecords:
    rows = [orjson.loads(x) for x in lines]
    keys = [r[key] for r in rows]
    index = np.array([int(k.rsplit("-", 1)[1]) for k in keys], dtype=np.int64)
    return EventRecords(
        keys=[k.encode() for k in keys],
        values=lines,
        ts=np.array([r["ts"] for r in rows], dtype=np.int64),
        partitions=index % partitions,
        index=index,
    )


def open_loop_events(
    n: int, *, seed: int = 0, rate_per_s: float = 2_000.0, partitions: int = 3
) -> tuple[EventRecords, EventRecords]:
    """``n`` simulated requests and their outcomes (all of them that the simulator does not
    lose), as :class:`EventRecords` ``(requests, outcomes)``; request ids are ``r<seed>-<i>``."""
    if n < 1 or partitions < 1:
        raise ValueError(
            f"open_loop_events: expected n >= 1 and partitions >= 1, got {n}, {partitions}"
        )
    sim = AdServingSimulator({"seed": seed, "events": n, "rate_per_s": rate_per_s})
    rng = np.random.default_rng([seed, 4242])
    lines: dict[str, list[bytes]] = {"requests": [], "outcomes": []}
    while True:
        try:
            got = sim.next_batch(n)  # all requests at once, then every outcome in time order
        except StopIteration:
            break
        for stream, chunk in got or []:
            lines[stream] += chunk
            if stream == "requests":
                ids = np.array([orjson.loads(x)["id"] for x in chunk], dtype=object)
                pick = rng.integers(0, len(sim.arms), len(ids))
                sim.respond(ids, np.asarray(sim.arms, dtype=object)[pick])
    return (
        _records(lines["requests"], "id", partitions),
        _records(lines["outcomes"], "decision_id", partitions),
    )


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
