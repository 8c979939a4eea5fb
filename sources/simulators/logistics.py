"""Shipments choosing a carrier: a closed loop whose outcomes arrive hours later in event time.

Streams (JSON lines):

- ``shipments`` (id ``shipment_id`` = ``shp-<seed>-<i>``, time ``created_at``): ``route``
  (``"LAX-SEA"``), ``weight_kg``, ``distance_km`` (fixed per route), ``express``, ``carriers``
  (the 2-4 of the 5 carriers eligible on the route, fixed per route for a seed);
- ``deliveries`` (no id, time ``delivered_at``): ``shipment_id``, ``carrier``, ``on_time``,
  ``delay_h`` (hours past the promised time, 0 when on time), ``cost``, ``damaged``.

Shipments arrive as a Poisson process (``rate_per_h``). A delivery is 10 h or more after its
shipment (promised 12-74 h by distance and service; late ones later still), so the gate lets
whole batches through while decisions are in flight, and the shipments of one batch span less
than 10 h of event time, which keeps every stream in event-time order whatever the batching.

Hidden truth (drawn from the seed), per carrier and route: on-time log-odds (carrier base +
route effect + an express effect and a weight effect per carrier, so the best carrier depends
on the shipment, not only the route), cost (fee + per 1000 km + per kg, times a route factor,
times an express surcharge), damage log-odds (rising with weight, per carrier), and the median
delay of a late delivery. **Reward** (what the scoreboard sums, in expectation)::

    on_time - cost / 100 - 2 * damaged

(typical expectations 0.1-0.8; a damaged parcel costs 2). A decision naming a carrier not
eligible on the route is still answered, as a rebooking: never on time, 24 h later than a late
delivery, 1.5x the cost; the scoreboard scores it so and counts it under ``ineligible``.

Incident: from ``incident_at`` for ``incident_duration`` (event time from the start) the
``incident_carrier``'s network is jammed: its shipments that would arrive on time inside that
window mostly do not (on-time log-odds -4) and their delays double, so its deliveries in the
window are suddenly mostly late (what a detector on ``deliveries`` sees at once). It is labelled
in :attr:`incidents` (kind ``carrier_delay``, that window) once event time reaches it. The
expected rewards (scoreboard, oracle) include the incident in expectation; a policy cannot know
it in advance, it can only react to the late deliveries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from eddy.sources.simulators.base import (
    Batch,
    ClosedLoopSimulator,
    Coded,
    DecisionLedger,
    Incident,
    SimStream,
    accept_decisions,
    json_lines,
    opt_duration,
    opt_float,
    opt_int,
    opt_optional_duration,
    opt_str,
    parse_ids,
    parse_options,
)

__all__ = ["CARRIERS", "ROUTES", "LogisticsConfig", "LogisticsSimulator"]

CARRIERS = ("apex", "bluebird", "condor", "dash", "everest")
_CITIES = {
    "LAX": (33.94, -118.41),
    "SEA": (47.45, -122.31),
    "SFO": (37.62, -122.38),
    "DEN": (39.86, -104.67),
    "DFW": (32.90, -97.04),
    "ORD": (41.98, -87.90),
    "ATL": (33.64, -84.43),
    "JFK": (40.64, -73.78),
    "MIA": (25.79, -80.29),
    "BOS": (42.36, -71.01),
}
ROUTES = (
    "LAX-SEA", "SEA-LAX", "LAX-SFO", "SFO-LAX", "LAX-JFK", "JFK-LAX", "JFK-BOS", "BOS-JFK",
    "ORD-ATL", "ATL-ORD", "DFW-DEN", "DEN-DFW", "ORD-JFK", "JFK-ORD", "ATL-MIA", "MIA-ATL",
    "SFO-SEA", "DFW-ATL", "DEN-ORD", "MIA-JFK",
)  # fmt: skip
CHUNK = 1024
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
MIN_DELAY_MS = 10 * 3_600_000
_H = 3_600_000.0
_EXPRESS_SHARE = 0.25
_INCIDENT_LOGIT, _INCIDENT_DELAY = -4.0, 2.0


def _road_km(route: str) -> float:
    (la1, lo1), (la2, lo2) = (np.radians(_CITIES[c]) for c in route.split("-"))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return round(1.25 * 2 * 6371.0 * math.asin(math.sqrt(h)), 1)  # great circle x road factor


_DISTANCE = np.array([_road_km(r) for r in ROUTES])


@dataclass(frozen=True)
class LogisticsConfig:
    """Validated options (see :attr:`LogisticsSimulator.OPTIONS`); ``events = 0``: unbounded."""

    seed: int = 0
    events: int = 20_000
    rate_per_h: float = 400.0
    incident_at_ms: int | None = 36 * 3_600_000
    incident_duration_ms: int = 8 * 3_600_000
    incident_carrier: str = "auto"


_CONVERTERS = {
    "seed": opt_int(0),
    "events": opt_int(0),
    "rate_per_h": opt_float(0.0, 1e7, lo_open=True),
    "incident_at": opt_optional_duration,
    "incident_duration": opt_duration(1),
    "incident_carrier": opt_str(("auto", *CARRIERS)),
}
_OPTION_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "events": 20_000,
    "rate_per_h": 400.0,
    "incident_at": "36h",
    "incident_duration": "8h",
    "incident_carrier": "auto",
}


@dataclass(frozen=True)
class _Truth:
    eligible: np.ndarray  # (routes, carriers) bool
    popularity: np.ndarray  # (routes,)
    on_logit: np.ndarray  # (routes, carriers)
    express: np.ndarray  # (carriers,) on-time log-odds when express
    weight: np.ndarray  # (carriers,) on-time log-odds per log(weight / 5 kg)
    fee: np.ndarray  # (carriers,)
    per_km: np.ndarray  # (carriers,) per 1000 km
    per_kg: np.ndarray  # (carriers,)
    route_cost: np.ndarray  # (routes, carriers) factor
    surcharge: np.ndarray  # (carriers,) express cost factor
    dmg_logit: np.ndarray  # (carriers,)
    dmg_weight: np.ndarray  # (carriers,) per log(weight / 5 kg)
    late_h: np.ndarray  # (carriers,) median hours late


def _truth(seed: int) -> _Truth:
    rng = np.random.default_rng([seed, 7_001])
    n_r, n_c = len(ROUTES), len(CARRIERS)
    eligible = np.zeros((n_r, n_c), dtype=bool)
    for r in range(n_r):
        eligible[r, rng.choice(n_c, int(rng.integers(2, 5)), replace=False)] = True
    return _Truth(
        eligible=eligible,
        popularity=rng.dirichlet(np.full(n_r, 2.0)),
        on_logit=rng.uniform(0.8, 2.2, n_c) + rng.normal(0.0, 0.4, (n_r, n_c)),
        express=rng.normal(0.0, 1.5, n_c),
        weight=rng.normal(0.0, 0.7, n_c),
        fee=rng.uniform(3.0, 14.0, n_c),
        per_km=rng.uniform(2.0, 6.0, n_c),
        per_kg=rng.uniform(0.05, 0.8, n_c),
        route_cost=np.exp(rng.normal(0.0, 0.15, (n_r, n_c))),
        surcharge=rng.uniform(1.2, 2.2, n_c),
        dmg_logit=rng.uniform(-5.0, -3.0, n_c),
        dmg_weight=rng.uniform(0.0, 0.6, n_c),
        late_h=rng.uniform(3.0, 10.0, n_c),
    )


@dataclass
class _Chunk:
    ts: np.ndarray  # created_at, epoch ms
    route: np.ndarray
    weight: np.ndarray
    express: np.ndarray
    u: np.ndarray  # (n, 3) uniforms: on time, early fraction, damage
    z: np.ndarray  # (n, 2) normals: delay, cost
    answered: int = 0


class LogisticsSimulator(ClosedLoopSimulator):
    """Shipments choosing a carrier; deliveries 10-100+ h later; a carrier incident."""

    name: ClassVar[str] = "logistics"
    STREAMS: ClassVar[Mapping[str, SimStream]] = {
        "shipments": SimStream(
            id="shipment_id",
            time="created_at",
            fields={
                "route": "string",
                "weight_kg": "float",
                "distance_km": "float",
                "express": "bool",
                "carriers": "list[string]",
            },
        ),
        "deliveries": SimStream(
            id=None,
            time="delivered_at",
            fields={
                "shipment_id": "string",
                "carrier": "string",
                "on_time": "bool",
                "delay_h": "float",
                "cost": "float",
                "damaged": "bool",
            },
        ),
    }
    OPTIONS: ClassVar[Mapping[str, str]] = {
        "seed": "random seed (int, default 0)",
        "events": "shipments per run (default 20000; 0: until stopped)",
        "rate_per_h": "shipments per hour of event time (default 400.0)",
        "incident_at": 'carrier incident start after the run start (default "36h"; "none")',
        "incident_duration": 'how long the incident lasts (default "8h")',
        "incident_carrier": f'"auto" (the busiest carrier) or one of {list(CARRIERS)}',
    }
    decision_stream: ClassVar[str | None] = "shipments"

    def __init__(
        self, options: Mapping[str, Any], seed: int | None = None, base_dir: Path | None = None
    ) -> None:
        o = parse_options(options, _CONVERTERS, _OPTION_DEFAULTS, seed)
        self.config = LogisticsConfig(
            seed=o["seed"],
            events=o["events"],
            rate_per_h=o["rate_per_h"],
            incident_at_ms=o["incident_at"],
            incident_duration_ms=o["incident_duration"],
            incident_carrier=o["incident_carrier"],
        )
        self.truth = _truth(self.config.seed)
        t = self.truth
        busiest = int(np.argmax(t.popularity @ t.eligible))
        name = self.config.incident_carrier
        self._inc_carrier = busiest if name == "auto" else CARRIERS.index(name)
        self._inc: tuple[int, int] | None = None
        if self.config.incident_at_ms is not None:
            s = START_MS + self.config.incident_at_ms
            self._inc = (s, s + self.config.incident_duration_ms)
        self._chunks: dict[int, _Chunk] = {}
        self._chunk_end = 0.0  # event-time offset (ms) after the last chunk made
        self._made = 0  # chunks made (in order: each starts where the last ended)
        self._ledger = DecisionLedger()
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._prefix = f"shp-{self.config.seed}-"
        self._stopped = False
        self._clock = START_MS  # latest event time emitted
        self._score = dict.fromkeys(("decisions", "chosen", "oracle", "random", "ineligible"), 0.0)
        self._route_json = Coded.table_of(list(ROUTES))
        self._carriers_json = Coded.table_of(
            [[c for c, e in zip(CARRIERS, row, strict=True) if e] for row in t.eligible]
        )
        self._carrier_json = Coded.table_of(list(CARRIERS))
        self._arm_index = {c: i for i, c in enumerate(CARRIERS)}

    # -- protocol ---------------------------------------------------------------------------
    @property
    def arms(self) -> tuple[str, ...]:
        return CARRIERS

    @property
    def start_ms(self) -> int:
        return START_MS

    @property
    def incidents(self) -> list[Incident]:
        if self._inc is None or self._clock < self._inc[0]:
            return []
        return [Incident(CARRIERS[self._inc_carrier], "carrier_delay", *self._inc)]

    def scoreboard(self) -> dict[str, float]:
        return dict(self._score)

    def stop(self) -> None:
        self._stopped = True

    @property
    def _exhausted(self) -> bool:
        n = self.config.events
        return self._stopped or (n > 0 and self._ledger.issued >= n)

    def peek_ms(self) -> int | None:
        return None if self._exhausted else int(self._ts(self._ledger.issued))

    def next_batch(self, max_events: int, until_ms: int | None = None) -> Batch | None:
        led = self._ledger
        if self._exhausted:
            if led.open:
                return None
            last = self._due(None)
            if last is None:
                raise StopIteration
            return [("deliveries", last)]
        g = led.issued
        n = max(1, max_events)
        if self.config.events:
            n = min(n, self.config.events - g)
        ts = self._ts(np.arange(g, g + n))
        keep = ts < ts[0] + MIN_DELAY_MS  # one batch spans < the minimum delay: ordered streams
        if until_ms is not None:
            keep &= ts < until_ms
        n = int(np.count_nonzero(keep))
        until = int(ts[n - 1]) + 1 if n else int(until_ms or 0)
        j = led.first_open
        if j < g and int(self._ts(j)) + MIN_DELAY_MS < until:
            return None  # a decision still in flight could have a delivery before `until`
        out: Batch = []
        due = self._due(until)
        if due is not None:
            out.append(("deliveries", due))
        if n:
            out.append(("shipments", self._shipment_lines(np.arange(g, g + n))))
            led.issue(n)
            self._clock = max(self._clock, until - 1)
        return out

    def respond(self, decision_ids: np.ndarray, arms: np.ndarray) -> None:
        _, idx, arm = accept_decisions(
            self._ledger, decision_ids, arms, self._prefix, self._arm_index, "simulator logistics"
        )
        if len(idx):
            self._answer(idx, arm)

    # -- truth ------------------------------------------------------------------------------
    def _chunk(self, k: int) -> _Chunk:
        if k < self._made and k not in self._chunks:
            raise ValueError(f"shipments {k * CHUNK}..{(k + 1) * CHUNK - 1} are all answered")
        while self._made <= k:  # chunks are made in order: each starts where the last ended
            rng = np.random.default_rng([self.config.seed, 11, self._made])
            gaps = rng.exponential(_H / self.config.rate_per_h, CHUNK)
            offsets = self._chunk_end + np.cumsum(gaps)
            self._chunk_end = float(offsets[-1])
            self._chunks[self._made] = _Chunk(
                ts=START_MS + offsets.astype(np.int64),
                route=rng.choice(len(ROUTES), CHUNK, p=self.truth.popularity),
                weight=np.round(np.clip(rng.lognormal(math.log(5.0), 1.0, CHUNK), 0.2, 500.0), 1),
                express=rng.random(CHUNK) < _EXPRESS_SHARE,
                u=rng.random((CHUNK, 3)),
                z=rng.standard_normal((CHUNK, 2)),
            )
            self._made += 1
        return self._chunks[k]

    def _cols(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64)
        ks = idx // CHUNK
        names = ("ts", "route", "weight", "express", "u", "z")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        order = np.argsort(ks, kind="stable")
        for k in np.unique(ks).tolist():
            ch, off = self._chunk(k), idx[order][ks[order] == k] % CHUNK
            for n in names:
                parts[n].append(getattr(ch, n)[off])
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        return {n: np.concatenate(v)[inv] for n, v in parts.items()}

    def _ts(self, idx: np.ndarray | int) -> Any:
        """Creation times (epoch ms) of shipments ``idx`` (an array, or one int for an int)."""
        ts = self._cols(np.atleast_1d(np.asarray(idx, dtype=np.int64)))["ts"]
        return ts if np.ndim(idx) else int(ts[0])

    def _params(self, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per shipment (rows) and carrier (columns): on-time probability (the incident's
        included, in expectation), mean cost, damage probability, eligibility; per shipment the
        promised hours and when it arrives if on time (``sched``, ms); ``p_hit``: on-time
        probability of the incident carrier for a shipment the incident hits."""
        t, r = self.truth, c["route"]
        lw = np.log(c["weight"] / 5.0)[:, None]
        ex = c["express"][:, None]
        logit = t.on_logit[r] + ex * t.express + lw * t.weight
        p_normal = 1.0 / (1.0 + np.exp(-logit))
        p_on = p_normal.copy()
        d = _DISTANCE[r]
        promised = np.where(c["express"], 12.0 + d / 400.0, 24.0 + d / 100.0)
        span = promised * _H
        sched = c["ts"] + (span * (0.8 + 0.2 * c["u"][:, 1])).astype(np.int64)
        k = self._inc_carrier
        p_hit = 1.0 / (1.0 + np.exp(-(logit[:, k] + _INCIDENT_LOGIT)))
        if self._inc is not None:  # hit: its on-time arrival would fall in the incident window
            lo, hi = (np.clip(((e - c["ts"]) / span - 0.8) / 0.2, 0.0, 1.0) for e in self._inc)
            p_on[:, k] += (hi - lo) * (p_hit - p_on[:, k])
        cost = (t.fee + t.per_km * d[:, None] / 1000.0 + t.per_kg * c["weight"][:, None]) * (
            t.route_cost[r] * np.where(ex, t.surcharge, 1.0)
        )
        return {
            "p_on": p_on,
            "p_normal": p_normal,
            "p_hit": p_hit,
            "cost": cost,
            "p_dmg": 1.0 / (1.0 + np.exp(-(t.dmg_logit + lw * t.dmg_weight))),
            "promised": promised,
            "sched": sched,
            "eligible": t.eligible[r],
        }

    @staticmethod
    def _expected(p: dict[str, np.ndarray]) -> np.ndarray:
        ok = p["eligible"]
        on = np.where(ok, p["p_on"], 0.0)
        return on - np.where(ok, 1.0, 1.5) * p["cost"] / 100.0 - 2.0 * p["p_dmg"]

    def expected_rewards(self, shipment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The truth, for tests and evaluation (a pipeline never sees it): per shipment and
        carrier the expected reward (ineligible ones as rebookings) and the eligibility mask."""
        idx = parse_ids(np.asarray(shipment_ids, dtype=object).tolist(), self._prefix)
        if (idx < 0).any() or (idx >= self._ledger.issued).any():
            raise ValueError("expected_rewards: ids of shipments emitted by this simulator")
        p = self._params(self._cols(idx))
        return self._expected(p), p["eligible"]

    # -- decisions and deliveries -----------------------------------------------------------
    def _answer(self, idx: np.ndarray, arm: np.ndarray) -> None:
        c = self._cols(idx)
        p = self._params(c)
        rows = np.arange(len(idx))
        exp, ok = self._expected(p), p["eligible"]
        chosen_ok = ok[rows, arm]
        sc = self._score
        sc["decisions"] += len(idx)
        sc["chosen"] += float(exp[rows, arm].sum())
        sc["oracle"] += float(np.where(ok, exp, -np.inf).max(axis=1).sum())
        sc["random"] += float((np.where(ok, exp, 0.0).sum(axis=1) / ok.sum(axis=1)).sum())
        sc["ineligible"] += float(np.count_nonzero(~chosen_ok))
        u, z = c["u"], c["z"]
        hit = np.zeros(len(idx), dtype=bool)
        if self._inc is not None:
            inside = (p["sched"] >= self._inc[0]) & (p["sched"] < self._inc[1])
            hit = (arm == self._inc_carrier) & inside
        p_on = np.where(hit, p["p_hit"], p["p_normal"][rows, arm])
        on_time = chosen_ok & (u[:, 0] < p_on)
        median = self.truth.late_h[arm] * np.where(hit, _INCIDENT_DELAY, 1.0)
        late = np.maximum(0.01, np.round(median * np.exp(0.8 * z[:, 0]), 2))
        delay_h = np.where(on_time, 0.0, late + np.where(chosen_ok, 0.0, 24.0))
        due = c["ts"] + (p["promised"] * _H).astype(np.int64)
        at = np.where(on_time, p["sched"], due + (delay_h * _H).astype(np.int64))
        at = np.maximum(at, c["ts"] + MIN_DELAY_MS)
        cost = p["cost"][rows, arm] * np.where(chosen_ok, 1.0, 1.5) * np.exp(0.1 * z[:, 1] - 0.005)
        damaged = u[:, 2] < p["p_dmg"][rows, arm]
        self._pending.append((at, idx, arm, on_time, delay_h, np.round(cost, 2), damaged))
        for k, cnt in zip(*np.unique(idx // CHUNK, return_counts=True), strict=True):
            ch = self._chunks[int(k)]
            ch.answered += int(cnt)
            if ch.answered >= CHUNK:
                del self._chunks[int(k)]

    def _due(self, until: int | None) -> list[bytes] | None:
        """Lines of the deliveries before ``until`` (None: all), in (time, shipment) order."""
        if not self._pending:
            return None
        cols = [np.concatenate(c) for c in zip(*self._pending, strict=True)]
        due = np.ones(len(cols[0]), bool) if until is None else cols[0] < until
        rest = ~due
        self._pending = [tuple(c[rest] for c in cols)] if rest.any() else []
        if not due.any():
            return None
        sel = [c[due] for c in cols]
        order = np.lexsort((sel[1], sel[0]))
        at, idx, arm, on_time, delay_h, cost, damaged = (c[order] for c in sel)
        self._clock = max(self._clock, int(at[-1]))
        return json_lines(
            [
                ("delivered_at", at),
                ("shipment_id", [f"{self._prefix}{i}" for i in idx.tolist()]),
                ("carrier", Coded(arm, self._carrier_json)),
                ("on_time", on_time),
                ("delay_h", delay_h),
                ("cost", cost),
                ("damaged", damaged),
            ]
        )

    def _shipment_lines(self, idx: np.ndarray) -> list[bytes]:
        c = self._cols(idx)
        r = c["route"]
        return json_lines(
            [
                ("shipment_id", [f"{self._prefix}{i}" for i in idx.tolist()]),
                ("created_at", c["ts"]),
                ("route", Coded(r, self._route_json)),
                ("weight_kg", c["weight"]),
                ("distance_km", _DISTANCE[r]),
                ("express", c["express"]),
                ("carriers", Coded(r, self._carriers_json)),
            ]
        )
