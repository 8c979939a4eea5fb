"""One contract suite over every anomaly detector (River-style): whatever a detector computes, it
must not look ahead, must not depend on how its input is cut into batches, must continue
identically after a pickle or snapshot round trip, must be deterministic, must leave the caller's
arrays alone, and must skip non-finite values (NaN, +-inf) without poisoning later scores.

The subjects: every ``DETECTORS`` entry (one series), every ``SlotDetector`` class of the package
in its default configuration plus the configurations the default ensemble uses (several slots
interleaved at random), the default ``Ensemble``, and ``KeyedDetector`` with
the ensemble, rates and River detectors (string keys, a numeric and a bool metric). The data are
seeded synthetic series with a daily pattern, a flat stretch, a spike, a level shift and a dip.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

import eddy.operators.anomaly as anomaly_package
from eddy.operators.anomaly.anomaly_rows import ANOMALY_COLUMNS
from eddy.operators.anomaly.base import SlotDetector
from eddy.operators.anomaly.default import (
    DEFAULT_REFRACTORY,
    build_default_members,
    default_ensemble,
)
from eddy.operators.anomaly.hst import HalfSpaceTreesDetector
from eddy.operators.anomaly.keyed import DetectorConfig, DetectOutput, KeyedDetector
from eddy.operators.anomaly.knn import ContextKnn
from eddy.operators.anomaly.median_mad import MedianMad
from eddy.operators.anomaly.registry import DETECTORS
from eddy.operators.anomaly.river_member import RiverMember
from eddy.operators.anomaly.seasonal import SeasonalNaive
from eddy.operators.anomaly.spatial import RangeNovelty
from eddy.operators.drift import ALERT_COLUMNS

Rows = tuple[np.ndarray, ...]  # row-aligned input arrays: (..., ts, values)
Out = dict[str, np.ndarray]

T0 = 1_700_000_000_000
HOUR = 3_600_000
NOW = 7  # the wall clock passed to keyed detectors (detected_at)
HST = "river:anomaly.HalfSpaceTrees"


# -- data --------------------------------------------------------------------------------------
def _series(seed: int, n: int) -> np.ndarray:
    """Hourly values: a daily pattern with noise, a flat stretch, a spike, a level shift, a dip."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 10.0 + 2.0 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
    flat = slice(int(0.15 * n), int(0.25 * n))
    v[flat] = v[flat.start]  # zero spread for a while: scales must not divide by zero
    v[int(0.55 * n)] += 15.0
    v[int(0.7 * n) :] += 5.0
    v[int(0.85 * n)] -= 12.0
    return v


def _slot_rows(n: int, slot_ids: tuple[int, ...]) -> Rows:
    """``n`` hourly events per slot, interleaved at random (each slot in time order, at its own
    regular cadence); sparse slot ids, so state grows mid-stream."""
    rng = np.random.default_rng(100)
    slots = np.repeat(np.array(slot_ids, dtype=np.int64), n)
    rng.shuffle(slots)
    ts = np.empty(slots.size, np.int64)
    v = np.empty(slots.size)
    for j, s in enumerate(slot_ids):
        at = slots == s
        ts[at] = T0 + np.arange(n) * HOUR + s * 60_000
        v[at] = (j + 1) * _series(j, n)
    return slots, ts, v


def _event_rows(n: int, n_keys: int) -> Rows:
    """Per key one event an hour, keys in a random order within each hour (event times strictly
    increasing): a numeric metric (``_series``) and a bool error flag with a burst."""
    rng = np.random.default_rng(200)
    names = np.array(["α/β", "edge 7", "cdn-2"][:n_keys], dtype=object)
    key = np.argsort(rng.random((n, n_keys)), axis=1).ravel()
    step = np.repeat(np.arange(n), n_keys)
    ts = (T0 + step * HOUR + np.tile(np.arange(n_keys), n) * 1000).astype(np.int64)
    latency = np.empty(n * n_keys)
    for j in range(n_keys):
        latency[key == j] = 10.0 * _series(10 + j, n)
    error = rng.random(n * n_keys) < 0.05
    error[(key == n_keys - 1) & (step >= int(0.6 * n)) & (step < int(0.6 * n) + 6)] = True
    return names[key], ts, np.column_stack([latency, error.astype(np.float64)])


