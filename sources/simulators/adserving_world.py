"""The closed-loop ad-serving simulator: requests in, decisions back, delayed outcomes out.

It holds a hidden ground truth per partner and context (fill probability, price, latency, error
rate), answers every decision with an outcome drawn from that truth after a delay, and injects
labelled incidents (outage, latency spike, price drop, error burst) and, optionally, a concept
drift (the best partner changes). Because it knows the truth it can score any policy: the
expected reward of the chosen arm against the oracle arm and against a uniformly random arm.

Determinism: request ``i`` and all the randomness of its outcome are drawn from a generator
seeded by ``(seed, i // CHUNK)``, so the same seed gives the same requests, and the same
decisions give the same outcomes, however the stream is cut into batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "INCIDENT_KINDS",
    "Incident",
    "OutcomeBatch",
    "RequestBatch",
    "Scoreboard",
    "SimConfig",
    "Simulator",
]

CHUNK = 1024
INCIDENT_KINDS = ("outage", "latency_spike", "price_drop", "error_burst")
_PLACEMENTS = ("home_top", "home_side", "article_top", "article_inline", "video_pre", "app_banner")
_DEVICES = ("desktop", "mobile", "tablet")
_GEOS = ("us", "gb", "de", "fr", "br", "in", "jp", "au")
_PARTNERS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def _objects(n: int = 0) -> np.ndarray:
    return np.empty(n, dtype=object)


@dataclass
class RequestBatch:
    """Requests as columns (the adapter in ``adserving.py`` writes them as JSON lines)."""

    id: np.ndarray = field(default_factory=_objects)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    placement: np.ndarray = field(default_factory=_objects)
    device: np.ndarray = field(default_factory=_objects)
    geo: np.ndarray = field(default_factory=_objects)
    floor_price: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    ingest_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class OutcomeBatch:
    """Outcomes as columns, in event-time order."""

    decision_id: np.ndarray = field(default_factory=_objects)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    partner: np.ndarray = field(default_factory=_objects)
    filled: np.ndarray = field(default_factory=lambda: np.empty(0, np.bool_))
    revenue: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    error: np.ndarray = field(default_factory=lambda: np.empty(0, np.bool_))
    position: np.ndarray = field(default_factory=_objects)

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings. ``n_events=None`` means unbounded (``--forever``)."""

    seed: int = 0
    rate_per_s: float = 2_000.0
    n_events: int | None = 120_000
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    partners: tuple[str, ...] = _PARTNERS
    outcome_delay_ms: float = 1_500.0  # median delay of an outcome after its request
    min_delay_ms: int = 300
    outcome_loss: float = 0.005  # fraction of outcomes that never arrive (TTL expiry path)
    incident_every_s: float = 20.0  # mean gap between incidents (0 = none)
    incident_s: tuple[float, float] = (4.0, 10.0)
    drift_at_s: float | None = None  # concept drift: best and worst partners swap truth
    latency_penalty_per_s: float = 1.0

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError(f"simulator: rate_per_s must be > 0, got {self.rate_per_s}")
        if self.n_events is not None and self.n_events < 0:
            raise ValueError(f"simulator: n_events must be >= 0, got {self.n_events}")
        if len(self.partners) < 2:
            raise ValueError("simulator: partners needs at least two names")
        if self.min_delay_ms < 1 or self.outcome_delay_ms < self.min_delay_ms:
            raise ValueError("simulator: need 1 <= min_delay_ms <= outcome_delay_ms")


@dataclass(frozen=True)
class Incident:
    """A labelled incident: ``partner`` misbehaves in event time ``[start_ms, end_ms)``."""

    partner: str
    kind: str
    start_ms: int
    end_ms: int


@dataclass
class Scoreboard:
    """Cumulative expected reward of the decisions made, of the oracle and of random choice."""

    decisions: int = 0
    chosen: float = 0.0
    oracle: float = 0.0
    random: float = 0.0


