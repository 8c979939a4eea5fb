"""FeatureConfig validation, names, and the small API promises the pipeline relies on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.windows import WINDOW_COLUMNS, EventTimeFeatures, FeatureConfig
from eddy.schemas.tables import TABLES


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metrics": ()}, "metrics"),
        ({"metrics": ("a", "a")}, "metrics"),
        ({"trailing_ms": (0,)}, "trailing_ms"),
        ({"aggregations": ("median",)}, "aggregations"),
        ({"sliding": ((60_000, 7_000),)}, "sliding"),
        ({"allowed_lateness_ms": -1}, "allowed_lateness_ms"),
        ({"late_policy": "keep"}, "late_policy"),
        ({"session_gap_ms": (True,)}, "session_gap_ms"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    args = {"metrics": ("x",), **kwargs}
    with pytest.raises(ValueError, match=f"FeatureConfig.{field}"):
        FeatureConfig(**args)


def test_names_and_window_columns() -> None:
    cfg = FeatureConfig(
        metrics=("filled", "latency_ms"),
        trailing_ms=(10_000, 60_000),
        aggregations=("p95", "count"),
        tumbling_ms=(10_000,),
        sliding=((60_000, 10_000),),
        session_gap_ms=(30_000,),
    )
    op = EventTimeFeatures(cfg)
    assert op.feature_names[:2] == ["filled_p95_10s", "filled_count_10s"]
    assert len(op.feature_names) == 2 * 2 * 2
    assert [s[0] for s in cfg.window_specs] == ["tumbling_10s", "sliding_60s_10s"]
    assert cfg.session_names == ["session_30s"]
    assert TABLES["window_aggregates"].column_names == ["features", "stream", *WINDOW_COLUMNS]
    r = op.process(
        np.array(["a", "b"], dtype=object), np.array([5, 7]), np.array([[1.0, 2.0], [np.nan, 3.0]])
    )
    assert r.features.shape == (2, 8) and r.feature_names == op.feature_names
    w = op.flush().windows
    assert list(w) == WINDOW_COLUMNS
    assert w["window"].tolist().count("session_30s") == 4  # 2 keys x 2 metrics
    assert w["window_start"].dtype == np.int64 and w["count"].dtype == np.int64


def test_bad_shapes_raise() -> None:
    op = EventTimeFeatures(FeatureConfig(metrics=("x", "y")))
    with pytest.raises(ValueError, match="values must have shape"):
        op.process(np.array(["a"], dtype=object), np.array([1]), np.array([1.0]))
    with pytest.raises(ValueError, match="keys must have shape"):
        op.process(np.array(["a", "b"], dtype=object), np.array([1]), np.ones((1, 2)))


def test_empty_operator_snapshot_and_flush() -> None:
    cfg = FeatureConfig(metrics=("x",), tumbling_ms=(1_000,))
    op = EventTimeFeatures.restore(
        cfg, pickle.loads(pickle.dumps(EventTimeFeatures(cfg).snapshot()))
    )
    assert op.n_keys == 0
    assert len(op.flush().windows["key"]) == 0


def test_restore_without_session_windows() -> None:
    cfg = FeatureConfig(metrics=("x",), trailing_ms=(1_000,), aggregations=("count",))
    op = EventTimeFeatures(cfg)
    op.process(np.array(["a", "b"], dtype=object), np.array([1, 2]), np.ones((2, 1)))
    op2 = EventTimeFeatures.restore(cfg, pickle.loads(pickle.dumps(op.snapshot())))
    r = op2.process(np.array(["a"], dtype=object), np.array([3]), np.ones((1, 1)))
    assert r.features[0, 0] == 2