def _bucket_rows(seconds: int = 150, per_s: int = 25, n_keys: int = 3) -> Rows:
    """Many events per second per key (what the rates detector buckets): a latency with a 40 s
    cycle, a spike, a level shift and a flat stretch, and an error flag with a burst."""
    rng = np.random.default_rng(300)
    n = seconds * per_s * n_keys
    ts = T0 + np.sort(rng.integers(0, seconds * 1000, n)).astype(np.int64)
    key = rng.integers(0, n_keys, n)
    sec = (ts - T0) / 1000
    latency = 100 * (1 + 0.3 * np.sin(2 * np.pi * sec / 40)) * np.exp(0.3 * rng.normal(size=n))
    latency[(key == 1) & (sec >= 50) & (sec < 52)] *= 5
    latency[(key == 2) & (sec >= 90)] *= 3
    latency[(key == 0) & (sec >= 110) & (sec < 130)] = 100.0
    error = rng.random(n) < np.where((key == 0) & (sec >= 60) & (sec < 64), 0.5, 0.03)
    names = np.array([f"p{i}" for i in range(n_keys)], dtype=object)
    return names[key], ts, np.column_stack([latency, error.astype(np.float64)])


# -- subjects: one adapter per detector API ---------------------------------------------------
class Subject(ABC):
    """How to build, feed and restore one detector, and what its outputs are."""

    #: events of a series after its last skipped value whose scores may still differ from a
    #: run without the skipped rows (the ensemble's refractory stage counts skipped events);
    #: None: not compared (keyed detectors)
    settle: int | None = 0

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def new(self) -> Any:
        """A fresh detector."""

    @abstractmethod
    def rows(self) -> Rows:
        """The input (seeded, fresh arrays on every call)."""

    @abstractmethod
    def feed(self, det: Any, rows: Rows) -> Out:
        """One batch through the detector."""

    def finish(self, det: Any) -> Out | None:
        """End of input (keyed detectors flush open buckets)."""
        return None

    def upto(self, full: Out, rows: Rows, k: int) -> Out:
        """What a run over all ``rows`` said about rows ``0..k`` only."""
        return {c: a[: k + 1] for c, a in full.items()}

    def restored(self, det: Any) -> list[Any]:
        """Independent copies of ``det`` through every persistence API it has."""
        return [pickle.loads(pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL))]

    def series_of(self, rows: Rows) -> np.ndarray:
        """Per row, the series (slot, key) it belongs to."""
        return rows[0]

    def with_values(self, rows: Rows, bad: np.ndarray, kinds: np.ndarray) -> Rows:
        """``rows`` with the values of rows ``bad`` replaced by ``kinds`` (every metric)."""
        v = rows[-1].copy()
        v[bad] = kinds if v.ndim == 1 else kinds[:, None]
        return (*rows[:-1], v)

    @abstractmethod
    def check_sane(self, out: Out, rows: Rows, bad: np.ndarray) -> None:
        """Outputs on an input with skipped values at rows ``bad`` are in range."""


class SeriesSubject(Subject):
    """A ``DETECTORS`` entry: ``score_learn(ts_ms, values) -> scores`` for one series."""

    settle = DEFAULT_REFRACTORY

    def __init__(self, name: str, n: int = 1000) -> None:
        super().__init__(f"series:{name}")
        self.factory = DETECTORS[name]
        self.n = n

    def new(self) -> Any:
        return self.factory()

    def rows(self) -> Rows:
        return (T0 + np.arange(self.n, dtype=np.int64) * HOUR, _series(0, self.n))

    def feed(self, det: Any, rows: Rows) -> Out:
        return {"score": det.score_learn(*rows)}

    def series_of(self, rows: Rows) -> np.ndarray:
        return np.zeros(len(rows[0]), np.int64)

    def check_sane(self, out: Out, rows: Rows, bad: np.ndarray) -> None:
        _check_final(out["score"], bad)


