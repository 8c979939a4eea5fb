"""The pipeline spec: what a user declares, as frozen, validated dataclasses.

A spec is one TOML file (``schemas.spec_load.load_spec``) or the same dataclasses built in
Python. It names streams with typed fields and the stages that run over them:

* ``[[features]]`` event-time windows per key (per-event trailing features, tumbling,
  sliding and session windows);
* ``[[detect]]`` anomaly detection per key and metric;
* ``[[decide]]`` a contextual bandit choosing one arm per event, learning from a delayed
  outcome joined by id.

Nothing here knows a scenario: every name comes from the spec. ``docs/spec.md`` is the
reference for the TOML keys; the dataclasses below mirror it one to one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eddy.schemas.durations import duration_label

__all__ = [
    "AGGREGATIONS",
    "FIELD_TYPES",
    "NAME_RE",
    "NUMERIC_TYPES",
    "ContextSpec",
    "DecideSpec",
    "DetectSpec",
    "FeaturesSpec",
    "FieldSpec",
    "PipelineSpec",
    "RewardSpec",
    "SpecError",
    "StreamSpec",
    "Window",
]

#: declared field types
FIELD_TYPES = ("string", "float", "int", "bool", "list[string]")
#: field types a metric, a numeric context value or a reward expression can read
NUMERIC_TYPES = ("float", "int", "bool")
#: aggregations of ``[[features]]`` (the order of the ``window_aggregates`` columns)
AGGREGATIONS = ("count", "sum", "mean", "std", "min", "max", "rate", "p95")
#: names of streams, fields and stages: they become SQL columns, tables and expression names
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """A spec that cannot run. The message names the key path, what was expected and what
    came, in one line (``eddy`` prints it and exits with code 2)."""


@dataclass(frozen=True)
class FieldSpec:
    """One declared field of a stream.

    ``min``/``max`` bound numbers (inclusive) and the length of a ``list[string]``;
    ``optional`` lets the field be absent or null; ``default`` replaces an absent or null
    value (and makes the field optional)."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    optional: bool = False
    default: Any = None

    @property
    def nullable(self) -> bool:
        """Absent values stay absent (NaN / None) in the batch."""
        return self.optional and self.default is None

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


@dataclass(frozen=True)
class StreamSpec:
    """An input stream: where it comes from, its id and event-time fields, its fields."""

    name: str
    source: str
    time: str
    fields: tuple[FieldSpec, ...]
    id: str | None = None
    id_type: str = "string"  # "string" or "int" (an int id is kept as its decimal string)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def source_kind(self) -> str:
        """``simulator``, ``jsonl``, ``csv``, ``parquet`` or ``kafka``."""
        return self.source.split(":", 1)[0]

    @property
    def source_target(self) -> str:
        """What follows ``kind:`` (a path, a simulator name, ``HOST:PORT/TOPIC``)."""
        return self.source.split(":", 1)[1]


@dataclass(frozen=True)
class Window:
    """A duration as the spec wrote it (``label``, used in column and window names)."""

    ms: int
    label: str

    @classmethod
    def of(cls, ms: int) -> Window:
        return cls(ms, duration_label(ms))


@dataclass(frozen=True)
class FeaturesSpec:
    """``[[features]]``: event-time windows per key over one stream."""

    name: str
    stream: str
    key: str | None
    metrics: tuple[str, ...]
    trailing: tuple[Window, ...] = ()
    aggregations: tuple[str, ...] = ("count", "mean")
    tumbling: tuple[Window, ...] = ()
    sliding: tuple[tuple[Window, Window], ...] = ()
    session_gap: tuple[Window, ...] = ()
    store: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """Per-event feature columns ``<metric>_<aggregation>_<window>`` (metric-major, then
        window, then aggregation: the operator's order)."""
        return tuple(
            f"{m}_{a}_{w.label}"
            for m in self.metrics
            for w in self.trailing
            for a in self.aggregations
        )

    @property
    def window_names(self) -> tuple[str, ...]:
        """Names in ``window_aggregates.window``: ``tumbling_1m``, ``sliding_5m_1m``, ..."""
        return (
            *(f"tumbling_{w.label}" for w in self.tumbling),
            *(f"sliding_{s.label}_{h.label}" for s, h in self.sliding),
            *(f"session_{g.label}" for g in self.session_gap),
        )


