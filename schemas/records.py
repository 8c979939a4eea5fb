"""One input record: where a bad one goes (:class:`DeadLetter`), event time, a raw line to a
JSON object with a reason when it is not one.

Batch decoding (``schemas.decode``) is built on these; sources use :data:`DEAD_LETTER_MARK` to
hand the decoder a record they already rejected, and :data:`OVERSIZE_MARK` for a record too
long to hold whole (:func:`oversize_line`).

A dead letter's raw bytes are bounded: a record longer than the decoder's limit keeps its
first :data:`DEAD_LETTER_RAW_BYTES` bytes, and its reason gives the true size
(:func:`keep_raw`). One oversized line must not cost its size again in every place a dead
letter goes (the batch, DuckDB, Kafka).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

__all__ = [
    "BOM_REASON",
    "DEAD_LETTER_MARK",
    "DEAD_LETTER_RAW_BYTES",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "OVERSIZE_MARK",
    "UTF8_BOM",
    "DeadLetter",
    "InvalidRecord",
    "dead_letter_raw",
    "keep_raw",
    "oversize_line",
    "parse_line",
    "parse_time",
]

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
#: the most bytes of an over-long record a dead letter keeps (its first bytes)
DEAD_LETTER_RAW_BYTES = 65_536
#: the UTF-8 byte-order mark; file sources drop it at the start of a file, and a record that
#: starts with one anywhere else is a dead letter with :data:`BOM_REASON`
UTF8_BOM = b"\xef\xbb\xbf"
BOM_REASON = "starts with a UTF-8 byte-order mark (BOM)"
# a NaN or infinity token where a JSON value should start: what Python's json.dumps, JavaScript
# and C's printf write for non-finite numbers (orjson points at the letter after a minus sign)
_NONFINITE = re.compile(rb"-?(?:nan|inf(?:inity)?)(?![\w.])", re.IGNORECASE)
_NUMBER = re.compile(rb"-?[0-9.]+(?:[eE][+-]?[0-9]+)?")
# a JSON string, maybe cut off before its closing quote (group 1 empty), or text between strings
_STRING_OR_TEXT = re.compile(rb'"(?:[^"\\]|\\.)*("?)|[^"]+', re.DOTALL)
_ORJSON_WHERE = re.compile(r":? line \d+ column \d+ \(char \d+\)$")


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
#: A line that starts with these bytes stands for a record too long for its source to hold
#: whole (:func:`oversize_line`): the record's true size and the source's limit in decimal, a
#: newline, then the record's first bytes. The decoder words the reason, with its own limit.
OVERSIZE_MARK = b"\x00eddy-oversize\x00"
_OVERSIZE_LEN = len(OVERSIZE_MARK)


def oversize_line(size: int, limit: int, head: bytes) -> bytes:
    """The line a source hands on for a record of ``size`` bytes, longer than the ``limit`` it
    holds whole, of which it kept ``head`` (only the first :data:`DEAD_LETTER_RAW_BYTES` stay).

    >>> line = oversize_line(10**8, 2**20, b'{"id": "a", "pad": "xxx')
    >>> dead_letter_raw(line)
    b'{"id": "a", "pad": "xxx'
    >>> try:
    ...     parse_line(line, 65_536)
    ... except InvalidRecord as e:
    ...     print(str(e).replace("; ", "\\n"))
    record of 100,000,000 bytes exceeds the limit of 65,536 bytes (max_event_bytes)
    the first 23 bytes are kept
    """
    return b"%b%d %d\n%b" % (OVERSIZE_MARK, size, limit, bytes(head[:DEAD_LETTER_RAW_BYTES]))


def dead_letter_raw(raw: bytes) -> bytes:
    """What a dead letter keeps of ``raw``: the line itself, or the record a marked line holds
    (for an oversize line, the record's first bytes)."""
    out = bytes(raw)
    if out.startswith((DEAD_LETTER_MARK, OVERSIZE_MARK)):
        return out.partition(b"\n")[2]
    return out


def keep_raw(record: bytes, reason: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes a dead letter keeps of ``record`` and its reason: a record within
    ``max_bytes`` (or within :data:`DEAD_LETTER_RAW_BYTES`) whole, a longer one cut to its
    first :data:`DEAD_LETTER_RAW_BYTES` bytes with the reason saying so and giving its size.

    >>> keep_raw(b"x" * 100_000, "field 'a': expected a number, got a string", 1_000_000)[1]
    "field 'a': expected a number, got a string"
    >>> raw, why = keep_raw(b"x" * 100_000, "field 'a': expected a number, got a string", 1_000)
    >>> len(raw)
    65536
    >>> print(why.replace("; ", "\\n"))
    field 'a': expected a number, got a string
    the first 65,536 of its 100,000 bytes are kept
    """
    n = len(record)
    if n <= max(DEAD_LETTER_RAW_BYTES, max_bytes):
        return bytes(record), reason
    kept = bytes(record[:DEAD_LETTER_RAW_BYTES])
    if "bytes are kept" not in reason:  # a size reason already says what is kept
        reason = f"{reason}; the first {DEAD_LETTER_RAW_BYTES:,} of its {n:,} bytes are kept"
    return kept, reason


def parse_line(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The JSON object a line holds, or :class:`InvalidRecord` saying why it holds none."""
    start = bytes(raw[:_MARK_LEN])
    if start == DEAD_LETTER_MARK:
        reason = bytes(raw[_MARK_LEN:]).partition(b"\n")[0]
        raise InvalidRecord(reason.decode("utf-8", "replace"))
    if start.startswith(OVERSIZE_MARK):
        sizes, _, head = bytes(raw[_OVERSIZE_LEN:]).partition(b"\n")
        size, limit = _two_ints(sizes)
        if size >= 0:  # else a file's own line that merely starts like the mark: judged as text
            raise InvalidRecord(_too_large(size, max_bytes, limit, len(head)))
    n = len(raw)
    if n > max_bytes:
        kept = n if n <= max(DEAD_LETTER_RAW_BYTES, max_bytes) else DEAD_LETTER_RAW_BYTES
        raise InvalidRecord(_too_large(n, max_bytes, max_bytes, kept))
    if start.startswith(UTF8_BOM):
        raise InvalidRecord(BOM_REASON)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRecord(_json_error(bytes(raw), str(e), e.pos)) from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _two_ints(text: bytes) -> tuple[int, int]:
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 20 for p in parts):
        return -1, -1
    return int(parts[0]), int(parts[1])


def _too_large(size: int, max_bytes: int, source_limit: int, kept: int) -> str:
    """Why a record of ``size`` bytes is refused unread, and what of it is kept."""
    if size > max_bytes:
        why = f"record of {size:,} bytes exceeds the limit of {max_bytes:,} bytes (max_event_bytes)"
    else:  # its source holds less than the decoder would take
        why = f"record of {size:,} bytes exceeds its source's limit of {source_limit:,} bytes"
    if kept < size:
        return f"{why}; the first {kept:,} bytes are kept"
    return why


def _json_error(raw: bytes, msg: str, pos: int) -> str:
    """A readable reason for orjson's error ``msg`` at character ``pos`` of ``raw``: where
    the text goes wrong, in bytes, and what is there."""
    if "UTF-8" in msg and not _cut_in_a_character(raw):
        return "not valid UTF-8"
    if not raw.strip():
        return "not valid JSON: the record is empty"
    text = raw.decode("utf-8", "replace")
    at = len(text[:pos].encode("utf-8"))  # orjson counts characters; a reader counts bytes
    if "end of data" in msg or "UTF-8" in msg:
        string_at = _unterminated_string(raw)
        if string_at is not None:
            return f"not valid JSON: truncated: unterminated string starting at byte {string_at}"
        return f"not valid JSON: truncated: ends at byte {len(raw)} inside an unfinished value"
    token_at = at - 1 if at > 0 and raw[at - 1 : at] == b"-" else at
    if _NONFINITE.match(raw, token_at) is not None:
        return "contains NaN or Infinity, which JSON does not allow"
    if "infinity when parsed" in msg:
        number = _NUMBER.match(raw, at)
        shown = number.group().decode()[:40] if number else "a number"
        return f"number {shown} at byte {at} is out of range (a double would make it infinite)"
    return f"not valid JSON: {_ORJSON_WHERE.sub('', msg)} at byte {at}"


def _cut_in_a_character(raw: bytes) -> bool:
    """Whether ``raw`` is valid UTF-8 but for a character cut off at its end."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.reason == "unexpected end of data" and e.end == len(raw)
    return False


def _unterminated_string(raw: bytes) -> int | None:
    """Where the string starts that ``raw`` ends inside of, if it ends inside one (scanned
    from the start: a quote outside a string opens one)."""
    last = None
    for m in _STRING_OR_TEXT.finditer(raw):
        if raw[m.start() : m.start() + 1] == b'"':
            last = m
    if last is not None and not last.group(1):
        return last.start()
    return None