class MemberSubject(Subject):
    """A ``SlotDetector`` on interleaved slots: raw surprise and expected range per event."""

    def __init__(
        self, name: str, factory: Callable[[], SlotDetector], n: int, slots: tuple[int, ...]
    ) -> None:
        super().__init__(f"member:{name}")
        self.factory = factory
        self.n = n
        self.slots = slots

    def new(self) -> Any:
        return self.factory()

    def rows(self) -> Rows:
        return _slot_rows(self.n, self.slots)

    def feed(self, det: Any, rows: Rows) -> Out:
        out = det.score_learn(*rows)
        return {"raw": out.raw, "lower": out.lower, "upper": out.upper}

    def restored(self, det: Any) -> list[Any]:
        return [*super().restored(det), det.snapshot()]

    def check_sane(self, out: Out, rows: Rows, bad: np.ndarray) -> None:
        raw = out["raw"]
        seen = raw[~np.isnan(raw)]
        assert np.all(np.isfinite(seen)) and np.all(seen >= 0)  # a surprise in [0, inf) or NaN
        assert np.all(np.isnan(raw[bad]) | (raw[bad] == 0))  # a skipped value: no surprise
        for c in ("lower", "upper"):
            assert not np.any(np.isinf(out[c])), c


class EnsembleSubject(Subject):
    """The default ensemble on interleaved slots."""

    settle = DEFAULT_REFRACTORY

    def __init__(self, n: int = 700, slots: tuple[int, ...] = (2, 0, 5)) -> None:
        super().__init__("ensemble")
        self.n = n
        self.slots = slots

    def new(self) -> Any:
        return default_ensemble()

    def rows(self) -> Rows:
        return _slot_rows(self.n, self.slots)

    def feed(self, det: Any, rows: Rows) -> Out:
        out = det.score_learn(*rows, threshold=0.99)
        return {"scores": out.scores, "lower": out.lower, "upper": out.upper, "votes": out.votes}

    def check_sane(self, out: Out, rows: Rows, bad: np.ndarray) -> None:
        _check_final(out["scores"], bad)
        assert np.all(out["votes"][bad] == 0)
        for c in ("lower", "upper"):
            assert not np.any(np.isinf(out[c])), c


class KeyedSubject(Subject):
    """``KeyedDetector``: anomaly rows and drift alerts (not one output per event), so what a
    prefix of the input can know is every row of an event (or closed bucket) up to its end."""

    settle = None

    def __init__(self, config: DetectorConfig, rows: Callable[[], Rows]) -> None:
        super().__init__(f"keyed:{config.detector}")
        self.config = config
        self.make_rows = rows
        self.bucket_ms = 1000 if config.detector == "rates" else 0

    def new(self) -> Any:
        return KeyedDetector(self.config)

    def rows(self) -> Rows:
        return self.make_rows()

    def feed(self, det: Any, rows: Rows) -> Out:
        return _flat(det.update(*rows, now_ms=NOW))

    def finish(self, det: Any) -> Out | None:
        return _flat(det.flush(now_ms=NOW))

    def upto(self, full: Out, rows: Rows, k: int) -> Out:
        last = int(rows[1][k])
        if self.bucket_ms:  # the buckets the watermark ts[k] has closed (close_lag 0)
            last = last // self.bucket_ms * self.bucket_ms
        a = full["anomaly.event_time"] <= last
        d = full["drift.event_time"] <= last
        return {c: x[a if c.startswith("anomaly.") else d] for c, x in full.items()}

    def restored(self, det: Any) -> list[Any]:
        return [*super().restored(det), KeyedDetector.restore(self.config, det.snapshot())]

    def with_values(self, rows: Rows, bad: np.ndarray, kinds: np.ndarray) -> Rows:
        """Numeric metric: the ``kinds``; bool metric (0, 1 or NaN only): NaN on other rows."""
        keys, ts, v = rows
        v = v.copy()
        v[bad, 0] = kinds
        v[np.roll(bad, 3), 1] = np.nan
        return keys, ts, v

    def check_sane(self, out: Out, rows: Rows, bad: np.ndarray) -> None:
        score = out["anomaly.score"]
        assert np.all(np.isfinite(score) & (score >= 0) & (score <= 1))
        assert np.all(np.isfinite(out["anomaly.value"]))
        if not self.bucket_ms:  # a per-event row is never about a skipped value
            _, ts, v = rows
            at = np.searchsorted(ts, out["anomaly.event_time"])
            col = np.array([self.config.metrics.index(m) for m in out["anomaly.metric"]], int)
            assert np.all(np.isfinite(v[at, col]))


