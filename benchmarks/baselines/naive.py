"""Baseline ``naive``: the obvious per-event Python loop.

Per event: ``orjson.loads`` and field checks; requests are decided by River's
``bandit.LinUCBDisjoint`` (river 0.26.1 has it) over a one-hot context dict and kept for the
reward join; outcomes update per-partner trailing 10 s windows (deques with running sums), are
scored then learned by a River ``MinMaxScaler | HalfSpaceTrees`` pipeline per partner, join their
decision and teach the policy. Rows go to DuckDB in batches through the same
:class:`~sinks.duckdb.DuckDBWriter` and into the same tables as ``eddy`` on the reference spec
(``schemas.tables.pipeline_tables``; tumbling 10 s partner aggregates too). Inputs are merged by
event time, one decoded line at a time.

It is *lighter* than the reference pipeline in two ways (both favour it): no p95 feature (the
trailing mean latency instead) and no reward TTL expiry.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from river import anomaly, bandit, compose, preprocessing

from eddy.benchmarks.baselines.common import (
    Deadline,
    Recording,
    VariantResult,
    arms,
    db_path,
    latency_quantiles,
    peak_rss_mb,
    reference_spec,
    reward_of,
)
from eddy.operators.stats import LatencyHistogram
from eddy.schemas.tables import Table, pipeline_tables
from eddy.sinks.duckdb import DuckDBWriter

__all__ = ["COLUMNS", "TABLES", "run"]

_WINDOW_MS = 10_000
_FLUSH_ROWS = 5_000
_THRESHOLD = 0.9
_COOLDOWN_MS = 30_000
_REQ = ("id", "ts", "placement", "device", "geo", "floor_price")
_OUT = ("decision_id", "ts", "partner", "filled", "revenue", "latency_ms", "error")


class _Partner:
    def __init__(self, seed: int) -> None:
        self.win: deque[tuple[int, float, float, float, float]] = deque()
        self.sums = [0.0, 0.0, 0.0, 0.0]  # filled, revenue, latency, error
        self.model = compose.Pipeline(
            preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=seed)
        )
        self.last_alarm = -(10**18)
        self.tumble_start = -1
        self.tumble = [0, 0.0, 0.0]  # count, revenue sum, filled sum

    def add(self, ts: int, filled: float, revenue: float, lat: float, err: float) -> dict:
        self.win.append((ts, filled, revenue, lat, err))
        s = self.sums
        s[0] += filled
        s[1] += revenue
        s[2] += lat
        s[3] += err
        while self.win and self.win[0][0] <= ts - _WINDOW_MS:
            _, f, r, la, e = self.win.popleft()
            s[0] -= f
            s[1] -= r
            s[2] -= la
            s[3] -= e
        n = len(self.win)
        return {
            "fill_rate": s[0] / n,
            "ecpm": 1000.0 * s[1] / n,
            "mean_latency_ms": s[2] / n,
            "error_rate": s[3] / n,
            "request_rate": n / (_WINDOW_MS / 1000.0),
        }


class _Rows:
    def __init__(self) -> None:
        self.tables: dict[str, list[tuple[Any, ...]]] = {
            "decisions": [],
            "rewards": [],
            "anomalies": [],
            "window_aggregates": [],
        }
        self.ingest: list[int] = []

    def pending(self) -> int:
        return sum(len(v) for v in self.tables.values())


#: the reference pipeline's tables: the baselines write the rows eddy writes
TABLES: dict[str, Table] = pipeline_tables(reference_spec())
#: column order of the tables the baselines write (rows are tuples in this order)
COLUMNS = {
    t: tuple(TABLES[t].column_names)
    for t in ("decisions", "rewards", "anomalies", "window_aggregates")
}


def _flush(writer: DuckDBWriter, rows: _Rows, hist: LatencyHistogram, counts: dict) -> None:
    for table, data in rows.tables.items():
        if data:
            cols = list(zip(*data, strict=True))
            writer.write(table, {c: list(v) for c, v in zip(COLUMNS[table], cols, strict=True)})
            counts[table] = counts.get(table, 0) + len(data)
            data.clear()
    now = time.time_ns()
    if rows.ingest:
        hist.add((now - np.asarray(rows.ingest, dtype=np.int64)) / 1e6)
    rows.ingest.clear()


def _lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh


def _decode(raw: bytes, fields: tuple[str, ...]) -> dict | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or any(f not in obj for f in fields):
        return None
    return obj


def run(rec: Recording, workdir: str, max_seconds: float | None = None) -> VariantResult:
    writer = DuckDBWriter(db_path(workdir, "naive"), tables=TABLES)
    policy = bandit.LinUCBDisjoint(alpha=0.5, seed=0)
    names = arms()
    partners = {a: _Partner(i) for i, a in enumerate(names)}
    pending: dict[str, tuple[dict, Any]] = {}
    rows = _Rows()
    hist = LatencyHistogram()
    counts: dict[str, int] = {}
    deadline = Deadline(max_seconds)
    dead = unmatched = events = 0
    reqs, outs = _lines(rec.path("requests")), _lines(rec.path("outcomes"))
    t0 = time.perf_counter()
    c0 = time.process_time()

    def pull(it: Iterator[bytes], fields: tuple[str, ...]) -> tuple[Any, int]:
        nonlocal dead
        for raw in it:
            obj = _decode(raw, fields)
            if obj is not None:
                return obj, time.time_ns()
            dead += 1
        return None, 0

    req, req_t = pull(reqs, _REQ)
    out, _ = pull(outs, _OUT)
    complete = True
    while req is not None or out is not None:
        if events % 1000 == 0 and deadline.expired():
            complete = False
            break
        events += 1
        if out is None or (req is not None and req["ts"] <= out["ts"]):
            ctx = {
                f"placement={req['placement']}": 1.0,
                f"device={req['device']}": 1.0,
                f"geo={req['geo']}": 1.0,
                "floor_price": float(req["floor_price"]),
                "bias": 1.0,
            }
            arm = policy.pull(list(names), context=ctx)
            pending[req["id"]] = (ctx, arm)
            now_ms = time.time_ns() // 1_000_000
            rows.tables["decisions"].append(
                (
                    req["id"],
                    "pick_partner",
                    req["ts"],
                    arm,
                    names.index(arm),
                    1.0,
                    "river.LinUCBDisjoint",
                    "v1",
                    "naive-v1",
                    list(ctx.values()),
                    None,
                    now_ms,
                    now_ms - req_t / 1e6,
                    req["placement"],
                    req["device"],
                    req["geo"],
                    float(req["floor_price"]),
                )
            )
            rows.ingest.append(req_t)
            req, req_t = pull(reqs, _REQ)
        else:
            o = out
            part = partners.get(o["partner"])
            hit = pending.pop(o["decision_id"], None)
            if part is None or hit is None:
                unmatched += 1
            else:
                filled, err = float(bool(o["filled"])), float(bool(o["error"]))
                r = reward_of(float(o["revenue"]), float(o["latency_ms"]))
                policy.update(o["partner"], hit[0], r)
                rows.tables["rewards"].append(
                    (
                        o["decision_id"],
                        "pick_partner",
                        o["ts"],
                        o["partner"],
                        r,
                        False,
                        float(o["revenue"]),
                        float(o["latency_ms"]),
                    )
                )
                feats = part.add(o["ts"], filled, float(o["revenue"]), float(o["latency_ms"]), err)
                score = part.model.score_one(feats)
                part.model.learn_one(feats)
                if score > _THRESHOLD and o["ts"] - part.last_alarm > _COOLDOWN_MS:
                    part.last_alarm = o["ts"]
                    rows.tables["anomalies"].append(
                        (
                            f"{o['partner']}|hst|{o['ts']}",
                            "partner_alerts",
                            "outcomes",
                            o["partner"],
                            "health",
                            score,
                            score,
                            _THRESHOLD,
                            0.0,
                            _THRESHOLD,
                            ["hst"],
                            o["ts"],
                            time.time_ns() // 1_000_000,
                        )
                    )
                start = o["ts"] - o["ts"] % _WINDOW_MS
                if start != part.tumble_start:
                    if part.tumble_start >= 0 and part.tumble[0]:
                        c, rs, _ = part.tumble
                        rows.tables["window_aggregates"].append(
                            (
                                "partner_health",
                                "outcomes",
                                o["partner"],
                                "revenue",
                                "tumbling_10s",
                                part.tumble_start,
                                part.tumble_start + _WINDOW_MS,
                                c,
                                rs,
                                rs / c,
                                None,
                                None,
                                None,
                                c / 10.0,
                                None,
                            )
                        )
                    part.tumble_start, part.tumble = start, [0, 0.0, 0.0]
                part.tumble[0] += 1
                part.tumble[1] += float(o["revenue"])
                part.tumble[2] += filled
            out, _ = pull(outs, _OUT)
        if rows.pending() >= _FLUSH_ROWS:
            _flush(writer, rows, hist, counts)
    _flush(writer, rows, hist, counts)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    writer.close()
    return VariantResult(
        variant="naive",
        events=events,
        wall_s=wall,
        latency_ms=latency_quantiles(hist),
        rows=counts | {"dead_letters": dead, "unmatched_outcomes": unmatched},
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        complete=complete,
        notes="per-event loop: orjson, River LinUCBDisjoint, River HalfSpaceTrees, batched DuckDB",
    )
