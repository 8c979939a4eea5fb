"""Drivers shared by the simulator tests: play a simulator to the end under a decision policy."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson

from eddy.sources.simulators.base import ClosedLoopSimulator, SimStream

__all__ = ["check_line", "hash_policy", "play"]

Policy = Callable[[ClosedLoopSimulator, list[dict[str, Any]]], list[str]]


def hash_policy(sim: ClosedLoopSimulator, events: list[dict[str, Any]]) -> list[str]:
    """A decision that depends only on the event: an eligible arm picked by a hash of the id."""
    id_field = sim.STREAMS[sim.decision_stream or ""].id or ""
    out = []
    for e in events:
        arms = e.get("carriers", sim.arms)
        out.append(arms[zlib.crc32(e[id_field].encode()) % len(arms)])
    return out


def _cuts(sizes: list[int]) -> Iterator[int]:
    while True:
        yield from sizes


def play(
    sim: ClosedLoopSimulator,
    policy: Policy = hash_policy,
    *,
    sizes: tuple[int, ...] = (500,),
    hold: int = 0,
    until_step: int | None = None,
    stop_after: int | None = None,
) -> dict[str, list[bytes]]:
    """Every line per stream. Decisions are answered ``hold`` calls late (sooner when the
    simulator waits for them); with ``until_step`` each call is cut at an event time advancing
    by that many ms per call (a paced run); ``stop_after`` calls ``stop()`` after that many
    calls."""
    lines: dict[str, list[bytes]] = {s: [] for s in sim.STREAMS}
    held: list[tuple[np.ndarray, np.ndarray]] = []
    until = sim.start_ms
    cuts = _cuts(list(sizes))
    calls = 0
    while True:
        calls += 1
        if stop_after is not None and calls == stop_after:
            sim.stop()
        if until_step is not None:
            until += until_step
        try:
            got = sim.next_batch(next(cuts), until if until_step is not None else None)
        except StopIteration:
            break
        if got is None:
            assert held, "the simulator waits although every decision was answered"
            sim.respond(*held.pop(0))
            continue
        for stream, ls in got:
            lines[stream].extend(ls)
            if stream == sim.decision_stream:
                events = [orjson.loads(x) for x in ls]
                id_field = sim.STREAMS[stream].id or ""
                ids = np.array([e[id_field] for e in events], dtype=object)
                held.append((ids, np.array(policy(sim, events), dtype=object)))
        while len(held) > hold:
            sim.respond(*held.pop(0))
        assert calls < 1_000_000
    return lines


def check_line(line: bytes, stream: SimStream) -> dict[str, Any]:
    """The decoded line, after checking it has exactly the declared fields and types."""
    rec = orjson.loads(line)
    assert isinstance(rec, dict)
    assert set(rec) == stream.keys, (set(rec) ^ stream.keys, line)
    assert type(rec[stream.time]) is int
    if stream.id is not None:
        assert isinstance(rec[stream.id], str) and rec[stream.id]
    for name, kind in stream.fields.items():
        v = rec[name]
        if kind == "string":
            assert isinstance(v, str), (name, v)
        elif kind == "float":
            assert type(v) is float, (name, v)
        elif kind == "int":
            assert type(v) is int, (name, v)
        elif kind == "bool":
            assert type(v) is bool, (name, v)
        else:
            assert isinstance(v, list) and all(isinstance(x, str) for x in v), (name, v)
    return rec
