"""Every shipped example runs with ``eddy run --pipeline examples/X.toml`` and does its job:
a real Bytewax dataflow from the example's own source into a real DuckDB file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from eddy.sources.simulators import make_simulator

EXAMPLES = Path(__file__).parents[2] / "examples"


def _run(tmp_path: Path, name: str, *extra: str) -> duckdb.DuckDBPyConnection:
    db = tmp_path / f"{name}.duckdb"
    spec = str(EXAMPLES / f"{name}.toml")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eddy",
            "run",
            "--pipeline",
            spec,
            "--duckdb",
            str(db),
            "--quiet",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stdout
    return duckdb.connect(str(db), read_only=True)


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_every_example_has_a_readme_section() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for spec in EXAMPLES.glob("*.toml"):
        assert f"`{spec.name}`" in readme, spec.name


def test_sensors_finds_labelled_anomalies_with_features_and_windows(tmp_path: Path) -> None:
    con = _run(tmp_path, "sensors")
    readings = _one(con, "SELECT count(*) FROM features_series_stats")
    assert readings == 49_466  # every reading of the three categories, once
    assert _one(con, "SELECT count(*) FROM dead_letters") == 0
    assert _one(con, "SELECT count(DISTINCT key) FROM window_aggregates") == 19
    # hourly windows: counts add up to the readings (every reading in exactly one window)
    assert _one(
        con, "SELECT sum(count) FROM window_aggregates WHERE \"window\" = 'tumbling_1h'"
    ) == (readings)
    # the labelled anomaly windows of the NAB data: most are found, and most rows are in one
    sim = make_simulator(
        "nab",
        {"categories": ["realTraffic", "realAdExchange", "artificialWithAnomaly"]},
        base_dir=EXAMPLES,
    )
    while True:  # replay to the end: the labels are known once the replay reaches them
        try:
            sim.next_batch(100_000)
        except StopIteration:
            break
    labels = [(i.key, i.start_ms, i.end_ms) for i in sim.incidents]
    rows = con.execute(
        "SELECT key, epoch_ms(event_time) FROM anomalies WHERE detect = 'series_anomalies'"
    ).fetchall()
    inside = [any(k == key and s <= t < e for key, s, e in labels) for k, t in rows]
    found = [any(k == key and s <= t < e for k, t in rows) for key, s, e in labels]
    assert len(labels) >= 20 and len(rows) >= 20
    assert sum(found) / len(found) >= 0.75, (sum(found), len(found))
    assert sum(inside) / len(inside) >= 0.35, (sum(inside), len(inside))


def test_logistics_decides_among_eligible_carriers_and_catches_the_incident(
    tmp_path: Path,
) -> None:
    con = _run(tmp_path, "logistics")
    assert _one(con, "SELECT count(*) FROM decisions") == 20_000
    assert (
        _one(con, "SELECT count(*) FROM decisions WHERE NOT list_contains(eligible_arms, arm)") == 0
    )
    assert _one(con, "SELECT min(propensity) > 0 AND max(propensity) <= 1 FROM decisions")
    # a shipment with one eligible carrier has no choice
    assert _one(con, "SELECT min(propensity) FROM decisions WHERE len(eligible_arms) = 1") in (
        None,
        1.0,
    )
    assert _one(con, "SELECT count(*) FROM rewards") == 20_000
    learned = _one(con, "SELECT count(*) FROM rewards WHERE NOT timed_out")
    assert learned > 19_000  # deliveries come hours later, within the 5-day TTL
    expected = _one(
        con,
        "SELECT max(abs(reward - (on_time::INT - cost / 100 - 2 * damaged::INT))) "
        "FROM rewards WHERE NOT timed_out",
    )
    assert expected < 1e-9  # the spec's expression
    # the incident: one carrier's deliveries go late from 36 h to 44 h after the start
    sim = make_simulator("logistics", {"events": 20_000}, 0)
    start = _one(con, "SELECT epoch_ms(min(event_time)) FROM decisions")
    carrier = _one(
        con,
        "SELECT key FROM anomalies WHERE metric = 'on_time' ORDER BY event_time LIMIT 1",
    )
    first_ms = _one(con, "SELECT epoch_ms(min(event_time)) FROM anomalies")
    assert sim.STREAMS["deliveries"].time == "delivered_at"
    begin = int(start) + 36 * 3_600_000
    assert begin <= int(first_ms) <= begin + 8 * 3_600_000, (first_ms, begin)
    assert carrier == _one(
        con,
        f"SELECT key FROM anomalies WHERE epoch_ms(event_time) BETWEEN {begin} "
        f"AND {begin + 9 * 3_600_000} GROUP BY key ORDER BY count(*) DESC LIMIT 1",
    )
    # while shipments flow, no healthy carrier is flagged
    last_shipment = _one(con, "SELECT epoch_ms(max(event_time)) FROM decisions")
    others = _one(
        con,
        f"SELECT count(*) FROM anomalies WHERE key <> '{carrier}' "
        f"AND epoch_ms(event_time) < {last_shipment}",
    )
    assert others == 0
    stored = _one(con, "SELECT count(*) FROM features_route_load")
    assert stored == 20_000


def test_a_river_detector_runs_in_a_pipeline(tmp_path: Path) -> None:
    spec = (EXAMPLES / "sensors.toml").read_text()
    spec = spec.replace(
        'categories = ["realTraffic", "realAdExchange", "artificialWithAnomaly"]',
        'categories = ["artificialWithAnomaly"]',
    ).replace('detector = "ensemble"', 'detector = "river:anomaly.HalfSpaceTrees"')
    spec = spec.replace(
        'data = "../benchdata/nab-dev"', f'data = "{EXAMPLES.parent}/benchdata/nab-dev"'
    )
    path = tmp_path / "river.toml"
    path.write_text(spec)
    check = subprocess.run(
        [sys.executable, "-m", "eddy", "check", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    db = tmp_path / "river.duckdb"
    argv = ["run", "--pipeline", str(path), "--duckdb", str(db), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT key, score, detectors FROM anomalies").fetchall()
    assert rows, "HalfSpaceTrees flagged nothing on six series with labelled anomalies"
    assert all(score >= 0.99 for _, score, _ in rows)
    assert all(any("HalfSpaceTrees" in d for d in dets) for _, _, dets in rows), rows[:3]
