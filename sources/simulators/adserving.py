"""The ad-serving simulator behind the simulator protocol: requests in, partners chosen, outcomes.

This wraps :class:`sources.simulator.Simulator` (the hidden truth, incidents, drift, scoring are
all its own) and only turns its batches into JSON lines, with the exact fields and bytes of the
JSONL files the throughput benchmark writes (``benchmarks/baselines/common.py``), so a spec that
reads those files reads this simulator unchanged:

- ``requests`` (id ``id`` = ``r<seed>-<i>``, time ``ts``): ``placement``, ``device``, ``geo``
  (strings), ``floor_price`` (float);
- ``outcomes`` (no id, time ``ts``): ``decision_id`` (the request id), ``partner``, ``filled``,
  ``revenue``, ``latency_ms``, ``error``; an outcome is ``300 ms`` or more after its request,
  a fraction ``outcome_loss`` never arrives.

The gate (``base.py``): a batch up to event time ``t`` waits until every request before
``t - 300 ms`` has its decision, and brings the outcomes before ``t``. So the outcomes of a
batch's own requests come with later batches: when a batch spans more than 300 ms of event time
(600 requests at 2000/s), an outcome can follow one later than itself by up to a batch span.
The lines are the same however the run is cut into batches; their order within ``outcomes``
depends on the cut (``requests`` never). ``events = 0`` runs until
:meth:`stop`.
Reward (scoreboard): ``revenue - latency_penalty_per_s * latency_ms / 1000`` in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from eddy.sources.simulators.adserving_world import SimConfig, Simulator
from eddy.sources.simulators.base import (
    Batch,
    ClosedLoopSimulator,
    DecisionLedger,
    Incident,
    SimStream,
    accept_decisions,
    json_lines,
    opt_duration,
    opt_float,
    opt_int,
    opt_optional_duration,
    opt_str_list,
    parse_options,
)

__all__ = ["AdServingSimulator"]

_BIG = np.iinfo(np.int64).max
_DEFAULTS = SimConfig()

_CONVERTERS = {
    "seed": opt_int(0),
    "rate_per_s": opt_float(0.0, lo_open=True),
    "events": opt_int(0),
    "partners": opt_str_list(2),
    "outcome_delay": opt_duration(_DEFAULTS.min_delay_ms),
    "outcome_loss": opt_float(0.0, 1.0),
    "incident_every": opt_duration(),
    "drift_at": opt_optional_duration,
    "latency_penalty_per_s": opt_float(0.0),
}
_OPTION_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "rate_per_s": _DEFAULTS.rate_per_s,
    "events": _DEFAULTS.n_events,
    "partners": list(_DEFAULTS.partners),
    "outcome_delay": int(_DEFAULTS.outcome_delay_ms),
    "outcome_loss": _DEFAULTS.outcome_loss,
    "incident_every": int(_DEFAULTS.incident_every_s * 1000),
    "drift_at": "none",
    "latency_penalty_per_s": _DEFAULTS.latency_penalty_per_s,
}


class AdServingSimulator(ClosedLoopSimulator):
    """Ad requests choosing a demand partner; outcomes (fill, revenue, latency) ~1.5 s later."""

    name: ClassVar[str] = "adserving"
    STREAMS: ClassVar[Mapping[str, SimStream]] = {
        "requests": SimStream(
            id="id",
            time="ts",
            fields={
                "placement": "string",
                "device": "string",
                "geo": "string",
                "floor_price": "float",
            },
        ),
        "outcomes": SimStream(
            id=None,
            time="ts",
            fields={
                "decision_id": "string",
                "partner": "string",
                "filled": "bool",
                "revenue": "float",
                "latency_ms": "float",
                "error": "bool",
            },
        ),
    }
    OPTIONS: ClassVar[Mapping[str, str]] = {
        "seed": "random seed (int, default 0)",
        "rate_per_s": "requests per second of event time (default 2000.0)",
        "events": "requests per run (default 120000; 0: until stopped)",
        "partners": "the arms: partner names (default alpha ... foxtrot, six)",
        "outcome_delay": 'median delay of an outcome after its request (default "1500ms")',
        "outcome_loss": "fraction of outcomes that never arrive (default 0.005)",
        "incident_every": 'mean gap between injected incidents (default "20s"; "0s": none)',
        "drift_at": 'when the best and worst partners swap truth (default "none")',
        "latency_penalty_per_s": "reward = revenue - this * latency_ms / 1000 (default 1.0)",
    }
    decision_stream: ClassVar[str | None] = "requests"

    def __init__(
        self, options: Mapping[str, Any], seed: int | None = None, base_dir: Path | None = None
    ) -> None:
        o = parse_options(options, _CONVERTERS, _OPTION_DEFAULTS, seed)
        self.config = SimConfig(
            seed=o["seed"],
            rate_per_s=o["rate_per_s"],
            n_events=o["events"] or None,
            partners=o["partners"],
            outcome_delay_ms=float(o["outcome_delay"]),
            outcome_loss=o["outcome_loss"],
            incident_every_s=o["incident_every"] / 1000,
            drift_at_s=None if o["drift_at"] is None else o["drift_at"] / 1000,
            latency_penalty_per_s=o["latency_penalty_per_s"],
        )
        self.sim = Simulator(self.config)
        self._arm_index = {a: i for i, a in enumerate(self.config.partners)}
        self._ledger = DecisionLedger()
        self._prefix = f"r{self.config.seed}-"
        self._stopped = False

    @property
    def arms(self) -> tuple[str, ...]:
        return self.config.partners

    @property
    def start_ms(self) -> int:
        return self.config.start_ms

    @property
    def incidents(self) -> list[Incident]:
        return [Incident(i.partner, i.kind, i.start_ms, i.end_ms) for i in self.sim.incidents]

    def scoreboard(self) -> dict[str, float]:
        sb = self.sim.scoreboard
        return {
            "decisions": float(sb.decisions),
            "chosen": sb.chosen,
            "oracle": sb.oracle,
            "random": sb.random,
        }

    def stop(self) -> None:
        self._stopped = True

    def peek_ms(self) -> int | None:
        if self._stopped or self.sim.exhausted:
            return None
        return int(self.sim.ts_of(self.sim.generated))

    def _count_before(self, until_ms: int) -> int:
        """How many requests (from the first) have event time ``< until_ms``."""
        cfg = self.config
        m = max(0, math.ceil((until_ms - cfg.start_ms) * cfg.rate_per_s / 1000))
        while m > 0 and int(self.sim.ts_of(m - 1)) >= until_ms:
            m -= 1
        while int(self.sim.ts_of(m)) < until_ms:
            m += 1
        return m

    def next_batch(self, max_events: int, until_ms: int | None = None) -> Batch | None:
        sim, cfg = self.sim, self.config
        if self._stopped or sim.exhausted:
            if self._ledger.open:
                return None  # decisions still in flight: their outcomes are not drawn yet
            last = sim.due_outcomes(_BIG)
            if len(last):
                return [("outcomes", self._outcome_lines(last))]
            raise StopIteration
        n = max(1, max_events)
        if cfg.n_events is not None:
            n = min(n, cfg.n_events - sim.generated)
        if until_ms is not None:
            n = min(n, self._count_before(until_ms) - sim.generated)
        until = int(sim.ts_of(sim.generated + n - 1)) + 1 if n > 0 else int(until_ms or 0)
        needed = math.ceil((until - cfg.min_delay_ms - cfg.start_ms) * cfg.rate_per_s / 1000)
        if self._ledger.first_open < min(max(needed, 0), sim.generated):
            return None
        out: Batch = []
        outcomes = sim.due_outcomes(until)
        if len(outcomes):
            out.append(("outcomes", self._outcome_lines(outcomes)))
        if n > 0:
            requests = sim.next_requests(n)
            self._ledger.issue(n)
            out.append(("requests", self._request_lines(requests)))
        return out

    @staticmethod
    def _request_lines(rb: Any) -> list[bytes]:
        return json_lines(
            [
                ("id", rb.id),
                ("ts", rb.ts),
                ("placement", rb.placement),
                ("device", rb.device),
                ("geo", rb.geo),
                ("floor_price", rb.floor_price),
            ]
        )

    @staticmethod
    def _outcome_lines(ob: Any) -> list[bytes]:
        return json_lines(
            [
                ("decision_id", ob.decision_id),
                ("ts", ob.ts),
                ("partner", ob.partner),
                ("filled", ob.filled),
                ("revenue", ob.revenue),
                ("latency_ms", ob.latency_ms),
                ("error", ob.error),
            ]
        )

    def respond(self, decision_ids: np.ndarray, arms: np.ndarray) -> None:
        fresh, _, arm = accept_decisions(
            self._ledger, decision_ids, arms, self._prefix, self._arm_index, "simulator adserving"
        )
        if len(arm):
            self.sim.respond(np.asarray(decision_ids, dtype=object)[fresh], arm)
