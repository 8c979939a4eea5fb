"""Generic decode: any declared stream, the fast path and the careful path agree, every bad
line is a dead letter with a reason naming the field."""

from __future__ import annotations

import dataclasses
import doctest
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eddy.schemas.decode as dec
import eddy.schemas.records as records
from eddy.schemas.decode import EligibleArms, decode_lines
from eddy.schemas.spec_load import loads_spec
from eddy.sources.base import dead_line

SPEC = loads_spec(
    """
[streams.s]
source = "jsonl:x.jsonl"
id = "sid"
time = "t"
[streams.s.fields]
region = "string"
rate = { type = "float", min = 0, max = 100 }
n = { type = "int", optional = true }
ok = { type = "bool", default = false }
flag = { type = "bool", optional = true }
note = { type = "string", optional = true }
cdns = { type = "list[string]", min = 1, max = 3 }
[[detect]]
name = "d"
stream = "s"
metrics = ["rate"]
"""
)
STREAM = SPEC.streams[0]
GOOD: dict[str, Any] = {
    "sid": "a",
    "t": 1_767_225_600_000,
    "region": "eu",
    "rate": 1.5,
    "n": 3,
    "ok": True,
    "flag": False,
    "note": "hi",
    "cdns": ["x", "y"],
}
ODD: list[Any] = [
    None, True, False, 0, 1, -1, 2.5, 1e400, 10**30, "", "x" * 5000, "é", [], ["a"],
    ["a", "b", "c", "d"], [1], {}, 1_767_225_600_000.0, "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00", 946_684_799_999,
]  # fmt: skip


def _line(edit: tuple[str, str, Any] | None) -> bytes:
    rec = dict(GOOD)
    if edit is not None:
        how, name, value = edit
        if how == "drop":
            rec.pop(name, None)
        else:
            rec[name] = value
    return json.dumps(rec).encode()


def _careful(lines: list[bytes]) -> tuple[Any, Any]:
    """The careful path alone (the fast path declines)."""
    orig = dec._fast
    dec._fast = lambda *a, **k: None  # type: ignore[assignment]
    try:
        return decode_lines(STREAM, lines, list(range(1, len(lines) + 1)), "jsonl:x")
    finally:
        dec._fast = orig  # type: ignore[assignment]


def _same(a: Any, b: Any) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    assert a.ts.tolist() == b.ts.tolist()
    for k in a.columns:
        x, y = a.columns[k], b.columns[k]
        assert x.dtype == y.dtype, k
        if x.dtype == np.float64:
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert x.tolist() == y.tolist(), k


names = st.sampled_from(sorted(GOOD))
edits = st.one_of(
    st.none(),
    st.tuples(st.just("drop"), names, st.none()),
    st.tuples(st.just("set"), names, st.sampled_from(ODD)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(edits, min_size=1, max_size=12))
def test_fast_and_careful_paths_agree(edit_list: list[Any]) -> None:
    lines = [_line(e) for e in edit_list]
    fast_batch, fast_dead = decode_lines(STREAM, lines, list(range(1, len(lines) + 1)), "jsonl:x")
    slow_batch, slow_dead = _careful(lines)
    _same(fast_batch, slow_batch)
    assert [(d.position, d.reason) for d in fast_dead] == [
        (d.position, d.reason) for d in slow_dead
    ]
    assert len(fast_batch) + len(fast_dead) == len(lines)  # nothing lost


def test_good_lines_take_defaults_and_absent_values() -> None:
    rec = {k: v for k, v in GOOD.items() if k not in ("n", "ok", "flag", "note")}
    batch, dead = decode_lines(STREAM, [_line(None), json.dumps(rec).encode()], [1, 2], "f")
    assert dead == []
    c = batch.columns
    assert np.isnan(c["n"][1]) and c["n"][0] == 3.0
    assert c["ok"].tolist() == [True, False]  # the default
    assert c["flag"][0] == 0.0 and np.isnan(c["flag"][1])  # optional bool without default
    assert c["note"].tolist() == ["hi", None]
    assert c["cdns"].tolist() == [("x", "y"), ("x", "y")]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("drop", "region", None), "missing required field 'region'"),
        (("set", "region", None), "field 'region': null, but the field is required"),
        (("set", "rate", "fast"), "field 'rate': expected a number, got a string"),
        (("set", "rate", 101), "field 'rate': 101 is outside [0, 100]"),
        (("set", "n", 2.5), "field 'n': expected an integer, got 2.5"),
        (("set", "ok", "yes"), "field 'ok': expected true/false"),
        (("set", "cdns", []), "field 'cdns': list of 0 items, expected [1, 3]"),
        (("set", "cdns", [1]), "field 'cdns': expected a list of strings"),
        (("set", "t", "2026-01-01T00:00:00"), "has no time zone"),
        (("set", "t", 5), "outside 2000-01-01..2100-01-01"),
        (("set", "sid", ""), "field 'sid': expected a non-empty string id"),
    ],
)
def test_each_bad_value_names_its_field(edit: tuple[str, str, Any], reason: str) -> None:
    lines = [_line(None), _line(edit), _line(None)]
    batch, dead = decode_lines(STREAM, lines, [1, 2, 3], "jsonl:x")
    assert len(batch) == 2 and [d.position for d in dead] == [2]
    assert reason in dead[0].reason, dead[0].reason


