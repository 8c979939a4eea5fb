"""Decode JSON lines of any declared stream into an :class:`EventBatch` and dead letters.

Two paths, both driven only by the stream's declaration (``schemas.spec.StreamSpec``):

* **fast**: msgspec parses and type-checks the whole batch in C against a struct built from
  the declared fields; value checks (ranges, lengths, time bounds) run on whole columns. It
  only vouches for batches where every line is good, and returns None otherwise.
* **careful**: orjson parses the batch (line by line when some line is not a JSON object),
  every column is checked at once, and the rows the column checks reject are checked one by
  one, so each bad line becomes a :class:`DeadLetter` naming its first bad field and why.

A dead letter keeps the line it was decoded from, or, when the caller passes ``raw`` (the
original record of each line, for lines that are conversions such as a CSV row as a JSON line),
that record: what was read, not what it was converted to. A record longer than ``max_bytes``
keeps only its first bytes (``schemas.records.keep_raw``), and its reason gives its size.

Both paths give the same values for good lines and the same dead letters for bad ones
(``tests/schemas/test_decode.py``): the fast path never words a reason, it declines. Nothing
raises on bad input. Undeclared fields are ignored. An absent or null optional field takes
its default, or stays absent (NaN / None) without one.

The id keeps its declared type (``StreamSpec.id_type``): a string id is a non-empty JSON
string, an int id a JSON integer (kept as its decimal string, the type of every id column).
Anything else is a dead letter, so that ``777`` and ``"777"`` are never two spellings of one
id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from eddy.schemas.batch import EventBatch
from eddy.schemas.durations import iso_time, span_text
from eddy.schemas.records import (
    MAX_TS_MS,
    MIN_TS_MS,
    DeadLetter,
    InvalidRecord,
    dead_letter_raw,
    keep_raw,
    parse_line,
    parse_time,
)
from eddy.schemas.spec import PipelineSpec, StreamSpec

__all__ = [
    "MAX_STRING_CHARS",
    "EligibleArms",
    "TimeBound",
    "decode_lines",
    "eligibility_checks",
    "stream_dtypes",
]

#: longest string value (or list item) accepted, in characters
MAX_STRING_CHARS = 4_096
_MISSING = object()
# the integers orjson reads as int (beyond them it gives a float): an int id must be one, so
# that both paths agree on every line
_INT_ID_MIN, _INT_ID_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class _Col:
    """One column to decode: the id, the time, or a declared field."""

    name: str
    kind: str  # id, int id, time, string, float, int, bool, list[string]
    lo: float | None = None
    hi: float | None = None
    optional: bool = False
    default: Any = None

    @property
    def nullable(self) -> bool:
        return self.optional and self.default is None


@cache
def _columns(stream: StreamSpec) -> tuple[_Col, ...]:
    cols = [_Col(stream.time, "time")]
    if stream.id is not None:
        if stream.id_type not in ("string", "int"):
            raise ValueError(
                f"stream {stream.name!r}: id_type must be 'string' or 'int', got {stream.id_type!r}"
            )
        cols.append(_Col(stream.id, "id" if stream.id_type == "string" else "int id"))
    for f in stream.fields:
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        cols.append(_Col(f.name, f.type, f.min, f.max, f.optional, default))
    return tuple(cols)


def stream_dtypes(stream: StreamSpec) -> dict[str, np.dtype]:
    """The numpy dtype of each declared field's column in an :class:`EventBatch`."""
    out: dict[str, np.dtype] = {}
    for c in _columns(stream)[1 + (stream.id is not None) :]:
        if c.kind in ("float", "int") or (c.kind == "bool" and c.nullable):
            out[c.name] = np.dtype(np.float64)
        elif c.kind == "bool":
            out[c.name] = np.dtype(np.bool_)
        else:
            out[c.name] = np.dtype(object)
    return out


