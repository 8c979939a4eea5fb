"""One input record: where a bad one goes (:class:`DeadLetter`), event time, a raw line to a
JSON object with a reason when it is not one.

Batch decoding (``schemas.decode``) is built on these; sources use :data:`DEAD_LETTER_MARK` to
hand the decoder a record they already rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

__all__ = [
    "DEAD_LETTER_MARK",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "DeadLetter",
    "InvalidRecord",
    "dead_letter_raw",
    "parse_line",
    "parse_time",
]

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_NONFINITE = re.compile(rb"(?<![\"\w])-?(NaN|Infinity)(?![\"\w])")


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be decoded or validated, kept with where it came from and why."""

    source: str
    position: int
    stream: str
    raw: bytes
    reason: str

    @property
    def dead_letter_id(self) -> str:
        return f"{self.source}#{self.position}"


class InvalidRecord(ValueError):
    """A record (or one of its values) that cannot be used; the message is the reason."""


def parse_time(value: Any, name: str = "ts") -> int:
    """Event time as epoch milliseconds from epoch ms (number) or ISO-8601 with a zone."""
    if isinstance(value, bool):
        raise InvalidRecord(
            f"field {name!r}: expected epoch milliseconds or ISO-8601, got a boolean"
        )
    if isinstance(value, int | float):
        if not np.isfinite(value):
            raise InvalidRecord(f"field {name!r}: timestamp is not finite")
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRecord(
                f"field {name!r}: {value[:40]!r} is not an ISO-8601 timestamp"
            ) from None
        if dt.tzinfo is None:
            raise InvalidRecord(
                f"field {name!r}: ISO-8601 timestamp {value[:40]!r} has no time zone"
            )
        ms = int(dt.timestamp() * 1000)
    else:
        raise InvalidRecord(
            f"field {name!r}: expected epoch milliseconds or ISO-8601, got {type(value).__name__}"
        )
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidRecord(
            f"field {name!r}: timestamp {value!r} is outside 2000-01-01..2100-01-01"
        )
    return ms


#: A line that starts with these bytes is a record its source already rejected (a CSV row with
#: the wrong number of cells, say): the text up to the first newline after the mark is the
#: dead letter's reason, the rest is the record as read. Sources build such lines with
#: ``sources.base.dead_line``. No JSON text starts with a NUL byte, so no event is mistaken.
DEAD_LETTER_MARK = b"\x00eddy-dead-letter\x00"
_MARK_LEN = len(DEAD_LETTER_MARK)


def dead_letter_raw(raw: bytes) -> bytes:
    """What a dead letter keeps of ``raw``: the line itself, or the record a marked line holds."""
    out = bytes(raw)
    return out.partition(b"\n")[2] if out.startswith(DEAD_LETTER_MARK) else out


def parse_line(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The JSON object a line holds, or :class:`InvalidRecord` saying why it holds none."""
    if bytes(raw[:_MARK_LEN]) == DEAD_LETTER_MARK:
        reason = bytes(raw[_MARK_LEN:]).partition(b"\n")[0]
        raise InvalidRecord(reason.decode("utf-8", "replace"))
    if len(raw) > max_bytes:
        raise InvalidRecord(f"record of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if "UTF-8" in msg:
            raise InvalidRecord("not valid UTF-8") from None
        if "infinity" in msg or _NONFINITE.search(raw):
            raise InvalidRecord("contains NaN or Infinity, which JSON does not allow") from None
        raise InvalidRecord(f"not valid JSON: {msg}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(obj).__name__}")
    return obj
