"""The reference pipeline's logic, pure: ad requests in, decisions, rewards and anomalies out.

One :class:`AdServingEngine` owns the state of one shard: partner-health windows over outcomes,
trailing request features, the anomaly detector bank, the bandit policy and the delayed-reward
join. ``process(batch)`` takes a decoded micro-batch (requests or outcomes), ``process_many``
several that arrived together, and both return :class:`Results`: columns per output table
(names from ``schemas.tables``), plus counters.

Event time drives everything (windows, reward TTL, anomaly cooldown): the same input in the
same order, cut the same way, gives the same decisions and rows, and windows, features and late
events do not depend on the cuts at all (what a decision saw of the model does).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from eddy.operators.anomaly.health import (
    HEALTH_DETECTORS,
    HEALTH_METRICS,
    HealthConfig,
    HealthOutput,
    HealthScorer,
)
from eddy.operators.bandits import POLICIES, FeatureSpec, Featurizer, RewardJoin
from eddy.operators.drift import DriftConfig, DriftMonitor
from eddy.operators.windows import EventTimeFeatures, FeatureBatch, FeatureConfig
from eddy.operators.windows.config import duration_label
from eddy.schemas.events import OutcomeBatch, RequestBatch, concat, take
from eddy.schemas.results import Results
from eddy.schemas.tables import TABLES

__all__ = ["HEALTH_METRICS", "AdServingEngine", "EngineConfig"]

_OUTCOME_METRICS = ("filled", "revenue", "latency_ms", "error")
# per partner, from the second trailing window, appended to the bandit's context
_CONTEXT_HEALTH = (("filled", "mean"), ("error", "mean"), ("latency_ms", "mean"))


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the reference pipeline's logic (the ``[pipeline]``/``[features]``/... TOML)."""

    arms: tuple[str, ...]
    trailing_ms: tuple[int, ...] = (10_000, 60_000, 300_000)
    tumbling_ms: tuple[int, ...] = (10_000,)
    sliding: tuple[tuple[int, int], ...] = ((60_000, 10_000),)
    session_gap_ms: tuple[int, ...] = ()
    allowed_lateness_ms: int = 2_000
    late_policy: str = "drop"
    policy: str = "linucb"
    policy_params: tuple[tuple[str, Any], ...] = (("alpha", 0.5), ("floor", 0.02))
    reward_ttl_ms: int = 30_000
    default_reward: float = 0.0
    latency_penalty_per_s: float = 1.0
    anomaly_threshold: float = 0.99
    anomaly_cooldown_ms: int = 30_000
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms: expected at least two distinct names, got {self.arms!r}")
        if len(self.trailing_ms) < 2:
            raise ValueError("trailing: expected at least two windows (health uses the first two)")
        if self.policy not in POLICIES:
            raise ValueError(f"policy: expected one of {sorted(POLICIES)}, got {self.policy!r}")
        if self.late_policy not in ("drop", "include"):
            raise ValueError(f"late_policy: expected 'drop' or 'include', got {self.late_policy!r}")
        if not 0.0 < self.anomaly_threshold < 1.0:
            raise ValueError(f"anomaly threshold: expected (0, 1), got {self.anomaly_threshold}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AdServingEngine:
    """See the module docstring. ``snapshot()`` / ``AdServingEngine.restore(cfg, snap)``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = c = config
        self._health = EventTimeFeatures(
            FeatureConfig(
                metrics=_OUTCOME_METRICS,
                # exact trailing p95 costs O(window) per event: latency is watched through its mean
                aggregations=("count", "mean"),
                tumbling_ms=c.tumbling_ms,
                sliding=c.sliding,
                session_gap_ms=c.session_gap_ms,
                trailing_ms=c.trailing_ms,
                allowed_lateness_ms=c.allowed_lateness_ms,
                late_policy=c.late_policy,
            )
        )
        self._requests = EventTimeFeatures(
            FeatureConfig(
                metrics=("floor_price",),
                aggregations=("count", "mean"),
                trailing_ms=c.trailing_ms,
                allowed_lateness_ms=c.allowed_lateness_ms,
                late_policy=c.late_policy,
            )
        )
        names = self._health.feature_names
        w1 = duration_label(c.trailing_ms[1])
        col = {n: i for i, n in enumerate(names)}
        self._ctx_cols = np.array([col[f"{m}_{a}_{w1}"] for m, a in _CONTEXT_HEALTH])
        self._req_cols = list(self._requests.feature_names)
        self._health_names = [f"{arm}_{m}_{a}_{w1}" for arm in c.arms for m, a in _CONTEXT_HEALTH]
        self._featurizer = Featurizer(
            FeatureSpec(
                numeric=("floor_price", *self._req_cols, *self._health_names),
                categorical=(("placement", 8), ("device", 4), ("geo", 16)),
                hashed=True,
            )
        )
        d = self._featurizer.n_features
        self._policy = POLICIES[c.policy](len(c.arms), d, seed=c.seed, **dict(c.policy_params))
        self._versions = (self._policy.version, self._featurizer.version)  # hashes: once
        self._join = RewardJoin(c.reward_ttl_ms, c.default_reward, d)
        # partner health (HEALTH_METRICS): count-aware tests on per-second buckets of outcomes
        self._scorer = HealthScorer(HealthConfig(threshold=c.anomaly_threshold))
        self._drift = DriftMonitor(DriftConfig(direction="down"))
        # the health detectors' inputs (per partner, per closed 1 s bucket): a sustained shift
        # either way, slower than what the detectors alert on
        self._feature_drift = DriftMonitor(_FEATURE_DRIFT)
        self._arm_of = {a: i for i, a in enumerate(c.arms)}
        self._key_of: dict[str, int] = dict(self._arm_of)  # partners seen in outcomes
        self._health_ctx = np.full((len(c.arms), len(_CONTEXT_HEALTH)), np.nan)
        self._last_alert: dict[tuple[int, int], int] = {}  # last record per (key, metric)
        self._last_hit: dict[tuple[int, int], int] = {}  # last alerting bucket per (key, metric)
        self._max_ts = np.iinfo(np.int64).min
        self._req_max_by_part: dict[int, int] = {}
        self._held: list[tuple[int, OutcomeBatch, int]] = []  # (partition, batch, min ts)
        self._held_low = _NO_TS  # the smallest min ts in _held (a check per call, not a scan)

    # -- public -----------------------------------------------------------------------
    @property
    def policy(self) -> Any:
        return self._policy

    @property
    def pending_decisions(self) -> int:
        return int(self._join.pending)

    def process(self, batch: RequestBatch | OutcomeBatch, partition: int = 0) -> Results:
        """``partition`` names the input partition the batch came from: the watermark is the
        minimum over partitions, so one fast partition cannot make another's events late."""
        return self.process_many([(partition, batch)])

    def process_many(
        self, items: Sequence[tuple[int, RequestBatch | OutcomeBatch]], step_rows: int = 4_000
    ) -> Results:
        """Several ``(partition, batch)`` items in arrival order, in as few steps as possible:
        a step takes items until its requests would pass ``step_rows``. In a step the held
        outcomes the requests decided so far have reached are learned, then its requests are
        decided together, then the outcomes only they reach are learned. A step has fixed
        costs (model refresh, feature bookkeeping): at live rates many small batches arrive
        together and paying them once per step matters, while under a backlog of full batches
        (``step_rows`` = the sources' batch size) each is still decided on its own, learning
        in between."""
        out = Results()
        items = [(p, b) for p, b in items if len(b)]
        for step in _steps(items, step_rows):
            requests = [(p, b) for p, b in step if isinstance(b, RequestBatch)]
            for partition, batch in step:
                self._max_ts = max(self._max_ts, int(batch.ts.max()))
                if isinstance(batch, OutcomeBatch):
                    low = int(batch.ts.min())
                    self._held.append((partition, batch, low))
                    self._held_low = min(self._held_low, low)
            # what the requests decided so far have reached is learned first ...
            self._release(self._requests_reached(), out)
            if requests:
                for partition, batch in requests:
                    top = self._req_max_by_part.get(partition, np.iinfo(np.int64).min)
                    self._req_max_by_part[partition] = max(top, int(batch.ts.max()))
                self._decide(concat([b for _, b in requests]), out, _row_partitions(requests))
                # ... and what only this step's requests reach, after they are decided
                self._release(self._requests_reached(), out)
            self._expire(self._max_ts - self.config.allowed_lateness_ms, out)
        if not items:
            return out
        out.count("engine.events_in", sum(len(b) for _, b in items))
        out.count("engine.rows_out", sum(out.rows(t) for t in out.tables))
        watermark = self._max_ts - self.config.allowed_lateness_ms
        out.gauges["engine.watermark_ms"] = watermark
        # how far event time trails the wall clock (live input: the pipeline's delay)
        out.gauges["engine.event_time_lag_ms"] = _now_ms() - watermark
        out.gauges["bandit_updates"] = self._policy.n_learned
        out.gauges["pending_decisions"] = self._join.pending
        return out

    def _requests_reached(self) -> int:
        """Event time every request partition has reached (the slowest one's latest), or at
        least the fastest one's minus the reward TTL: an idle partition delays learning by a
        TTL at most, it never holds outcomes forever."""
        if not self._req_max_by_part:
            return np.iinfo(np.int64).min
        tops = self._req_max_by_part.values()
        return max(min(tops), max(tops) - self.config.reward_ttl_ms)

    def _release(self, until_ms: int, out: Results) -> None:
        """Learn from held outcomes whose event time the requests have reached.

        An outcome answers a decision made before it, so it waits until every request
        partition's event time passes its own: inputs read at different speeds (two files,
        several partitions) still join, and the order of learning depends on event time."""
        if not self._held or self._held_low > until_ms:
            return
        keep: list[tuple[int, OutcomeBatch, int]] = []
        ready: list[tuple[int, OutcomeBatch]] = []
        for partition, b, low in self._held:
            if low > until_ms:
                keep.append((partition, b, low))
                continue
            due = b.ts <= until_ms
            ready.append((partition, b if due.all() else take(b, due)))
            if not due.all():
                rest = take(b, ~due)
                keep.append((partition, rest, int(rest.ts.min())))
        self._held = keep
        self._held_low = min((low for _, _, low in keep), default=_NO_TS)
        # one learning step for all of them, rows in arrival order
        self._learn(concat([b for _, b in ready]), out, _row_partitions(ready))

    def finish(self) -> Results:
        """End of bounded input: close every window, time out every waiting decision."""
        out = Results()
        self._release(np.iinfo(np.int64).max, out)
        for feats in (self._health, self._requests):
            self._windows(feats.flush().windows, out)
        health = self._scorer.flush()
        self._detect(health, out)
        self._watch_features(health, out)
        self._expire(np.iinfo(np.int64).max, out)
        out.gauges["bandit_updates"] = self._policy.n_learned
        out.gauges["pending_decisions"] = self._join.pending
        return out

    def snapshot(self) -> bytes:
        state = {k: v for k, v in self.__dict__.items() if k != "config"}
        state["_health"] = self._health.snapshot()
        state["_requests"] = self._requests.snapshot()
        state["_policy"] = self._policy.snapshot()
        state["_join"] = self._join.snapshot()
        state["_featurizer"] = self._featurizer.snapshot()
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, config: EngineConfig, snap: bytes) -> AdServingEngine:
        eng = cls(config)
        state = pickle.loads(snap)
        state["_health"] = EventTimeFeatures.restore(eng._health.config, state["_health"])
        state["_requests"] = EventTimeFeatures.restore(eng._requests.config, state["_requests"])
        state["_policy"] = type(eng._policy).restore(state["_policy"])
        state["_join"] = RewardJoin.restore(state["_join"])
        state["_featurizer"] = Featurizer.restore(state["_featurizer"])
        eng.__dict__.update(state)
        # derived, and absent from snapshots taken before it existed
        eng._held_low = min((low for _, _, low in eng._held), default=_NO_TS)
        return eng

    # -- requests -> decisions -----------------------------------------------------------
    def _decide(self, rb: RequestBatch, out: Results, partition: int | np.ndarray) -> None:
        c = self.config
        res = self._requests.process(rb.placement, rb.ts, rb.floor_price[:, None], partition)
        self._late("requests", rb.id, rb.placement, rb.ts, res, out)
        cols: dict[str, Any] = {
            "floor_price": rb.floor_price,
            "placement": rb.placement,
            "device": rb.device,
            "geo": rb.geo,
        }
        for i, name in enumerate(self._req_cols):
            cols[name] = res.features[:, i]
        health = self._health_ctx.reshape(-1)
        for i, name in enumerate(self._health_names):
            cols[name] = health[i]  # the same for every row: a scalar fills the column
        X = self._featurizer.transform(cols)
        arms, props = self._policy.choose(X)
        self._join.add_decisions(rb.id, rb.ts, X, arms, props)
        now_ns = time.time_ns()
        out.add(
            "decisions",
            {
                "decision_id": rb.id,
                "event_time": rb.ts,
                "placement": rb.placement,
                "device": rb.device,
                "geo": rb.geo,
                "floor_price": rb.floor_price,
                "arm": arms.astype(np.int32),
                "partner": np.asarray(c.arms, dtype=object)[arms],
                "propensity": props,
                "policy": np.full(len(rb), self._policy.name, dtype=object),
                "policy_version": np.full(len(rb), self._versions[0], dtype=object),
                "feature_version": np.full(len(rb), self._versions[1], dtype=object),
                "context": X.astype(np.float32),
                "decided_at": np.full(len(rb), now_ns // 1_000_000, dtype=np.int64),
                "latency_ms": (now_ns - rb.ingest_ns) / 1e6,
            },
        )
        out.count("requests", len(rb))
        out.count("decisions", len(rb))

    # -- outcomes -> rewards, health, anomalies -----------------------------------------
    def _learn(self, ob: OutcomeBatch, out: Results, partition: int | np.ndarray) -> None:
        c = self.config
        reward = ob.revenue - c.latency_penalty_per_s * ob.latency_ms / 1000.0
        m = self._join.match(ob.decision_id, ob.ts, reward)
        if len(m.index):
            self._policy.learn(m.X, m.arms, m.rewards)
            i = m.index
            out.add(
                "rewards",
                {
                    "decision_id": m.decision_ids,
                    "event_time": ob.ts[i],
                    "arm": m.arms.astype(np.int32),
                    "partner": np.asarray(c.arms, dtype=object)[m.arms],
                    "filled": ob.filled[i],
                    "revenue": ob.revenue[i],
                    "latency_ms": ob.latency_ms[i],
                    "error": ob.error[i],
                    "reward": m.rewards,
                    "timed_out": np.zeros(len(i), np.bool_),
                },
            )
            out.count("rewards", len(i))
            out.count("reward_sum", float(m.rewards.sum()))
            # learned rewards only (timed-out defaults would read as a drop), drops only:
            # overall, and per partner (names the partner whose truth changed)
            now = _now_ms()
            partners = np.asarray(c.arms, dtype=object)[m.arms]
            for stream, keys in (("reward", "all"), ("reward_by_partner", partners)):
                drift = self._drift.update(stream, keys, ob.ts[i], m.rewards, now)
                out.add("drift_alerts", drift)
                out.count("drift_alerts", len(drift["alert_id"]))
        if len(m.unmatched_index):
            u = m.unmatched_index
            out.add(
                "unmatched_outcomes",
                {
                    "outcome_id": ob.position[u],
                    "decision_id": ob.decision_id[u],
                    "event_time": ob.ts[u],
                    "partner": ob.partner[u],
                    "revenue": ob.revenue[u],
                    "reason": np.asarray(m.unmatched_reason, dtype=object),
                },
            )
            out.count("unmatched_outcomes", len(u))
        values = np.column_stack(
            [ob.filled.astype(np.float64), ob.revenue, ob.latency_ms, ob.error.astype(np.float64)]
        )
        res = self._health.process(ob.partner, ob.ts, values, partition)
        self._late("outcomes", ob.position, ob.partner, ob.ts, res, out)
        self._windows(res.windows, out)
        keys = self._keys(ob.partner)
        ok = ~res.late if c.late_policy == "drop" else np.ones(len(ob), bool)
        feats = res.features
        known = keys < len(c.arms)
        last = ok & known
        if last.any():  # latest health per partner for the bandit's context
            rows = np.flatnonzero(last)
            _, first_from_end = np.unique(keys[rows][::-1], return_index=True)
            pick = rows[::-1][first_from_end]
            self._health_ctx[keys[pick]] = feats[np.ix_(pick, self._ctx_cols)]
        health = self._scorer.update(
            keys[ok], ob.ts[ok], ob.filled[ok], ob.revenue[ok], ob.latency_ms[ok], ob.error[ok]
        )
        self._detect(health, out)
        self._watch_features(health, out)
        out.count("outcomes", len(ob))

    def _detect(self, health: HealthOutput, out: Results) -> None:
        """Anomaly rows for the closed health buckets that alerted.

        Alerting buckets of a (partner, metric) form an *episode* while no more than
        ``_EPISODE_GAP_MS`` of event time passes between them. An episode is recorded when it
        starts and, while it lasts, again at most once per cooldown; a new episode (a new
        incident, even one right after the last) is recorded at once."""
        hits = np.argwhere(health.is_anomaly)
        if len(hits) == 0:
            return
        names = {v: k for k, v in self._key_of.items()}
        cols: dict[str, list[Any]] = {k: [] for k in _ANOMALY_COLS}
        cooldown = self.config.anomaly_cooldown_ms
        now = _now_ms()
        for r, mi in hits.tolist():
            k, t = int(health.keys[r]), int(health.ts_ms[r])
            last_hit = self._last_hit.get((k, mi))
            self._last_hit[(k, mi)] = t
            ongoing = last_hit is not None and t - last_hit <= _EPISODE_GAP_MS
            last = self._last_alert.get((k, mi))
            if ongoing and last is not None and t - last < cooldown:
                continue
            self._last_alert[(k, mi)] = t
            cols["anomaly_id"].append(f"{names[k]}:{HEALTH_METRICS[mi]}:{t}")
            cols["key"].append(names[k])
            cols["metric"].append(HEALTH_METRICS[mi])
            cols["value"].append(float(health.values[r, mi]))
            cols["score"].append(float(health.scores[r, mi]))
            cols["threshold"].append(self.config.anomaly_threshold)
            cols["expected_low"].append(float(health.lower[r, mi]))
            cols["expected_high"].append(float(health.upper[r, mi]))
            cols["detectors"].append([HEALTH_DETECTORS[mi]])
            cols["event_time"].append(t)
            cols["detected_at"].append(now)
        if cols["anomaly_id"]:
            out.add("anomalies", cols)
            out.count("anomalies", len(cols["anomaly_id"]))

    def _watch_features(self, health: HealthOutput, out: Results) -> None:
        """Drift tests on each health metric of each partner (the detectors' input)."""
        if len(health) == 0:
            return
        partners = np.asarray(list(self._key_of), dtype=object)[health.keys]
        now = _now_ms()
        for mi, metric in enumerate(HEALTH_METRICS):
            # buckets the detectors flag are incidents, not a new regime: left out
            values = np.where(health.is_anomaly[:, mi], np.nan, health.values[:, mi])
            drift = self._feature_drift.update(
                f"feature.{metric}", partners, health.ts_ms, values, now
            )
            if len(drift["alert_id"]):
                out.add("drift_alerts", drift)
                out.count("drift_alerts", len(drift["alert_id"]))

    # -- shared ------------------------------------------------------------------------
    def _keys(self, partners: np.ndarray) -> np.ndarray:
        """Dense int key per partner name (new names get the next ints, in order)."""
        names = partners.tolist()
        keys = np.fromiter(map(self._key_of.get, names, repeat(-1)), np.int64, len(names))
        for i in np.flatnonzero(keys < 0).tolist():
            keys[i] = self._key_of.setdefault(names[i], len(self._key_of))
        return keys

    def _expire(self, now_ms: int, out: Results) -> None:
        e = self._join.expire(now_ms)
        n = len(e.decision_ids)
        if n == 0:
            return
        self._policy.learn(e.X, e.arms, e.rewards)
        out.add(
            "rewards",
            {
                "decision_id": e.decision_ids,
                "event_time": np.minimum(e.ts + self.config.reward_ttl_ms, _MAX_TS),
                "arm": e.arms.astype(np.int32),
                "partner": np.asarray(self.config.arms, dtype=object)[e.arms],
                "filled": np.zeros(n, np.bool_),
                "revenue": np.zeros(n),
                "latency_ms": np.full(n, np.nan),
                "error": np.zeros(n, np.bool_),
                "reward": e.rewards,
                "timed_out": np.ones(n, np.bool_),
            },
        )
        out.count("timed_out", n)
        out.count("reward_sum", float(e.rewards.sum()))

    def _late(
        self,
        stream: str,
        ids: np.ndarray,
        keys: np.ndarray,
        ts: np.ndarray,
        res: FeatureBatch,
        out: Results,
    ) -> None:
        """Late rows, each with the watermark it was judged against."""
        late = res.late
        if not late.any():
            return
        idx = np.flatnonzero(late)
        out.add(
            "late_events",
            {
                "late_event_id": np.array([f"{stream}:{i}" for i in ids[idx].tolist()], object),
                "stream": np.full(len(idx), stream, dtype=object),
                "key": keys[idx],
                "event_time": ts[idx],
                "watermark": res.row_watermark_ms[idx],
                "policy": np.full(len(idx), self.config.late_policy, dtype=object),
            },
        )
        out.count("late_events", len(idx))

    def _windows(self, windows: dict[str, Any], out: Results) -> None:
        if windows and len(windows.get("key", ())):
            out.add("window_aggregates", windows)
            out.count("window_aggregates", len(windows["key"]))


def _steps(items: list[tuple[int, Any]], step_rows: int) -> list[list[tuple[int, Any]]]:
    """Consecutive items, cut before a request batch that would take a step past
    ``step_rows`` requests (a step holds at least one item)."""
    steps: list[list[tuple[int, Any]]] = []
    rows = 0
    for partition, batch in items:
        is_request = isinstance(batch, RequestBatch)
        if not steps or (is_request and rows and rows + len(batch) > step_rows):
            steps.append([])
            rows = 0
        steps[-1].append((partition, batch))
        rows += len(batch) if is_request else 0
    return steps


def _row_partitions(items: Sequence[tuple[int, RequestBatch | OutcomeBatch]]) -> np.ndarray:
    """The input partition of every row of the items' batches, concatenated in order."""
    return np.concatenate([np.full(len(b), p, dtype=np.int64) for p, b in items])


_MAX_TS = 4_102_444_800_000
_NO_TS = 2**63 - 1
# One value per partner-second (no blocks), 30 s of warm-up. A bucket adds at most
# clip - slack = 2 to the evidence, so an alert needs >= 20 s of shift beyond 3 sd that the
# detectors did not flag (their incidents last seconds); min_std: rates are noisy at +-1 %.
_FEATURE_DRIFT = DriftConfig(
    block=1, warmup=30, half_life=30.0, threshold=40.0, slack=1.0, clip=3.0, min_std=0.01
)
_EPISODE_GAP_MS = 1_000  # consecutive alerting buckets form one episode (one record)
_ANOMALY_COLS = tuple(TABLES["anomalies"].column_names)
