"""`KeyedEngine`: the keyed part of a pipeline (repeats, late rows, features, detectors) on one
shard, handing decide stages what they need (:mod:`.messages`).

``process_many(pieces, now_ns)`` takes the shard's :class:`~eddy.operators.sharding.Piece` of
each batch, in arrival order (empty pieces included: every shard sees every batch's event
times), and returns :class:`~eddy.schemas.results.Results`; what the decide stages must hear is
collected per (decide stage, decide shard) in :meth:`take_messages`. With one shard the pieces
are whole batches (plain ``(partition, batch)`` items are accepted too).

First, an event far ahead of its input partition is held back until later events confirm or
refute the jump (:mod:`~eddy.operators.ahead`; refuted events are dead letters). Then, the
order of work for a batch of one stream: the stream's clock advances over the whole batch (a
shard judges its rows by the whole stream's watermark, so late rows and closed windows do not
depend on the shard count); a row whose id repeats an earlier event of the stream (within the
allowed lateness, or a decide stage's reward TTL on its decision stream) is a dead letter and
goes no further (:mod:`~eddy.operators.dedup`); late rows are flagged (``late_events``; with
``late_policy = "drop"`` they stay out of windows and detectors, they are still decided and
joined); outcome rows go to their decide stages to be learned; features stages update;
detect stages score then learn; decision rows go to their decide stages with the features
just computed, and arm features after every update of their stage.

Outcomes wait for their decisions (:class:`~.hold.OutcomeHold`): a batch of an outcome stream
is held until every partition of the decision streams has reached its event time. A step
takes the items that arrived together until its decision rows would pass ``step_rows``
(counted over whole batches, so every shard cuts the same steps).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import orjson

from eddy.operators.ahead import AheadGuard, Refused
from eddy.operators.dedup import RecentIds, Repeats
from eddy.operators.engine.hold import OutcomeHold
from eddy.operators.engine.messages import (
    ArmValues,
    Decided,
    DecideMessage,
    OutcomesSeen,
    ToDecide,
    ToLearn,
)
from eddy.operators.sharding import Piece, shard_index, whole
from eddy.operators.stages.base import key_column
from eddy.operators.stages.detect import DetectStage
from eddy.operators.stages.features import FeaturesStage
from eddy.operators.windows.watermark import NO_TIME, Watermark
from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.durations import iso_time, span_text
from eddy.schemas.results import Results
from eddy.schemas.spec import DecideSpec, PipelineSpec, StreamSpec

__all__ = ["KeyedEngine", "context_selection"]

_MIN_TS = -(2**63)
_MAX_TS = int(np.iinfo(np.int64).max)
_MAX_STEP = 2**62

Selection = list[tuple[str, np.ndarray]]


def context_selection(
    spec: PipelineSpec, refs: tuple[tuple[str, str], ...]
) -> tuple[Selection, tuple[str, ...]]:
    """``(features stage, column indices)`` per context reference, and the columns' names."""
    columns = {f.name: f.columns for f in spec.features}
    out: Selection = []
    names: list[str] = []
    for stage, column in refs:
        cols = columns[stage]
        idx = list(range(len(cols))) if column == "*" else [cols.index(column)]
        out.append((stage, np.array(idx, dtype=np.int64)))
        names += [f"{stage}.{cols[i]}" for i in idx]
    return out, tuple(names)


