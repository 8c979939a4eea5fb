"""Decoding and validation of input events: each kind of bad line becomes a readable dead letter."""

from __future__ import annotations

import orjson
import pytest

from eddy.schemas.events import concat, decode_outcomes, decode_requests, parse_time, take

GOOD = {
    "id": "r-1",
    "ts": 1_767_225_600_000,
    "placement": "home_top",
    "device": "mobile",
    "geo": "us",
    "floor_price": 0.5,
}


def _line(**changes: object) -> bytes:
    obj = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP})


_DROP = object()


def _decode(lines: list[bytes], max_bytes: int = 65_536):
    return decode_requests(lines, list(range(1, len(lines) + 1)), "jsonl:x", 7, max_bytes)


def test_good_lines_become_columns() -> None:
    batch, dead = _decode([_line(), _line(id="r-2", ts="2026-01-01T00:00:01+00:00")])
    assert dead == []
    assert batch.id.tolist() == ["r-1", "r-2"]
    assert batch.ts.tolist() == [1_767_225_600_000, 1_767_225_601_000]
    assert batch.floor_price.tolist() == [0.5, 0.5]
    assert batch.ingest_ns.tolist() == [7, 7]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"id": "\xff\xfe"}', "not valid UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b'"just a string"', "expected a JSON object, got str"),
        (_line(geo=_DROP), "missing required field 'geo'"),
        (_line(floor_price="cheap"), "field 'floor_price': expected a number, got str"),
        (_line(placement=3), "field 'placement': expected a string, got int"),
        (_line(floor_price=True), "field 'floor_price': expected a number, got bool"),
        (_line().replace(b"0.5", b"NaN"), "NaN or Infinity"),
        (_line().replace(b"0.5", b"Infinity"), "NaN or Infinity"),
        (_line().replace(b"0.5", b"1e400"), "NaN or Infinity"),
        (_line(floor_price=1e300), "field 'floor_price': 1e+300 is outside [0, 10000]"),
        (_line(floor_price=-1), "field 'floor_price': -1 is outside"),
        (_line(ts=99), "field 'ts': timestamp 99 is outside 2000-01-01..2100-01-01"),
        (_line(ts=10**17), "outside 2000-01-01..2100-01-01"),
        (_line(ts="yesterday"), "field 'ts': 'yesterday' is not an ISO-8601 timestamp"),
        (_line(ts="2026-01-01T00:00:00"), "has no time zone"),
        (_line(id=""), "field 'id': must not be empty"),
        (_line(geo="x" * 300), "field 'geo': string of 300 chars, limit 256"),
    ],
)
def test_bad_line_becomes_dead_letter_with_reason(raw: bytes, reason: str) -> None:
    batch, dead = _decode([_line(id="ok-1"), raw, _line(id="ok-2")])
    assert batch.id.tolist() == ["ok-1", "ok-2"]
    assert len(dead) == 1
    d = dead[0]
    assert reason in d.reason
    assert d.raw == raw
    assert d.position == 2
    assert d.source == "jsonl:x"
    assert d.stream == "requests"
    assert d.dead_letter_id == "jsonl:x#2"


def test_oversized_record_is_refused_before_parsing() -> None:
    big = _line(extra="y" * 5_000)
    batch, dead = _decode([big], max_bytes=1_000)
    assert len(batch) == 0
    assert "exceeds the limit of 1000 bytes" in dead[0].reason


def test_outcomes_decode_and_positions_identify_records() -> None:
    good = orjson.dumps(
        {
            "decision_id": "r-1",
            "ts": 1_767_225_601_000,
            "partner": "alpha",
            "filled": True,
            "revenue": 1.5,
            "latency_ms": 120.0,
            "error": 0,
        }
    )
    batch, dead = decode_outcomes([good, b'{"decision_id": "r-2"}'], [10, 11], "jsonl:o")
    assert batch.position.tolist() == ["jsonl:o#10"]
    assert batch.error.tolist() == [False]
    assert "missing required field 'ts'" in dead[0].reason


def test_configured_time_field() -> None:
    line = orjson.dumps({**{k: v for k, v in GOOD.items() if k != "ts"}, "when": GOOD["ts"]})
    batch, dead = decode_requests([line], [1], "s", 0, time_field="when")
    assert dead == [] and batch.ts.tolist() == [GOOD["ts"]]


def test_parse_time_accepts_zones() -> None:
    assert parse_time("2026-01-01T01:00:00+01:00") == 1_767_225_600_000


def test_take_and_concat_keep_rows_in_order() -> None:
    batch, _ = _decode([_line(id=f"r{i}") for i in range(5)])
    parts = [take(batch, slice(0, 2)), take(batch, slice(2, 5))]
    assert concat(parts).id.tolist() == batch.id.tolist()