def _flat(out: DetectOutput) -> Out:
    return {
        **{f"anomaly.{c}": out.anomalies[c] for c in ANOMALY_COLUMNS},
        **{f"drift.{c}": out.drift_alerts[c] for c in ALERT_COLUMNS},
    }


def _check_final(scores: np.ndarray, bad: np.ndarray) -> None:
    assert np.all(np.isfinite(scores) & (scores >= 0) & (scores <= 1))
    assert np.all(scores[bad] == 0)  # a skipped value scores 0


def _default_member(i: int) -> Callable[[], SlotDetector]:
    return lambda: build_default_members()[i]


# every SlotDetector class of the package in its default configuration, plus the
# configurations of the default ensemble's members (test_every_slot_detector_class_is_listed)
MEMBERS: dict[str, Callable[[], SlotDetector]] = {
    "MedianMad": MedianMad,
    "SeasonalNaive": SeasonalNaive,
    "ContextKnn": ContextKnn,
    "RangeNovelty": RangeNovelty,
    "HalfSpaceTreesDetector": HalfSpaceTreesDetector,
    "RiverMember:HalfSpaceTrees": lambda: RiverMember(HST, {}),
    "RiverMember:GaussianScorer": lambda: RiverMember("river:anomaly.GaussianScorer", {}),
    **{f"default:{m.name}": _default_member(i) for i, m in enumerate(build_default_members())},
}
_PER_EVENT_PYTHON = (HalfSpaceTreesDetector, RiverMember)  # slow: smaller inputs

METRICS = ("latency_ms", "error")
BOOLS = (False, True)
RATES_PARAMS = (("alert", (("error", "rise 0.1"), ("latency_ms", "change 50%"))),)


def _member_subject(name: str, factory: Callable[[], SlotDetector]) -> MemberSubject:
    if isinstance(factory(), _PER_EVENT_PYTHON):
        return MemberSubject(name, factory, n=450, slots=(3, 0))
    return MemberSubject(name, factory, n=700, slots=(2, 0, 5))


SUBJECTS: list[Subject] = [
    *(SeriesSubject(name) for name in sorted(DETECTORS)),
    *(_member_subject(name, f) for name, f in MEMBERS.items()),
    EnsembleSubject(),
    KeyedSubject(
        DetectorConfig(METRICS, BOOLS, "ensemble", threshold=0.9, cooldown_ms=3 * HOUR),
        lambda: _event_rows(700, 3),
    ),
    KeyedSubject(
        DetectorConfig(METRICS, BOOLS, "rates", RATES_PARAMS, threshold=0.9, cooldown_ms=3000),
        _bucket_rows,
    ),
    KeyedSubject(
        DetectorConfig(METRICS, BOOLS, HST, threshold=0.9, cooldown_ms=3 * HOUR),
        lambda: _event_rows(600, 2),
    ),
]
each_subject = pytest.mark.parametrize("subject", SUBJECTS, ids=[s.name for s in SUBJECTS])


# -- helpers ---------------------------------------------------------------------------------
def _take(rows: Rows, a: int, b: int) -> Rows:
    return tuple(x[a:b] for x in rows)


def _take_rows(rows: Rows, mask: np.ndarray) -> Rows:
    return tuple(x[mask] for x in rows)