def test_a_stream_without_id_uses_the_source_position() -> None:
    spec = loads_spec(
        '[streams.r]\nsource = "csv:r.csv"\ntime = "t"\nfields = { v = "float" }\n'
        '[[detect]]\nname = "d"\nstream = "r"\nmetrics = ["v"]\n'
    )
    lines = [b'{"t": 1767225600000, "v": 1}', b'{"t": 1767225600001, "v": 2}']
    batch, _ = decode_lines(spec.streams[0], lines, [7, 8], "csv:/data/r.csv")
    assert batch.ids.tolist() == ["csv:/data/r.csv#7", "csv:/data/r.csv#8"]


def test_a_dead_letter_keeps_the_raw_record_given_for_its_line() -> None:
    """Lines that are conversions (a CSV row as JSON) come with their records: every way a line
    can be rejected (not JSON, a marked line, a bad field, no eligible arm) keeps the record."""
    check = EligibleArms("cdns", ("x", "y"), "pick")
    lines = [
        _line(None),
        b"not json",
        dead_line("row has 2 cells", b"a,b"),
        _line(("set", "rate", "x")),
        _line(("set", "cdns", ["zz"])),
    ]
    raw = [b"row1", b"row2", b"row3", b"row4", b"row5"]
    batch, dead = decode_lines(STREAM, lines, [1, 2, 3, 4, 5], "csv:x", checks=[check], raw=raw)
    assert batch.ids.tolist() == ["a"]
    assert [(d.position, d.raw) for d in dead] == [
        (2, b"row2"),
        (3, b"row3"),
        (4, b"row4"),
        (5, b"row5"),
    ]
    # every line parses (the careful path after the fast one declines; then the fast one)
    for two in ([lines[3], lines[4]], [lines[0], lines[4]]):
        _, dead = decode_lines(STREAM, two, [1, 2], "csv:x", checks=[check], raw=raw[:2])
        assert [(d.position, d.raw) for d in dead][-1] == (2, b"row2")
    # without raw: the line itself (or the record a marked line holds)
    _, dead = decode_lines(STREAM, lines[1:3], [2, 3], "jsonl:x")
    assert [d.raw for d in dead] == [b"not json", b"a,b"]
    with pytest.raises(ValueError, match="raw records"):
        decode_lines(STREAM, lines, [1, 2, 3, 4, 5], "csv:x", raw=raw[:2])


# -- the id keeps its declared type ------------------------------------------------------
INT_ID = dataclasses.replace(STREAM, id_type="int")


def test_a_string_id_takes_only_strings() -> None:
    """777 and "777" must not become one id: a number in a string id field is a dead letter
    naming the field, the type expected and what came, on the fast path and the careful one."""
    lines = [_line(("set", "sid", "777")), _line(("set", "sid", 777))]
    for batch, dead in (decode_lines(STREAM, lines, [1, 2], "jsonl:x"), _careful(lines)):
        assert batch.ids.tolist() == ["777"]
        assert [(d.position, d.reason) for d in dead] == [
            (2, "field 'sid': expected a non-empty string id, got the integer 777")
        ]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("777", "the string '777'"),
        (7.0, "the number 7.0"),
        (True, "a boolean"),
        (2**64, "the number 1.8446744073709552e+19"),  # beyond 64 bits JSON readers differ
        ([1], "a list"),
    ],
)
def test_an_int_id_takes_only_integers(value: Any, why: str) -> None:
    lines = [_line(("set", "sid", 777)), _line(("set", "sid", value)), _line(("set", "sid", -5))]
    fast = decode_lines(INT_ID, lines, [1, 2, 3], "jsonl:x")
    slow = _careful_of(INT_ID, lines)
    for batch, dead in (fast, slow):
        assert batch.ids.tolist() == ["777", "-5"]  # kept as decimal strings
        assert [(d.position, d.reason) for d in dead] == [
            (2, f"field 'sid': expected an integer id, got {why}")
        ]


