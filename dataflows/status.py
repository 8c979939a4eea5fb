"""The live status line of ``eddy run`` and its final summary, from the same numbers."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from eddy.operators.stats import RunStats
from eddy.schemas.spec import PipelineSpec

__all__ = ["StatusPrinter", "example_queries", "format_summary", "reward_line"]


def reward_line(scoreboard: dict[str, float] | None) -> str:
    """The simulator's scoreboard: expected reward per decision against the oracle's."""
    if not scoreboard or not scoreboard.get("decisions"):
        return ""
    n = scoreboard["decisions"]
    chosen, oracle, rand = scoreboard["chosen"], scoreboard["oracle"], scoreboard["random"]
    pct = 100.0 * chosen / oracle if oracle else float("nan")
    return (
        f"reward/decision {chosen / n:.3f} vs oracle {oracle / n:.3f}"
        f" ({pct:.0f}%) vs random {rand / n:.3f}"
    )


def _line(stats: RunStats, elapsed: float, last: tuple[float, float], scoreboard: Any) -> str:
    c, hist = stats.view()
    events = c.get("events", 0)
    rate = (events - last[1]) / max(elapsed - last[0], 1e-9)
    lag = sum(v for k, v in c.items() if k.startswith("source.") and k.endswith("records_lag"))
    return (
        f"{elapsed:6.1f}s  {rate:9,.0f} ev/s  decisions {c.get('decisions', 0):>9,.0f}"
        f"  anomalies {c.get('anomalies', 0):>4,.0f}  dead {c.get('dead_letters', 0):>5,.0f}"
        f"  p99 {hist.quantile(0.99):7.1f} ms"
        + (f"  lag {lag:,.0f} rec" if any(k.endswith("records_lag") for k in c) else "")
        + f"  {reward_line(scoreboard)}"
    )


class StatusPrinter:
    """Redraws one status line (a TTY) or prints one every few seconds (a log)."""

    def __init__(
        self,
        stats: RunStats,
        scoreboard: Callable[[], Any] = lambda: None,
        out: TextIO = sys.stdout,
    ) -> None:
        self._stats = stats
        self._scoreboard = scoreboard
        self._out = out
        self._tty = out.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eddy-status", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> StatusPrinter:
        self._thread.start()
        return self

    def _loop(self) -> None:
        period = 0.5 if self._tty else 5.0
        last = (0.0, 0.0)
        while not self._stop.wait(period):
            elapsed = time.monotonic() - self._t0
            line = _line(self._stats, elapsed, last, self._scoreboard())
            c, _ = self._stats.view()
            last = (elapsed, c.get("events", 0))
            if self._tty:
                self._out.write("\r\x1b[2K" + line)
            else:
                self._out.write(line + "\n")
            self._out.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._tty:
            self._out.write("\r\x1b[2K")
            self._out.flush()


def format_summary(result: Any, db_path: str, spec: PipelineSpec) -> str:
    c = result.counters
    events = c.get("events", 0)
    lat = result.latency_ms
    per_stream = ", ".join(f"{c.get(f'events.{s.name}', 0):,.0f} {s.name}" for s in spec.streams)
    lines = [
        f"eddy run {result.run_id} ({spec.name}) finished in {result.wall_s:.1f} s",
        f"  events      {events:,.0f} ({events / max(result.wall_s, 1e-9):,.0f}/s): {per_stream}",
    ]
    if spec.decide:
        lines.append(
            f"  decisions   {c.get('decisions', 0):,.0f}; rewards {c.get('rewards', 0):,.0f}"
            f" ({c.get('timed_out', 0):,.0f} timed out); unmatched outcomes"
            f" {c.get('unmatched_outcomes', 0):,.0f}"
        )
    lines += [
        f"  anomalies   {c.get('anomalies', 0):,.0f}; windows {c.get('window_aggregates', 0):,.0f};"
        f" dead letters {c.get('dead_letters', 0):,.0f};"
        f" late events {c.get('late_events', 0):,.0f}",
        f"  latency     end to end p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms,"
        f" p99 {lat['p99']:.1f} ms",
    ]
    if reward_line(result.scoreboard):
        lines.append(f"  {reward_line(result.scoreboard)}")
    lines.append(
        "  tables      " + ", ".join(f"{t} {n:,}" for t, n in sorted(result.tables.items()))
    )
    lines += ["", "Try:"]
    lines += [f'  eddy sql --duckdb {db_path} "{q}"' for q in example_queries(spec)]
    return "\n".join(lines)


def example_queries(spec: PipelineSpec) -> list[str]:
    """Three queries that show what this pipeline computed."""
    out: list[str] = []
    if spec.decide:
        out.append(
            "SELECT decide, arm, count(*) AS decisions, round(avg(propensity), 3) AS avg_propensity"
            " FROM decisions GROUP BY ALL ORDER BY decisions DESC"
        )
        out.append(
            "SELECT d.arm, count(*) AS n, round(avg(r.reward), 4) AS avg_reward,"
            " round(avg(r.timed_out::INT), 4) AS timeout_rate"
            " FROM decisions d JOIN rewards r USING (decision_id)"
            " GROUP BY ALL ORDER BY avg_reward DESC"
        )
    if spec.detect:
        out.append(
            "SELECT detect, key, metric, event_time, round(value, 3) AS value,"
            " round(score, 4) AS score FROM anomalies ORDER BY event_time LIMIT 10"
        )
    if spec.features:
        out.append(
            'SELECT features, "window", key, metric, window_start, count, round(mean, 3) AS mean'
            " FROM window_aggregates ORDER BY window_start DESC LIMIT 10"
        )
    return out[:3]
