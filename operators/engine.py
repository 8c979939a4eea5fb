"""`PipelineEngine`: every stage of a pipeline spec over decoded micro-batches, pure.

``process_many(items, now_ns)`` takes ``(partition, EventBatch)`` items in arrival order and
returns :class:`~eddy.schemas.results.Results`: columns per output table (names from
``schemas.tables``) plus counters. The wall clock is an argument (``decided_at``,
``detected_at``, latency); event time drives everything else, so the same input in the same
order, cut the same way, gives the same rows.

Order of work for a batch of one stream: a row whose id repeats an earlier event of the stream
(within the allowed lateness, or a decide stage's reward TTL on its decision stream) is a dead
letter and goes no further (:mod:`~eddy.operators.dedup`); late rows are flagged against the
stream's watermark (``late_events``; with ``late_policy = "drop"`` they stay out of windows and
detectors, they are still decided and joined); decide stages that learn from this stream join
its outcomes; features stages update; detect stages score then learn; decide stages on this
stream decide, reading the features just computed.

Outcomes wait for their decisions: a batch of a reward stream is held until every partition of
the decision streams has reached its event time (an outcome answers a decision made before
it), or until the fastest one is a reward TTL past it (an idle partition delays learning by a
TTL at most). A step takes the items that arrived together until its decision rows would pass
``step_rows``: at live rates many small batches are one step (its fixed costs paid once), while
a backlog of full batches is still decided batch by batch, learning in between.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import orjson

from eddy.operators.dedup import RecentIds, Repeats
from eddy.operators.stages.base import key_column
from eddy.operators.stages.decide import DecideOutput, DecideStage
from eddy.operators.stages.detect import DetectStage
from eddy.operators.stages.features import FeaturesStage
from eddy.operators.windows.watermark import Watermark
from eddy.schemas.batch import EventBatch
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec, StreamSpec

__all__ = ["PipelineEngine"]

_NO_TS = 2**63 - 1
_MIN_TS = -(2**63)
_FAR_PAST = -(2**62)  # nothing to time out yet (and far from int64's edge)


class PipelineEngine:
    """See the module docstring. ``snapshot()`` / ``restore(snap)`` are exact."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        lateness, policy = spec.allowed_lateness_ms, spec.late_policy
        self._clock = {s.name: Watermark(lateness) for s in spec.streams}
        self._features = {f.name: FeaturesStage(f, lateness, policy) for f in spec.features}
        self._detect = {
            d.name: DetectStage(d, spec.stream(d.stream), spec.seed) for d in spec.detect
        }
        self._decide: dict[str, DecideStage] = {}
        self._context: dict[
            str, tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]
        ] = {}
        for d in spec.decide:
            own, own_names = self._selection(d.context.features)
            arm, arm_names = self._selection(d.context.arm_features)
            self._context[d.name] = (own, arm)
            self._decide[d.name] = DecideStage(
                d,
                spec.stream(d.stream),
                spec.stream(d.reward.stream),
                own_names,
                arm_names,
                spec.seed,
            )
        self._decision_streams = set(spec.decision_streams)
        self._held_streams = set(spec.reward_streams) - self._decision_streams
        self._max_ts = _MIN_TS
        self._decided_until: dict[int, int] = {}  # decision partition -> largest event time
        self._held: list[tuple[int, EventBatch, int]] = []  # (partition, batch, min ts)
        self._held_low = _NO_TS
        # largest event time seen per outcome stream: decisions time out by it (below)
        self._outcome_time = dict.fromkeys(spec.reward_streams, _MIN_TS)
        self._ttl = max((d.reward.ttl_ms for d in spec.decide), default=0)
        # streams with their own ids: repeats are caught while a repeat could still matter
        self._seen = {
            s.name: RecentIds(
                max(
                    spec.allowed_lateness_ms,
                    *(d.reward.ttl_ms for d in spec.decide if d.stream == s.name),
                    1,
                )
            )
            for s in spec.streams
            if s.id is not None
        }

    def _selection(
        self, refs: tuple[tuple[str, str], ...]
    ) -> tuple[list[tuple[str, np.ndarray]], tuple[str, ...]]:
        """``(stage, column indices)`` per context reference, and the columns' names."""
        out: list[tuple[str, np.ndarray]] = []
        names: list[str] = []
        for stage, column in refs:
            cols = self._features[stage].columns
            idx = list(range(len(cols))) if column == "*" else [cols.index(column)]
            out.append((stage, np.array(idx, dtype=np.int64)))
            names += [f"{stage}.{cols[i]}" for i in idx]
        return out, tuple(names)

    # -- public ----------------------------------------------------------------------------
    @property
    def pending_decisions(self) -> int:
        return sum(d.pending for d in self._decide.values())

    def process_many(
        self, items: Sequence[tuple[int, EventBatch]], now_ns: int, step_rows: int = 4_000
    ) -> Results:
        """``(partition, batch)`` items in arrival order (partition numbers distinct across
        streams); see the module docstring."""
        out = Results()
        items = [(p, b) for p, b in items if len(b)]
        for step in self._steps(items, step_rows):
            decisions: list[tuple[int, EventBatch]] = []
            others: list[tuple[int, EventBatch]] = []
            for partition, batch in step:
                top = int(batch.ts.max())
                self._max_ts = max(self._max_ts, top)
                if batch.stream in self._outcome_time:
                    self._outcome_time[batch.stream] = max(self._outcome_time[batch.stream], top)
                if batch.stream in self._held_streams:
                    low = int(batch.ts.min())
                    self._held.append((partition, batch, low))
                    self._held_low = min(self._held_low, low)
                elif batch.stream in self._decision_streams:
                    decisions.append((partition, batch))
                else:
                    others.append((partition, batch))
            self._release(self._reached(), out, now_ns)
            self._run_grouped(others, out, now_ns)
            if decisions:
                for partition, batch in decisions:
                    top = self._decided_until.get(partition, _MIN_TS)
                    self._decided_until[partition] = max(top, int(batch.ts.max()))
                self._run_grouped(decisions, out, now_ns)
                self._release(self._reached(), out, now_ns)
            self._expire(None, out, now_ns)
        if items:
            out.count("events", sum(len(b) for _, b in items))
            watermark = self._max_ts - self.spec.allowed_lateness_ms
            out.gauges["engine.watermark_ms"] = watermark
            # how far event time trails the wall clock (live input: the pipeline's delay)
            out.gauges["engine.event_time_lag_ms"] = now_ns // 1_000_000 - watermark
        self._close(out)
        return out

    def finish(self, now_ns: int) -> Results:
        """End of bounded input: learn every held outcome, close every window, flush the
        detectors, time out every waiting decision."""
        out = Results()
        self._release(np.iinfo(np.int64).max, out, now_ns)
        now_ms = now_ns // 1_000_000
        for features in self._features.values():
            out.add("window_aggregates", features.flush())
        for detect in self._detect.values():
            anomalies, drift = detect.flush(now_ms)
            out.add("anomalies", anomalies)
            out.add("drift_alerts", drift)
        self._expire(np.iinfo(np.int64).max, out, now_ns)
        self._close(out)
        return out

    def snapshot(self) -> bytes:
        state = {
            "clock": {k: w.snapshot() for k, w in self._clock.items()},
            "features": {k: s.snapshot() for k, s in self._features.items()},
            "detect": {k: s.snapshot() for k, s in self._detect.items()},
            "decide": {k: s.snapshot() for k, s in self._decide.items()},
            "max_ts": self._max_ts,
            "decided_until": self._decided_until,
            "held": self._held,
            "outcome_time": self._outcome_time,
            "seen": self._seen,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, spec: PipelineSpec, snap: bytes) -> PipelineEngine:
        eng = cls(spec)
        state = pickle.loads(snap)
        for k, w in state["clock"].items():
            eng._clock[k].restore(w)
        for group, stages in (
            ("features", eng._features),
            ("detect", eng._detect),
            ("decide", eng._decide),
        ):
            for k, s in state[group].items():
                stages[k].restore(s)
        eng._max_ts = state["max_ts"]
        eng._decided_until = state["decided_until"]
        eng._held = state["held"]
        eng._outcome_time = state["outcome_time"]
        eng._seen = state["seen"]
        eng._held_low = min((low for _, _, low in eng._held), default=_NO_TS)
        return eng

    # -- steps ----------------------------------------------------------------------------
    def _steps(
        self, items: list[tuple[int, EventBatch]], step_rows: int
    ) -> list[list[tuple[int, EventBatch]]]:
        """Consecutive items, cut before a decision batch that would take a step past
        ``step_rows`` decision rows (a step holds at least one item)."""
        steps: list[list[tuple[int, EventBatch]]] = []
        rows = 0
        for partition, batch in items:
            decides = batch.stream in self._decision_streams
            if not steps or (decides and rows and rows + len(batch) > step_rows):
                steps.append([])
                rows = 0
            steps[-1].append((partition, batch))
            rows += len(batch) if decides else 0
        return steps

    def _reached(self) -> int:
        """Event time every decision partition has reached, or the fastest one's minus the
        longest reward TTL."""
        if not self._decision_streams:
            return np.iinfo(np.int64).max
        if not self._decided_until:
            return _MIN_TS
        tops = self._decided_until.values()
        return max(min(tops), max(tops) - self._ttl)

    def _release(self, until_ms: int, out: Results, now_ns: int) -> None:
        """Process the held outcome batches whose event time the decisions have reached."""
        if not self._held or self._held_low > until_ms:
            return
        keep: list[tuple[int, EventBatch, int]] = []
        ready: list[tuple[int, EventBatch]] = []
        for partition, b, low in self._held:
            if low > until_ms:
                keep.append((partition, b, low))
                continue
            due = b.ts <= until_ms
            ready.append((partition, b if due.all() else b.take(due)))
            if not due.all():
                rest = b.take(~due)
                keep.append((partition, rest, int(rest.ts.min())))
        self._held = keep
        self._held_low = min((low for _, _, low in keep), default=_NO_TS)
        self._run_grouped(ready, out, now_ns)

    def _run_grouped(self, items: list[tuple[int, EventBatch]], out: Results, now_ns: int) -> None:
        """One call per stream for the items (rows of a stream stay in arrival order)."""
        by_stream: dict[str, list[tuple[int, EventBatch]]] = {}
        for partition, batch in items:
            by_stream.setdefault(batch.stream, []).append((partition, batch))
        for stream, group in by_stream.items():
            batch = EventBatch.concat([b for _, b in group])
            if len(group) == 1:
                parts: int | np.ndarray = group[0][0]
            else:
                parts = np.concatenate([np.full(len(b), p, dtype=np.int64) for p, b in group])
            self._run(stream, batch, parts, out, now_ns)

    # -- one stream's batch ----------------------------------------------------------------
    def _run(
        self, stream: str, batch: EventBatch, parts: int | np.ndarray, out: Results, now_ns: int
    ) -> None:
        spec = self.spec
        now_ms = now_ns // 1_000_000
        out.count(f"events.{stream}", len(batch))
        if stream in self._seen:
            rep = self._seen[stream].repeats(batch.ids, batch.ts)
            if len(rep.index):
                self._repeated(batch, rep, out, now_ms)
                keep = np.ones(len(batch), dtype=bool)
                keep[rep.index] = False
                batch = batch.take(keep)
                parts = parts if np.ndim(parts) == 0 else np.asarray(parts)[keep]
                if not len(batch):
                    return
        read, n_read = np.unique(batch.ingest_ns // 1_000_000, return_counts=True)
        out.ingest.extend(zip(read.tolist(), n_read.tolist(), strict=True))
        before = _advance(self._clock[stream], batch.ts, parts)
        late = batch.ts < before
        if late.any():
            self._late(stream, batch, late, before, out)
        for d in spec.decide:
            if d.reward.stream == stream:
                self._decide_out(self._decide[d.name].learn(batch, now_ms), out, now_ms)
        computed: dict[str, np.ndarray] = {}
        for f in spec.features:
            if f.stream == stream:
                res = self._features[f.name].process(batch, parts)
                computed[f.name] = res.features
                out.add("window_aggregates", res.windows)
                if res.stored:
                    out.add(f"features_{f.name}", res.stored)
        kept = batch if spec.late_policy == "include" or not late.any() else batch.take(~late)
        for det in spec.detect:
            if det.stream == stream:
                anomalies, drift = self._detect[det.name].update(kept, now_ms)
                out.add("anomalies", anomalies)
                out.add("drift_alerts", drift)
        for d in spec.decide:
            if d.stream == stream:
                own, arm = self._context[d.name]
                feats = self._own_features(d.stream, batch, own, computed)
                arm_feats = self._arm_features(d.arms, arm)
                res_d = self._decide[d.name].decide(batch, feats, arm_feats, now_ns)
                self._decide_out(res_d, out, now_ms)

    def _own_features(
        self,
        stream: str,
        batch: EventBatch,
        refs: list[tuple[str, np.ndarray]],
        computed: dict[str, np.ndarray],
    ) -> np.ndarray:
        parts = [np.empty((len(batch), 0))]
        for stage, idx in refs:
            if stage in computed:  # a features stage on the decision stream: this event's
                parts.append(computed[stage][:, idx])
            else:  # another stream's: the latest of the event's key
                fs = self._features[stage]
                keys = key_column(batch, fs.spec.key)
                parts.append(fs.lookup(keys)[:, idx])
        return np.concatenate(parts, axis=1)

    def _arm_features(
        self, arms: tuple[str, ...], refs: list[tuple[str, np.ndarray]]
    ) -> np.ndarray:
        names = np.asarray(arms, dtype=object)
        parts = [np.empty((len(arms), 0))]
        for stage, idx in refs:
            parts.append(self._features[stage].lookup(names)[:, idx])
        return np.concatenate(parts, axis=1)

    def _decide_out(self, res: DecideOutput, out: Results, now_ms: int) -> None:
        out.add("decisions", res.decisions)
        out.add("rewards", res.rewards)
        out.add("unmatched_outcomes", res.unmatched)
        for alerts in res.drift_alerts:
            out.add("drift_alerts", alerts)
        if res.rewards:
            out.count("reward_sum", res.reward_sum)
            timed_out = int(res.rewards["timed_out"].sum())
            out.count("timed_out", timed_out)
        if res.rejected:  # events the stage could not decide: dead letters, never lost
            n = len(res.rejected)
            name = res.stage
            out.add(
                "dead_letters",
                {
                    "dead_letter_id": np.array(
                        [f"decide:{name}#{i}" for i, _, _ in res.rejected], dtype=object
                    ),
                    "stream": np.full(n, res.stream, dtype=object),
                    "source": np.full(n, f"decide:{name}", dtype=object),
                    "position": np.zeros(n, dtype=np.int64),
                    "raw": [orjson.dumps({"id": i, "event_time": t}) for i, t, _ in res.rejected],
                    "reason": np.array([r[2] for r in res.rejected], dtype=object),
                    "received_at": np.full(n, now_ms, dtype=np.int64),
                },
            )

    def _repeated(self, batch: EventBatch, rep: Repeats, out: Results, now_ms: int) -> None:
        """Dead letters for the rows whose id the stream has seen before."""
        stream = self.spec.stream(batch.stream)
        ids = batch.ids[rep.index].tolist()
        ts = batch.ts[rep.index].tolist()
        reasons = [
            f"id {i!r} repeats an event of stream {stream.name!r} (occurrence {k}, "
            f"{t - first:+d} ms in event time after the first); a repeated id is not processed "
            "again"
            for i, t, k, first in zip(
                ids, ts, rep.occurrence.tolist(), rep.first_ts.tolist(), strict=True
            )
        ]
        out.add(
            "dead_letters",
            {
                "dead_letter_id": np.array(
                    [
                        f"duplicate:{stream.name}:{i}#{k}"
                        for i, k in zip(ids, rep.occurrence.tolist(), strict=True)
                    ],
                    dtype=object,
                ),
                "stream": np.full(len(ids), stream.name, dtype=object),
                "source": np.full(len(ids), f"engine:{stream.name}", dtype=object),
                "position": np.zeros(len(ids), dtype=np.int64),
                "raw": _event_records(stream, batch, rep.index),
                "reason": np.array(reasons, dtype=object),
                "received_at": np.full(len(ids), now_ms, dtype=np.int64),
            },
        )
        out.count("duplicates", len(ids))

    def _late(
        self, stream: str, batch: EventBatch, late: np.ndarray, before: np.ndarray, out: Results
    ) -> None:
        idx = np.flatnonzero(late)
        keys = [f.key for f in self.spec.features if f.stream == stream and f.key]
        key = key_column(batch, keys[0])[idx] if keys else np.full(len(idx), "", dtype=object)
        out.add(
            "late_events",
            {
                "late_event_id": np.array(
                    [f"{stream}:{i}" for i in batch.ids[idx].tolist()], dtype=object
                ),
                "stream": np.full(len(idx), stream, dtype=object),
                "key": key,
                "event_time": batch.ts[idx],
                "watermark": before[idx],
                "policy": np.full(len(idx), self.spec.late_policy, dtype=object),
            },
        )

    def _expire(self, until_ms: int | None, out: Results, now_ns: int) -> None:
        """Time out the decisions whose TTL has passed in event time: both on the decision
        streams and on the stage's outcome stream (``until_ms`` None: as far as both have
        reached, minus the allowed lateness). Read at different speeds, a fast decision
        stream must not time out decisions whose outcomes the slow outcome stream has not
        reached yet; an outcome stream with no events yet times nothing out."""
        for d in self.spec.decide:
            at = until_ms
            if at is None:
                reached = min(self._reached(), self._outcome_time[d.reward.stream])
                at = max(reached, _FAR_PAST) - self.spec.allowed_lateness_ms
            self._decide_out(self._decide[d.name].expire(at), out, now_ns // 1_000_000)

    def _close(self, out: Results) -> None:
        """Counters named after the tables (``decisions``, ``anomalies``, ...) and gauges."""
        for table in out.tables:
            out.count(table, out.rows(table))
        if self._decide:
            out.gauges["bandit_updates"] = sum(d.n_learned for d in self._decide.values())
            out.gauges["pending_decisions"] = self.pending_decisions


def _event_records(stream: StreamSpec, batch: EventBatch, index: np.ndarray) -> list[bytes]:
    """The events at ``index`` as JSON objects of their declared fields (what the engine kept of
    them: the raw line stays with the source)."""
    cols = {name: batch.columns[name][index].tolist() for name in stream.field_names}
    ids = batch.ids[index].tolist()
    ts = batch.ts[index].tolist()
    records = []
    for r in range(len(index)):
        event = {stream.id or "id": ids[r], stream.time: ts[r]}
        event.update({name: _plain(col[r]) for name, col in cols.items()})
        records.append(orjson.dumps(event))
    return records


def _plain(v: object) -> object:
    # NaN is not JSON: an absent optional value reads back as null
    if isinstance(v, float) and v != v:
        return None
    return list(v) if isinstance(v, tuple) else v


def _advance(clock: Watermark, ts: np.ndarray, parts: int | np.ndarray) -> np.ndarray:
    """The watermark before each row, advanced run by run of same-partition rows."""
    if np.ndim(parts) == 0:
        return clock.advance(ts, int(parts))
    p = np.asarray(parts, dtype=np.int64)
    cuts = np.flatnonzero(p[1:] != p[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(p)]
    return np.concatenate([clock.advance(ts[a:b], int(p[a])) for a, b in pairwise(bounds)])
