"""The streaming operator against the DuckDB SQL oracle of the documented definitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eddy.operators.windows import EventTimeFeatures, FeatureConfig

from .conftest import WKEY, Stream, assert_close, make_stream, run, sort_windows
from .oracle import oracle

CFG = FeatureConfig(
    metrics=("filled", "latency_ms"),
    trailing_ms=(10_000, 60_000, 120_000),
    tumbling_ms=(60_000,),
    sliding=((120_000, 60_000),),
    session_gap_ms=(60_000,),
    allowed_lateness_ms=2_000,
)


def _compare(cfg: FeatureConfig, s: Stream, batch: int) -> None:
    feats, late, wins = run(EventTimeFeatures(cfg), s, list(range(0, len(s.ts), batch)))
    of, ol, ow = oracle(cfg, s.keys, s.ts, s.vals)
    assert late.sum() > 0
    assert (late == ol).all(), "late rows differ"
    assert_close(feats, of, "features")
    wins = sort_windows(wins)
    assert len(wins["key"]) == len(ow["key"]), "window row counts differ"
    for c in WKEY:
        assert (wins[c].astype(str) == ow[c].astype(str)).all(), c
    for c in ("window_end", "count", "sum", "mean", "std", "min", "max", "rate", "p95"):
        assert_close(wins[c], ow[c], c)


@pytest.mark.parametrize("policy", ["drop", "include"])
def test_small_against_oracle(policy: str) -> None:
    s = make_stream(21, 20_000, 50, span_ms=600_000, disorder_ms=1_500, late_ms=30_000)
    _compare(dataclasses.replace(CFG, late_policy=policy), s, 2_000)


def test_one_million_events_against_oracle() -> None:
    """1,000,000 events over 1,000 keys, out of order within the lateness, 2% late."""
    s = make_stream(
        7, 1_000_000, 1_000, span_ms=20_000_000, disorder_ms=1_500, late_ms=60_000,
        nan_frac=0.02, skew=0.5,
    )  # fmt: skip
    assert np.unique(s.keys).size == 1_000
    _compare(dataclasses.replace(CFG, late_policy="include"), s, 50_000)
