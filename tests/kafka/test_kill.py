"""kill -9 in the middle of a KafkaSource dataflow: the restart loses nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures_kafka import ROOT, KafkaBroker

pytestmark = pytest.mark.kafka


def _lines(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [(int(a), int(b)) for a, b in (ln.split() for ln in path.read_text().splitlines())]


def test_sigkill_then_restart_reads_every_offset_and_resumes_from_the_snapshot(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic(partitions=2)
    n = 2000
    for part in (0, 1):
        kafka_broker.produce(topic, [b"%d" % i for i in range(n)], partition=part)
    db = tmp_path / "recovery"
    db.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(db), "1"], check=True)
    out1, out2 = tmp_path / "run1.txt", tmp_path / "run2.txt"

    def cmd(out: Path) -> list[str]:
        flow = f'tests.kafka.kill_flow:build("{kafka_broker.bootstrap}", "{topic}", "{out}")'
        return [sys.executable, "-m", "bytewax.run", flow, "-r", str(db), "-s", "1", "-b", "0"]

    first = subprocess.Popen(cmd(out1), cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(_lines(out1)) < n and time.monotonic() < deadline:
            assert first.poll() is None, "the first run ended before it was killed"
            time.sleep(0.05)
    finally:
        first.kill()  # SIGKILL: no cleanup, no final snapshot
        first.wait()
    assert first.returncode == -9
    run1 = _lines(out1)
    assert n <= len(run1) < 2 * n

    subprocess.run(cmd(out2), cwd=ROOT, check=True, timeout=120)
    run2 = _lines(out2)

    everything = {(p, o) for p in (0, 1) for o in range(n)}
    assert set(run1) | set(run2) == everything  # nothing lost
    by_part: dict[int, list[int]] = defaultdict(list)
    for p, o in run2:
        by_part[p].append(o)
    read_before = {p: max((o for q, o in run1 if q == p), default=-1) for p in (0, 1)}
    for p in (0, 1):
        offsets = by_part[p]
        start = offsets[0]
        assert offsets == list(range(start, n))  # in order, no gaps, no duplicates
        # Resumed from a snapshot taken during the first run: not from the beginning, and not
        # after anything the first run had not read (1 s snapshots, the run lasted seconds).
        assert 0 < start <= read_before[p] + 1
