"""What every source emits: micro-batches, never single events.

A source yields either :class:`RawBatch` (undecoded bytes with their positions, from a file or
Kafka) or an already decoded ``RequestBatch`` / ``OutcomeBatch`` (the simulator). Batches keep
Bytewax's per-item overhead (and pickling between processes) off the per-event path.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OUTCOMES", "REQUESTS", "RawBatch"]

REQUESTS = "requests"
OUTCOMES = "outcomes"


@dataclass(frozen=True)
class RawBatch:
    """Undecoded records from one input partition, in partition order.

    ``source`` names the partition (``jsonl:/path/file``, ``kafka:topic/3``); ``positions`` are
    line numbers (1-based) or offsets, so ``f"{source}#{position}"`` identifies a record forever.
    ``ingest_ns`` is the wall clock (``time.time_ns()``) when the batch was read, for end-to-end
    latency. ``lag`` is what the partition still holds after this batch, in ``lag_unit``
    (``records`` behind the topic's end for Kafka, ``bytes`` left in a file), or -1 if unknown.
    """

    stream: str
    source: str
    partition: int
    positions: list[int]
    lines: list[bytes]
    ingest_ns: int
    lag: int = -1
    lag_unit: str = "records"

    def __len__(self) -> int:
        return len(self.lines)