def test_all_good_int_ids_stay_on_the_fast_path() -> None:
    lines = [_line(("set", "sid", i)) for i in (0, 2**64 - 1, -(2**63))]
    batch, dead = decode_lines(INT_ID, lines, [1, 2, 3], "jsonl:x")
    assert dead == []
    assert batch.ids.tolist() == ["0", str(2**64 - 1), str(-(2**63))]
    assert dec._fast(dec._columns(INT_ID), lines, 65_536) is not None


def test_string_lengths_at_the_limit_stay_fast_and_past_it_are_dead_letters() -> None:
    at_limit = "é" * dec.MAX_STRING_CHARS  # characters, not bytes
    lines = [_line(("set", "region", at_limit)), _line(("set", "sid", at_limit))]
    assert dec._fast(dec._columns(STREAM), lines, 65_536) is not None
    batch, dead = decode_lines(STREAM, lines, [1, 2], "jsonl:x")
    assert dead == [] and batch.columns["region"][0] == at_limit
    longer = [_line(("set", "region", at_limit + "x")), _line(("set", "sid", at_limit + "x"))]
    assert dec._fast(dec._columns(STREAM), longer, 65_536) is None
    batch, dead = decode_lines(STREAM, longer, [1, 2], "jsonl:x")
    assert len(batch) == 0 and [d.position for d in dead] == [1, 2]
    assert "region" in dead[0].reason and "sid" in dead[1].reason


def test_an_unknown_id_type_is_refused() -> None:
    with pytest.raises(ValueError, match="id_type must be 'string' or 'int'"):
        decode_lines(dataclasses.replace(STREAM, id_type="uuid"), [_line(None)], [1], "x")


def _careful_of(stream: Any, lines: list[bytes]) -> tuple[Any, Any]:
    orig = dec._fast
    dec._fast = lambda *a, **k: None  # type: ignore[assignment]
    try:
        return decode_lines(stream, lines, list(range(1, len(lines) + 1)), "jsonl:x")
    finally:
        dec._fast = orig  # type: ignore[assignment]


# -- lines that are not JSON: both paths, the same reasons ------------------------------
WORDS = ["NaN", "Infinity", "-Infinity", "nan", "inf", "é", "NaN é", '"NaN"', "\\"]


@st.composite
def _odd_lines(draw: st.DrawFn) -> tuple[bytes, str]:
    """A good line whose note holds NaN-like words, then cut short, given a bare token, or
    left whole; with what its reason must be about."""
    rec = dict(GOOD, note=" ".join(draw(st.lists(st.sampled_from(WORDS), max_size=3))))
    line = json.dumps(rec, ensure_ascii=draw(st.booleans())).encode()
    how = draw(st.sampled_from(["cut", "token", "whole"]))
    if how == "cut":
        return line[: draw(st.integers(1, len(line) - 1))], "truncated"
    if how == "token":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return line.replace(b'"rate": 1.5', b'"rate": ' + token.encode()), "nan"
    return line, "good"


@settings(max_examples=300, deadline=None)
@given(st.lists(_odd_lines(), min_size=1, max_size=8))
def test_cut_lines_and_nan_words_get_the_same_reason_on_both_paths(
    cases: list[tuple[bytes, str]],
) -> None:
    """A line cut short is truncated JSON, whatever words its strings hold; NaN or Infinity is
    named only for a bare token where a value belongs."""
    lines = [line for line, _ in cases]
    positions = list(range(1, len(lines) + 1))
    fast_batch, fast_dead = decode_lines(STREAM, lines, positions, "jsonl:x")
    slow_batch, slow_dead = _careful(lines)
    _same(fast_batch, slow_batch)
    assert [(d.position, d.reason) for d in fast_dead] == [
        (d.position, d.reason) for d in slow_dead
    ]
    reasons = {d.position: d.reason for d in fast_dead}
    for pos, (_, kind) in enumerate(cases, start=1):
        if kind == "good":
            assert pos not in reasons
        elif kind == "nan":
            assert reasons[pos] == "contains NaN or Infinity, which JSON does not allow"
        else:
            assert reasons[pos].startswith("not valid JSON: truncated: "), reasons[pos]


def test_the_records_module_examples_run() -> None:
    result = doctest.testmod(records, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