@dataclass(frozen=True)
class EligibleArms:
    """An event of a decide stage's stream must list at least one of the stage's arms in its
    ``eligible`` field: otherwise nothing can be decided for it, and it is a dead letter here,
    where its raw line and position are still known."""

    field: str
    arms: tuple[str, ...]
    stage: str

    def failures(self, column: np.ndarray) -> list[tuple[int, str]]:
        allowed = frozenset(self.arms)
        out = []
        for i, listed in enumerate(column.tolist()):
            if listed and not allowed.isdisjoint(listed):
                continue
            shown = repr(list(listed or ()))[:200]
            out.append(
                (
                    i,
                    f"field {self.field!r}: none of {shown} is an arm of decide {self.stage!r} "
                    f"({', '.join(self.arms)})",
                )
            )
        return out


@dataclass(frozen=True)
class TimeBound:
    """No event may be dated more than ``max_ahead_ms`` past the wall clock ``now_ms``: one
    record with a wrong clock (a year 2099, a timestamp in microseconds) would otherwise move
    its stream's watermark so far ahead that every later event is late. Such an event is a
    dead letter here, where its raw line and position are still known."""

    now_ms: int
    max_ahead_ms: int

    def failures(self, ts: np.ndarray) -> list[tuple[int, str]]:
        latest = self.now_ms + self.max_ahead_ms
        bad = np.flatnonzero(ts > latest)
        return [
            (
                int(i),
                f"event time {iso_time(int(ts[i]))} is "
                f"{span_text(int(ts[i]) - self.now_ms)} ahead of the wall clock, more than "
                f"[time] max_ahead ({span_text(self.max_ahead_ms)})",
            )
            for i in bad.tolist()
        ]


def eligibility_checks(spec: PipelineSpec) -> dict[str, tuple[EligibleArms, ...]]:
    """Stream -> the eligibility checks of the decide stages on it."""
    out: dict[str, list[EligibleArms]] = {}
    for d in spec.decide:
        if d.eligible is not None:
            out.setdefault(d.stream, []).append(EligibleArms(d.eligible, d.arms, d.name))
    return {k: tuple(v) for k, v in out.items()}


def decode_lines(
    stream: StreamSpec,
    lines: Sequence[bytes],
    positions: Sequence[int],
    source: str,
    ingest_ns: int = 0,
    max_bytes: int = 65_536,
    checks: Sequence[EligibleArms] = (),
    raw: Sequence[bytes] | None = None,
    time_bound: TimeBound | None = None,
) -> tuple[EventBatch, list[DeadLetter]]:
    """Decode raw JSON lines of ``stream`` read from ``source`` at ``positions`` (``checks``:
    what a decide stage needs of its events, see :class:`EligibleArms`; ``time_bound``: how far
    past the wall clock an event may be dated, see :class:`TimeBound`). ``raw``, when given,
    holds the original record of each line (``sources.base.RawBatch.raw``): a dead letter keeps
    ``raw[i]`` instead of line ``i``."""
    if raw is not None and len(raw) != len(lines):
        raise ValueError(f"decode_lines: {len(raw)} raw records for {len(lines)} lines")
    cols = _columns(stream)
    values = _fast(cols, lines, max_bytes)
    dead: list[DeadLetter] = []
    good_pos: list[int] = list(positions)
    if values is None:
        values, good_pos, dead = _careful(
            cols, lines, positions, source, stream.name, max_bytes, raw
        )
    n = len(good_pos)
    if n == 0:
        return EventBatch.empty(stream.name, stream_dtypes(stream)), dead
    ts = values[0].astype(np.int64)
    if stream.id is not None:
        ids = values[1]
        fields = values[2:]
    else:
        ids = np.array([f"{source}#{p}" for p in good_pos], dtype=object)
        fields = values[1:]
    columns = {c.name: v for c, v in zip(cols[len(cols) - len(fields) :], fields, strict=True)}
    batch = EventBatch(stream.name, ts, ids, columns, np.full(n, ingest_ns, dtype=np.int64))
    failed = {i: why for check in checks for i, why in check.failures(columns[check.field])}
    if time_bound is not None:
        failed.update(time_bound.failures(ts))
    if failed:  # rare: the raw records of the failed rows, by position
        records = lines if raw is None else raw
        index_at = {p: i for i, p in enumerate(positions)}
        for i in sorted(failed):
            record = records[index_at[good_pos[i]]]
            dead.append(_dead(source, good_pos[i], stream.name, record, failed[i], max_bytes))
        keep = np.ones(n, bool)
        keep[list(failed)] = False
        batch = batch.take(keep)
        dead.sort(key=lambda d: d.position)
    return batch, dead


