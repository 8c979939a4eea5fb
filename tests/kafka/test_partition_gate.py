"""PartitionGate: no input partition is registered after the others ran ahead."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.partition_gate import PartitionGate
from eddy.operators.sharding import Piece, whole
from eddy.operators.windows.watermark import Watermark
from eddy.schemas.batch import EventBatch


def piece(partition: int, lo: int, hi: int) -> Piece:
    ts = np.arange(lo, hi, dtype=np.int64)
    return whole(partition, EventBatch("s", ts, ts.astype(str).astype(object), {}))


def late_count(items: list[Piece], lateness: int = 100) -> int:
    wm = Watermark(lateness)
    return sum(int((p.ts_all < wm.advance(p.ts_all, p.partition)).sum()) for p in items)


def test_holds_until_every_expected_partition_delivered_then_merges_by_event_time() -> None:
    gate = PartitionGate([0, 1, 2])
    # partition 0 runs three batches ahead before 1 and 2 say anything
    arrivals = [piece(0, 0, 300), piece(0, 300, 600), piece(0, 600, 900)]
    out = [gate.push([a], now_s=0.0) for a in arrivals]
    assert out == [[], [], []] and gate.held == 3 and not gate.is_open
    assert gate.push([piece(1, 0, 300)], now_s=0.1) == []
    released = gate.push([piece(2, 0, 300)], now_s=0.2)
    assert gate.is_open and gate.held == 0
    # first rows of 0, 1, 2 (registration), then the rest per partition in arrival order
    assert [(p.partition, len(p.batch)) for p in released][:3] == [(0, 1), (1, 1), (2, 1)]
    assert [p.partition for p in released][3:] == [0, 1, 2, 0, 0]
    assert sum(len(p.batch) for p in released) == 1500
    assert late_count(released) == 0
    assert late_count([*arrivals, piece(1, 0, 300), piece(2, 0, 300)]) > 0  # without it
    after = [piece(1, 300, 400)]
    assert gate.push(after, now_s=0.3) is after  # open: straight through


def test_opens_after_the_timeout_and_survives_pickling() -> None:
    gate = PartitionGate([0, 1], timeout_s=2.0)
    assert gate.push([piece(0, 0, 10)], now_s=100.0) == []
    assert gate.deadline() == 102.0
    gate = pickle.loads(pickle.dumps(gate))  # a recovery snapshot in between
    assert gate.push([piece(0, 10, 20)], now_s=101.0) == []
    released = gate.push([piece(0, 20, 30)], now_s=102.5)
    assert gate.is_open and gate.deadline() is None
    assert [int(p.batch.ts[0]) for p in released] == [0, 1, 10, 20]  # first row, then the rest


def test_nothing_expected_means_open_and_bad_timeout_is_refused() -> None:
    items = [piece(5, 0, 3)]
    assert PartitionGate([]).push(items, now_s=0.0) is items
    with pytest.raises(ValueError, match="timeout_s"):
        PartitionGate([0], timeout_s=0)