class KeyedEngine:
    """See the module docstring. Shard ``shard`` of ``shards``; a decide stage's decisions are
    spread over its ``shards``. ``snapshot()`` / ``restore(snap)`` are exact."""

    def __init__(self, spec: PipelineSpec, shard: int = 0, shards: int = 1) -> None:
        self.spec = spec
        self.shard, self.shards = shard, shards
        self._decide_shards = {d.name: d.shards for d in spec.decide}
        lateness, policy = spec.allowed_lateness_ms, spec.late_policy
        self._clock = {s.name: Watermark(lateness, spec.idle_after_ms) for s in spec.streams}
        self._stream_top = {s.name: NO_TIME for s in spec.streams}
        self._features = {f.name: FeaturesStage(f, lateness, policy) for f in spec.features}
        self._detect = {
            d.name: DetectStage(d, spec.stream(d.stream), spec.seed) for d in spec.detect
        }
        self._own = {d.name: context_selection(spec, d.context.features)[0] for d in spec.decide}
        self._arm = {
            d.name: context_selection(spec, d.context.arm_features)[0] for d in spec.decide
        }
        self._owned = {d.name: self._owned_arms(d) for d in spec.decide}
        self._decision_streams = set(spec.decision_streams)
        self._held_streams = set(spec.reward_streams) - self._decision_streams
        ttl = max((d.reward.ttl_ms for d in spec.decide), default=0)
        self._hold = OutcomeHold(ttl, gated=bool(self._decision_streams))
        self._max_ts = _MIN_TS
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
        self._outbox: dict[tuple[str, int], list[DecideMessage]] = {}
        self._ahead = AheadGuard(spec.max_ahead_ms)

    def _owned_arms(self, d: DecideSpec) -> np.ndarray:
        arms = np.asarray(d.arms, dtype=object)
        return shard_index(arms, self.shards) == self.shard

    # -- public ----------------------------------------------------------------------------
    def process_many(
        self,
        items: Sequence[Piece | tuple[int, EventBatch]],
        now_ns: int,
        step_rows: int = 4_000,
    ) -> Results:
        """Pieces (or ``(partition, batch)`` items) in arrival order; see the module
        docstring."""
        refusals = Results()
        pieces: list[Piece] = []
        for item in items:
            go, refused = self._ahead.admit(item if isinstance(item, Piece) else whole(*item))
            pieces += go
            for r in refused:
                self._refused_ahead(r, refusals, now_ns // 1_000_000)
        _count_tables(refusals)
        return Results.combine([refusals, self._process_pieces(pieces, now_ns, step_rows)])

    def _process_pieces(self, pieces: list[Piece], now_ns: int, step_rows: int) -> Results:
        parts: list[Results] = []  # one per step, concatenated once at the end
        pieces = [p for p in pieces if len(p.ts_all)]
        for step in self._steps(pieces, step_rows):
            out = Results()
            parts.append(out)
            decisions: list[Piece] = []
            others: list[Piece] = []
            for piece in step:
                top = piece.top
                self._max_ts = max(self._max_ts, top)
                for d in self.spec.decide:
                    if d.reward.stream == piece.stream:
                        self._broadcast(d.name, OutcomesSeen(top))
                if piece.stream in self._held_streams:
                    self._hold.hold(piece)
                elif piece.stream in self._decision_streams:
                    decisions.append(piece)
                else:
                    others.append(piece)
            self._run_grouped(self._hold.release(self._hold.reached()), out, now_ns)
            self._run_grouped(others, out, now_ns)
            if decisions:
                for piece in decisions:
                    self._hold.decided(piece.partition, piece.top)
                self._run_grouped(decisions, out, now_ns)
                self._run_grouped(self._hold.release(self._hold.reached()), out, now_ns)
                # last in the step: a decide stage learns what was released, then times out
                for piece in decisions:
                    for d in self.spec.decide:
                        if d.stream == piece.stream:
                            self._broadcast(d.name, Decided(piece.partition, piece.top, self.shard))
        out = Results.combine(parts)
        if pieces:
            out.count("events", sum(len(p.batch) for p in pieces))
            watermark = self._max_ts - self.spec.allowed_lateness_ms
            out.gauges["engine.watermark_ms"] = watermark
            # how far event time trails the wall clock (live input: the pipeline's delay)
            out.gauges["engine.event_time_lag_ms"] = now_ns // 1_000_000 - watermark
        _count_tables(out)
        return out

    def finish(self, now_ns: int) -> Results:
        """End of bounded input: run every held outcome, close every window, flush the
        detectors."""
        # events still held as far ahead of their stream go on: nothing is left to harm
        released = self._process_pieces(self._ahead.release_all(), now_ns, _MAX_STEP)
        out = Results()
        self._run_grouped(self._hold.release(_MAX_TS), out, now_ns)
        now_ms = now_ns // 1_000_000
        for features in self._features.values():
            out.add("window_aggregates", features.flush())
        for detect in self._detect.values():
            anomalies, drift = detect.flush(now_ms)
            out.add("anomalies", anomalies)
            out.add("drift_alerts", drift)
        _count_tables(out)
        return Results.combine([released, out])

    def take_messages(self) -> dict[tuple[str, int], list[DecideMessage]]:
        """What the decide stages must hear since the last call, per (stage, decide shard)."""
        box, self._outbox = self._outbox, {}
        return box

    def lookup(self, stage: str, keys: np.ndarray) -> np.ndarray:
        """The latest features of ``keys`` in features stage ``stage`` (NaN: not seen)."""
        return self._features[stage].lookup(keys)

    def snapshot(self) -> bytes:
        state = {
            "clock": {k: w.snapshot() for k, w in self._clock.items()},
            "stream_top": self._stream_top,
            "features": {k: s.snapshot() for k, s in self._features.items()},
            "detect": {k: s.snapshot() for k, s in self._detect.items()},
            "max_ts": self._max_ts,
            "hold": self._hold,
            "seen": self._seen,
            "outbox": self._outbox,
            "ahead": self._ahead,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(
        cls, spec: PipelineSpec, snap: bytes, shard: int = 0, shards: int = 1
    ) -> KeyedEngine:
        eng = cls(spec, shard, shards)
        state = pickle.loads(snap)
        for k, w in state["clock"].items():
            eng._clock[k].restore(w)
        for group, stages in (("features", eng._features), ("detect", eng._detect)):
            for k, s in state[group].items():
                stages[k].restore(s)
        eng._stream_top = state["stream_top"]
        eng._max_ts = state["max_ts"]
        eng._hold = state["hold"]
        eng._seen = state["seen"]
        eng._outbox = state["outbox"]
        eng._ahead = state["ahead"]
        return eng

    # -- messages --------------------------------------------------------------------------
    def _broadcast(self, stage: str, message: DecideMessage) -> None:
        for s in range(self._decide_shards[stage]):
            self._outbox.setdefault((stage, s), []).append(message)

    def _to_learn(self, d: DecideSpec, batch: EventBatch) -> None:
        """Outcome rows to the decide shard their join field picks."""
        if d.shards == 1:
            self._outbox.setdefault((d.name, 0), []).append(ToLearn(batch))
            return
        shard = shard_index(key_column(batch, d.reward.join), d.shards)
        for s in np.unique(shard).tolist():
            self._outbox.setdefault((d.name, s), []).append(ToLearn(batch.take(shard == s)))

    def _to_decide(self, d: DecideSpec, batch: EventBatch, features: np.ndarray) -> None:
        """Decision rows, with their context features, to the decide shard their id picks."""
        if d.shards == 1:
            self._outbox.setdefault((d.name, 0), []).append(ToDecide(batch, features))
            return
        shard = shard_index(batch.ids, d.shards)
        for s in np.unique(shard).tolist():
            mine = shard == s
            self._outbox.setdefault((d.name, s), []).append(
                ToDecide(batch.take(mine), features[mine])
            )

    # -- steps ----------------------------------------------------------------------------
    def _steps(self, pieces: list[Piece], step_rows: int) -> list[list[Piece]]:
        """Consecutive pieces, cut before a decision batch that would take a step past
        ``step_rows`` decision rows (a step holds at least one piece)."""
        steps: list[list[Piece]] = []
        rows = 0
        for piece in pieces:
            decides = piece.stream in self._decision_streams
            n = len(piece.ts_all)
            if not steps or (decides and rows and rows + n > step_rows):
                steps.append([])
                rows = 0
            steps[-1].append(piece)
            rows += n if decides else 0
        return steps

    def _run_grouped(self, pieces: list[Piece], out: Results, now_ns: int) -> None:
        """One call per stream for the pieces (rows of a stream stay in arrival order); each
        piece advances its stream's clock over its whole batch first."""
        now_ms = now_ns // 1_000_000
        by_stream: dict[str, list[Piece]] = {}
        for piece in pieces:
            by_stream.setdefault(piece.stream, []).append(piece)
        for stream, group in by_stream.items():
            clock = self._clock[stream]
            before, upto, parts = [], [], []
            for piece in group:
                prior, top, part = piece.prior(), piece.top, piece.partition
                before.append(clock.advance_rows(prior, top, part, now_ms))
                upto.append(np.maximum(piece.upto(), self._stream_top[stream]))
                self._stream_top[stream] = max(self._stream_top[stream], piece.top)
                parts.append(np.full(len(piece.batch), piece.partition, dtype=np.int64))
            batch = EventBatch.concat([p.batch for p in group])
            self._run(
                stream,
                batch,
                np.concatenate(parts),
                np.concatenate(before),
                np.concatenate(upto),
                out,
                now_ns,
            )

    # -- one stream's rows -----------------------------------------------------------------
    def _run(
        self,
        stream: str,
        batch: EventBatch,
        parts: np.ndarray,
        before: np.ndarray,
        upto: np.ndarray,
        out: Results,
        now_ns: int,
    ) -> None:
        spec = self.spec
        now_ms = now_ns // 1_000_000
        if len(batch):
            out.count(f"events.{stream}", len(batch))
        if stream in self._seen and len(batch):
            rep = self._seen[stream].repeats(batch.ids, batch.ts)
            if len(rep.index):
                self._repeated(batch, rep, out, now_ms)
                keep = np.ones(len(batch), dtype=bool)
                keep[rep.index] = False
                batch = batch.take(keep)
                parts, before, upto = parts[keep], before[keep], upto[keep]
        if len(batch):
            read, n_read = np.unique(batch.ingest_ns // 1_000_000, return_counts=True)
            out.ingest.extend(zip(read.tolist(), n_read.tolist(), strict=True))
        late = batch.ts < before
        if late.any():
            self._late(stream, batch, late, before, out)
        if len(batch):
            for d in spec.decide:
                if d.reward.stream == stream:
                    self._to_learn(d, batch)
        computed: dict[str, np.ndarray] = {}
        watermark = (before, self._clock[stream].value)
        for f in spec.features:
            if f.stream == stream:
                res = self._features[f.name].process(batch, parts, watermark)
                computed[f.name] = res.features
                out.add("window_aggregates", res.windows)
                if res.stored:
                    out.add(f"features_{f.name}", res.stored)
        dropped = spec.late_policy == "drop" and late.any()
        kept, kept_upto = (batch.take(~late), upto[~late]) if dropped else (batch, upto)
        for det in spec.detect:
            if det.stream == stream:
                seen = (kept_upto, self._stream_top[stream])
                anomalies, drift = self._detect[det.name].update(kept, now_ms, seen)
                out.add("anomalies", anomalies)
                out.add("drift_alerts", drift)
        for d in spec.decide:
            if d.stream == stream and len(batch):
                self._to_decide(d, batch, self._own_features(d, batch, computed))
        if computed:
            for d in spec.decide:
                if any(stage in computed for stage, _ in self._arm[d.name]):
                    self._broadcast(d.name, ArmValues(self._owned[d.name], self._arm_values(d)))

    def _own_features(
        self, d: DecideSpec, batch: EventBatch, computed: dict[str, np.ndarray]
    ) -> np.ndarray:
        parts = [np.empty((len(batch), 0))]
        for stage, idx in self._own[d.name]:
            if stage in computed:  # a features stage on the decision stream: this event's
                parts.append(computed[stage][:, idx])
            else:  # another stream's: the latest of the event's key
                fs = self._features[stage]
                keys = key_column(batch, fs.spec.key)
                parts.append(fs.lookup(keys)[:, idx])
        return np.concatenate(parts, axis=1)

    def _arm_values(self, d: DecideSpec) -> np.ndarray:
        names = np.asarray(d.arms, dtype=object)
        parts = [np.empty((len(d.arms), 0))]
        for stage, idx in self._arm[d.name]:
            parts.append(self._features[stage].lookup(names)[:, idx])
        return np.concatenate(parts, axis=1)

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
        dead_ids = [
            f"duplicate:{stream.name}:{i}#{k}"
            for i, k in zip(ids, rep.occurrence.tolist(), strict=True)
        ]
        out.add("dead_letters", _dead_letters(stream, batch, rep.index, dead_ids, reasons, now_ms))
        out.count("duplicates", len(ids))

    def _refused_ahead(self, r: Refused, out: Results, now_ms: int) -> None:
        """Dead letters for events refused as too far ahead of their stream."""
        batch = r.piece.batch
        if not len(batch):
            return
        stream = self.spec.stream(batch.stream)
        span = span_text(self.spec.max_ahead_ms)
        ids = batch.ids.tolist()
        reasons = [
            f"event time {iso_time(t)} is {span_text(a)} ahead of its stream (partition "
            f"{r.piece.partition} had reached {iso_time(p)}), more than [time] max_ahead ({span}), "
            "and the events after it stayed behind"
            for t, a, p in zip(
                batch.ts.tolist(), r.ahead_ms.tolist(), r.position.tolist(), strict=True
            )
        ]
        dead_ids = [f"ahead:{stream.name}:{r.piece.partition}:{i}" for i in ids]
        rows = np.arange(len(batch))
        out.add("dead_letters", _dead_letters(stream, batch, rows, dead_ids, reasons, now_ms))
        out.count("ahead_of_stream", len(ids))

    def _late(
        self, stream: str, batch: EventBatch, late: np.ndarray, before: np.ndarray, out: Results
    ) -> None:
        idx = np.flatnonzero(late)
        keys = [f.key for f in self.spec.features if f.stream == stream and f.key]
        key = key_column(batch, keys[0])[idx] if keys else constant_column("", len(idx))
        out.add(
            "late_events",
            {
                "late_event_id": np.array(
                    [f"{stream}:{i}" for i in batch.ids[idx].tolist()], dtype=object
                ),
                "stream": constant_column(stream, len(idx)),
                "key": key,
                "event_time": batch.ts[idx],
                "watermark": before[idx],
                "policy": constant_column(self.spec.late_policy, len(idx)),
            },
        )


def _count_tables(out: Results) -> None:
    """Counters named after the tables (``decisions``, ``anomalies``, ...)."""
    for table in out.tables:
        out.count(table, out.rows(table))


def _dead_letters(
    stream: StreamSpec,
    batch: EventBatch,
    index: np.ndarray,
    dead_ids: list[str],
    reasons: list[str],
    now_ms: int,
) -> dict[str, np.ndarray | list[bytes]]:
    """``dead_letters`` rows for the events at ``index`` that the engine refused (the raw line
    stays with the source: ``raw`` is the event's declared fields)."""
    n = len(dead_ids)
    return {
        "dead_letter_id": np.array(dead_ids, dtype=object),
        "stream": constant_column(stream.name, n),
        "source": constant_column(f"engine:{stream.name}", n),
        "position": np.zeros(n, dtype=np.int64),
        "raw": _event_records(stream, batch, index),
        "reason": np.array(reasons, dtype=object),
        "received_at": np.full(n, now_ms, dtype=np.int64),
    }


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
