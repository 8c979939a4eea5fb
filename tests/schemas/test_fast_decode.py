"""The msgspec fast path and the careful path decode every batch identically."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eddy.schemas.events as ev
from eddy.schemas.events import decode_outcomes, decode_requests
from eddy.schemas.fast_decode import fast_columns

_GOOD_REQUEST = {
    "id": "r-1",
    "ts": 1_767_225_600_000,
    "placement": "app_banner",
    "device": "mobile",
    "geo": "gb",
    "floor_price": 0.25,
}
_GOOD_OUTCOME = {
    "decision_id": "r-1",
    "ts": 1_767_225_600_500,
    "partner": "alpha",
    "filled": True,
    "revenue": 1.5,
    "latency_ms": 80,
    "error": False,
}
# values that are wrong, borderline or merely unusual for some field
_ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 1e400, 10**30, 10**400, "", "x" * 300, "é\u2028", [], {},
    1_767_225_600_000.0, 1_767_225_600_000.5, 946_684_799_999, 4_102_444_800_000, 10_000.0001,
]  # fmt: skip
_RAW_LINES = [
    b"", b"  ", b"[]", b"null", b'"s"', b"{", b"{}", b'{"id": NaN}', b"\xff\xfe",
    b'{"id":"a","id":"b","ts":1767225600000,"placement":"p","device":"d","geo":"g",'
    b'"floor_price":1}',
]  # fmt: skip


def _line(good: dict[str, Any], edit: tuple[str, str, Any] | None, extra: bool) -> bytes:
    rec = dict(good)
    if edit is not None:
        how, name, value = edit
        if how == "drop":
            rec.pop(name, None)
        else:
            rec[name] = value
    if extra:
        rec["unknown_field"] = {"nested": [1, 2]}
    return json.dumps(rec).encode()  # the stdlib writes 10**30 and Infinity as they are


def _lines(good: dict[str, Any]) -> st.SearchStrategy[list[bytes]]:
    """Good lines, and at most one odd one among them (a batch with two bad lines tells no
    more: the fast path declines both the same way)."""
    edits = st.tuples(
        st.sampled_from(["set", "drop"]),
        st.sampled_from(sorted(good)),
        st.sampled_from(_ODD_VALUES),
    )
    plain = st.builds(_line, st.just(good), st.none(), st.booleans())
    odd = st.one_of(
        st.builds(_line, st.just(good), edits, st.booleans()), st.sampled_from(_RAW_LINES)
    )

    def put(lines: list[bytes], extra: list[bytes], at: int) -> list[bytes]:
        i = at % (len(lines) + 1)
        return lines[:i] + extra + lines[i:]

    return st.builds(
        put, st.lists(plain, max_size=6), st.lists(odd, max_size=1), st.integers(0, 6)
    ).filter(bool)


def _both(decode: Any, lines: list[bytes]) -> tuple[Any, Any]:
    """Decoded with the fast path available, and with only the careful path."""
    fast = decode(lines)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ev, "fast_columns", lambda *a, **k: None)
        careful = decode(lines)
    return fast, careful


def _same(a: Any, b: Any) -> None:
    (ba, da), (bb, db) = a, b
    assert [(d.position, d.reason) for d in da] == [(d.position, d.reason) for d in db]
    for name in vars(ba):
        x, y = getattr(ba, name), getattr(bb, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@settings(max_examples=300, deadline=None)
@given(lines=_lines(_GOOD_REQUEST))
def test_requests_decode_the_same_either_way(lines: list[bytes]) -> None:
    _same(*_both(lambda ls: decode_requests(ls, list(range(1, len(ls) + 1)), "t", 7), lines))


@settings(max_examples=300, deadline=None)
@given(lines=_lines(_GOOD_OUTCOME))
def test_outcomes_decode_the_same_either_way(lines: list[bytes]) -> None:
    _same(*_both(lambda ls: decode_outcomes(ls, list(range(1, len(ls) + 1)), "t"), lines))


def _decoders() -> list[tuple[dict[str, Any], Any]]:
    return [
        (_GOOD_REQUEST, lambda ls: decode_requests(ls, list(range(1, len(ls) + 1)), "t", 7)),
        (_GOOD_OUTCOME, lambda ls: decode_outcomes(ls, list(range(1, len(ls) + 1)), "t")),
    ]


@pytest.mark.parametrize("kind", [0, 1], ids=["requests", "outcomes"])
def test_every_single_odd_line_decodes_the_same_either_way(kind: int) -> None:
    good, decode = _decoders()[kind]
    odd = [_line(good, (how, name, v), extra) for how in ("set", "drop") for name in good
           for v in _ODD_VALUES for extra in (False, True)] + _RAW_LINES  # fmt: skip
    plain = _line(good, None, False)
    for line in odd:
        _same(*_both(decode, [plain, line, plain]))


def test_the_fast_path_takes_good_batches_and_declines_any_bad_line() -> None:
    good = [orjson.dumps(_GOOD_REQUEST)] * 3
    cols = fast_columns(
        good, ev.REQUEST_FIELDS, 65_536, ev.MAX_STR_LEN, (ev.MIN_TS_MS, ev.MAX_TS_MS)
    )
    assert cols is not None and cols[0].tolist() == ["r-1"] * 3 and cols[1].dtype == np.int64
    for bad in (b"{}", orjson.dumps({**_GOOD_REQUEST, "floor_price": -1})):
        lines = [*good, bad]
        assert fast_columns(lines, ev.REQUEST_FIELDS, 65_536, 256, (0, 2**62)) is None
