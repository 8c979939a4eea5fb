"""DuckDB tables: the single source of truth for result column names, types and keys.

Every table has a deterministic primary key derived from its input (an event id, a source
position, or a window's identity), so a replay after a crash inserts nothing twice: sinks
write with ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from eddy.schemas.spec import PipelineSpec, StreamSpec

__all__ = [
    "TABLES",
    "Column",
    "Table",
    "arrow_schema",
    "ddl",
    "pipeline_tables",
    "reward_fields_of",
]


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    doc: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    doc: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __post_init__(self) -> None:
        names = set(self.column_names)
        missing = [k for k in self.primary_key if k not in names]
        if missing:
            raise ValueError(f"table {self.name!r}: primary key columns {missing} are not columns")


_TS = pa.timestamp("ms")


def _c(name: str, sql: str, arrow: pa.DataType, doc: str = "") -> Column:
    return Column(name, sql, arrow, doc)


def ddl(table: Table) -> str:
    cols = ",\n  ".join(f'"{c.name}" {c.sql_type}' for c in table.columns)
    pk = ", ".join(f'"{k}"' for k in table.primary_key)
    return f'CREATE TABLE IF NOT EXISTS "{table.name}" (\n  {cols},\n  PRIMARY KEY ({pk})\n)'


def arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type) for c in table.columns])


# -- tables of a pipeline spec --------------------------------------------------------------
_FIELD_SQL: dict[str, tuple[str, pa.DataType]] = {
    "string": ("VARCHAR", pa.string()),
    "float": ("DOUBLE", pa.float64()),
    "int": ("BIGINT", pa.int64()),
    "bool": ("BOOLEAN", pa.bool_()),
    "list[string]": ("VARCHAR[]", pa.list_(pa.string())),
}

_COMMON: tuple[Table, ...] = (
    Table(
        "unmatched_outcomes",
        (
            _c("outcome_id", "VARCHAR", pa.string(), "decide stage + the outcome's event id"),
            _c("decide", "VARCHAR", pa.string(), "the decide stage"),
            _c("decision_id", "VARCHAR", pa.string()),
            _c("stream", "VARCHAR", pa.string(), "the outcome stream"),
            _c("event_time", "TIMESTAMP", _TS),
            _c("reason", "VARCHAR", pa.string(), "unknown decision, expired, duplicate, ..."),
        ),
        ("outcome_id",),
        "outcomes nothing was learned from, with the reason: counted and kept, never a crash",
    ),
    Table(
        "anomalies",
        (
            _c("anomaly_id", "VARCHAR", pa.string(), "detect stage, key, metric, event time"),
            _c("detect", "VARCHAR", pa.string(), "the detect stage"),
            _c("stream", "VARCHAR", pa.string()),
            _c("key", "VARCHAR", pa.string(), "the stage key's value"),
            _c("metric", "VARCHAR", pa.string()),
            _c("value", "DOUBLE", pa.float64()),
            _c("score", "DOUBLE", pa.float64(), "calibrated, in [0, 1]"),
            _c("threshold", "DOUBLE", pa.float64()),
            _c("expected_low", "DOUBLE", pa.float64()),
            _c("expected_high", "DOUBLE", pa.float64()),
            _c("detectors", "VARCHAR[]", pa.list_(pa.string()), "detectors that voted"),
            _c("event_time", "TIMESTAMP", _TS),
            _c("detected_at", "TIMESTAMP", _TS, "wall clock"),
        ),
        ("anomaly_id",),
        "one row per anomaly a detect stage reported",
    ),
    Table(
        "window_aggregates",
        (
            _c("features", "VARCHAR", pa.string(), "the features stage"),
            _c("stream", "VARCHAR", pa.string()),
            _c("key", "VARCHAR", pa.string()),
            _c("metric", "VARCHAR", pa.string()),
            _c("window", "VARCHAR", pa.string(), "tumbling_1m, sliding_5m_1m, session_30s"),
            _c("window_start", "TIMESTAMP", _TS),
            _c("window_end", "TIMESTAMP", _TS, "exclusive"),
            _c("count", "BIGINT", pa.int64()),
            _c("sum", "DOUBLE", pa.float64()),
            _c("mean", "DOUBLE", pa.float64()),
            _c("std", "DOUBLE", pa.float64(), "population standard deviation"),
            _c("min", "DOUBLE", pa.float64()),
            _c("max", "DOUBLE", pa.float64()),
            _c("rate", "DOUBLE", pa.float64(), "events per second"),
            _c("p95", "DOUBLE", pa.float64(), "NaN unless the stage asks for p95"),
        ),
        ("features", "key", "metric", "window", "window_start"),
        "one row per closed window, key and metric",
    ),
    Table(
        "late_events",
        (
            _c("late_event_id", "VARCHAR", pa.string(), "stream + event id"),
            _c("stream", "VARCHAR", pa.string()),
            _c("key", "VARCHAR", pa.string(), "the first features stage's key, if any"),
            _c("event_time", "TIMESTAMP", _TS),
            _c("watermark", "TIMESTAMP", _TS, "the watermark it was behind"),
            _c("policy", "VARCHAR", pa.string(), "drop or include"),
        ),
        ("late_event_id",),
        "events behind their stream's watermark, and the policy applied",
    ),
    Table(
        "dead_letters",
        (
            _c("dead_letter_id", "VARCHAR", pa.string(), "source + position"),
            _c("stream", "VARCHAR", pa.string()),
            _c("source", "VARCHAR", pa.string(), "e.g. jsonl:/path/file or kafka:topic/3"),
            _c("position", "BIGINT", pa.int64(), "line number (1-based), row or offset"),
            _c("raw", "BLOB", pa.binary(), "the record's bytes"),
            _c("reason", "VARCHAR", pa.string()),
            _c("received_at", "TIMESTAMP", _TS),
        ),
        ("dead_letter_id",),
        "input that could not be used, with a readable reason: never lost",
    ),
    Table(
        "metrics",
        (
            _c("run_id", "VARCHAR", pa.string()),
            _c("ts", "TIMESTAMP", _TS, "wall clock second"),
            _c("step", "VARCHAR", pa.string()),
            _c("name", "VARCHAR", pa.string()),
            _c("value", "DOUBLE", pa.float64()),
        ),
        ("run_id", "ts", "step", "name"),
        "run counters and latency quantiles, once per second",
    ),
    Table(
        "drift_alerts",
        (
            _c("alert_id", "VARCHAR", pa.string()),
            _c("stage", "VARCHAR", pa.string(), "the decide or detect stage"),
            _c("stream", "VARCHAR", pa.string(), "what was watched: reward, feature.<metric>"),
            _c("key", "VARCHAR", pa.string()),
            _c("detector", "VARCHAR", pa.string()),
            _c("magnitude", "DOUBLE", pa.float64(), "change in the watched stream's units"),
            _c("event_time", "TIMESTAMP", _TS),
            _c("detected_at", "TIMESTAMP", _TS),
        ),
        ("alert_id",),
        "a sustained shift in a learned reward or a detector's input",
    ),
)


def pipeline_tables(spec: PipelineSpec) -> dict[str, Table]:
    """Every table a pipeline writes: the common ones, ``decisions`` and ``rewards`` with the
    columns its decide stages declare, and ``features_<name>`` for stages with ``store``."""
    out = {t.name: t for t in _COMMON}
    logged: dict[str, Column] = {}
    reward_fields: dict[str, Column] = {}
    for d in spec.decide:
        stream = spec.stream(d.stream)
        for name in d.logged_fields:
            sql, arrow = _FIELD_SQL[stream.field(name).type]
            logged.setdefault(name, _c(name, sql, arrow, f"field of stream {stream.name!r}"))
        outcomes = spec.stream(d.reward.stream)
        for name in reward_fields_of(d.reward.value, outcomes):
            reward_fields.setdefault(
                name, _c(name, "DOUBLE", pa.float64(), "outcome field read by the reward")
            )
    out["decisions"] = _decisions(tuple(logged.values()))
    out["rewards"] = _rewards(tuple(reward_fields.values()))
    for f in spec.features:
        if f.store:
            out[f"features_{f.name}"] = Table(
                f"features_{f.name}",
                (
                    _c("id", "VARCHAR", pa.string(), "the event's id (or source#position)"),
                    _c("key", "VARCHAR", pa.string()),
                    _c("event_time", "TIMESTAMP", _TS),
                    *(_c(c, "DOUBLE", pa.float64()) for c in f.columns),
                ),
                ("id",),
                f"per-event trailing features of stage {f.name!r}",
            )
    return out


def _decisions(logged: tuple[Column, ...]) -> Table:
    return Table(
        "decisions",
        (
            _c("decision_id", "VARCHAR", pa.string(), "the event's id"),
            _c("decide", "VARCHAR", pa.string(), "the decide stage"),
            _c("event_time", "TIMESTAMP", _TS),
            _c("arm", "VARCHAR", pa.string(), "the chosen arm's name"),
            _c("arm_index", "INTEGER", pa.int32(), "its position in the stage's arms"),
            _c("propensity", "DOUBLE", pa.float64(), "P(chosen arm) under the policy"),
            _c("policy", "VARCHAR", pa.string()),
            _c("policy_version", "VARCHAR", pa.string()),
            _c("feature_version", "VARCHAR", pa.string()),
            # float32 lists insert at about twice the rate of DOUBLE[] ones; ample for OPE
            _c("context", "FLOAT[]", pa.list_(pa.float32()), "the features the policy saw"),
            _c("eligible_arms", "VARCHAR[]", pa.list_(pa.string()), "NULL: every arm"),
            _c("decided_at", "TIMESTAMP", _TS, "wall clock when decided"),
            _c("latency_ms", "DOUBLE", pa.float64(), "read to decided, wall clock"),
            *logged,
        ),
        ("decision_id",),
        "one row per decision event: the choice, logged for off-policy evaluation",
    )


def _rewards(fields: tuple[Column, ...]) -> Table:
    return Table(
        "rewards",
        (
            _c("decision_id", "VARCHAR", pa.string()),
            _c("decide", "VARCHAR", pa.string()),
            _c("event_time", "TIMESTAMP", _TS, "outcome event time, or expiry time"),
            _c("arm", "VARCHAR", pa.string()),
            _c("reward", "DOUBLE", pa.float64(), "what the policy learned"),
            _c("timed_out", "BOOLEAN", pa.bool_(), "no outcome within the TTL: default reward"),
            *fields,
        ),
        ("decision_id",),
        "one row per decision once its outcome arrived or its TTL expired",
    )


#: the tables every pipeline has, with the columns every user can count on (a spec adds the
#: event fields it logs to ``decisions`` and ``rewards``, and ``features_<name>`` tables)
TABLES: dict[str, Table] = {
    **{t.name: t for t in _COMMON},
    "decisions": _decisions(()),
    "rewards": _rewards(()),
}


def reward_fields_of(expression: str, outcomes: StreamSpec) -> tuple[str, ...]:
    """The outcome fields a reward expression reads, in first-use order."""
    from eddy.operators.expressions import Expression

    types = {f.name: f.type for f in outcomes.fields}
    return Expression.parse(expression, types).fields