# -- the fast path -----------------------------------------------------------------------
_MSGSPEC_TYPES: dict[str, Any] = {
    # msgspec checks the lengths in C: a required string column then needs no pass of its own
    "id": Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING_CHARS)],
    "int id": int,
    "time": int | float,
    "string": Annotated[str, msgspec.Meta(max_length=MAX_STRING_CHARS)],
    "float": int | float,
    "int": int,
    "bool": bool,
    "list[string]": list[str],
}


@cache
def _decoder(cols: tuple[_Col, ...]) -> msgspec.json.Decoder[Any]:
    required = [(c.name, _MSGSPEC_TYPES[c.kind]) for c in cols if not c.optional]
    optional = [(c.name, _MSGSPEC_TYPES[c.kind] | None, None) for c in cols if c.optional]
    # gc=False: the records hold no cycles (less GC work per batch)
    return msgspec.json.Decoder(msgspec.defstruct("Event", [*required, *optional], gc=False))


def _fast(
    cols: tuple[_Col, ...], lines: Sequence[bytes], max_bytes: int
) -> list[np.ndarray] | None:
    if not lines or max(map(len, lines)) > max_bytes:
        return None
    try:
        decode = _decoder(cols).decode
        recs = list(map(decode, lines))
    except (
        msgspec.DecodeError,
        msgspec.ValidationError,
        UnicodeDecodeError,
        TypeError,
        ValueError,
    ):
        return None
    out: list[np.ndarray] = []
    for c in cols:
        values = list(map(attrgetter(c.name), recs))
        if c.kind in ("id", "string") and not c.optional:  # msgspec checked type and length
            strings = np.empty(len(values), dtype=object)
            strings[:] = values
            out.append(strings)
            continue
        arr, suspect = _column(c, values)
        if arr is None or suspect.any():
            return None
        out.append(arr)
    return out


# -- column checks shared by both paths --------------------------------------------------
def _column(c: _Col, col: list[Any]) -> tuple[np.ndarray | None, np.ndarray]:
    """``(values, suspect)``: the column in its batch dtype, and the rows the vectorised checks
    could not vouch for (re-checked one by one). Absent values are ``_MISSING`` or None."""
    n = len(col)
    types = set(map(type, col))  # map/set run in C: the all-good case stays cheap
    absent = np.zeros(n, bool)
    if c.optional and (type(None) in types or type(_MISSING) in types):
        absent = np.fromiter((v is None or v is _MISSING for v in col), bool, n)
        fill = c.default
        col = [fill if a else v for v, a in zip(col, absent.tolist(), strict=True)]
        types = set(map(type, col))
    kind = c.kind
    if kind == "int id":  # never optional: the id is required
        values = np.empty(n, dtype=object)
        if types == {int} and min(col) >= _INT_ID_MIN and max(col) <= _INT_ID_MAX:
            values[:] = list(map(str, col))
            return values, np.zeros(n, bool)
        ok = np.fromiter((_good_int_id(v) for v in col), bool, n)
        values[:] = [str(v) if good else v for v, good in zip(col, ok.tolist(), strict=True)]
        return values, ~ok
    if kind in ("id", "string"):
        values = np.empty(n, dtype=object)
        values[:] = col
        if types == {str} and n:
            lens = list(map(len, col))
            if max(lens) <= MAX_STRING_CHARS and (kind == "string" or min(lens) > 0):
                return values, np.zeros(n, bool)
        ok = np.fromiter((type(v) is str and len(v) <= MAX_STRING_CHARS for v in col), bool, n)
        if kind == "id":
            ok &= np.fromiter((v != "" for v in col), bool, n)
        if c.nullable:
            ok |= absent
        return values, ~ok if not (types == {str} and ok.all()) else np.zeros(n, bool)
    if kind == "list[string]":
        values = np.empty(n, dtype=object)
        values[:] = [tuple(v) if type(v) is list else v for v in col]
        ok = np.fromiter((_good_list(v, c) for v in col), bool, n)
        if c.nullable:
            ok |= absent
        return values, ~ok
    if kind == "bool":
        if c.nullable:
            vals = np.array([np.nan if v is None else float(v is True) for v in col])
            ok = np.fromiter((type(v) is bool or v is None for v in col), bool, n)
            return vals, ~ok
        if types <= {bool}:
            return np.array(col, dtype=np.bool_).reshape(n), np.zeros(n, bool)
        vals = np.fromiter((v is True for v in col), bool, n)
        return vals, ~np.fromiter((type(v) is bool for v in col), bool, n)
    # numbers: time, float, int
    typed = (
        np.fromiter((type(v) in (int, float) for v in col), bool, n)
        if not types <= {int, float}
        else np.ones(n, bool)
    )
    num = col if typed.all() else [v if t else 0 for v, t in zip(col, typed.tolist(), strict=True)]
    try:
        arr = np.array(num, dtype=np.float64)
    except OverflowError:  # an int beyond float range: every row goes the slow way
        return None, np.ones(n, bool)
    if kind == "time":
        ok = typed & (arr >= MIN_TS_MS) & (arr < MAX_TS_MS)
        return arr, ~ok
    ok = typed & np.isfinite(arr)
    if kind == "int":
        with np.errstate(invalid="ignore"):
            ok &= (arr == np.floor(arr)) & (np.abs(arr) <= 2**53)
    if c.lo is not None:
        ok &= arr >= c.lo
    if c.hi is not None:
        ok &= arr <= c.hi
    if c.nullable:
        arr[absent] = np.nan
        ok |= absent
    return arr, ~ok


