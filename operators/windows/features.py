"""The event-time features operator: watermark, late rows, trailing features, closed windows.

``EventTimeFeatures.process(keys, ts_ms, values, partition)`` consumes one micro-batch in input
order and returns a :class:`FeatureBatch`. All per-row work happens in numba kernels over
columnar state (:mod:`.store`); Python runs a handful of numpy calls per batch, plus one dict
lookup per row to intern the key. Outputs depend only on the sequence of rows (and their
partitions), never on how it is cut into batches; ``snapshot()``/``restore()`` is exact.

Definitions: watermark and lateness in :mod:`.watermark`, trailing features in
:mod:`.trailing`, tumbling/sliding windows in :mod:`.hopping`, session windows in
:mod:`.session`, the quantile in :mod:`.quantile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise, repeat
from typing import Any

import numpy as np

from .config import FeatureConfig
from .hopping import close_fixed_windows
from .session import SessionWindows
from .store import KeyStore
from .trailing import AGG_CODES, trailing_features
from .watermark import NO_WATERMARK, Watermark

__all__ = ["WINDOW_COLUMNS", "EventTimeFeatures", "FeatureBatch"]

#: Column order of ``FeatureBatch.windows`` (``window_aggregates`` adds the stage and stream).
WINDOW_COLUMNS: list[str] = [
    "key",
    "metric",
    "window",
    "window_start",
    "window_end",
    "count",
    "sum",
    "mean",
    "std",
    "min",
    "max",
    "rate",
    "p95",
]
_FLOAT_COLS = ("sum", "mean", "std", "min", "max", "rate", "p95")
_SNAPSHOT_VERSION = 1


def empty_windows() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c in WINDOW_COLUMNS:
        if c in ("key", "metric", "window"):
            out[c] = np.empty(0, dtype=object)
        elif c in ("window_start", "window_end", "count"):
            out[c] = np.empty(0, dtype=np.int64)
        else:
            out[c] = np.empty(0, dtype=np.float64)
    return out


@dataclass
class FeatureBatch:
    """What one ``process`` (or ``flush``) call produced.

    ``features`` (n, F) aligned with the input rows, named by ``feature_names``; ``late`` marks
    rows behind the watermark, ``row_watermark_ms`` the watermark each row was judged against
    (for the ``late_events`` table); ``watermark_ms`` the watermark after the batch;
    ``windows`` the windows closed by this batch (columns of ``window_aggregates``).
    """

    features: np.ndarray
    feature_names: list[str]
    late: np.ndarray
    watermark_ms: int
    windows: dict[str, np.ndarray] = field(default_factory=empty_windows)
    row_watermark_ms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def n_late(self) -> int:
        return int(self.late.sum())


class EventTimeFeatures:
    """Keyed event-time windows and per-event trailing features over micro-batches."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        cfg = config
        self.feature_names: list[str] = cfg.feature_names
        self._n_m = len(cfg.metrics)
        order = np.argsort(np.asarray(cfg.trailing_ms, dtype=np.int64), kind="stable")
        self._wsorted = np.asarray(cfg.trailing_ms, dtype=np.int64)[order]
        self._worig = order.astype(np.int64)
        self._tmax = int(max(cfg.trailing_ms)) if cfg.trailing_ms else 0
        self._agg_pos = np.full(8, -1, dtype=np.int64)
        for p, a in enumerate(cfg.aggregations):
            self._agg_pos[AGG_CODES[a]] = p
        self._want_q = "p95" in cfg.aggregations
        specs = cfg.window_specs
        self._spec_names = np.array([s[0] for s in specs] + cfg.session_names, dtype=object)
        self._sizes = np.array([s[1] for s in specs], dtype=np.int64)
        self._slides = np.array([s[2] for s in specs], dtype=np.int64)
        self._metric_names = np.array(cfg.metrics, dtype=object)
        self._horizon = cfg.horizon_ms
        self._wm = Watermark(cfg.allowed_lateness_ms)
        self._store = KeyStore(self._n_m)
        self._sessions = SessionWindows(cfg.session_gap_ms, len(specs), self._want_q)
        self._key_index: dict[Any, int] = {}
        self._keys: list[Any] = []
        self._key_arr = np.empty(0, dtype=object)
        self.late_count = 0
        self.late_included = 0
        self.rows_seen = 0

    # -- public API -------------------------------------------------------------------------
    @property
    def n_keys(self) -> int:
        return len(self._keys)

    @property
    def watermark_ms(self) -> int:
        return self._wm.value

    def process(
        self,
        keys: np.ndarray,
        ts_ms: np.ndarray,
        values: np.ndarray,
        partition: int | np.ndarray = 0,
        *,
        watermarks: tuple[np.ndarray, int] | None = None,
    ) -> FeatureBatch:
        """Consume one batch (rows in input order) of ``partition``, or of several input
        partitions at once (``partition`` an int array, one per row): the same output as one
        call per run of rows from the same partition.

        ``watermarks`` (the watermark before each row, the watermark after the batch) replaces
        the operator's own clock: a shard that holds some keys of a stream is judged by the
        whole stream's watermark, so its rows and windows are the ones an unsharded run gives.
        """
        keys = np.asarray(keys, dtype=object)
        ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
        vals = np.ascontiguousarray(values, dtype=np.float64)
        n = len(ts)
        if keys.shape != (n,):
            raise ValueError(f"process: keys must have shape ({n},), got {keys.shape}")
        if vals.shape != (n, self._n_m):
            raise ValueError(
                f"process: values must have shape ({n}, {self._n_m}), got {vals.shape}"
            )
        kidx = self._intern(keys)
        wm_old = self._wm.value
        if watermarks is None:
            wmb = self._advance(ts, partition)
        else:
            wmb = np.asarray(watermarks[0], dtype=np.int64)
            self._wm.raise_to(watermarks[1])
        late = ts < wmb
        include = self.config.late_policy == "include"
        acc = ~late | include
        adm = np.where(late, wmb, NO_WATERMARK).astype(np.int64)
        n_late = int(late.sum())
        self.late_count += n_late
        if include:
            self.late_included += n_late
        self.rows_seen += n
        out = np.empty((n, len(self.feature_names)), dtype=np.float64)
        st = self._store
        st.reserve(np.bincount(kidx[acc], minlength=st.n_keys).astype(np.int64))
        if len(self._wsorted) and n:
            # group the batch by key (stable: arrival order within a key is kept)
            o = np.argsort(kidx, kind="stable")
            trailing_features(
                kidx[o], ts[o], vals[o], wmb[o], acc[o], adm[o],
                st.ts, st.adm, st.val, st.pre, st.bmin, st.bmax, st.beg, st.n, st.pb, st.ref,
                st.since, self._wsorted, self._worig, np.int64(self._tmax), self._agg_pos,
                len(self.config.aggregations), self._want_q, o, out,
            )  # fmt: skip
        elif n:
            self._insert_only(kidx, ts, vals, acc, adm)
        windows = self._close(wm_old, self._wm.value)
        return FeatureBatch(out, self.feature_names, late, self._wm.value, windows, wmb)

    def flush(self) -> FeatureBatch:
        """End of bounded input: close and emit every open window."""
        wm_old = self._wm.value
        self._wm.close()
        windows = self._close(wm_old, self._wm.value)
        return FeatureBatch(
            np.empty((0, len(self.feature_names))),
            self.feature_names,
            np.empty(0, dtype=bool),
            self._wm.value,
            windows,
        )

    def memory_bytes(self) -> int:
        """Bytes of operator state (arrays plus an estimate for the key index)."""
        return self._store.memory_bytes() + self._sessions.memory_bytes() + 120 * self.n_keys

    def snapshot(self) -> dict[str, Any]:
        """Picklable state: packed numpy arrays, the key list and a few ints."""
        return {
            "version": _SNAPSHOT_VERSION,
            "keys": list(self._keys),
            "wm": self._wm.snapshot(),
            "store": self._store.snapshot(),
            "sessions": self._sessions.snapshot(),
            "counters": (self.late_count, self.late_included, self.rows_seen),
        }

    @classmethod
    def restore(cls, config: FeatureConfig, snap: dict[str, Any]) -> EventTimeFeatures:
        if snap.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"restore: unsupported snapshot version {snap.get('version')!r}")
        op = cls(config)
        op._keys = list(snap["keys"])
        op._key_index = {k: i for i, k in enumerate(op._keys)}
        op._key_arr = np.array([*op._keys, None], dtype=object)[:-1]
        op._wm.restore(snap["wm"])
        op._store = KeyStore.restore(op._n_m, snap["store"])
        op._sessions.restore(snap["sessions"])
        op.late_count, op.late_included, op.rows_seen = snap["counters"]
        return op

    # -- internals --------------------------------------------------------------------------
    def _advance(self, ts: np.ndarray, partition: int | np.ndarray) -> np.ndarray:
        """The watermark before each row, advanced run by run of same-partition rows."""
        if np.ndim(partition) == 0:
            return self._wm.advance(ts, int(partition))
        parts = np.asarray(partition, dtype=np.int64)
        if parts.shape != ts.shape:
            raise ValueError(f"process: partition must have shape {ts.shape}, got {parts.shape}")
        if len(parts) == 0:
            return self._wm.advance(ts, 0)
        cuts = np.flatnonzero(parts[1:] != parts[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(parts)]
        return np.concatenate(
            [self._wm.advance(ts[a:b], int(parts[a])) for a, b in pairwise(bounds)]
        )

    def _intern(self, keys: np.ndarray) -> np.ndarray:
        get = self._key_index.get
        klist = keys.tolist()
        idx = np.array(list(map(get, klist, repeat(-1))), dtype=np.int64)
        if (idx < 0).any():
            new = [k for k in dict.fromkeys(keys[idx < 0].tolist())]
            start = len(self._keys)
            for j, k in enumerate(new):
                self._key_index[k] = start + j
            self._keys.extend(new)
            self._key_arr = np.array([*self._keys, None], dtype=object)[:-1]
            self._store.add_keys(len(new))
            self._sessions.add_keys(len(new))
            idx = np.array(list(map(get, klist, repeat(-1))), dtype=np.int64)
        return idx

    def _insert_only(self, kidx, ts, vals, acc, adm) -> None:
        from .trailing import insert_rows

        st = self._store
        insert_rows(
            kidx, ts, vals, acc, adm, st.ts, st.adm, st.val, st.pre, st.bmin, st.bmax,
            st.beg, st.n, st.pb, st.ref, st.since,
        )  # fmt: skip

    def _close(self, wm_old: int, wm_new: int) -> dict[str, np.ndarray]:
        parts_i = []
        parts_f = []
        if wm_new > wm_old:
            if len(self._sizes):
                oi, of = close_fixed_windows(
                    self._store, self._sizes, self._slides, wm_old, wm_new, self._want_q
                )
                parts_i.append(oi)
                parts_f.append(of)
            if self.config.session_gap_ms:
                oi, of = self._sessions.close(self._store, wm_new)
                parts_i.append(oi)
                parts_f.append(of)
            keep_from = self._sessions.keep_from()
            if keep_from is not None:
                self._store.keep_from[:] = keep_from
            self._store.expire(wm_new - self._horizon if wm_new < 2**62 else 2**62)
        if not parts_i or sum(len(p) for p in parts_i) == 0:
            return empty_windows()
        oi = np.concatenate(parts_i)
        of = np.concatenate(parts_f)
        out: dict[str, np.ndarray] = {
            "key": self._key_arr[oi[:, 0]],
            "metric": self._metric_names[oi[:, 1]],
            "window": self._spec_names[oi[:, 2]],
            "window_start": oi[:, 3].copy(),
            "window_end": oi[:, 4].copy(),
            "count": oi[:, 5].copy(),
        }
        for j, c in enumerate(_FLOAT_COLS):
            out[c] = of[:, j].copy()
        return {c: out[c] for c in WINDOW_COLUMNS}
