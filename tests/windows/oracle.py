"""DuckDB SQL oracle: the documented definitions, written independently as set-based SQL.

Single input partition (the multi-partition watermark is covered by the Python reference).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from eddy.operators.windows import NO_WATERMARK, FeatureConfig

__all__ = ["oracle"]

_AGG_SQL = {
    "count": "count({v})",
    "sum": "coalesce(sum({v}), 0)",
    "mean": "avg({v})",
    "std": "stddev_pop({v})",
    "min": "min({v})",
    "max": "max({v})",
    "rate": "count({v}) / {dur_s}",
    "p95": "quantile_cont({v}, 0.95)",
}


_FLOATS = ("sum", "mean", "std", "min", "max", "rate", "p95")


def _filled(a: np.ndarray) -> np.ndarray:
    """SQL NULL -> NaN (fetchnumpy returns masked arrays for columns with NULLs)."""
    return np.ma.filled(np.ma.asarray(a).astype(np.float64), np.nan)


def _load(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig, keys, ts, vals) -> None:
    cols = {"seq": np.arange(len(ts)), "key": pa.array(keys.tolist(), pa.string()), "ts": ts}
    for m in range(len(cfg.metrics)):
        cols[f"v{m}"] = pa.array(vals[:, m], from_pandas=True)  # NaN -> NULL
    con.register("raw", pa.table(cols))
    lat = cfg.allowed_lateness_ms
    include = "true" if cfg.late_policy == "include" else "false"
    con.execute(f"""
        CREATE TEMP TABLE ev AS
        SELECT *, ts < wmb AS late, (ts >= wmb OR {include}) AS acc FROM (
            SELECT *, coalesce(max(ts) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING
                                             AND 1 PRECEDING) - {lat}, {NO_WATERMARK}) AS wmb
            FROM raw)
    """)


def _features(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> np.ndarray:
    tmax = max(cfg.trailing_ms)
    sel = []
    for m in range(len(cfg.metrics)):
        for d in cfg.trailing_ms:
            cond = f"b.ts > a.ts - {d}"
            for a in cfg.aggregations:
                expr = _AGG_SQL[a].format(v=f"b.v{m}", dur_s=d / 1000)
                if a == "count":
                    expr = f"count(b.v{m}) FILTER (WHERE {cond})"
                elif a == "rate":
                    expr = f"(count(b.v{m}) FILTER (WHERE {cond})) / {d / 1000}"
                elif a == "sum":
                    expr = f"coalesce(sum(b.v{m}) FILTER (WHERE {cond}), 0)"
                else:
                    expr = f"{expr} FILTER (WHERE {cond})"
                sel.append(f"{expr}::DOUBLE")
    # self-join within the largest window; a band on ts // tmax keeps the join small
    sql = f"""
        SELECT a.seq, {", ".join(sel)}
        FROM ev a LEFT JOIN ev b
          ON b.key = a.key AND b.seq <= a.seq AND b.acc
         AND b.ts <= a.ts AND b.ts > a.ts - {tmax} AND b.ts > a.wmb - {tmax}
        GROUP BY a.seq ORDER BY a.seq
    """
    res = con.execute(sql).fetchnumpy()
    cols = [k for k in res if k != "seq"]
    return np.column_stack([_filled(res[c]) for c in cols])


def _windows(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    parts = []
    vcols = ", ".join(f"v.v{m}" for m in range(len(cfg.metrics)))
    for name, size, slide in cfg.window_specs:
        parts.append(f"""
            SELECT key, '{name}' AS "window", ws AS window_start, ws + {size} AS window_end,
                   {size} AS dur, {vcols}
            FROM (SELECT *, unnest(generate_series(
                      floor(ts / {slide})::BIGINT * {slide} - {size} + {slide},
                      floor(ts / {slide})::BIGINT * {slide}, {slide})) AS ws FROM ev) v
            WHERE acc AND (NOT late OR ws + {size} > wmb)
        """)
    for gap, name in zip(cfg.session_gap_ms, cfg.session_names, strict=True):
        parts.append(f"""
            SELECT key, '{name}' AS "window", min(ts) OVER s AS window_start,
                   max(ts) OVER s + {gap} AS window_end,
                   max(ts) OVER s + {gap} - min(ts) OVER s AS dur, {vcols}
            FROM (SELECT *, sum(brk) OVER (PARTITION BY key ORDER BY ts, seq) AS sid FROM (
                    SELECT *, coalesce(ts - lag(ts) OVER (PARTITION BY key ORDER BY ts, seq)
                                       >= {gap}, true)::INT AS brk
                    FROM ev WHERE NOT late)) v
            WINDOW s AS (PARTITION BY key, sid)
        """)
    if not parts:
        return {}
    con.execute("CREATE TEMP TABLE mem AS " + " UNION ALL ".join(parts))
    out = []
    for m, metric in enumerate(cfg.metrics):
        out.append(f"""
            SELECT key, '{metric}' AS metric, "window", window_start, window_end,
                   count(v{m}) AS count, coalesce(sum(v{m}), 0)::DOUBLE AS sum,
                   avg(v{m}) AS mean, stddev_pop(v{m}) AS std, min(v{m}) AS min,
                   max(v{m}) AS max, count(v{m}) / (any_value(dur) / 1000) AS rate,
                   quantile_cont(v{m}, 0.95) AS p95
            FROM mem GROUP BY key, "window", window_start, window_end
        """)
    q = " UNION ALL ".join(out) + ' ORDER BY key, metric, "window", window_start'
    res = con.execute(q).fetchnumpy()
    return {k: (_filled(v) if k in _FLOATS else np.asarray(v)) for k, v in res.items()}


def oracle(cfg: FeatureConfig, keys, ts, vals):
    """(features, late, windows) for one partition, by SQL."""
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    _load(con, cfg, keys, ts, vals)
    late = con.execute("SELECT late FROM ev ORDER BY seq").fetchnumpy()["late"]
    feats = _features(con, cfg)
    wins = _windows(con, cfg)
    con.close()
    return feats, np.asarray(late, dtype=bool), wins
