"""End to end, time that lies: one valid record dated 2099 among thousands of good ones, and a
repeated id. Neither may move the watermark, make later events late, or vanish in silence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import orjson

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
N = 3_000
REPEAT = f"r{N // 3 - 5}"

SPEC = """
[pipeline]
name = "meters"
duckdb = "meters.duckdb"

[streams.readings]
source = "jsonl:readings.jsonl"
id = "reading_id"
time = "ts"
[streams.readings.fields]
meter = "string"
kwh = { type = "float", min = 0 }

[[features]]
name = "per_meter"
stream = "readings"
key = "meter"
metrics = ["kwh"]
trailing = ["1m"]
tumbling = ["1m"]
aggregations = ["mean", "count"]
store = true

[[detect]]
name = "usage"
stream = "readings"
key = "meter"
metrics = ["kwh"]
detector = "ensemble"
"""


def _run_meters(folder: Path, lines: list[dict[str, object]]) -> None:
    """``eddy run`` of the meters spec over ``lines`` in ``folder`` (into meters.duckdb)."""
    (folder / "readings.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    (folder / "meters.toml").write_text(SPEC)
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", "run", "--pipeline", str(folder / "meters.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_record_from_2099_and_a_repeated_id_are_dead_letters_and_nothing_is_late(
    tmp_path: Path,
) -> None:
    lines = []
    for i in range(N):
        lines.append({"reading_id": f"r{i}", "ts": T0 + 100 * i, "meter": f"m{i % 5}", "kwh": 1.0})
        if i == N // 2:
            lines.append(
                {"reading_id": "bad-clock", "ts": 4_070_908_800_000, "meter": "m1", "kwh": 1.0}
            )
        if i == N // 3:
            # a producer's retry, half a second after the original, with other content
            lines.append({"reading_id": REPEAT, "ts": T0 + 100 * i, "meter": "m2", "kwh": 9.0})
    _run_meters(tmp_path, lines)
    with duckdb.connect(str(tmp_path / "meters.duckdb"), read_only=True) as con:
        dead = con.execute(
            "SELECT source, position, raw, reason FROM dead_letters ORDER BY 1"
        ).fetchall()
        late = con.execute("SELECT count(*) FROM late_events").fetchone()
        stored = con.execute("SELECT count(*), max(event_time) FROM features_per_meter").fetchone()
    assert late == (0,)
    assert len(dead) == 2
    (dup_source, _, dup_raw, dup_reason), (file_source, position, raw, reason) = dead
    # the 2099 record: its own line, its position, how far ahead it was
    assert file_source.startswith("jsonl:") and position == N // 2 + 2 + 1
    assert orjson.loads(raw)["reading_id"] == "bad-clock"
    assert "2099-01-01T00:00:00Z" in reason and "ahead of the wall clock" in reason
    assert "max_ahead (1 h)" in reason
    # the repeated id: the event as eddy read it, and why it was not processed again
    assert dup_source == "engine:readings"
    event = {"reading_id": REPEAT, "ts": T0 + 100 * (N // 3), "meter": "m2", "kwh": 9.0}
    assert orjson.loads(dup_raw) == event
    assert f"id {REPEAT!r} repeats an event of stream 'readings'" in dup_reason
    assert "+500 ms" in dup_reason
    assert stored[0] == N and stored[1].year == 2026


def test_a_replay_refuses_a_record_months_ahead_and_keeps_a_real_gap(tmp_path: Path) -> None:
    # Past data: the wall clock cannot tell a wrong record from a right one here; the stream
    # can. A record four months ahead of the replay is refused; a three-day gap is not.
    past = 1_577_836_800_000  # 2020-01-01T00:00:00Z
    gap = 3 * 86_400_000
    lines = []
    for i in range(N):
        ts = past + 100 * i + (gap if i >= N // 2 else 0)
        lines.append({"reading_id": f"r{i}", "ts": ts, "meter": f"m{i % 5}", "kwh": 1.0})
        if i == N // 4:
            ahead = past + 120 * 86_400_000
            lines.append({"reading_id": "drifted", "ts": ahead, "meter": "m1", "kwh": 1.0})
    _run_meters(tmp_path, lines)
    with duckdb.connect(str(tmp_path / "meters.duckdb"), read_only=True) as con:
        dead = con.execute("SELECT dead_letter_id, raw, reason FROM dead_letters").fetchall()
        late = con.execute("SELECT count(*) FROM late_events").fetchone()
        stored = con.execute("SELECT count(*), max(event_time) FROM features_per_meter").fetchone()
        after_gap = con.execute(
            "SELECT count(*) FROM window_aggregates WHERE window_start >= "
            f"make_timestamp({(past + gap) * 1000})"
        ).fetchone()
    assert late == (0,)
    [(dead_id, raw, reason)] = dead
    assert dead_id == "ahead:readings:0:drifted"
    assert orjson.loads(raw)["reading_id"] == "drifted"
    assert "2020-04-30T00:00:00Z is 119 days 23 h ahead of its stream" in reason
    assert "more than [time] max_ahead (1 h)" in reason
    assert stored[0] == N and stored[1].year == 2020 and stored[1].month == 1
    assert after_gap[0] > 0
