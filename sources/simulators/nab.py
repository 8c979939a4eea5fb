"""Replay of NAB-format labelled series as one open-loop stream, for anomaly-detection runs.

The Numenta Anomaly Benchmark layout: ``DATA/data/<category>/<file>.csv`` (``timestamp,value``,
timestamps naive and read as UTC) and ``DATA/labels/combined_windows.json`` (per file, the
anomaly windows ``[start, end]``, both ends inclusive). Every series becomes part of one stream
``readings`` (id ``reading_id`` = ``"<series>#<row>"``, row counted from 1 after the header;
time ``ts``; ``series`` = ``"<category>/<file stem>"``; ``value``, float, ``null`` when the
CSV cell is empty), all series merged in event-time order (ties: by series name, then row), so
a spec can read NAB like any other input and its detectors be scored against the labels.
``events`` beyond the rows of the series replays every series again as a new one
(``"<series>~2"``, ``~3``, ... with the same times, values and labels): a fleet of sensors.
:attr:`NabReplay.incidents` are the labelled windows
(``key`` = series, kind ``labelled``, ``end_ms`` =
the inclusive end + 1 ms) of the series replayed, once the replay reaches their start.

Nothing is decided here (``decision_stream = None``): ``respond`` ignores everything, and there
is no randomness (``seed`` is accepted and ignored).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from eddy.sources.simulators.base import (
    Batch,
    ClosedLoopSimulator,
    Coded,
    Incident,
    SimStream,
    json_lines,
    opt_int,
    parse_options,
)

__all__ = ["DEFAULT_DATA", "NabReplay"]

# eddy/sources is a link to the repository's sources/: resolve() lands in the repository
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "benchdata" / "nab-dev"
_LABELS = Path("labels") / "combined_windows.json"


def _data_dir(v: Any) -> Path:
    p = Path(v) if isinstance(v, str | Path) and str(v) else None
    if p is None or not (p / "data").is_dir() or not (p / _LABELS).is_file():
        raise ValueError(
            f"expected a NAB directory (data/<category>/*.csv and {_LABELS}), got {str(v)!r}"
        )
    return p


def _categories(v: Any) -> tuple[str, ...] | None:
    if v is None or v == "all":
        return None
    if not isinstance(v, list | tuple) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f'expected a non-empty list of category names or "all", got {v!r}')
    return tuple(v)


def _ms(texts: list[str]) -> np.ndarray:
    """NAB timestamp texts (naive, UTC) -> epoch ms."""
    return np.array([t.strip() for t in texts], dtype="datetime64[ms]").astype(np.int64)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    head = [h.strip() for h in rows[0]]
    ti, vi = head.index("timestamp"), head.index("value")
    ts = _ms([r[ti] for r in rows[1:]])
    vals = np.array([float(r[vi]) if r[vi].strip() else np.nan for r in rows[1:]])
    return ts, vals


class NabReplay(ClosedLoopSimulator):
    """NAB series replayed in event-time order as the stream ``readings``."""

    name: ClassVar[str] = "nab"
    STREAMS: ClassVar[Mapping[str, SimStream]] = {
        "readings": SimStream(
            id="reading_id", time="ts", fields={"series": "string", "value": "float"}
        ),
    }
    OPTIONS: ClassVar[Mapping[str, str]] = {
        "data": "the NAB directory (default: the repository's benchdata/nab-dev)",
        "categories": 'categories to replay, e.g. ["realTraffic"] (default "all")',
        "events": "readings to replay (default 0: all)",
        "seed": "accepted and ignored (a replay has no randomness)",
    }
    decision_stream: ClassVar[str | None] = None

    def __init__(
        self, options: Mapping[str, Any], seed: int | None = None, base_dir: Path | None = None
    ) -> None:
        data = options.get("data") if isinstance(options, Mapping) else None
        if isinstance(data, str) and data and base_dir is not None:
            options = {**options, "data": str(Path(base_dir) / data)}  # absolute data stays
        o = parse_options(
            options,
            {
                "data": _data_dir,
                "categories": _categories,
                "events": opt_int(0),
                "seed": opt_int(0),
            },
            {"data": str(DEFAULT_DATA), "categories": "all", "events": 0, "seed": 0},
            seed,
        )
        root: Path = o["data"]
        known = sorted(p.name for p in (root / "data").iterdir() if p.is_dir())
        cats = o["categories"] or tuple(known)
        if not set(cats) <= set(known):
            raise ValueError(f"simulator.categories: expected names among {known}, got {cats!r}")
        self.data = root
        self.series: tuple[str, ...] = tuple(
            f"{c}/{p.stem}" for c in sorted(cats) for p in sorted((root / "data" / c).glob("*.csv"))
        )
        parts = [_read(root / "data" / f"{s}.csv") for s in self.series]
        total = sum(len(t) for t, _ in parts)
        if o["events"] > total:  # a fleet: further copies of every series, as new series
            passes = -(-o["events"] // total)
            self.series = tuple(
                s if k == 0 else f"{s}~{k + 1}" for k in range(passes) for s in self.series
            )
            parts = parts * passes
        code = np.concatenate([np.full(len(t), i) for i, (t, _) in enumerate(parts)])
        row = np.concatenate([np.arange(1, len(t) + 1) for t, _ in parts])
        ts = np.concatenate([t for t, _ in parts])
        order = np.lexsort((row, code, ts))  # series are numbered in name order
        n = len(order) if o["events"] == 0 else min(o["events"], len(order))
        order = order[:n]
        self._ts, self._code, self._row = ts[order], code[order], row[order]
        self._value = np.concatenate([v for _, v in parts])[order]
        self._names = np.array([f"{s}#" for s in self.series], dtype=object)
        self._series_json = Coded.table_of(list(self.series))
        with open(root / _LABELS) as f:
            labels = json.load(f)
        self._windows = [
            Incident(s, "labelled", int(a), int(b) + 1)
            for s in self.series
            for a, b in (_ms(w).tolist() for w in labels.get(f"{s.partition('~')[0]}.csv", []))
        ]
        self._windows.sort(key=lambda w: (w.start_ms, w.key))
        self._next = 0
        self._stopped = False

    @property
    def arms(self) -> tuple[str, ...]:
        return ()

    @property
    def start_ms(self) -> int:
        return int(self._ts[0]) if len(self._ts) else 0

    @property
    def rows(self) -> int:
        """Readings in this replay."""
        return len(self._ts)

    @property
    def incidents(self) -> list[Incident]:
        if self._next == 0:
            return []
        clock = int(self._ts[self._next - 1])
        return [w for w in self._windows if w.start_ms <= clock]

    def stop(self) -> None:
        self._stopped = True

    def peek_ms(self) -> int | None:
        done = self._stopped or self._next >= len(self._ts)
        return None if done else int(self._ts[self._next])

    def next_batch(self, max_events: int, until_ms: int | None = None) -> Batch | None:
        i = self._next
        if self._stopped or i >= len(self._ts):
            raise StopIteration
        j = min(len(self._ts), i + max(1, max_events))
        if until_ms is not None:
            j = i + int(np.searchsorted(self._ts[i:j], until_ms, side="left"))
        if j == i:
            return []
        self._next = j
        code = self._code[i:j]
        ids = [
            f"{s}{r}"
            for s, r in zip(self._names[code].tolist(), self._row[i:j].tolist(), strict=True)
        ]
        lines = json_lines(
            [
                ("reading_id", ids),
                ("ts", self._ts[i:j]),
                ("series", Coded(code, self._series_json)),
                ("value", self._value[i:j]),
            ]
        )
        return [("readings", lines)]

    def respond(self, decision_ids: np.ndarray, arms: np.ndarray) -> None:
        return None  # open loop: nothing is decided here