def _good_int_id(v: Any) -> bool:
    return type(v) is int and _INT_ID_MIN <= v <= _INT_ID_MAX


def _good_list(v: Any, c: _Col) -> bool:
    if type(v) is not list or not all(type(x) is str and len(x) <= MAX_STRING_CHARS for x in v):
        return False
    return (c.lo is None or len(v) >= c.lo) and (c.hi is None or len(v) <= c.hi)


def _check(c: _Col, obj: dict[str, Any]) -> Any:
    """One value of one row, or raise :class:`InvalidRecord` with a readable reason."""
    v = obj.get(c.name, _MISSING)
    if v is _MISSING or v is None:
        if c.optional:
            return c.default if c.default is not None else (np.nan if c.kind != "string" else None)
        if v is None:
            raise InvalidRecord(f"field {c.name!r}: null, but the field is required")
        raise InvalidRecord(f"missing required field {c.name!r}")
    kind, name = c.kind, c.name
    if kind == "time":
        return parse_time(v, name)
    if kind == "int id":
        if _good_int_id(v):
            return str(v)
        raise InvalidRecord(f"field {name!r}: expected an integer id, got {_shown(v)}")
    if kind == "id" and (not isinstance(v, str) or not v):
        raise InvalidRecord(f"field {name!r}: expected a non-empty string id, got {_shown(v)}")
    if kind in ("id", "string"):
        if not isinstance(v, str):
            raise InvalidRecord(f"field {name!r}: expected a string, got {_kind(v)}")
        if len(v) > MAX_STRING_CHARS:
            raise InvalidRecord(
                f"field {name!r}: string of {len(v)} chars, limit {MAX_STRING_CHARS}"
            )
        return v
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise InvalidRecord(f"field {name!r}: expected true/false, got {v!r:.40}")
    if kind == "list[string]":
        if not isinstance(v, list):
            raise InvalidRecord(f"field {name!r}: expected a list of strings, got {_kind(v)}")
        for x in v:
            if not isinstance(x, str) or len(x) > MAX_STRING_CHARS:
                raise InvalidRecord(
                    f"field {name!r}: expected a list of strings, got an item {x!r:.40}"
                )
        if (c.lo is not None and len(v) < c.lo) or (c.hi is not None and len(v) > c.hi):
            raise InvalidRecord(f"field {name!r}: list of {len(v)} items, expected {_range(c)}")
        return tuple(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidRecord(f"field {name!r}: expected a number, got {_kind(v)}")
    f = float(v)
    if not np.isfinite(f):
        raise InvalidRecord(f"field {name!r}: number is not finite")
    if kind == "int" and (f != int(f) or abs(f) > 2**53):
        raise InvalidRecord(f"field {name!r}: expected an integer, got {v!r:.40}")
    if (c.lo is not None and f < c.lo) or (c.hi is not None and f > c.hi):
        raise InvalidRecord(f"field {name!r}: {f:g} is outside {_range(c)}")
    return f


def _range(c: _Col) -> str:
    lo = "-inf" if c.lo is None else f"{c.lo:g}"
    hi = "inf" if c.hi is None else f"{c.hi:g}"
    return f"[{lo}, {hi}]"


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def _shown(v: Any) -> str:
    """A value's JSON type with the value itself when it is short: what an id field got."""
    if type(v) is int:
        return f"the integer {v}" if abs(v) < 10**40 else "an integer"
    if type(v) is float:
        return f"the number {v!r}"
    if type(v) is str:
        return f"the string {v!r:.40}" if v else "an empty string"
    return _kind(v)


# -- the careful path --------------------------------------------------------------------
def _careful(
    cols: tuple[_Col, ...],
    lines: Sequence[bytes],
    positions: Sequence[int],
    source: str,
    stream: str,
    max_bytes: int,
    raw: Sequence[bytes] | None = None,
) -> tuple[list[np.ndarray], list[int], list[DeadLetter]]:
    """The careful path. A dead letter keeps ``raw[i]`` if given, else line ``i`` (or the
    record a ``DEAD_LETTER_MARK`` line holds)."""
    dead: list[DeadLetter] = []
    records = lines if raw is None else raw
    objs = _parse_all(lines, max_bytes)
    if objs is not None:
        pos_ok, at_ok = list(positions), list(range(len(lines)))  # at_ok: index of each object
    else:
        objs, pos_ok, at_ok = [], [], []
        for i, (line, pos) in enumerate(zip(lines, positions, strict=True)):
            try:
                objs.append(parse_line(line, max_bytes))
                pos_ok.append(pos)
                at_ok.append(i)
            except InvalidRecord as e:
                kept = dead_letter_raw(line) if raw is None else raw[i]
                dead.append(_dead(source, pos, stream, kept, str(e), max_bytes))
    n = len(objs)
    reason: dict[int, str] = {}
    out: list[np.ndarray] = []
    for c in cols:
        col = [o.get(c.name, _MISSING) for o in objs]
        values, suspect = _column(c, col)
        if values is None:
            values = (
                np.zeros(n)
                if c.kind not in ("id", "string", "list[string]")
                else np.empty(n, object)
            )
        for r in np.flatnonzero(suspect).tolist():
            if r in reason:
                continue
            try:
                values[r] = _check(c, objs[r])
            except InvalidRecord as e:
                reason[r] = str(e)
        out.append(values)
    if reason:
        for r in sorted(reason):
            record = records[at_ok[r]]
            dead.append(_dead(source, pos_ok[r], stream, record, reason[r], max_bytes))
        keep = np.ones(n, bool)
        keep[list(reason)] = False
        out = [v[keep] for v in out]
        pos_ok = [p for p, k in zip(pos_ok, keep.tolist(), strict=True) if k]
    dead.sort(key=lambda d: d.position)
    return out, pos_ok, dead


def _dead(
    source: str, position: int, stream: str, record: bytes, reason: str, max_bytes: int
) -> DeadLetter:
    """A dead letter keeping ``record`` whole, or its first bytes when it is over-long."""
    kept, why = keep_raw(record, reason, max_bytes)
    return DeadLetter(source, position, stream, kept, why)


def _parse_all(lines: Sequence[bytes], max_bytes: int) -> list[dict[str, Any]] | None:
    """Every line as a JSON object in one pass, or None when any line needs its own reason."""
    if not lines or max(map(len, lines)) > max_bytes:
        return None
    try:
        objs = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None
    if set(map(type, objs)) != {dict}:
        return None
    return objs
