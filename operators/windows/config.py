"""Configuration of the event-time features operator (frozen, validated)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGGREGATIONS", "FeatureConfig", "duration_label"]

#: Every aggregation the operator knows, in the order of the ``window_aggregates`` table.
AGGREGATIONS: tuple[str, ...] = ("count", "sum", "mean", "std", "min", "max", "rate", "p95")

_LATE_POLICIES = ("drop", "include")


def duration_label(ms: int) -> str:
    """``10000 -> "10s"``, ``1500 -> "1500ms"`` (used in feature and window names)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _positive_ints(field: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise ValueError(f"FeatureConfig.{field}: expected a tuple of ints > 0, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"FeatureConfig.{field}: expected ints > 0 (ms), got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"FeatureConfig.{field}: expected distinct values, got {value!r}")
    return tuple(out)


@dataclass(frozen=True)
class FeatureConfig:
    """What to compute. Durations are in milliseconds of event time.

    ``metrics`` names the value columns (``values[:, j]`` is ``metrics[j]``); ``trailing_ms``
    the per-event trailing windows; ``aggregations`` a subset of :data:`AGGREGATIONS` for the
    per-event features (closed windows always carry every column of ``window_aggregates``;
    their ``p95`` is NaN unless ``"p95"`` is requested); ``tumbling_ms`` tumbling window sizes;
    ``sliding`` ``(size, slide)`` pairs with ``size % slide == 0``; ``session_gap_ms`` session
    gaps; ``allowed_lateness_ms`` how far behind the largest event time the watermark trails;
    ``late_policy`` what happens to rows behind the watermark: ``"drop"`` (counted and
    reported, not added to state) or ``"include"`` (added to trailing state and to the
    tumbling/sliding windows that are still open).
    """

    metrics: tuple[str, ...]
    trailing_ms: tuple[int, ...] = (10_000, 60_000, 300_000)
    aggregations: tuple[str, ...] = AGGREGATIONS
    tumbling_ms: tuple[int, ...] = ()
    sliding: tuple[tuple[int, int], ...] = ()
    session_gap_ms: tuple[int, ...] = ()
    allowed_lateness_ms: int = 0
    late_policy: str = "drop"

    def __post_init__(self) -> None:
        m = self.metrics
        if not isinstance(m, tuple | list) or not m or not all(isinstance(x, str) and x for x in m):
            raise ValueError(f"FeatureConfig.metrics: expected non-empty names, got {m!r}")
        if len(set(m)) != len(m):
            raise ValueError(f"FeatureConfig.metrics: expected distinct names, got {m!r}")
        object.__setattr__(self, "metrics", tuple(m))
        object.__setattr__(self, "trailing_ms", _positive_ints("trailing_ms", self.trailing_ms))
        object.__setattr__(self, "tumbling_ms", _positive_ints("tumbling_ms", self.tumbling_ms))
        object.__setattr__(
            self, "session_gap_ms", _positive_ints("session_gap_ms", self.session_gap_ms)
        )
        aggs = self.aggregations
        if not isinstance(aggs, tuple | list) or not aggs:
            raise ValueError(
                f"FeatureConfig.aggregations: expected a non-empty tuple, got {aggs!r}"
            )
        bad = [a for a in aggs if a not in AGGREGATIONS]
        if bad or len(set(aggs)) != len(aggs):
            raise ValueError(
                f"FeatureConfig.aggregations: expected distinct names from {AGGREGATIONS}, "
                f"got {aggs!r}"
            )
        object.__setattr__(self, "aggregations", tuple(aggs))
        sl = []
        for pair in self.sliding:
            if (
                not isinstance(pair, tuple | list)
                or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in pair)
                or pair[0] % pair[1] != 0
            ):
                raise ValueError(
                    "FeatureConfig.sliding: expected (size_ms, slide_ms) ints > 0 with "
                    f"size a multiple of slide, got {pair!r}"
                )
            sl.append((int(pair[0]), int(pair[1])))
        if len(set(sl)) != len(sl):
            raise ValueError(
                f"FeatureConfig.sliding: expected distinct pairs, got {self.sliding!r}"
            )
        object.__setattr__(self, "sliding", tuple(sl))
        lat = self.allowed_lateness_ms
        if isinstance(lat, bool) or not isinstance(lat, int) or lat < 0:
            raise ValueError(
                f"FeatureConfig.allowed_lateness_ms: expected an int >= 0, got {lat!r}"
            )
        if self.late_policy not in _LATE_POLICIES:
            raise ValueError(
                f"FeatureConfig.late_policy: expected one of {_LATE_POLICIES}, "
                f"got {self.late_policy!r}"
            )

    @property
    def feature_names(self) -> list[str]:
        """``f"{metric}_{aggregation}_{window}"``, metric-major, then window, then aggregation."""
        return [
            f"{m}_{a}_{duration_label(w)}"
            for m in self.metrics
            for w in self.trailing_ms
            for a in self.aggregations
        ]

    @property
    def window_specs(self) -> list[tuple[str, int, int]]:
        """Fixed-grid windows as ``(name, size_ms, slide_ms)``; tumbling has slide == size."""
        specs = [(f"tumbling_{duration_label(s)}", s, s) for s in self.tumbling_ms]
        specs += [
            (f"sliding_{duration_label(s)}_{duration_label(h)}", s, h) for s, h in self.sliding
        ]
        return specs

    @property
    def session_names(self) -> list[str]:
        return [f"session_{duration_label(g)}" for g in self.session_gap_ms]

    @property
    def horizon_ms(self) -> int:
        """How far behind the watermark the per-key event store must reach."""
        sizes = [*self.trailing_ms, *self.tumbling_ms, *(s for s, _ in self.sliding), 1]
        return max(sizes)
