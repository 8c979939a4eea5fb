"""What every source emits: micro-batches, never single events.

A source yields :class:`RawBatch` items: undecoded JSON lines of one declared stream with their
positions (files, Kafka, simulators), decoded by ``schemas.decode``. Batches keep Bytewax's
per-item overhead (and pickling between processes) off the per-event path.

A source that already knows a record is bad (a CSV row with the wrong number of cells, a cell
that is not UTF-8) puts ``dead_line(reason, record)`` in ``RawBatch.lines`` instead of a JSON
object: the decoder turns that line into a dead letter with exactly this reason and the record,
so every source's dead letters read alike without a second channel beside the batch.

A source whose lines are conversions (a CSV row made into a JSON line) also fills
``RawBatch.raw`` with each line's original record, so that a line failing validation later, in
the decoder, is still dead-lettered with the bytes that were read, not with the conversion.
:class:`RecordBytes` holds such records as slices of the buffer they were read from: only the
few a dead letter needs ever become ``bytes`` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from eddy.schemas.records import DEAD_LETTER_MARK

__all__ = ["RawBatch", "RecordBytes", "dead_line"]


@dataclass(frozen=True)
class RawBatch:
    """Undecoded records from one input partition, in partition order.

    ``source`` names the partition (``jsonl:/path/file``, ``kafka:topic/3``); ``positions`` are
    line numbers (1-based) or offsets, so ``f"{source}#{position}"`` identifies a record forever.
    ``ingest_ns`` is the wall clock (``time.time_ns()``) when the batch was read, for end-to-end
    latency. ``lag`` is what the partition still holds after this batch, in ``lag_unit``
    (``records`` behind the topic's end for Kafka, ``bytes`` left in a file), or -1 if unknown.

    ``raw`` is set when ``lines`` are conversions of other records (a CSV row as a JSON line):
    ``raw[i]`` is the original record of ``lines[i]`` (same length as ``lines``; for a CSV row,
    its bytes without the line terminator), and a dead letter keeps ``raw[i]`` rather than the
    line. Any sequence of bytes will do (the CSV source gives a :class:`RecordBytes`). None when
    the lines are the records themselves (JSONL, Kafka) or no record text exists (Parquet: the
    JSON line is the best raw there is).
    """

    stream: str
    source: str
    partition: int
    positions: list[int]
    lines: list[bytes]
    ingest_ns: int
    lag: int = -1
    lag_unit: str = "records"
    raw: Sequence[bytes] | None = None

    def __len__(self) -> int:
        return len(self.lines)


class RecordBytes(Sequence[bytes]):
    """Records cut from one buffer, ``data[starts[i]:ends[i]]``, each made a ``bytes`` object
    only when it is asked for: the decoder wants the raw bytes of a batch's few dead letters,
    not of every row (a million small ``bytes`` objects cost about a tenth of the CSV reading).

    A slice is a view of the same buffer; a pickled one carries only its own records' bytes.

    >>> r = RecordBytes(b"a,1\\nbb,2\\n", np.array([0, 4]), np.array([3, 8]))
    >>> len(r), r[1], list(r[:1]), list(RecordBytes.concat([r[1:], RecordBytes.of([b"x"])]))
    (2, b'bb,2', [b'a,1'], [b'bb,2', b'x'])
    """

    __slots__ = ("_data", "_ends", "_starts")

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self._data = data
        self._starts = np.asarray(starts, np.int64)
        self._ends = np.asarray(ends, np.int64)

    @classmethod
    def of(cls, records: Iterable[bytes]) -> RecordBytes:
        """These records, copied into one buffer."""
        recs = list(records)
        lens = np.fromiter(map(len, recs), np.int64, len(recs))
        ends = np.cumsum(lens)
        return cls(b"".join(recs), ends - lens, ends)

    @classmethod
    def concat(cls, parts: Sequence[RecordBytes]) -> RecordBytes:
        """The records of ``parts`` in order, in one buffer (one copy of their bytes)."""
        if len(parts) == 1:
            return parts[0]
        own = [p.compact() for p in parts]
        shift = np.cumsum([0] + [len(p._data) for p in own[:-1]], dtype=np.int64)
        return cls(
            b"".join(p._data for p in own),
            np.concatenate([p._starts + k for p, k in zip(own, shift.tolist(), strict=True)]),
            np.concatenate([p._ends + k for p, k in zip(own, shift.tolist(), strict=True)]),
        )

    def compact(self) -> RecordBytes:
        """The same records holding only their own bytes, not the whole buffer."""
        if not len(self):
            return RecordBytes(b"", self._starts, self._ends)
        lo, hi = int(self._starts.min()), int(self._ends.max())
        if lo == 0 and hi == len(self._data):
            return self
        return RecordBytes(self._data[lo:hi], self._starts - lo, self._ends - lo)

    def __len__(self) -> int:
        return int(self._starts.size)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> RecordBytes: ...

    def __getitem__(self, i: int | slice) -> bytes | RecordBytes:
        if isinstance(i, slice):
            return RecordBytes(self._data, self._starts[i], self._ends[i])
        return self._data[int(self._starts[i]) : int(self._ends[i])]

    def __iter__(self) -> Iterator[bytes]:
        return map(self._data.__getitem__, map(slice, self._starts.tolist(), self._ends.tolist()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))

    def __repr__(self) -> str:
        return f"RecordBytes({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        own = self.compact()
        return (RecordBytes, (own._data, own._starts, own._ends))


def dead_line(reason: str, record: bytes = b"") -> bytes:
    """A line the decoder rejects with ``reason``, keeping ``record`` as the dead letter's raw.

    The line is ``DEAD_LETTER_MARK`` (``schemas.records``: it starts with a NUL byte, which no
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
