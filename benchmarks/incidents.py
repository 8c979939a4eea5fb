"""Detection quality on a simulator's labelled incidents: precision, recall, delay.

Any spec whose streams come from a simulator that labels incidents (``adserving``,
``logistics``, ``nab``) is played in-process (``benchmarks.closed_loop.play``: deterministic
per seed) and the anomalies of its detect stages are matched to the incidents by key (the
detect stage key's value: the partner, the carrier, the series) and event time. A record is a
true positive when its key has an incident with ``start <= event_time < end + grace``. The
grace period exists because a detector may see an incident only through events that arrive
after it (the reference sees a partner's incident through the *outcomes* of the requests made
during it, seconds after the request, and the bucket that holds them must close); it defaults
to :data:`GRACE_MS`. Every incident the simulator injected counts for matching (also one that
started while the detectors were still warming up, or that was cut off by the end of the run:
alerting on it is not a false alarm), but recall and delay are computed over the *scored*
incidents only: those that start ``warmup`` after the run's start and end before the run does
(the last event time of the simulator's decision stream, or of every stream without one).
Precision counts records; recall counts scored incidents with at least one true positive;
delay is the first true positive's event time minus the incident's start.

A run with no scored incident (too short for the warm-up, or no incident injected) is not
scored: its report says so instead of a recall of NaN, the summary over seeds leaves it out,
and the JSON form holds null, never NaN, for every number that is undefined.

The defaults (grace 10 s, warm-up 20 s) suit the reference spec's one-second buckets; a spec
whose detectors bucket by the hour needs hours (``eddy eval incidents --grace 6h``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eddy.benchmarks.closed_loop import SimFeed, play, spec_simulator, with_simulator
from eddy.schemas.spec import PipelineSpec
from eddy.sources.simulators.base import Incident

__all__ = [
    "GRACE_MS",
    "WARMUP_MS",
    "IncidentReport",
    "SeedsReport",
    "evaluate",
    "evaluate_seeds",
    "score",
]

GRACE_MS = 10_000
WARMUP_MS = 20_000  # incidents starting earlier are not scored (detectors still warming up)


@dataclass(frozen=True)
class IncidentReport:
    incidents: int
    detected: int
    anomalies: int
    true_positives: int
    precision: float
    recall: float
    median_delay_s: float
    delays_s: tuple[float, ...]
    by_kind: dict[str, tuple[int, int]]  # kind -> (detected, total)
    missed: tuple[Incident, ...] = ()
    false_alarms: tuple[tuple[str, str, int], ...] = ()  # (key, metric, event_time_ms)

    @property
    def scored(self) -> bool:
        """Whether any incident counted for recall (else the run was too short to score)."""
        return self.incidents > 0

    def lines(self) -> list[str]:
        out = [
            f"incidents {self.incidents}, detected {self.detected}; anomaly records "
            f"{self.anomalies}, true positives {self.true_positives}"
        ]
        if not self.scored:
            out.append(
                "not scored: no incident started after the warm-up and ended before the run did"
            )
            return out
        out.append(
            f"precision {_show(self.precision, '.3f', 'n/a (no anomaly record)')}  "
            f"recall {self.recall:.3f}  "
            f"median detection delay {_show(self.median_delay_s, '.1f', 'n/a', ' s')}"
        )
        for kind, (d, n) in sorted(self.by_kind.items()):
            out.append(f"  {kind:<14} detected {d}/{n}")
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "anomalies": self.anomalies,
            "true_positives": self.true_positives,
            "precision": _number(self.precision),
            "recall": _number(self.recall),
            "median_delay_s": _number(self.median_delay_s),
            "delays_s": list(self.delays_s),
            "by_kind": {k: {"detected": d, "total": n} for k, (d, n) in self.by_kind.items()},
            "missed": [vars(i) for i in self.missed],
            "false_alarms": [
                {"key": k, "metric": m, "event_time": t} for k, m, t in self.false_alarms
            ],
        }


def score(
    anomalies: Sequence[tuple[str, int] | tuple[str, str, int]],
    incidents: list[Incident],
    grace_ms: int = GRACE_MS,
    scored: Sequence[bool] | None = None,
) -> IncidentReport:
    """``anomalies``: ``(key, event_time_ms)`` or ``(key, metric, event_time_ms)`` of every
    anomaly record; ``scored[i]``: whether incident ``i`` counts for recall and delay
    (default: all)."""
    use = list(scored) if scored is not None else [True] * len(incidents)
    first: dict[int, int] = {}
    tp = 0
    false_alarms: list[tuple[str, str, int]] = []
    for a in anomalies:
        key, metric, t = (a[0], "", a[1]) if len(a) == 2 else a
        hit = False
        for i, inc in enumerate(incidents):
            if inc.key == key and inc.start_ms <= t < inc.end_ms + grace_ms:
                hit = True
                first[i] = min(first.get(i, t), t)
        tp += hit
        if not hit:
            false_alarms.append((str(key), str(metric), int(t)))
    counted = [i for i in range(len(incidents)) if use[i]]
    found = [i for i in counted if i in first]
    delays = tuple((first[i] - incidents[i].start_ms) / 1000 for i in found)
    by_kind: dict[str, tuple[int, int]] = {}
    for i in counted:
        d, n = by_kind.get(incidents[i].kind, (0, 0))
        by_kind[incidents[i].kind] = (d + (i in first), n + 1)
    return IncidentReport(
        incidents=len(counted),
        detected=len(found),
        anomalies=len(anomalies),
        true_positives=tp,
        precision=tp / len(anomalies) if anomalies else float("nan"),
        recall=len(found) / len(counted) if counted else float("nan"),
        median_delay_s=statistics.median(delays) if delays else float("nan"),
        delays_s=delays,
        by_kind=by_kind,
        missed=tuple(incidents[i] for i in counted if i not in first),
        false_alarms=tuple(false_alarms),
    )


def evaluate(
    spec: PipelineSpec,
    events: int | None = None,
    seed: int | None = None,
    *,
    grace_ms: int = GRACE_MS,
    warmup_ms: int = WARMUP_MS,
    detect: Sequence[str] | None = None,
) -> IncidentReport:
    """Play ``spec`` against its simulator (``events``: the simulator's ``events`` option,
    ``seed``: its seed and the policies'; None: the spec's) and score the anomalies of the
    ``detect`` stages (default: all of them)."""
    if seed is not None:
        spec = with_simulator(spec, seed=seed)
    stages = set(detect) if detect is not None else {d.name for d in spec.detect}
    feed = SimFeed(spec, spec_simulator(spec, events))
    found: list[tuple[str, str, int]] = []
    for res in play(feed, now_ns=0):
        an = res.tables.get("anomalies")
        if an is not None:
            mine = np.isin(np.asarray(an["detect"], dtype=object), list(stages))
            ts = np.asarray(an["event_time"], dtype=np.int64)[mine].tolist()
            keys = np.asarray(an["key"], dtype=object)[mine].tolist()
            metrics = np.asarray(an["metric"], dtype=object)[mine].tolist()
            found.extend(zip(keys, metrics, ts, strict=True))
    sim = feed.sim
    ending = [feed.decision_stream] if feed.decision_stream else list(feed.last_ms)
    end_ms = max((feed.last_ms.get(s, sim.start_ms) for s in ending), default=sim.start_ms)
    warm_ms = sim.start_ms + warmup_ms
    incidents = sim.incidents
    scored = [i.start_ms >= warm_ms and i.end_ms <= end_ms for i in incidents]
    return score(found, incidents, grace_ms, scored)


@dataclass(frozen=True)
class SeedsReport:
    """One :class:`IncidentReport` per seed plus the summary the docs report."""

    seeds: tuple[int, ...]
    reports: tuple[IncidentReport, ...]

    @property
    def precision(self) -> tuple[float, float]:
        """(mean, min) over the scored seeds that wrote anomaly records (NaN: none did)."""
        return _mean_min([r.precision for r in self.reports if r.scored])

    @property
    def recall(self) -> tuple[float, float]:
        """(mean, min) over the scored seeds (NaN: none was)."""
        return _mean_min([r.recall for r in self.reports if r.scored])

    @property
    def median_delay_s(self) -> float:
        """Median over every detected incident of every seed."""
        d = [x for r in self.reports for x in r.delays_s]
        return statistics.median(d) if d else float("nan")

    def lines(self) -> list[str]:
        out: list[str] = []
        for s, r in zip(self.seeds, self.reports, strict=True):
            out.append(f"seed {s}:")
            out += [f"  {line}" for line in r.lines()]
        (pm, pn), (rm, rn) = self.precision, self.recall
        inc = sum(r.incidents for r in self.reports)
        det = sum(r.detected for r in self.reports)
        scored = sum(r.scored for r in self.reports)
        head = f"all seeds: incidents {inc}, detected {det}"
        if not scored:
            out.append(f"{head}; no seed scored")
            return out
        of = (
            ""
            if scored == len(self.reports)
            else f" ({scored} of {len(self.reports)} seeds scored)"
        )
        delay = _show(self.median_delay_s, ".1f", "n/a", " s")
        out.append(
            f"{head}; precision mean {_show(pm, '.3f')} min {_show(pn, '.3f')}; "
            f"recall mean {rm:.3f} min {rn:.3f}; median detection delay {delay}{of}"
        )
        return out

    def as_dict(self) -> dict[str, object]:
        """The report as JSON values: an undefined number (nothing scored) is None, so that
        the JSON holds null and never the NaN that strict readers refuse."""
        (pm, pn), (rm, rn) = self.precision, self.recall
        return {
            "seeds": list(self.seeds),
            "scored_seeds": [s for s, r in zip(self.seeds, self.reports, strict=True) if r.scored],
            "precision_mean": _number(pm),
            "precision_min": _number(pn),
            "recall_mean": _number(rm),
            "recall_min": _number(rn),
            "median_delay_s": _number(self.median_delay_s),
            "runs": [r.as_dict() for r in self.reports],
        }


def _mean_min(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if not math.isnan(x)]
    return (statistics.fmean(v), min(v)) if v else (math.nan, math.nan)


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def _show(x: float, fmt: str, missing: str = "n/a", unit: str = "") -> str:
    return missing if math.isnan(x) else f"{x:{fmt}}{unit}"


def evaluate_seeds(
    spec: PipelineSpec,
    events: int | None,
    seeds: Sequence[int],
    *,
    grace_ms: int = GRACE_MS,
    warmup_ms: int = WARMUP_MS,
) -> SeedsReport:
    reports = (evaluate(spec, events, s, grace_ms=grace_ms, warmup_ms=warmup_ms) for s in seeds)
    return SeedsReport(tuple(seeds), tuple(reports))