@dataclass(frozen=True)
class DetectSpec:
    """``[[detect]]``: anomaly detection per key and metric over one stream."""

    name: str
    stream: str
    key: str | None
    metrics: tuple[str, ...]
    detector: str = "ensemble"
    params: tuple[tuple[str, Any], ...] = ()
    threshold: float = 0.99
    cooldown_ms: int = 30_000


@dataclass(frozen=True)
class RewardSpec:
    """How a decision learns: the outcome stream, the field holding the decision id, the
    reward expression, how long to wait and what a missing outcome is worth."""

    stream: str
    join: str
    value: str
    ttl_ms: int = 60_000
    default: float = 0.0
    arm: str | None = None  # optional outcome field naming the arm it is an outcome of


@dataclass(frozen=True)
class ContextSpec:
    """What the policy sees. ``categorical``: (field, hashed slots); ``numeric``: fields;
    ``features``: ``(stage, column)`` window features looked up by the event's key;
    ``arm_features``: ``(stage, column)`` of a features stage keyed by arm name, one value per
    arm."""

    categorical: tuple[tuple[str, int], ...] = ()
    numeric: tuple[str, ...] = ()
    features: tuple[tuple[str, str], ...] = ()
    arm_features: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DecideSpec:
    """``[[decide]]``: a contextual bandit choosing one of ``arms`` per event of ``stream``."""

    name: str
    stream: str
    arms: tuple[str, ...]
    reward: RewardSpec
    eligible: str | None = None
    policy: str = "linucb"
    params: tuple[tuple[str, Any], ...] = ()
    context: ContextSpec = field(default_factory=ContextSpec)
    log: tuple[str, ...] = ()  # extra fields of the event stored in `decisions`
    drift: bool = True  # watch the learned reward for drops (overall and per arm)
    shards: int = 1  # decisions spread over this many shards by id
    merge_every_ms: int = 1_000  # shards share what they learned this often (event time)

    @property
    def logged_fields(self) -> tuple[str, ...]:
        """Event fields that become columns of ``decisions``: the context's raw fields and
        ``log``, in declaration order, without repeats."""
        names = [c for c, _ in self.context.categorical] + list(self.context.numeric)
        return tuple(dict.fromkeys([*names, *self.log]))


@dataclass(frozen=True)
class PipelineSpec:
    """A whole pipeline. ``path`` is the file it came from (relative source paths in it are
    resolved against its folder)."""

    name: str
    streams: tuple[StreamSpec, ...]
    features: tuple[FeaturesSpec, ...] = ()
    detect: tuple[DetectSpec, ...] = ()
    decide: tuple[DecideSpec, ...] = ()
    allowed_lateness_ms: int = 2_000
    late_policy: str = "drop"
    max_ahead_ms: int = 3_600_000
    idle_after_ms: int | None = 60_000  # a partition silent this long leaves the watermark's min
    duckdb: str | None = None
    topic_prefix: str | None = None
    batch_size: int = 4_000
    max_event_bytes: int = 65_536
    retention_ms: int | None = None  # result rows older than this are deleted (None: kept)
    shards: int | None = None  # keyed state split in this many shards (None: one per worker)
    seed: int = 0
    simulator: tuple[tuple[str, Any], ...] = ()
    path: str | None = None

    def stream(self, name: str) -> StreamSpec:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)

    def features_stage(self, name: str) -> FeaturesSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def duckdb_path(self) -> str:
        return self.duckdb or f"{self.name}.duckdb"

    @property
    def topics(self) -> str:
        """Prefix of the output topics: ``<prefix>.decisions``, ``<prefix>.anomalies``, ..."""
        return self.topic_prefix or self.name

    @property
    def reward_streams(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.reward.stream for d in self.decide))

    @property
    def decision_streams(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.stream for d in self.decide))
