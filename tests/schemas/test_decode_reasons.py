"""Decoding the reference pipeline's streams: each kind of bad line becomes a readable dead
letter, good lines become columns."""

from __future__ import annotations

import orjson
import pytest

from eddy.dataflows.commands.run import reference_spec_path
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.records import DEAD_LETTER_RAW_BYTES, parse_time
from eddy.schemas.spec_load import load_spec

SPEC = load_spec(reference_spec_path())

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
    positions = list(range(1, len(lines) + 1))
    return decode_lines(SPEC.stream("requests"), lines, positions, "jsonl:x", 7, max_bytes)


def test_good_lines_become_columns() -> None:
    batch, dead = _decode([_line(), _line(id="r-2", ts="2026-01-01T00:00:01+00:00")])
    assert dead == []
    assert batch.ids.tolist() == ["r-1", "r-2"]
    assert batch.ts.tolist() == [1_767_225_600_000, 1_767_225_601_000]
    assert batch.columns["floor_price"].tolist() == [0.5, 0.5]
    assert batch.ingest_ns.tolist() == [7, 7]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"id": "\xff\xfe"}', "not valid UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b'"just a string"', "expected a JSON object, got str"),
        (_line(geo=_DROP), "missing required field 'geo'"),
        (_line(floor_price="cheap"), "field 'floor_price': expected a number, got a string"),
        (_line(placement=3), "field 'placement': expected a string, got int"),
        (_line(floor_price=True), "field 'floor_price': expected a number, got a boolean"),
        (_line().replace(b"0.5", b"NaN"), "NaN or Infinity"),
        (_line().replace(b"0.5", b"Infinity"), "NaN or Infinity"),
        (_line().replace(b"0.5", b"1e400"), "number 1e400 at byte 97 is out of range"),
        (_line(floor_price=1e300), "field 'floor_price': 1e+300 is outside [0, 10000]"),
        (_line(floor_price=-1), "field 'floor_price': -1 is outside"),
        (_line(ts=99), "field 'ts': timestamp 99 is outside 2000-01-01..2100-01-01"),
        (_line(ts=10**17), "outside 2000-01-01..2100-01-01"),
        (_line(ts="yesterday"), "field 'ts': 'yesterday' is not an ISO-8601 timestamp"),
        (_line(ts="2026-01-01T00:00:00"), "has no time zone"),
        (_line(id=""), "field 'id': expected a non-empty string id, got an empty string"),
        (_line(id=777), "field 'id': expected a non-empty string id, got the integer 777"),
        (_line(id=7.5), "field 'id': expected a non-empty string id, got the number 7.5"),
        (_line(id=True), "field 'id': expected a non-empty string id, got a boolean"),
        (_line(geo="x" * 5_000), "field 'geo': string of 5000 chars, limit 4096"),
    ],
)
def test_bad_line_becomes_dead_letter_with_reason(raw: bytes, reason: str) -> None:
    batch, dead = _decode([_line(id="ok-1"), raw, _line(id="ok-2")])
    assert batch.ids.tolist() == ["ok-1", "ok-2"]
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
    assert dead[0].reason == (
        f"record of {len(big):,} bytes exceeds the limit of 1,000 bytes (max_event_bytes)"
    )
    assert dead[0].raw == big  # within DEAD_LETTER_RAW_BYTES: kept whole


def test_an_oversized_record_keeps_a_bounded_prefix_and_names_its_true_size() -> None:
    big = _line(extra="y" * (3 * DEAD_LETTER_RAW_BYTES))
    batch, dead = _decode([_line(id="ok-1"), big])
    assert batch.ids.tolist() == ["ok-1"]
    assert dead[0].raw == big[:DEAD_LETTER_RAW_BYTES]
    assert dead[0].reason == (
        f"record of {len(big):,} bytes exceeds the limit of 65,536 bytes (max_event_bytes); "
        "the first 65,536 bytes are kept"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # cut off inside a string that holds the word: truncated, not NaN
        (b'{"id": "a", "note": "NaN is here', "unterminated string starting at byte 20"),
        (b'{"id": "a", "note": "is NaN here', "unterminated string starting at byte 20"),
        (b'{"id": "a", "note": "x -Infinity', "unterminated string starting at byte 20"),
        ('{"id": "a", "note": "NaN é'.encode()[:-1], "unterminated string starting at byte 20"),
        (b'{"id": "a", "ts": 17', "ends at byte 20 inside an unfinished value"),
        # another error in a line whose strings hold the words
        (b'{"note": "a NaN b", "x": tru}', "invalid literal, expected 'true' at byte 25"),
        (b'{"note": "Infinity and", "x": 1} x', "unexpected content after document at byte 33"),
    ],
)
def test_truncated_or_invalid_json_says_so_and_never_blames_nan_in_a_string(
    raw: bytes, reason: str
) -> None:
    for lines in ([raw], [_line(id="ok-1"), raw]):  # alone, and after a good line
        _, dead = _decode(lines)
        assert [d.position for d in dead] == [len(lines)]
        assert dead[0].reason.startswith("not valid JSON: "), dead[0].reason
        assert dead[0].reason.endswith(reason), dead[0].reason
        assert "NaN" not in dead[0].reason and "Infinity" not in dead[0].reason


@pytest.mark.parametrize(
    "value", [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"-inf"]
)
def test_a_bare_nan_or_infinity_token_is_named(value: bytes) -> None:
    raw = _line(note="NaN").replace(b"0.5", value)
    _, dead = _decode([raw])
    assert dead[0].reason == "contains NaN or Infinity, which JSON does not allow"


def test_a_bom_at_the_start_of_a_line_is_named() -> None:
    """The JSONL and CSV sources drop a BOM at the start of a file; anywhere else a record
    that starts with one says so (not "not valid UTF-8": it is valid UTF-8)."""
    raw = b"\xef\xbb\xbf" + _line(id="bom")
    batch, dead = _decode([_line(id="ok-1"), raw])
    assert batch.ids.tolist() == ["ok-1"]
    assert dead[0].reason == "starts with a UTF-8 byte-order mark (BOM)"
    assert dead[0].raw == raw


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
    lines = [good, b'{"decision_id": "r-2"}']
    batch, dead = decode_lines(SPEC.stream("outcomes"), lines, [10, 11], "jsonl:o")
    assert batch.ids.tolist() == ["jsonl:o#10"]  # no id field: the source position
    assert batch.columns["error"].tolist() == [False]
    assert "missing required field 'ts'" in dead[0].reason


def test_parse_time_accepts_zones() -> None:
    assert parse_time("2026-01-01T01:00:00+01:00") == 1_767_225_600_000


def test_take_and_concat_keep_rows_in_order() -> None:
    batch, _ = _decode([_line(id=f"r{i}") for i in range(5)])
    parts = [batch.take(slice(0, 2)), batch.take(slice(2, 5))]  # type: ignore[arg-type]
    assert EventBatch.concat(parts).ids.tolist() == batch.ids.tolist()
