"""Baseline ``bytewax_idiomatic``: the same job written the way Bytewax's own examples do it.

One item per event: lines are read one per item, parsed with ``orjson`` in ``filter_map``,
the bandit is a River ``LinUCBDisjoint`` inside ``stateful_map`` (one key, so requests and
outcomes meet the same model), partner health is a River ``MinMaxScaler | HalfSpaceTrees`` per
partner inside ``stateful_map`` (score then learn on each outcome), and the 10 s tumbling
partner aggregates come from ``windowing.fold_window`` with an ``EventClock``. Rows go to the
same DuckDB writer and tables as ``naive`` (eddy's on the reference spec) from a
``DynamicSink`` partition, a Bytewax batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
import numpy as np
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from river import anomaly, bandit, compose, preprocessing

from eddy.benchmarks.baselines.common import (
    Deadline,
    Recording,
    VariantResult,
    arms,
    db_path,
    latency_quantiles,
    peak_rss_mb,
    reward_of,
)
from eddy.benchmarks.baselines.naive import COLUMNS, TABLES
from eddy.operators.stats import LatencyHistogram
from eddy.sinks.duckdb import DuckDBWriter

__all__ = ["run"]

_REQ = ("id", "ts", "placement", "device", "geo", "floor_price")
_OUT = ("decision_id", "ts", "partner", "filled", "revenue", "latency_ms", "error")
_THRESHOLD = 0.9
_COOLDOWN_MS = 30_000
_ALIGN = datetime(2020, 1, 1, tzinfo=UTC)
_ARMS = arms()


class _Lines(StatelessSourcePartition[tuple[bytes, int]]):
    def __init__(self, path: str, deadline: Deadline, per_batch: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._deadline = deadline
        self._n = per_batch

    def next_batch(self) -> list[tuple[bytes, int]]:
        if self._deadline.expired():
            raise StopIteration
        now = time.time_ns()
        out = []
        for _ in range(self._n):
            line = self._fh.readline()
            if not line:
                break
            out.append((line, now))
        if not out:
            raise StopIteration
        return out

    def close(self) -> None:
        self._fh.close()


class _LineSource(DynamicSource[tuple[bytes, int]]):
    def __init__(self, path: str, deadline: Deadline, per_batch: int = 1_000) -> None:
        self._path, self._deadline, self._n = path, deadline, per_batch

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Lines:
        return _Lines(self._path, self._deadline, self._n)


class _Writer(StatelessSinkPartition[tuple[str, tuple[Any, ...], int]]):
    def __init__(self, writer: DuckDBWriter, hist: LatencyHistogram, counts: dict) -> None:
        self._writer, self._hist, self._counts = writer, hist, counts

    def write_batch(self, items: list[tuple[str, tuple[Any, ...], int]]) -> None:
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        ingest = []
        for table, row, t in items:
            if table == "unmatched":
                self._counts["unmatched_outcomes"] = self._counts.get("unmatched_outcomes", 0) + 1
                continue
            by_table.setdefault(table, []).append(row)
            if table == "decisions":
                ingest.append(t)
        for table, rows in by_table.items():
            cols = list(zip(*rows, strict=True))
            self._writer.write(
                table, {c: list(v) for c, v in zip(COLUMNS[table], cols, strict=True)}
            )
            self._counts[table] = self._counts.get(table, 0) + len(rows)
        if ingest:
            self._hist.add((time.time_ns() - np.asarray(ingest, dtype=np.int64)) / 1e6)


class _Sink(DynamicSink[tuple[str, tuple[Any, ...], int]]):
    def __init__(self, writer: DuckDBWriter, hist: LatencyHistogram, counts: dict) -> None:
        self._args = (writer, hist, counts)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Writer:
        return _Writer(*self._args)


def _parser(
    fields: tuple[str, ...], dead: list[int], seen: list[int]
) -> Callable[[tuple[bytes, int]], dict | None]:
    def parse(item: tuple[bytes, int]) -> dict | None:
        raw, t = item
        seen[0] += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            dead[0] += 1
            return None
        if not isinstance(obj, dict) or any(f not in obj for f in fields):
            dead[0] += 1
            return None
        obj["_t"] = t
        return obj

    return parse


def _reward_row(d: dict, ctx: dict, policy: Any) -> tuple[str, tuple[Any, ...], int]:
    r = reward_of(float(d["revenue"]), float(d["latency_ms"]))
    policy.update(d["partner"], ctx, r)
    row = (
        d["decision_id"],
        "pick_partner",
        d["ts"],
        d["partner"],
        r,
        False,
        float(d["revenue"]),
        float(d["latency_ms"]),
    )
    return ("rewards", row, d["_t"])


def _bandit(state: Any, item: tuple[str, dict]) -> tuple[Any, list]:
    """One River model for all requests and outcomes; an outcome read before its request
    waits in ``early`` until the request is decided (two inputs, read at their own pace)."""
    if state is None:
        state = (bandit.LinUCBDisjoint(alpha=0.5, seed=0), {}, {})
    policy, pending, early = state
    kind, d = item
    if kind == "r":
        ctx = {
            f"placement={d['placement']}": 1.0,
            f"device={d['device']}": 1.0,
            f"geo={d['geo']}": 1.0,
            "floor_price": float(d["floor_price"]),
            "bias": 1.0,
        }
        names = _ARMS
        arm = policy.pull(list(names), context=ctx)
        now_ms = time.time_ns() // 1_000_000
        row = (
            d["id"],
            "pick_partner",
            d["ts"],
            arm,
            names.index(arm),
            1.0,
            "river.LinUCBDisjoint",
            "v1",
            "bytewax-v1",
            list(ctx.values()),
            None,
            now_ms,
            now_ms - d["_t"] / 1e6,
            d["placement"],
            d["device"],
            d["geo"],
            float(d["floor_price"]),
        )
        rows: list = [("decisions", row, d["_t"])]
        waiting = early.pop(d["id"], None)
        if waiting is not None:
            rows.append(_reward_row(waiting, ctx, policy))
        else:
            pending[d["id"]] = ctx
        return state, rows
    if d["partner"] not in _ARMS:
        return state, [("unmatched", (), 0)]
    ctx = pending.pop(d["decision_id"], None)
    if ctx is None:
        early[d["decision_id"]] = d
        return state, []
    return state, [_reward_row(d, ctx, policy)]


def _health(state: Any, d: dict) -> tuple[Any, Any]:
    if state is None:
        model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0))
        state = [model, -(10**18)]
    model = state[0]
    x = {
        "filled": float(bool(d["filled"])),
        "revenue": float(d["revenue"]),
        "latency_ms": float(d["latency_ms"]),
        "error": float(bool(d["error"])),
    }
    score = model.score_one(x)
    model.learn_one(x)
    if score > _THRESHOLD and d["ts"] - state[1] > _COOLDOWN_MS:
        state[1] = d["ts"]
        row = (
            f"{d['partner']}|hst|{d['ts']}",
            "partner_alerts",
            "outcomes",
            d["partner"],
            "outcome",
            score,
            score,
            _THRESHOLD,
            0.0,
            _THRESHOLD,
            ["hst"],
            d["ts"],
            time.time_ns() // 1_000_000,
        )
        return state, ("anomalies", row, d["_t"])
    return state, None


def _fold(acc: list[float], d: dict) -> list[float]:
    rev = float(d["revenue"])
    acc[0] += 1
    acc[1] += rev
    acc[2] += rev * rev
    acc[3] = min(acc[3], rev)
    acc[4] = max(acc[4], rev)
    return acc


def _merge(a: list[float], b: list[float]) -> list[float]:
    return [a[0] + b[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), max(a[4], b[4])]


def _window_row(item: tuple[str, tuple[int, list[float]]]) -> tuple[str, tuple, int]:
    key, (wid, acc) = item
    start = int(_ALIGN.timestamp() * 1000) + wid * 10_000
    n, s, ss = acc[0], acc[1], acc[2]
    mean = s / n
    std = float(np.sqrt(max(ss / n - mean * mean, 0.0)))
    where = ("partner_health", "outcomes", key, "revenue", "tumbling_10s", start, start + 10_000)
    row = (*where, int(n), s, mean, std)
    return ("window_aggregates", (*row, acc[3], acc[4], n / 10.0, None), 0)


def run(rec: Recording, workdir: str, max_seconds: float | None = None) -> VariantResult:
    writer = DuckDBWriter(db_path(workdir, "bytewax_idiomatic"), tables=TABLES)
    hist = LatencyHistogram()
    counts: dict[str, int] = {}
    dead, seen = [0], [0]
    deadline = Deadline(max_seconds)
    flow = Dataflow("bytewax_idiomatic")
    reqs = op.filter_map(
        "parse_requests",
        op.input("requests", flow, _LineSource(rec.path("requests"), deadline)),
        _parser(_REQ, dead, seen),
    )
    outs = op.filter_map(
        "parse_outcomes",
        op.input("outcomes", flow, _LineSource(rec.path("outcomes"), deadline)),
        _parser(_OUT, dead, seen),
    )
    tagged = op.merge(
        "bandit_in",
        op.map("tag_requests", reqs, lambda d: ("r", d)),
        op.map("tag_outcomes", outs, lambda d: ("o", d)),
    )
    decided = op.stateful_map("bandit", op.key_on("one_model", tagged, lambda _: "bandit"), _bandit)
    by_partner = op.key_on("by_partner", outs, lambda d: str(d["partner"]))
    health = op.stateful_map("health", by_partner, _health)
    clock: win.EventClock[dict] = win.EventClock(
        lambda d: datetime.fromtimestamp(d["ts"] / 1000.0, tz=UTC),
        wait_for_system_duration=timedelta(seconds=2),
    )
    windower = win.TumblingWindower(length=timedelta(seconds=10), align_to=_ALIGN)
    windows = win.fold_window(
        "tumbling",
        by_partner,
        clock,
        windower,
        lambda: [0, 0.0, 0.0, np.inf, -np.inf],
        _fold,
        _merge,
    )
    rows = op.merge(
        "rows",
        op.flat_map("decisions_rewards", decided, lambda kv: kv[1]),
        op.filter_map("anomaly_rows", health, lambda kv: kv[1]),
        op.map("window_rows", windows.down, _window_row),
    )
    op.output("duckdb", rows, _Sink(writer, hist, counts))
    t0 = time.perf_counter()
    c0 = time.process_time()
    run_main(flow, epoch_interval=None)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    writer.close()
    events = seen[0]
    return VariantResult(
        variant="bytewax_idiomatic",
        events=events,
        wall_s=wall,
        latency_ms=latency_quantiles(hist),
        rows=counts | {"dead_letters": dead[0]},
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        complete=not deadline.expired(),
        notes="Bytewax per-event items: stateful_map(River LinUCBDisjoint / HalfSpaceTrees), "
        "fold_window tumbling 10 s",
    )
