"""Detection quality on the simulator's labelled incidents: precision, recall, delay.

The engine's anomaly records are matched to incidents by partner and time. A record is a true
positive when its partner has an incident with ``start <= event_time < end + grace``: the
detectors watch trailing windows, which still show an incident for one window length after it
ends, so ``grace`` defaults to the first trailing window. Precision counts records; recall counts
incidents with at least one true positive; delay is the first true positive's event time minus
the incident's start.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from benchmarks.closed_loop import play
from dataflows.config import Settings
from operators.adserving import AdServingEngine
from sources.simulator import Incident, Simulator

__all__ = ["IncidentReport", "evaluate", "score"]


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

    def lines(self) -> list[str]:
        out = [
            f"incidents {self.incidents}, detected {self.detected}; anomaly records "
            f"{self.anomalies}, true positives {self.true_positives}",
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  "
            f"median detection delay {self.median_delay_s:.1f} s",
        ]
        for kind, (d, n) in sorted(self.by_kind.items()):
            out.append(f"  {kind:<14} detected {d}/{n}")
        return out


def score(
    anomalies: list[tuple[str, int]], incidents: list[Incident], grace_ms: int
) -> IncidentReport:
    """``anomalies``: (partner, event_time_ms) of every anomaly record."""
    first: dict[int, int] = {}
    tp = 0
    for partner, t in anomalies:
        hit = False
        for i, inc in enumerate(incidents):
            if inc.partner == partner and inc.start_ms <= t < inc.end_ms + grace_ms:
                hit = True
                first[i] = min(first.get(i, t), t)
        tp += hit
    delays = tuple((first[i] - incidents[i].start_ms) / 1000 for i in sorted(first))
    by_kind: dict[str, tuple[int, int]] = {}
    for i, inc in enumerate(incidents):
        d, n = by_kind.get(inc.kind, (0, 0))
        by_kind[inc.kind] = (d + (i in first), n + 1)
    return IncidentReport(
        incidents=len(incidents),
        detected=len(first),
        anomalies=len(anomalies),
        true_positives=tp,
        precision=tp / len(anomalies) if anomalies else float("nan"),
        recall=len(first) / len(incidents) if incidents else float("nan"),
        median_delay_s=statistics.median(delays) if delays else float("nan"),
        delays_s=delays,
        by_kind=by_kind,
    )


def evaluate(settings: Settings, events: int | None = None, seed: int | None = None) -> Any:
    """Run the engine on the simulator and score its anomalies against the incidents."""
    sim_cfg = settings.simulator
    if events is not None:
        sim_cfg = replace(sim_cfg, n_events=events)
    if seed is not None:
        sim_cfg = replace(sim_cfg, seed=seed)
    engine_cfg = replace(settings.engine, seed=sim_cfg.seed)
    sim = Simulator(sim_cfg)
    engine = AdServingEngine(engine_cfg)
    found: list[tuple[str, int]] = []
    for res in play(engine, sim, settings.batch_size):
        an = res.tables.get("anomalies")
        if an is not None:
            found.extend(zip(list(an["key"]), [int(t) for t in an["event_time"]], strict=True))
    # incidents that start before the detectors are warm cannot be scored fairly
    warm_ms = sim_cfg.start_ms + 2 * engine_cfg.trailing_ms[0]
    end_ms = int(sim.ts_of(sim.generated))
    incidents = [i for i in sim.incidents if i.start_ms >= warm_ms and i.end_ms <= end_ms]
    return score(found, incidents, grace_ms=engine_cfg.trailing_ms[0])
