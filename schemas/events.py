"""Input events: request and outcome types, decoding and validation.

Decoding works on micro-batches of raw lines: good records come back as one columnar batch
(numpy arrays), bad ones as :class:`DeadLetter` records whose ``reason`` names the field and the
problem. Nothing raises on bad input. A batch whose every line is good is decoded by msgspec in
C (``schemas.fast_decode``); any other batch takes the careful path here (orjson, checks per
column, then per line for the suspects), which alone decides what is bad and why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np
import orjson

from eddy.schemas.fast_decode import fast_columns

__all__ = [
    "DEAD_LETTER_MARK",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "OUTCOME_FIELDS",
    "REQUEST_FIELDS",
    "DeadLetter",
    "FieldSpec",
    "OutcomeBatch",
    "RequestBatch",
    "concat",
    "dead_letter_raw",
    "decode_outcomes",
    "decode_requests",
    "parse_time",
    "take",
]

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_STR_LEN = 256
_NONFINITE = re.compile(rb"(?<![\"\w])-?(NaN|Infinity)(?![\"\w])")


@dataclass(frozen=True)
class FieldSpec:
    """One field of an input event: ``kind`` is id, time, str, float or bool."""

    name: str
    kind: str
    lo: float = -np.inf
    hi: float = np.inf


REQUEST_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("id", "id"),
    FieldSpec("ts", "time"),
    FieldSpec("placement", "str"),
    FieldSpec("device", "str"),
    FieldSpec("geo", "str"),
    FieldSpec("floor_price", "float", 0.0, 10_000.0),
)

OUTCOME_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("decision_id", "id"),
    FieldSpec("ts", "time"),
    FieldSpec("partner", "str"),
    FieldSpec("filled", "bool"),
    FieldSpec("revenue", "float", 0.0, 10_000.0),
    FieldSpec("latency_ms", "float", 0.0, 3_600_000.0),
    FieldSpec("error", "bool"),
)


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


def _empty_obj(n: int = 0) -> np.ndarray:
    return np.empty(n, dtype=object)


@dataclass
class RequestBatch:
    """Columnar micro-batch of valid requests (all arrays the same length)."""

    id: np.ndarray = field(default_factory=_empty_obj)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    placement: np.ndarray = field(default_factory=_empty_obj)
    device: np.ndarray = field(default_factory=_empty_obj)
    geo: np.ndarray = field(default_factory=_empty_obj)
    floor_price: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    ingest_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class OutcomeBatch:
    """Columnar micro-batch of valid outcomes; ``position`` is the source position (unique id)."""

    decision_id: np.ndarray = field(default_factory=_empty_obj)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    partner: np.ndarray = field(default_factory=_empty_obj)
    filled: np.ndarray = field(default_factory=lambda: np.empty(0, np.bool_))
    revenue: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    error: np.ndarray = field(default_factory=lambda: np.empty(0, np.bool_))
    position: np.ndarray = field(default_factory=_empty_obj)

    def __len__(self) -> int:
        return len(self.ts)


_B = TypeVar("_B", RequestBatch, OutcomeBatch)


class _Invalid(ValueError):
    pass


def parse_time(value: Any, name: str = "ts") -> int:
    """Event time as epoch milliseconds from epoch ms (number) or ISO-8601 with a zone."""
    if isinstance(value, bool):
        raise _Invalid(f"field {name!r}: expected epoch milliseconds or ISO-8601, got a boolean")
    if isinstance(value, int | float):
        if not np.isfinite(value):
            raise _Invalid(f"field {name!r}: timestamp is not finite")
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"field {name!r}: {value[:40]!r} is not an ISO-8601 timestamp") from None
        if dt.tzinfo is None:
            raise _Invalid(f"field {name!r}: ISO-8601 timestamp {value[:40]!r} has no time zone")
        ms = int(dt.timestamp() * 1000)
    else:
        raise _Invalid(
            f"field {name!r}: expected epoch milliseconds or ISO-8601, got {type(value).__name__}"
        )
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise _Invalid(f"field {name!r}: timestamp {value!r} is outside 2000-01-01..2100-01-01")
    return ms


def _check(spec: FieldSpec, obj: dict[str, Any]) -> Any:
    if spec.name not in obj:
        raise _Invalid(f"missing required field {spec.name!r}")
    v = obj[spec.name]
    kind = spec.kind
    if kind == "time":
        return parse_time(v, spec.name)
    if kind in ("id", "str"):
        if isinstance(v, int) and not isinstance(v, bool) and kind == "id":
            v = str(v)
        if not isinstance(v, str):
            raise _Invalid(f"field {spec.name!r}: expected a string, got {type(v).__name__}")
        if kind == "id" and not v:
            raise _Invalid(f"field {spec.name!r}: must not be empty")
        if len(v) > MAX_STR_LEN:
            raise _Invalid(f"field {spec.name!r}: string of {len(v)} chars, limit {MAX_STR_LEN}")
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _Invalid(f"field {spec.name!r}: expected a number, got {type(v).__name__}")
        f = float(v)
        if not np.isfinite(f):
            raise _Invalid(f"field {spec.name!r}: number is not finite")
        if not spec.lo <= f <= spec.hi:
            raise _Invalid(f"field {spec.name!r}: {f:g} is outside [{spec.lo:g}, {spec.hi:g}]")
        return f
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise _Invalid(f"field {spec.name!r}: expected true/false, got {v!r:.40}")
    raise AssertionError(kind)


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


def _decode_line(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if bytes(raw[:_MARK_LEN]) == DEAD_LETTER_MARK:
        reason = bytes(raw[_MARK_LEN:]).partition(b"\n")[0]
        raise _Invalid(reason.decode("utf-8", "replace"))
    if len(raw) > max_bytes:
        raise _Invalid(f"record of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if "UTF-8" in msg:
            raise _Invalid("not valid UTF-8") from None
        if "infinity" in msg or _NONFINITE.search(raw):
            raise _Invalid("contains NaN or Infinity, which JSON does not allow") from None
        raise _Invalid(f"not valid JSON: {msg}") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"expected a JSON object, got {type(obj).__name__}")
    return obj


_MISSING = object()
_NUMBER = (int, float)


def _fast_column(spec: FieldSpec, col: list[Any]) -> tuple[np.ndarray | None, np.ndarray]:
    """Vectorised check of one field: ``(values, suspect)`` where ``suspect`` marks the rows
    the fast path could not vouch for (they are re-checked one by one for a readable reason)."""
    n = len(col)
    kind = spec.kind
    types = set(map(type, col))  # map/set/min/max run in C: the common all-good case is cheap
    if kind in ("id", "str"):
        values = np.fromiter(col, dtype=object, count=n)
        if types == {str}:
            lens = list(map(len, col))
            if max(lens) <= MAX_STR_LEN and (kind == "str" or min(lens) > 0):
                return values, np.zeros(n, bool)
        ok = np.fromiter((type(v) is str and 0 < len(v) <= MAX_STR_LEN for v in col), bool, n)
        if kind == "str":  # an empty categorical is allowed, only ids must be non-empty
            ok |= np.fromiter((v == "" for v in col), bool, n)
        return values, ~ok
    if kind == "bool":
        vals = np.fromiter((v is True for v in col), bool, n)
        if types == {bool}:
            return vals, np.zeros(n, bool)
        ok = np.fromiter((type(v) is bool for v in col), bool, n)
        return vals, ~ok
    if types <= {int, float}:
        typed = np.ones(n, bool)
    else:
        typed = np.fromiter((type(v) in _NUMBER for v in col), bool, n)
        col = [v if t else 0 for v, t in zip(col, typed, strict=True)]
    try:
        arr = np.array(col, dtype=np.float64)
    except OverflowError:  # an int beyond float range: every row goes the slow way
        return None, np.ones(n, bool)
    if kind == "time":
        ok = typed & (arr >= MIN_TS_MS) & (arr < MAX_TS_MS)
        with np.errstate(invalid="ignore"):  # out-of-range rows are flagged, not used
            return arr.astype(np.int64), ~ok
    ok = typed & np.isfinite(arr) & (arr >= spec.lo) & (arr <= spec.hi)
    return arr, ~ok


def _parse_all(lines: Sequence[bytes], max_bytes: int) -> list[dict[str, Any]] | None:
    """Every line as a JSON object (``map`` runs the loop in C), or None when any line is too
    large, not JSON or not an object: then the batch goes line by line, so each bad line gets
    its own reason. (Parsing the batch as one JSON array would be faster still, but a line
    could then borrow brackets or quotes from its neighbours.)"""
    if not lines or max(map(len, lines)) > max_bytes:
        return None
    try:
        objs = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None
    if set(map(type, objs)) != {dict}:
        return None
    return objs


def _decode(
    lines: Sequence[bytes],
    positions: Sequence[int],
    specs: tuple[FieldSpec, ...],
    source: str,
    stream: str,
    max_bytes: int,
    time_field: str,
) -> tuple[list[np.ndarray], list[int], list[DeadLetter]]:
    """Parse every line, then check each field for the whole batch at once; rows the fast
    checks reject are re-checked one by one, so each dead letter names its first bad field."""
    if time_field != "ts":
        specs = tuple(FieldSpec(time_field, "time") if s.kind == "time" else s for s in specs)
    fast = fast_columns(lines, specs, max_bytes, MAX_STR_LEN, (MIN_TS_MS, MAX_TS_MS))
    if fast is not None:  # the common case: every line good, checked in C by msgspec
        return fast, list(positions), []
    dead: list[DeadLetter] = []
    objs = _parse_all(lines, max_bytes)
    if objs is not None:  # the common case: the whole batch parsed in one orjson call
        pos_ok, raw_ok = list(positions), list(lines)
    else:
        objs, pos_ok, raw_ok = [], [], []
        for raw, pos in zip(lines, positions, strict=True):
            try:
                objs.append(_decode_line(raw, max_bytes))
                pos_ok.append(pos)
                raw_ok.append(raw)
            except _Invalid as e:
                dead.append(DeadLetter(source, pos, stream, dead_letter_raw(raw), str(e)))
    n = len(objs)
    reason: dict[int, str] = {}
    columns: list[np.ndarray] = []
    for spec in specs:
        try:
            col = list(map(itemgetter(spec.name), objs))
        except KeyError:
            col = [o.get(spec.name, _MISSING) for o in objs]
        values, suspect = _fast_column(spec, col)
        for r in np.flatnonzero(suspect).tolist():
            if r in reason:
                continue
            try:
                v = _check(spec, objs[r])
            except _Invalid as e:
                reason[r] = str(e)
                continue
            if values is None:
                values = np.zeros(n) if spec.kind != "time" else np.zeros(n, np.int64)
            values[r] = v
        if values is None:
            values = np.zeros(n)
        columns.append(values)
    if reason:
        for r in sorted(reason):
            dead.append(DeadLetter(source, pos_ok[r], stream, bytes(raw_ok[r]), reason[r]))
        keep = np.ones(n, bool)
        keep[list(reason)] = False
        columns = [c[keep] for c in columns]
        pos_ok = [p for p, k in zip(pos_ok, keep.tolist(), strict=True) if k]
    dead.sort(key=lambda d: d.position)
    return columns, pos_ok, dead


def decode_requests(
    lines: Sequence[bytes],
    positions: Sequence[int],
    source: str,
    ingest_ns: int,
    max_bytes: int = 65_536,
    time_field: str = "ts",
) -> tuple[RequestBatch, list[DeadLetter]]:
    """Decode raw JSON lines into a :class:`RequestBatch` and dead letters."""
    cols, good_pos, dead = _decode(
        lines, positions, REQUEST_FIELDS, source, "requests", max_bytes, time_field
    )
    if not good_pos:
        return RequestBatch(), dead
    return (
        RequestBatch(
            id=cols[0],
            ts=cols[1].astype(np.int64),
            placement=cols[2],
            device=cols[3],
            geo=cols[4],
            floor_price=cols[5].astype(np.float64),
            ingest_ns=np.full(len(good_pos), ingest_ns, dtype=np.int64),
        ),
        dead,
    )


def decode_outcomes(
    lines: Sequence[bytes],
    positions: Sequence[int],
    source: str,
    max_bytes: int = 65_536,
    time_field: str = "ts",
) -> tuple[OutcomeBatch, list[DeadLetter]]:
    """Decode raw JSON lines into an :class:`OutcomeBatch` and dead letters."""
    cols, good_pos, dead = _decode(
        lines, positions, OUTCOME_FIELDS, source, "outcomes", max_bytes, time_field
    )
    if not good_pos:
        return OutcomeBatch(), dead
    return (
        OutcomeBatch(
            decision_id=cols[0],
            ts=cols[1].astype(np.int64),
            partner=cols[2],
            filled=cols[3].astype(np.bool_),
            revenue=cols[4].astype(np.float64),
            latency_ms=cols[5].astype(np.float64),
            error=cols[6].astype(np.bool_),
            position=np.array([f"{source}#{p}" for p in good_pos], dtype=object),
        ),
        dead,
    )


def take(batch: _B, index: np.ndarray) -> _B:
    """Rows ``index`` (a bool mask or positions) of a columnar batch."""
    return type(batch)(**{f.name: getattr(batch, f.name)[index] for f in fields(batch)})


def concat(batches: Sequence[_B]) -> _B:
    """One batch from several of the same type, rows in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    return type(first)(
        **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(first)}
    )
