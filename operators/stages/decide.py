"""`DecideStage`: a ``[[decide]]`` declaration: one arm per event, learned from delayed outcomes.

Per batch of decision events: the context is featurised (``Featurizer``: the declared
categorical and numeric fields, the event key's window features, every arm's current
features), the policy chooses among the event's eligible arms (propensities over those arms,
the exploration floor among them) and the decision waits in the reward join. Per batch of
outcomes: the reward expression is evaluated on whole columns, outcomes join their decision
by id within the TTL (event time), the policy learns, and the learned rewards are watched for
drops (overall and per arm). A decision whose outcome does not come in time is learned with
the default reward and marked ``timed_out``. An outcome that cannot be learned from (unknown
or expired decision, duplicate, a non-finite reward, an arm that disagrees with the decision)
is kept in ``unmatched_outcomes`` with its reason.

An event none of whose eligible arms is an arm of the stage gets no decision: it is reported
back as a dead letter with that reason (``DecideOutput.rejected``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np

from eddy.operators.bandits import POLICIES, FeatureSpec, Featurizer, RewardJoin
from eddy.operators.bandits.base import LinearPolicy
from eddy.operators.drift import DriftConfig, DriftMonitor
from eddy.operators.expressions import Expression
from eddy.operators.stages.base import stage_alerts
from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.spec import DecideSpec, StreamSpec
from eddy.schemas.spec_load import as_mapping

__all__ = ["DecideOutput", "DecideStage"]

_MAX_TS = 4_102_444_800_000


@dataclass
class DecideOutput:
    """Rows for the result tables (column dicts; empty when none) and counters."""

    decisions: dict[str, Any] = field(default_factory=dict)
    rewards: dict[str, Any] = field(default_factory=dict)
    unmatched: dict[str, Any] = field(default_factory=dict)
    drift_alerts: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (id, ts, reason)
    reward_sum: float = 0.0
    stage: str = ""
    stream: str = ""


class DecideStage:
    """See the module docstring. ``context_columns`` names what :meth:`decide` must be given
    besides the event: ``features`` (n, F) per-event or looked-up window features in the
    order of ``spec.context.features`` (expanded), ``arm_features`` (n_arms, G)."""

    def __init__(
        self,
        spec: DecideSpec,
        stream: StreamSpec,
        outcomes: StreamSpec,
        feature_columns: tuple[str, ...],
        arm_feature_columns: tuple[str, ...],
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self._stream = stream
        self._arms = np.asarray(spec.arms, dtype=object)
        self._arm_index = {a: i for i, a in enumerate(spec.arms)}
        types = {f.name: f.type for f in outcomes.fields}
        self._reward = Expression.parse(spec.reward.value, types)
        self._feature_columns = feature_columns
        self._arm_names = tuple(f"{a}.{c}" for a in spec.arms for c in arm_feature_columns)
        ctx = spec.context
        self._featurizer = Featurizer(
            FeatureSpec(
                numeric=(*ctx.numeric, *feature_columns, *self._arm_names),
                categorical=ctx.categorical,
                hashed=True,
            )
        )
        d = self._featurizer.n_features
        self._policy = POLICIES[spec.policy](
            len(spec.arms), d, seed=seed, **as_mapping(spec.params)
        )
        self._versions = (self._policy.version, self._featurizer.version)
        self._join = RewardJoin(spec.reward.ttl_ms, spec.reward.default, d)
        self._drift = DriftMonitor(DriftConfig(direction="down"))
        self._reward_fields = self._reward.fields

    @property
    def n_features(self) -> int:
        return self._featurizer.n_features

    @property
    def pending(self) -> int:
        return int(self._join.pending)

    @property
    def n_learned(self) -> int:
        return int(self._policy.n_learned)

    def own_stats(self) -> dict[str, np.ndarray]:
        """What this stage's policy learned itself (see ``LinearPolicy.own_stats``)."""
        return self._shared_policy().own_stats()

    def set_peer_stats(self, peer: int, stats: dict[str, np.ndarray]) -> None:
        """Take ``stats`` as everything shard ``peer`` of this stage has learned."""
        self._shared_policy().set_peer_stats(peer, stats)

    def _shared_policy(self) -> LinearPolicy:
        """Shards share per-arm ridge sums: only a linear policy has them."""
        if not isinstance(self._policy, LinearPolicy):
            raise TypeError(f"{self.spec.policy}: shards share the sums of linear policies only")
        return self._policy

    # -- decisions -----------------------------------------------------------------------
    def decide(
        self,
        batch: EventBatch,
        features: np.ndarray,
        arm_features: np.ndarray,
        now_ns: int,
    ) -> DecideOutput:
        out = DecideOutput(stage=self.spec.name, stream=batch.stream)
        eligible = self._eligible(batch)
        if eligible is not None:
            none = np.asarray(~eligible.any(axis=1))
            if none.any():
                field_name = str(self.spec.eligible)
                for i in np.flatnonzero(none).tolist():
                    listed = list(batch.columns[field_name][i] or ())
                    out.rejected.append(
                        (
                            str(batch.ids[i]),
                            int(batch.ts[i]),
                            f"field {field_name!r}: none of {listed!r:.200} is an arm of "
                            f"decide {self.spec.name!r} ({', '.join(self.spec.arms)})",
                        )
                    )
                keep = ~none
                batch, features, eligible = batch.take(keep), features[keep], eligible[keep]
        n = len(batch)
        if n == 0:
            return out
        cols: dict[str, Any] = {name: batch.columns[name] for name in self.spec.context.numeric}
        for name, _ in self.spec.context.categorical:
            cols[name] = batch.columns[name]
        for j, name in enumerate(self._feature_columns):
            cols[name] = features[:, j]
        flat = arm_features.reshape(-1)
        for j, name in enumerate(self._arm_names):
            cols[name] = flat[j]  # the same for every row: a scalar fills the column
        X = self._featurizer.transform(cols)
        arms, props = self._policy.choose(X, eligible)
        accepted = self._join.add_decisions(batch.ids, batch.ts, X, arms, props)
        dec: dict[str, Any] = {
            "decision_id": batch.ids,
            "decide": constant_column(self.spec.name, n),
            "event_time": batch.ts,
            "arm": self._arms[arms],
            "arm_index": arms.astype(np.int32),
            "propensity": props,
            "policy": constant_column(self._policy.name, n),
            "policy_version": constant_column(self._versions[0], n),
            "feature_version": constant_column(self._versions[1], n),
            "context": X.astype(np.float32),
            "eligible_arms": (
                [list(v) for v in batch.columns[self.spec.eligible].tolist()]
                if self.spec.eligible is not None
                else [None] * n
            ),
            "decided_at": np.full(n, now_ns // 1_000_000, dtype=np.int64),
            "latency_ms": (now_ns - batch.ingest_ns) / 1e6,
        }
        for name in self.spec.logged_fields:
            col = batch.columns[name]
            dec[name] = (
                [list(v) if v is not None else None for v in col]
                if (self._stream.field(name).type == "list[string]")
                else col
            )
        if not accepted.all():  # a repeated id is decided once: the first time
            dec = {k: _take(v, accepted) for k, v in dec.items()}
        out.decisions = dec
        return out

    def _eligible(self, batch: EventBatch) -> np.ndarray | None:
        if self.spec.eligible is None:
            return None
        lists = batch.columns[self.spec.eligible].tolist()
        lens = np.fromiter((len(v) if v else 0 for v in lists), np.int64, len(lists))
        flat = list(chain.from_iterable(v for v in lists if v))
        idx = np.fromiter(map(self._arm_index.get, flat, repeat(-1)), np.int64, len(flat))
        rows = np.repeat(np.arange(len(lists)), lens)
        mask = np.zeros((len(lists), len(self._arms)), dtype=bool)
        ok = idx >= 0
        mask[rows[ok], idx[ok]] = True
        return mask

    # -- outcomes ------------------------------------------------------------------------
    def learn(self, batch: EventBatch, now_ms: int) -> DecideOutput:
        out = DecideOutput()
        if not len(batch):
            return out
        r = self.spec.reward
        rewards = self._reward.evaluate(batch.columns)
        join_ids = _join_ids(batch.columns[r.join])
        bad_reward = ~np.isfinite(rewards)
        wrong_arm = np.zeros(len(batch), bool)
        if r.arm is not None:  # the arm each outcome's decision chose, while it waits
            decided = self._join.pending_arms(join_ids)
            named = batch.columns[r.arm]
            known = decided >= 0
            wrong_arm[known] = named[known] != self._arms[decided[known]]
        usable = ~(bad_reward | wrong_arm)
        idx_use = np.flatnonzero(usable)
        m = self._join.match(join_ids[usable], batch.ts[usable], rewards[usable])
        if len(m.index):
            self._policy.learn(m.X, m.arms, m.rewards)
            i = idx_use[m.index]
            rows: dict[str, Any] = {
                "decision_id": m.decision_ids,
                "decide": constant_column(self.spec.name, len(i)),
                "event_time": batch.ts[i],
                "arm": self._arms[m.arms],
                "reward": m.rewards,
                "timed_out": np.zeros(len(i), np.bool_),
            }
            for f in self._reward_fields:
                rows[f] = np.asarray(batch.columns[f][i], dtype=np.float64)
            out.rewards = rows
            out.reward_sum = float(m.rewards.sum())
            if self.spec.drift:
                names = self._arms[m.arms]
                for stream, keys in (("reward", "all"), ("reward_by_arm", names)):
                    alerts = self._drift.update(stream, keys, batch.ts[i], m.rewards, now_ms)
                    if len(alerts["alert_id"]):
                        out.drift_alerts.append(stage_alerts(self.spec.name, alerts))
        reasons: list[tuple[np.ndarray, np.ndarray]] = []
        if len(m.unmatched_index):
            reasons.append((idx_use[m.unmatched_index], np.asarray(m.unmatched_reason, object)))
        if bad_reward.any():
            b = np.flatnonzero(bad_reward)
            why = f"reward {self._reward.text!r} is not a finite number for this outcome"
            reasons.append((b, constant_column(why, len(b))))
        if wrong_arm.any():
            b = np.flatnonzero(wrong_arm & ~bad_reward)
            why = f"field {r.arm!r} names another arm than the decision's"
            reasons.append((b, constant_column(why, len(b))))
        if reasons:
            rows_u = np.concatenate([a for a, _ in reasons])
            order = np.argsort(rows_u, kind="stable")
            rows_u = rows_u[order]
            reason = np.concatenate([b for _, b in reasons])[order]
            out.unmatched = {
                "outcome_id": np.array(
                    [f"{self.spec.name}:{x}" for x in batch.ids[rows_u].tolist()], dtype=object
                ),
                "decide": constant_column(self.spec.name, len(rows_u)),
                "decision_id": join_ids[rows_u],
                "stream": constant_column(batch.stream, len(rows_u)),
                "event_time": batch.ts[rows_u],
                "reason": reason,
            }
        return out

    def expire(self, now_event_ms: int) -> DecideOutput:
        """Time out the decisions whose TTL passed: learned with the default reward."""
        out = DecideOutput()
        e = self._join.expire(now_event_ms)
        n = len(e.decision_ids)
        if n == 0:
            return out
        self._policy.learn(e.X, e.arms, e.rewards)
        rows: dict[str, Any] = {
            "decision_id": e.decision_ids,
            "decide": constant_column(self.spec.name, n),
            "event_time": np.minimum(e.ts + self.spec.reward.ttl_ms, _MAX_TS),
            "arm": self._arms[e.arms],
            "reward": e.rewards,
            "timed_out": np.ones(n, np.bool_),
        }
        for f in self._reward_fields:
            rows[f] = np.full(n, np.nan)
        out.rewards = rows
        out.reward_sum = float(e.rewards.sum())
        return out

    # -- state ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        state = {
            "policy": self._policy.snapshot(),
            "join": self._join.snapshot(),
            "featurizer": self._featurizer.snapshot(),
            "drift": self._drift,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, snap: bytes) -> None:
        state = pickle.loads(snap)
        self._policy = type(self._policy).restore(state["policy"])
        self._join = RewardJoin.restore(state["join"])
        self._featurizer = Featurizer.restore(state["featurizer"])
        self._drift = state["drift"]


def _join_ids(col: np.ndarray) -> np.ndarray:
    """Decision ids as the decision stream keeps them (an int id as its decimal string)."""
    if col.dtype == object:
        return col
    out = np.empty(len(col), dtype=object)
    finite = np.isfinite(col)
    out[:] = ""
    out[finite] = col[finite].astype(np.int64).astype(str)
    return out


def _take(v: Any, mask: np.ndarray) -> Any:
    if isinstance(v, np.ndarray):
        return v[mask]
    return [x for x, k in zip(v, mask.tolist(), strict=True) if k]
