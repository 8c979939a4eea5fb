"""End to end, scale-out: the same recorded input gives the same results on one worker and on
several (``--workers``/``--processes``), and with keyed state split into more shards than
workers (``--shards``). Bad scale-out flags are usage errors: exit 2, one line, no traceback.

Every run is a real ``eddy run`` in a subprocess, from JSONL recordings of the examples'
simulators (``benchmarks.recording``) into DuckDB; ``benchmarks.scaling.compare_results``
compares the result tables row by row."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest

from eddy.benchmarks.recording import Recording, record
from eddy.benchmarks.scaling import compare_results
from eddy.operators.engine.exchange import FINAL
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import load_spec

EXAMPLES = Path(__file__).parents[2] / "examples"
SENSORS = EXAMPLES / "sensors.toml"
SENSOR_EVENTS = 60_000  # more than the NAB data: copies of every series replay as new series
REQUESTS = 20_000
SENSOR_TABLES = ("window_aggregates", "anomalies", "features_series_stats")
ADSERVING_TABLES = (
    "window_aggregates",
    "anomalies",
    "features_partner_health",
    "features_placement_floor",
)


def _eddy(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``eddy ARGV`` in a subprocess, from ``cwd`` (so nothing lands in the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "eddy", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _run(spec: Path, rec: Recording, db: Path, *extra: str) -> Path:
    """``eddy run`` of ``spec`` replaying every stream of ``rec`` into ``db``."""
    sources = [arg for s, src in rec.sources.items() for arg in ("--source", f"{s}={src}")]
    proc = _eddy(
        db.parent, "run", "--pipeline", str(spec), *sources, "--duckdb", str(db), "--quiet", *extra
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished" in proc.stdout
    return db


def _count(db: Path, sql: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _assert_same(base: Path, other: Path, spec: PipelineSpec, tables: tuple[str, ...]) -> None:
    """``other`` has the rows of ``base`` in every compared table, no more, no fewer."""
    compared = compare_results(str(base), str(other), spec)
    assert set(tables) <= set(compared), sorted(compared)
    differ = {t: c for t, c in compared.items() if c["only_a"] or c["only_b"]}
    assert not differ, differ
    for t in tables:  # a row written twice would still find its equal in the other file
        assert _count(other, f"SELECT count(*) FROM {t}") == compared[t]["rows"], t


# -- the sensors example: NAB series, keyed features, windows and detectors -----------------


@pytest.fixture(scope="module")
def sensors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Path]:
    """The recording (once for the module) and the one-worker run everything is compared to."""
    d = tmp_path_factory.mktemp("sensors")
    rec = record(load_spec(SENSORS), d / "recording", events=SENSOR_EVENTS)
    assert rec.n_events == SENSOR_EVENTS
    return rec, _run(SENSORS, rec, d / "default.duckdb")


@pytest.mark.parametrize(
    "flags",
    [("--workers", "2"), ("--processes", "2"), ("--shards", "3")],
    ids=["workers-2", "processes-2", "shards-3"],
)
def test_sensors_gives_the_results_of_one_worker(
    sensors: tuple[Recording, Path], tmp_path: Path, flags: tuple[str, ...]
) -> None:
    rec, base = sensors
    for t in SENSOR_TABLES:
        assert _count(base, f"SELECT count(*) FROM {t}") > 0, t
    assert _count(base, "SELECT count(*) FROM features_series_stats") == SENSOR_EVENTS
    other = _run(SENSORS, rec, tmp_path / "scaled.duckdb", *flags)
    _assert_same(base, other, load_spec(SENSORS), SENSOR_TABLES)


# -- the reference spec: decisions and rewards, and both feature stages stored --------------


def _stored_reference(directory: Path, decide_shards: int = 1) -> Path:
    """A copy of ``examples/adserving.toml`` whose two features stages store their rows (and
    whose decide stage has ``decide_shards`` shards)."""
    text = (EXAMPLES / "adserving.toml").read_text()
    for name in ("partner_health", "placement_floor"):
        line = f'name = "{name}"\n'
        assert text.count(line) == 1, name
        text = text.replace(line, f"{line}store = true\n")
    if decide_shards > 1:
        line = 'name = "pick_partner"\n'
        assert text.count(line) == 1
        text = text.replace(line, f"{line}shards = {decide_shards}\n")
    path = directory / "adserving.toml"
    path.write_text(text)
    return path


def _recorded_reference(directory: Path, decide_shards: int = 1) -> tuple[Path, Recording, int]:
    """The stored reference spec, a recording of its simulator, and the requests in it."""
    spec_path = _stored_reference(directory, decide_shards)
    rec = record(load_spec(spec_path), directory / "recording", events=REQUESTS)
    assert set(rec.sources) == {"requests", "outcomes"}
    with open(rec.files["requests"], "rb") as fh:
        requests = sum(1 for _ in fh)
    assert requests == REQUESTS
    return spec_path, rec, requests


def _assert_one_row_per_request(db: Path, requests: int) -> None:
    assert _count(db, "SELECT count(*) FROM decisions") == requests
    assert _count(db, "SELECT count(DISTINCT decision_id) FROM decisions") == requests
    assert _count(db, "SELECT count(*) FROM rewards") == requests
    assert _count(db, "SELECT count(DISTINCT decision_id) FROM rewards") == requests
    orphans = "SELECT count(*) FROM rewards r ANTI JOIN decisions d USING (decision_id)"
    assert _count(db, orphans) == 0


def test_reference_spec_on_two_workers_decides_every_request_once(tmp_path: Path) -> None:
    spec_path, rec, requests = _recorded_reference(tmp_path)
    spec = load_spec(spec_path)
    assert spec.features and all(f.store for f in spec.features)
    base = _run(spec_path, rec, tmp_path / "default.duckdb")
    two = _run(spec_path, rec, tmp_path / "workers-2.duckdb", "--workers", "2")
    _assert_same(base, two, spec, ADSERVING_TABLES)
    for t in ("features_partner_health", "features_placement_floor", "window_aggregates"):
        assert _count(base, f"SELECT count(*) FROM {t}") > 0, t
    for db in (base, two):
        _assert_one_row_per_request(db, requests)


def _decisions(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        sql = "SELECT decision_id, arm, propensity FROM decisions ORDER BY decision_id"
        return con.execute(sql).fetchall()


def test_four_decide_shards_decide_alike_in_every_replay(tmp_path: Path) -> None:
    spec_path, rec, requests = _recorded_reference(tmp_path, decide_shards=4)
    first = _decisions(_run(spec_path, rec, tmp_path / "first.duckdb"))
    again = _decisions(_run(spec_path, rec, tmp_path / "again.duckdb"))
    assert len(first) == requests and first == again


def test_decide_shards_on_two_workers_share_through_a_directory(tmp_path: Path) -> None:
    spec_path, rec, requests = _recorded_reference(tmp_path, decide_shards=2)
    exchange = tmp_path / "exchange"
    db = _run(
        spec_path, rec, tmp_path / "given.duckdb", "--workers", "2", "--exchange-dir", str(exchange)
    )
    _assert_one_row_per_request(db, requests)
    for shard in (0, 1):  # posts all along, and the last one at the end of the input
        labels = sorted(int(p.stem) for p in (exchange / "pick_partner" / str(shard)).glob("*.npy"))
        assert len(labels) > 2 and labels[-1] == FINAL, (shard, labels[-3:])
    # without --exchange-dir a local cluster makes its own directory, and removes it
    before = set(Path(tempfile.gettempdir()).glob("eddy-exchange-*"))
    db = _run(spec_path, rec, tmp_path / "made.duckdb", "--workers", "2")
    _assert_one_row_per_request(db, requests)
    assert set(Path(tempfile.gettempdir()).glob("eddy-exchange-*")) == before


def test_a_cluster_of_given_addresses_needs_an_exchange_directory(tmp_path: Path) -> None:
    spec_path = _stored_reference(tmp_path, decide_shards=2)
    for stream in ("requests", "outcomes"):
        (tmp_path / f"{stream}.jsonl").write_text("")
    proc = _eddy(
        tmp_path,
        "run",
        "--pipeline",
        str(spec_path),
        "--source",
        "requests=jsonl:requests.jsonl",
        "--source",
        "outcomes=jsonl:outcomes.jsonl",
        "--addresses",
        "localhost:1,localhost:2",
        "--process-id",
        "1",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "--exchange-dir" in proc.stderr, proc.stderr


# -- bad flags: usage errors before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "from_files", "says"),
    [
        (("--workers", "0"), True, ["--workers"]),
        (("--workers", "2", "--processes", "3"), True, ["--workers", "--processes", "one of them"]),
        (("--shards", "0"), True, ["--shards"]),
        (("--workers", "2"), False, ["files or Kafka"]),
        (("--processes", "2"), False, ["files or Kafka"]),
    ],
    ids=[
        "workers-0",
        "workers-and-processes",
        "shards-0",
        "simulator-workers-2",
        "simulator-processes-2",
    ],
)
def test_bad_scale_out_flags_are_one_line_usage_errors(
    sensors: tuple[Recording, Path],
    tmp_path: Path,
    flags: tuple[str, ...],
    from_files: bool,
    says: list[str],
) -> None:
    """``from_files``: replay the recording (a missed check would run briefly, not hang);
    else the spec's own simulator, which cannot feed several workers."""
    rec, _ = sensors
    sources = ["--source", f"readings={rec.sources['readings']}"] if from_files else []
    db = tmp_path / "bad.duckdb"
    proc = _eddy(
        tmp_path,
        "run",
        "--pipeline",
        str(SENSORS),
        *sources,
        "--duckdb",
        str(db),
        "--quiet",
        *flags,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    for word in says:
        assert word in lines[0], lines[0]
    assert not db.exists()  # refused before the results database is opened
