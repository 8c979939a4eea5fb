"""Each engine step's CPU time: the wrappers add what their calls cost, under the step's name,
and a real run reports its decode, keyed and decide steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.operators import StatefulBatchLogic

from eddy.benchmarks.recording import record
from eddy.benchmarks.throughput import replay_spec
from eddy.dataflows.commands.run import reference_spec_path
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.runner import run_pipeline
from eddy.dataflows.shards import TimedLogic, timed
from eddy.operators.stats import RunStats
from eddy.schemas.spec_load import load_spec


def _spin(n: int) -> int:
    return sum(i * i for i in range(n))


class _Busy(StatefulBatchLogic[int, int, str]):
    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        return [_spin(v) for v in values], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[int], bool]:
        return [_spin(200_000)], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[int], bool]:
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> None:
        return None

    def snapshot(self) -> str:
        return "state"


def test_timed_logic_delegates_and_adds_its_cpu_time() -> None:
    stats = RunStats()
    logic = TimedLogic(_Busy(), "keyed", stats)
    assert logic.on_batch([300_000]) == ([_spin(300_000)], StatefulBatchLogic.RETAIN)
    after_batch = stats.step_cpu["keyed"]
    assert after_batch > 0
    assert logic.on_notify()[0] == [_spin(200_000)]
    assert stats.step_cpu["keyed"] > after_batch
    assert logic.on_eof() == ([], StatefulBatchLogic.DISCARD)
    assert logic.notify_at() is None and logic.snapshot() == "state"
    assert set(stats.step_cpu) == {"keyed"}


def test_timed_function_adds_its_cpu_time_even_when_it_raises() -> None:
    stats = RunStats()
    square = timed(lambda x: _spin(x), "decode", stats)
    assert square(100_000) == _spin(100_000)
    first = stats.step_cpu["decode"]
    assert first > 0

    def boom(_: int) -> int:
        _spin(100_000)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        timed(boom, "decode", stats)(1)
    assert stats.step_cpu["decode"] > first


def test_a_run_reports_the_cpu_time_of_each_step(tmp_path: Path) -> None:
    rec = record(load_spec(reference_spec_path()), tmp_path / "rec", events=4_000)
    opts = RunOptions(replay_spec(rec.spec), sources=rec.sources, no_duckdb=True)
    res = run_pipeline(opts)
    assert set(res.step_cpu_s) == {"decode", "keyed", "decide"}
    assert all(v > 0 for v in res.step_cpu_s.values())