@dataclass
class _Chunk:
    placement: np.ndarray
    device: np.ndarray
    geo: np.ndarray
    floor_price: np.ndarray
    z: np.ndarray  # (n, 5) normals: fill, price, latency, error, delay
    answered: int = 0


@dataclass
class _Truth:
    fill_logit: np.ndarray  # (P, n_placement + n_device + n_geo + 1)
    price: np.ndarray  # (P, n_geo) mean price when filled
    latency: np.ndarray  # (P,) median latency ms
    error: np.ndarray  # (P,) error probability


def _truth(cfg: SimConfig) -> _Truth:
    rng = np.random.default_rng([cfg.seed, 7_777])
    n_p = len(cfg.partners)
    d = len(_PLACEMENTS) + len(_DEVICES) + len(_GEOS) + 1
    fill = rng.normal(0.0, 0.9, size=(n_p, d))
    fill[:, -1] = rng.uniform(-0.5, 1.0, size=n_p)  # bias
    return _Truth(
        fill_logit=fill,
        price=rng.uniform(0.6, 3.0, size=(n_p, len(_GEOS))),
        latency=rng.uniform(60.0, 350.0, size=n_p),
        error=rng.uniform(0.005, 0.03, size=n_p),
    )


@dataclass
class Simulator:
    """Generates requests, takes decisions back, emits their outcomes when they are due."""

    config: SimConfig
    _truth: _Truth = field(init=False)
    _chunks: dict[int, _Chunk] = field(init=False, default_factory=dict)
    _next: int = field(init=False, default=0)
    _pending: list[tuple[np.ndarray, ...]] = field(init=False, default_factory=list)
    incidents: list[Incident] = field(init=False, default_factory=list)
    scoreboard: Scoreboard = field(init=False, default_factory=Scoreboard)
    answered: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._truth = _truth(self.config)
        self._drift_truth = self._drifted(self._truth)
        self._inc_rng = np.random.default_rng([self.config.seed, 31_337])
        self._inc_until_ms = self.config.start_ms

    @property
    def partners(self) -> tuple[str, ...]:
        return self.config.partners

    @property
    def generated(self) -> int:
        return self._next

    @property
    def exhausted(self) -> bool:
        n = self.config.n_events
        return n is not None and self._next >= n

    def ts_of(self, index: np.ndarray | int) -> np.ndarray:
        return self.config.start_ms + (np.asarray(index) * 1000.0 / self.config.rate_per_s).astype(
            np.int64
        )

    # -- requests -------------------------------------------------------------------------
    def _chunk(self, k: int) -> _Chunk:
        ch = self._chunks.get(k)
        if ch is None:
            rng = np.random.default_rng([self.config.seed, k])
            ch = _Chunk(
                placement=rng.integers(0, len(_PLACEMENTS), CHUNK),
                device=rng.choice(len(_DEVICES), CHUNK, p=[0.35, 0.55, 0.10]),
                geo=rng.choice(len(_GEOS), CHUNK, p=[0.3, 0.1, 0.1, 0.1, 0.1, 0.15, 0.1, 0.05]),
                floor_price=np.round(rng.gamma(2.0, 0.25, CHUNK), 4),
                z=rng.standard_normal((CHUNK, 5)),
            )
            self._chunks[k] = ch
        return ch

    def next_requests(self, max_n: int, ingest_ns: int = 0) -> RequestBatch:
        """The next ``max_n`` requests (fewer at the end of a bounded run)."""
        n = max_n
        if self.config.n_events is not None:
            n = max(0, min(n, self.config.n_events - self._next))
        idx = np.arange(self._next, self._next + n)
        self._next += n
        self._extend_incidents(int(self.ts_of(self._next)))
        cols = self._columns(idx)
        return RequestBatch(
            id=np.array([f"r{self.config.seed}-{i}" for i in idx.tolist()], dtype=object),
            ts=self.ts_of(idx),
            placement=np.array(_PLACEMENTS, dtype=object)[cols[0]],
            device=np.array(_DEVICES, dtype=object)[cols[1]],
            geo=np.array(_GEOS, dtype=object)[cols[2]],
            floor_price=cols[3],
            ingest_ns=np.full(n, ingest_ns, dtype=np.int64),
        )

    def _columns(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        out = [np.empty(len(idx), np.int64) for _ in range(3)]
        floor = np.empty(len(idx))
        z = np.empty((len(idx), 5))
        for k in np.unique(idx // CHUNK).tolist():
            sel = idx // CHUNK == k
            ch, off = self._chunk(k), idx[sel] % CHUNK
            out[0][sel], out[1][sel], out[2][sel] = ch.placement[off], ch.device[off], ch.geo[off]
            floor[sel], z[sel] = ch.floor_price[off], ch.z[off]
        return out[0], out[1], out[2], floor, z

    # -- truth ----------------------------------------------------------------------------
    def _drifted(self, t: _Truth) -> _Truth:
        order = np.argsort(t.price.mean(axis=1) / (1 + np.exp(-t.fill_logit[:, -1])))
        worst, best = order[0], order[-1]
        perm = np.arange(len(self.partners))
        perm[[worst, best]] = perm[[best, worst]]
        return _Truth(t.fill_logit[perm], t.price[perm], t.latency[perm], t.error[perm])

    def _params(
        self, idx: np.ndarray, ts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """Per request and partner: fill prob, mean price, median latency, error prob."""
        cfg = self.config
        cols = self._columns(idx)
        pl, dv, ge, floor, _ = cols
        t = self._truth
        drifted = np.zeros(len(idx), bool)
        if cfg.drift_at_s is not None:
            drifted = ts >= cfg.start_ms + int(cfg.drift_at_s * 1000)
        n_pl, n_dv = len(_PLACEMENTS), len(_DEVICES)

        def logit(tr: _Truth) -> np.ndarray:
            w = tr.fill_logit
            return (
                w[:, pl] + w[:, n_pl + dv] + w[:, n_pl + n_dv + ge] + w[:, -1:]
            ).T - 0.8 * floor[:, None] / tr.price[:, ge].T

        lg = logit(t)
        price, lat, err = t.price[:, ge].T, np.tile(t.latency, (len(idx), 1)), t.error.copy()
        err = np.tile(err, (len(idx), 1))
        if drifted.any():
            d = self._drift_truth
            lg[drifted] = logit(d)[drifted]
            price[drifted] = d.price[:, ge].T[drifted]
            lat[drifted] = d.latency
            err[drifted] = d.error
        fill = 1.0 / (1.0 + np.exp(-lg))
        for inc in self.incidents:
            if inc.start_ms > int(ts.max(initial=0)) or inc.end_ms <= int(ts.min(initial=0)):
                continue
            hit = (ts >= inc.start_ms) & (ts < inc.end_ms)
            p = self.partners.index(inc.partner)
            if inc.kind == "outage":
                fill[hit, p] *= 0.02
                err[hit, p] = 0.6
            elif inc.kind == "latency_spike":
                lat[hit, p] *= 6.0
            elif inc.kind == "price_drop":
                price[hit, p] *= 0.25
            else:
                err[hit, p] = 0.45
        return fill, price, lat, err, cols

    def expected_rewards(self, idx: np.ndarray) -> np.ndarray:
        """(n, n_partners) expected reward of each arm for requests ``idx``."""
        ts = self.ts_of(idx)
        fill, price, lat, err, _ = self._params(idx, ts)
        return self._expected(fill, price, lat, err)

    def _expected(self, fill: np.ndarray, price: np.ndarray, lat: np.ndarray, err: np.ndarray):
        mean_lat = lat * math.exp(0.5 * 0.4**2)
        return (1 - err) * fill * price * math.exp(0.5 * 0.3**2) - (
            self.config.latency_penalty_per_s * mean_lat / 1000.0
        )

    def _extend_incidents(self, until_ms: int) -> None:
        cfg = self.config
        if cfg.incident_every_s <= 0:
            return
        while self._inc_until_ms < until_ms:
            gap = self._inc_rng.exponential(cfg.incident_every_s * 1000.0)
            start = int(self._inc_until_ms + max(gap, 2_000.0))
            dur = int(self._inc_rng.uniform(*cfg.incident_s) * 1000)
            partner = cfg.partners[int(self._inc_rng.integers(len(cfg.partners)))]
            kind = INCIDENT_KINDS[int(self._inc_rng.integers(len(INCIDENT_KINDS)))]
            self.incidents.append(Incident(partner, kind, start, start + dur))
            self._inc_until_ms = start + dur

    # -- decisions and outcomes -----------------------------------------------------------
    @staticmethod
    def index_of(ids: np.ndarray) -> np.ndarray:
        return np.array([int(s.rsplit("-", 1)[1]) for s in ids.tolist()], dtype=np.int64)

    def respond(self, decision_ids: np.ndarray, arms: np.ndarray) -> None:
        """Take decisions back: score them and schedule their outcomes."""
        if len(decision_ids) == 0:
            return
        idx = self.index_of(decision_ids)
        ts = self.ts_of(idx)
        fill, price, lat, err, cols = self._params(idx, ts)
        z = cols[4]
        rows = np.arange(len(idx))
        exp = self._expected(fill, price, lat, err)
        sb = self.scoreboard
        sb.decisions += len(idx)
        sb.chosen += float(exp[rows, arms].sum())
        sb.oracle += float(exp.max(axis=1).sum())
        sb.random += float(exp.mean(axis=1).sum())
        u = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))  # normals -> uniforms
        errored = u[:, 3] < err[rows, arms]
        filled = ~errored & (u[:, 0] < fill[rows, arms])
        revenue = np.where(filled, price[rows, arms] * np.exp(0.3 * z[:, 1] - 0.045), 0.0)
        latency = lat[rows, arms] * np.exp(0.4 * z[:, 2])
        delay = np.maximum(
            self.config.min_delay_ms, self.config.outcome_delay_ms * np.exp(0.5 * z[:, 4])
        ).astype(np.int64)
        keep = u[:, 4] >= self.config.outcome_loss
        self._pending.append(
            (
                (ts + delay)[keep],
                decision_ids[keep],
                np.array(self.partners, dtype=object)[arms[keep]],
                filled[keep],
                np.round(revenue[keep], 6),
                np.round(latency[keep], 3),
                errored[keep],
            )
        )
        self.answered += len(idx)
        self._forget(idx)

    def _forget(self, idx: np.ndarray) -> None:
        ks, counts = np.unique(idx // CHUNK, return_counts=True)
        for k, c in zip(ks.tolist(), counts.tolist(), strict=True):
            ch = self._chunks.get(k)
            if ch is not None:
                ch.answered += c
                if ch.answered >= CHUNK:
                    del self._chunks[k]

    def due_outcomes(self, until_ms: int) -> OutcomeBatch:
        """Outcomes with event time ``< until_ms`` not yet emitted, in event-time order."""
        if not self._pending:
            return OutcomeBatch()
        cols = [np.concatenate(c) for c in zip(*self._pending, strict=True)]
        due = cols[0] < until_ms
        self._pending = [tuple(c[~due] for c in cols)] if (~due).any() else []
        sel = [c[due] for c in cols]
        order = np.argsort(sel[0], kind="stable")
        sel = [c[order] for c in sel]
        return OutcomeBatch(
            decision_id=sel[1],
            ts=sel[0],
            partner=sel[2],
            filled=sel[3],
            revenue=sel[4],
            latency_ms=sel[5],
            error=sel[6],
            position=np.array([f"sim:{d}" for d in sel[1].tolist()], dtype=object),
        )

    @property
    def pending_outcomes(self) -> int:
        return sum(len(p[0]) for p in self._pending)
