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
from eddy.dataflows.config import ConfigError, load_settings

DEFAULT_TOML = Path(__file__).parents[2] / "dataflows" / "default.toml"


def test_default_toml_documents_the_defaults() -> None:
    assert load_settings(DEFAULT_TOML) == load_settings(None)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[bandit]\npolicyy = 'linucb'\n", "unknown key 'bandit.policyy'"),
        ("[bandits]\n", "unknown section [bandits]"),
        ("[bandit]\nreward_ttl = 'soon'\n", "key 'bandit.reward_ttl': expected a duration"),
        ("[run]\nbatch_size = 'big'\n", "key 'run.batch_size': expected an integer"),
        ("[bandit]\npolicy = 'magic'\n", "policy: expected one of"),
        ("[bandit]\nparams = { alpah = 1 }\n", "bandit.params"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(p)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--config", "/nonexistent.toml"],
        ["run", "--source", "carrier-pigeon"],
        ["run", "--source", "jsonl:/nonexistent.jsonl"],
        ["run", "--events", "-5"],
        ["run", "--forever", "--events", "10"],
        ["run", "--rewards", "jsonl:/tmp/x"],
        ["run", "--seconds", "abc"],
        ["run", "--frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_config_from_the_command_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[anomaly]\nthreshold = 7\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", "run", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "anomaly.threshold" in proc.stderr and "Traceback" not in proc.stderr


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
