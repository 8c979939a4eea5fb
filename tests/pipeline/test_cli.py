"""`eddy run` and `eddy sql` as a user types them: bad input exits 2, live queries work."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eddy.dataflows.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("name", ["adserving", "sensors", "logistics"])
def test_check_prints_what_a_shipped_spec_computes(name: str, capsys) -> None:
    assert main(["check", str(EXAMPLES / f"{name}.toml")]) == 0
    out = capsys.readouterr().out
    assert "streams:" in out and "stages:" in out and "tables:" in out and "ok" in out
    assert "decisions (decision_id, decide, event_time, arm," in out


def test_check_says_how_the_stages_split_over_workers(tmp_path: Path, capsys) -> None:
    text = (EXAMPLES / "adserving.toml").read_text()
    line = 'name = "pick_partner"\n'
    spec = tmp_path / "split.toml"
    spec.write_text(text.replace(line, f'{line}shards = 4\nmerge_every = "250ms"\n'))
    assert main(["check", str(EXAMPLES / "adserving.toml")]) == 0
    one = capsys.readouterr().out
    assert "rows routed requests by placement, outcomes by partner" in one
    assert "decide pick_partner: 1 shard (decisions by id, outcomes by decision_id)" in one
    assert main(["check", str(spec)]) == 0
    four = capsys.readouterr().out
    assert (
        "decide pick_partner: 4 shards (decisions by id, outcomes by decision_id; what they "
        "learn shared every 0.25 s of event time)"
    ) in four


# what the engine cannot use, though the file parses: one line naming the key, exit 2
ENGINE_ERRORS = [
    ('policy = "linucb"', 'policy = "magic"', "decide[0].policy"),
    ("params = { alpha = 0.5, floor = 0.02 }", "params = { alpah = 1 }", "decide[0].params"),
    ('value = "revenue - latency_ms / 1000"', 'value = "revenue -"', "decide[0].reward.value"),
    ('value = "revenue - latency_ms / 1000"', 'value = "partner * 2"', "decide[0].reward.value"),
    ('bucket = "1s"', "bucket = 5", "detect[0].params.bucket"),
    ('detector = "rates"', 'detector = "river:anomaly.NoSuchThing"', "detect[0].detector"),
    ('source = "simulator:adserving"', 'source = "simulator:nowhere"', "streams.requests.source"),
    ("rate_per_s = 2000.0", "rate_per_s = -1.0", "simulator.rate_per_s"),
    (
        'placement = "string"',
        'placement = "string"\nmood = "string"',
        "streams.requests.fields.mood",
    ),
    # TOML integers are 64-bit; a larger one overflowed in numba at the end of the input
    ('bucket = "1s"', 'bucket = "1s", warmup = 99999999999999999999', "detect[0].params.warmup"),
    ("events = 120000", "events = 99999999999999999999", "simulator.events"),
    # River's model divided by zero once its first window was full
    (
        'detector = "rates"\nparams = { bucket = "1s", alert = { filled = "drop 50%", revenue = '
        '"drop 50%", latency_ms = "rise 100%", error = "rise 0.1" } }',
        'detector = "river:anomaly.HalfSpaceTrees"\nparams = { n_trees = 0 }',
        "detect[0].params",
    ),
]


@pytest.mark.parametrize(("old", "new", "key"), ENGINE_ERRORS)
def test_check_refuses_what_the_engine_cannot_run(
    tmp_path: Path, old: str, new: str, key: str, capsys
) -> None:
    text = (EXAMPLES / "adserving.toml").read_text()
    assert old in text, old
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert key in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--pipeline", "/nonexistent.toml"],
        ["run", "--source", "carrier-pigeon"],
        ["run", "--source", "jsonl:/nonexistent.jsonl"],
        ["run", "--source", "nostream=jsonl:/tmp/x"],
        ["run", "--events", "-5"],
        ["run", "--events", "0", "--seconds", "30"],  # 0 events: a simulator without end
        ["run", "--seed", "-1"],
        ["run", "--seed", str(2**63)],
        ["run", "--snapshot-interval", "nan", "--events", "2000"],
        ["run", "--snapshot-interval", "inf", "--events", "2000"],
        ["run", "--snapshot-interval", "0"],
        ["run", "--speed", "0"],
        ["run", "--speed", "inf", "--events", "2000"],
        ["run", "--speed", "1e308", "--events", "2000"],
        ["run", "--forever", "--events", "10"],
        ["run", "--recovery", "/tmp/eddy-no-recovery", "--events", "10"],
        ["run", "--seconds", "abc"],
        ["run", "--frobnicate"],
        ["run", "--pipeline", str(EXAMPLES / "sensors.toml"), "--rewards", "jsonl:/tmp/x"],
        ["check"],
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_spec_from_the_command_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(
        (EXAMPLES / "adserving.toml").read_text().replace("threshold = 0.99", "threshold = 7")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", "run", "--pipeline", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "detect[0].threshold" in proc.stderr and "Traceback" not in proc.stderr


def _sql(db: Path, query: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eddy", "sql", "--duckdb", str(db), "--format", "json", query],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_live_sql_while_running_forever(tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    run = subprocess.Popen(
        [sys.executable, "-m", "eddy", "run", "--forever", "--duckdb", str(db), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = Path(f"{db}.endpoint.json")
        deadline = time.monotonic() + 120
        counts: list[int] = []
        while time.monotonic() < deadline and len(counts) < 2:
            if endpoint.exists():
                res = _sql(db, "select count(*) as n from decisions")
                assert res.returncode == 0, res.stderr
                n = json.loads(res.stdout)[0]["n"]
                if n > 0 and (not counts or n > counts[-1]):
                    counts.append(n)
            time.sleep(0.5)
        assert len(counts) == 2 and counts[1] > counts[0], counts
        t = time.monotonic()
        res = _sql(db, "select count(*) from decisions")
        assert res.returncode == 0 and time.monotonic() - t < 10
        refused = _sql(db, "delete from decisions")
        assert refused.returncode == 2
        assert "read-only" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "finished" in out and "eddy sql" in out
    assert not Path(f"{db}.endpoint.json").exists()
    assert os.path.exists(db)


def test_the_example_queries_of_the_summary_work(tmp_path: Path) -> None:
    db = tmp_path / "examples.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", "run", "--events", "20000", "--duckdb", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    examples = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("eddy sql")]
    assert len(examples) == 3
    for line in examples:
        argv = shlex.split(line)[1:]
        res = subprocess.run(
            [sys.executable, "-m", "eddy", *argv, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, (line, res.stderr)
        assert json.loads(res.stdout), line  # every example returns rows
