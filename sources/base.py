"""What every source emits: micro-batches, never single events.

A source yields either :class:`RawBatch` (undecoded bytes with their positions, from a file or
Kafka) or an already decoded ``RequestBatch`` / ``OutcomeBatch`` (the simulator). Batches keep
Bytewax's per-item overhead (and pickling between processes) off the per-event path.

A source that already knows a record is bad (a CSV row with the wrong number of cells, a cell
that is not UTF-8) puts ``dead_line(reason, record)`` in ``RawBatch.lines`` instead of a JSON
object: the decoder turns that line into a dead letter with exactly this reason and the record,
so every source's dead letters read alike without a second channel beside the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from eddy.schemas.events import DEAD_LETTER_MARK

__all__ = ["OUTCOMES", "REQUESTS", "RawBatch", "dead_line"]

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


def dead_line(reason: str, record: bytes = b"") -> bytes:
    """A line the decoder rejects with ``reason``, keeping ``record`` as the dead letter's raw.

    The line is ``DEAD_LETTER_MARK`` (``schemas.events``: it starts with a NUL byte, which no
    JSON text does), the reason on one line, a newline, then the record.

    >>> from eddy.schemas.decode import decode_lines
    >>> from eddy.schemas.spec import FieldSpec, StreamSpec
    >>> spec = StreamSpec("s", "csv:x.csv", "ts", (FieldSpec("x", "float"),))
    >>> _, dead = decode_lines(spec, [dead_line("row has 3 cells", b"1,2,3")], [7], "csv:x.csv")
    >>> dead[0].reason, dead[0].raw, dead[0].position
    ('row has 3 cells', b'1,2,3', 7)
    """
    one_line = " ".join(reason.split()) or "rejected by its source"
    return DEAD_LETTER_MARK + one_line.encode("utf-8", "replace") + b"\n" + bytes(record)