def _concat(outs: list[Out]) -> Out:
    return {c: np.concatenate([o[c] for o in outs]) for c in outs[0]}


def _run(subject: Subject, det: Any, rows: Rows, cuts: list[int] | None = None) -> Out:
    """Feed ``rows`` cut before each index of ``cuts`` (views of ``rows``), then finish."""
    bounds = [0, *(cuts or []), len(rows[0])]
    outs = [subject.feed(det, _take(rows, a, b)) for a, b in pairwise(bounds)]
    end = subject.finish(det)
    return _concat(outs if end is None else [*outs, end])


def _same(a: Out, b: Out) -> None:
    assert a.keys() == b.keys()
    for c in a:
        if a[c].dtype == object:
            assert a[c].shape == b[c].shape and a[c].tolist() == b[c].tolist(), c
        else:
            np.testing.assert_array_equal(a[c], b[c], err_msg=c, strict=True)


def _random_cuts(n: int, seed: int) -> list[int]:
    """One row at a time through the first warm-up, then random sizes (some empty)."""
    rng = np.random.default_rng(seed)
    cuts = list(range(1, 40))
    while cuts[-1] < n:
        cuts.append(min(n, cuts[-1] + int(rng.integers(0, n // 6))))
    return cuts


def _informative(subject: Subject, out: Out) -> None:
    """The outputs compared are not vacuous (some opinion, some rows)."""
    if isinstance(subject, KeyedSubject):
        assert len(out["anomaly.key"]) > 0
    else:
        first = next(iter(out.values()))
        assert np.any(np.nan_to_num(first) > 0)


def _subclasses(cls: type) -> set[type]:
    direct: list[type] = cls.__subclasses__()
    return set(direct).union(*(_subclasses(sub) for sub in direct))


# -- the contracts ---------------------------------------------------------------------------
def test_every_slot_detector_class_is_listed() -> None:
    """A new SlotDetector of the package must join MEMBERS (and so every contract below)."""
    prefix = anomaly_package.__name__ + "."
    for mod in pkgutil.iter_modules(anomaly_package.__path__):
        importlib.import_module(prefix + mod.name)
    found = {
        cls
        for cls in _subclasses(SlotDetector)
        if cls.__module__.startswith(prefix) and not inspect.isabstract(cls)
    }
    listed = {type(factory()) for factory in MEMBERS.values()}
    assert found - listed == set()
    assert len(found) >= 6


@each_subject
def test_no_look_ahead(subject: Subject) -> None:
    """What a detector says about rows 0..k does not depend on rows after k."""
    rows = subject.rows()
    n = len(rows[0])
    full = subject.feed(subject.new(), rows)
    _informative(subject, full)
    for k in sorted({0, 1, 7, 60, n // 5, n // 2 + 1, n - 2}):
        det = subject.new()
        part = subject.feed(det, _take(rows, 0, k + 1))
        _same(part, subject.upto(full, rows, k))


@each_subject
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_cuts_do_not_change_outputs(subject: Subject, seed: int) -> None:
    rows = subject.rows()
    whole = _run(subject, subject.new(), rows)
    cut = _run(subject, subject.new(), rows, _random_cuts(len(rows[0]), seed))
    _same(cut, whole)


@each_subject
def test_restored_copies_continue_identically(subject: Subject) -> None:
    """Pickled (and snapshot) copies taken mid-stream, inside the warm-up and after it, continue
    exactly like the original; the original runs first, so shared state would show."""
    rows = subject.rows()
    n = len(rows[0])
    whole = _run(subject, subject.new(), rows)
    for split in (30, n // 2):
        det = subject.new()
        head = subject.feed(det, _take(rows, 0, split))
        copies = subject.restored(det)
        assert len(copies) >= 1
        tail = _run(subject, det, _take(rows, split, n))
        _same(_concat([head, tail]), whole)
        for copy in copies:
            _same(_run(subject, copy, _take(rows, split, n)), tail)


@each_subject
def test_fresh_instances_agree(subject: Subject) -> None:
    """Two fresh instances fed the same batches, alternately, give identical outputs (no
    unseeded randomness, no state shared between instances)."""
    rows = subject.rows()
    a, b = subject.new(), subject.new()
    bounds = [0, *_random_cuts(len(rows[0]), 2), len(rows[0])]
    for lo, hi in pairwise(bounds):
        batch = _take(rows, lo, hi)
        _same(subject.feed(a, batch), subject.feed(b, batch))
    end_a, end_b = subject.finish(a), subject.finish(b)
    if end_a is not None and end_b is not None:
        _same(end_a, end_b)


@each_subject
def test_inputs_are_not_mutated(subject: Subject) -> None:
    """The caller's arrays (fed as views, in batches) are unchanged afterwards, with and
    without values to skip (replacing them in place would be a tempting shortcut)."""
    clean = subject.rows()
    n = len(clean[0])
    bad = np.zeros(n, bool)
    bad[[3, n // 3, n // 2]] = True
    for rows in (clean, subject.with_values(clean, bad, np.array([np.nan, np.inf, -np.inf]))):
        before = [x.copy() for x in rows]
        _run(subject, subject.new(), rows, _random_cuts(n, 3))
        for x, y in zip(rows, before, strict=True):
            if x.dtype == object:
                assert x.tolist() == y.tolist()
            else:
                np.testing.assert_array_equal(x, y, strict=True)


@each_subject
def test_non_finite_values_are_skipped_without_poisoning(subject: Subject) -> None:
    """NaN, +inf and -inf (at a series' first events, in the warm-up, in a run, later): no
    exception; +-inf is exactly as if the value were missing (NaN); outputs stay in range; and
    once a series has settled after its last skipped value (the ensemble's refractory stage
    counts events), its scores are those of the same input without the skipped rows."""
    rows = subject.rows()
    n = len(rows[0])
    at = sorted({0, 1, 2, 5, 11, n // 4, n // 4 + 1, n // 4 + 2, n // 2, 3 * n // 4, n - 5})
    bad = np.zeros(n, bool)
    bad[at] = True
    kinds = np.resize(np.array([np.inf, -np.inf, np.nan]), len(at))
    infs = subject.with_values(rows, bad, kinds)
    nans = subject.with_values(rows, bad, np.full(len(at), np.nan))
    cuts = _random_cuts(n, 4)
    out = _run(subject, subject.new(), infs, cuts)
    _same(out, _run(subject, subject.new(), nans))
    subject.check_sane(out, infs, bad)
    _informative(subject, out)
    if subject.settle is None:
        return
    clean = _run(subject, subject.new(), _take_rows(rows, ~bad))
    series = subject.series_of(rows)
    settled = np.ones(n, bool)
    for s in np.unique(series):
        idx = np.flatnonzero(series == s)
        pos = np.arange(len(idx))
        last_bad = np.maximum.accumulate(np.where(bad[idx], pos, -(10**9)))
        settled[idx] = pos - last_bad > subject.settle
    assert settled[~bad].sum() > n // 2
    keep = settled[~bad]
    for c, x in out.items():
        np.testing.assert_array_equal(x[~bad][keep], clean[c][keep], err_msg=c, strict=True)


@pytest.mark.parametrize("detector", ["ensemble", "rates"])
def test_keyed_rejects_infinity_in_a_bool_metric_and_learns_nothing(detector: str) -> None:
    """A bool metric is 0, 1 or NaN: +-inf there is an error, and the rejected batch leaves no
    trace in what the detector does next."""
    subject = next(s for s in SUBJECTS if s.name == f"keyed:{detector}")
    rows = subject.rows()
    keys, ts, v = _take(rows, 0, 200)
    v = v.copy()
    v[150, 1] = np.inf
    det = subject.new()
    with pytest.raises(ValueError, match="error is a bool metric"):
        subject.feed(det, (keys, ts, v))
    _same(_run(subject, det, rows), _run(subject, subject.new(), rows))
