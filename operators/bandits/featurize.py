"""Context featurisation for the bandit: explicit, deterministic and versioned.

Layout of a feature row (``fz.n_features`` columns, in this order):

1. ``1.0`` — the intercept (if ``spec.intercept``);
2. one column per numeric field, scaled ``(v - mean) / std`` then clipped to ``[-clip, clip]``;
   a missing, unparsable, non-finite or absurd (``|v| > 1e100``) value becomes ``0`` (the
   mean) and does not enter the running statistics;
3. one block of ``n`` columns per categorical ``(field, n)``: a one-hot of the value's slot.
   ``hashed=True``: slot = ``blake2b(str(value)) mod n`` (stable across processes and runs).
   ``hashed=False``: slot = index in the field's vocabulary; a vocabulary given in
   ``spec.vocab`` is fixed, otherwise values take slots ``0..n-2`` in order of first appearance
   and everything after that (and ``None``) goes to the last slot, ``n - 1`` ("other");
4. ``extra_dims`` columns copied from ``extra`` (the event's trailing features and
   every arm's current features, prepared by the caller); non-finite values become ``0``.

Scaling: ``scaling="running"`` uses the running mean/std of the values seen *before* this batch
(updated after ``transform``, so a transform never depends on its own batch);
``scaling="fixed"`` uses ``spec.numeric_stats``. ``fz.version`` is a hash of the spec, logged
with every decision; learned vocabularies and running statistics are state (in ``snapshot``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from itertools import repeat
from typing import Any

import numpy as np

__all__ = ["FeatureSpec", "Featurizer"]

_HUGE = 1e100  # numeric values beyond this are treated as missing (they would wreck the stats)


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, int], ...] = ()
    hashed: bool = False
    extra_dims: int = 0
    intercept: bool = True
    scaling: str = "running"
    numeric_stats: tuple[tuple[float, float], ...] = ()  # (mean, std) per numeric, "fixed"
    vocab: tuple[tuple[str, tuple[str, ...]], ...] = ()  # optional fixed vocabularies
    clip: float = 5.0

    def __post_init__(self) -> None:
        for name in self.numeric:
            if not isinstance(name, str):
                raise ValueError(f"numeric: expected field names, got {name!r}")
        for item in self.categorical:
            ok = isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
            if not ok or not isinstance(item[1], int) or item[1] < 2:
                raise ValueError(f"categorical: expected (field, n_slots >= 2) pairs, got {item!r}")
        names = list(self.numeric) + [c[0] for c in self.categorical]
        if len(set(names)) != len(names):
            raise ValueError(f"numeric/categorical: expected distinct field names, got {names}")
        if not isinstance(self.extra_dims, int) or self.extra_dims < 0:
            raise ValueError(f"extra_dims: expected an int >= 0, got {self.extra_dims!r}")
        if self.scaling not in ("running", "fixed"):
            raise ValueError(f"scaling: expected 'running' or 'fixed', got {self.scaling!r}")
        if self.scaling == "fixed":
            stats = self.numeric_stats
            if len(stats) != len(self.numeric) or any(len(s) != 2 or s[1] <= 0 for s in stats):
                raise ValueError(
                    f"numeric_stats: expected one (mean, std > 0) per numeric field "
                    f"({len(self.numeric)}), got {stats!r}"
                )
        slots = dict(self.categorical)
        for field, values in self.vocab:
            if field not in slots:
                raise ValueError(f"vocab: expected a categorical field, got {field!r}")
            if len(values) > slots[field] - 1:
                raise ValueError(
                    f"vocab[{field!r}]: expected at most {slots[field] - 1} values "
                    f"(the last slot is 'other'), got {len(values)}"
                )
        if not self.clip > 0:
            raise ValueError(f"clip: expected a number > 0, got {self.clip!r}")

    @property
    def n_features(self) -> int:
        return (
            int(self.intercept)
            + len(self.numeric)
            + sum(n for _, n in self.categorical)
            + self.extra_dims
        )

    @property
    def version(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return f"fs1-{hashlib.sha256(blob).hexdigest()[:12]}"


def _stable_slot(value: Any, n: int) -> int:
    h = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % n


class Featurizer:
    """``X = Featurizer(spec).transform(columns, extra)``; see the module docstring."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        k = len(spec.numeric)
        self._count = np.zeros(k)
        self._mean = np.zeros(k)
        self._m2 = np.zeros(k)
        fixed = dict(spec.vocab)
        self._vocab: dict[str, dict[Any, int]] = {
            f: {v: i for i, v in enumerate(fixed.get(f, ()))} for f, _ in spec.categorical
        }
        self._fixed_vocab = set(fixed)
        # hashed slot per value seen (derived, not in snapshots): most batches then cost one
        # dict lookup per row in C instead of a sort of the batch's strings
        self._slot_cache: dict[str, dict[Any, int]] = {f: {} for f, _ in spec.categorical}

    @property
    def n_features(self) -> int:
        return self.spec.n_features

    @property
    def version(self) -> str:
        return self.spec.version

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        if self.spec.scaling == "fixed":
            st = np.asarray(self.spec.numeric_stats, dtype=np.float64).reshape(-1, 2)
            return st[:, 0], st[:, 1]
        var = np.where(self._count > 1, self._m2 / np.maximum(self._count, 1), 1.0)
        std = np.sqrt(var)
        return self._mean, np.where(std > 1e-12, std, 1.0)

    def _hashed_slots(self, field: str, n: int, values: np.ndarray) -> np.ndarray | None:
        """Slots through the per-field cache; None for values a dict cannot hold."""
        cache = self._slot_cache[field]
        vals = values.tolist()
        try:
            slots = np.fromiter(map(cache.get, vals, repeat(-1)), np.int64, len(vals))
            miss = np.flatnonzero(slots < 0)
            if len(miss) == 0:
                return slots
            for i in miss.tolist():
                v = vals[i]
                s = n - 1 if v is None else _stable_slot(str(v), n)
                slots[i] = s
                # str keys only: 1, 1.0 and True are one dict key but three slots
                if type(v) is str and len(cache) < _SLOT_CACHE_MAX:
                    cache[v] = s
        except TypeError:  # unhashable values
            return None
        return slots

    def _slots(self, field: str, n: int, values: np.ndarray) -> np.ndarray:
        if self.spec.hashed:
            slots = self._hashed_slots(field, n, values)
            if slots is not None:
                return slots
        uniq, inverse = np.unique(values.astype(str), return_inverse=True)
        none_mask = (
            np.array([v is None for v in values], dtype=bool) if values.dtype == object else None
        )
        if self.spec.hashed:
            table = np.array([_stable_slot(u, n) for u in uniq], dtype=np.int64)
        else:
            vocab = self._vocab[field]
            if field not in self._fixed_vocab and len(vocab) < n - 1:
                # first appearance order inside this batch, deterministic
                first = np.full(len(uniq), len(values))
                np.minimum.at(first, inverse.ravel(), np.arange(len(values)))
                for j in np.argsort(first, kind="stable"):
                    u = str(uniq[j])
                    if u != "None" and u not in vocab and len(vocab) < n - 1:
                        vocab[u] = len(vocab)
            table = np.array([vocab.get(str(u), n - 1) for u in uniq], dtype=np.int64)
        slots = table[inverse.ravel()] if len(uniq) else np.zeros(0, dtype=np.int64)
        if none_mask is not None and none_mask.any():
            slots[none_mask] = n - 1
        return slots

    def transform(self, columns: dict[str, Any], extra: np.ndarray | None = None) -> np.ndarray:
        """Featurise a batch: ``columns`` maps field -> array (n,); ``extra`` is (n, extra_dims).

        A missing column raises ``ValueError``; bad values inside a column do not (see above).
        """
        spec = self.spec
        n = None
        for f in list(spec.numeric) + [c[0] for c in spec.categorical]:
            if f not in columns:
                raise ValueError(f"columns: expected field {f!r}, got {sorted(columns)}")
            if np.ndim(columns[f]) == 0 and f in spec.numeric:
                continue  # a numeric scalar stands for a column of that value
            m = len(columns[f])
            if n is not None and m != n:
                raise ValueError(f"columns[{f!r}]: expected {n} values, got {m}")
            n = m
        if spec.extra_dims:
            if extra is None:
                raise ValueError(f"extra: expected an (n, {spec.extra_dims}) array, got None")
            extra = np.asarray(extra, dtype=np.float64)
            if (
                extra.ndim != 2
                or extra.shape[1] != spec.extra_dims
                or (n is not None and extra.shape[0] != n)
            ):
                raise ValueError(f"extra: expected shape (n, {spec.extra_dims}), got {extra.shape}")
            n = extra.shape[0]
        if n is None:
            raise ValueError("columns: expected at least one field or extra features, got none")
        X = np.zeros((n, spec.n_features))
        col = 0
        if spec.intercept:
            X[:, 0] = 1.0
            col = 1
        if spec.numeric:
            raw = np.empty((n, len(spec.numeric)))
            for j, f in enumerate(spec.numeric):
                raw[:, j] = _as_float(columns[f])  # a scalar fills its column
            raw[np.abs(raw) > _HUGE] = np.nan  # absurd values count as missing
            mean, std = self._scale()
            Z = np.clip((raw - mean) / std, -spec.clip, spec.clip)
            X[:, col : col + raw.shape[1]] = np.where(np.isfinite(Z), Z, 0.0)
            col += raw.shape[1]
            if spec.scaling == "running":
                self._update_stats(raw)
        for field, slots_n in spec.categorical:
            values = np.asarray(columns[field], dtype=object)
            X[np.arange(n), col + self._slots(field, slots_n, values)] = 1.0
            col += slots_n
        if spec.extra_dims and extra is not None:
            X[:, col:] = np.where(np.isfinite(extra), extra, 0.0)
        return X

    def _update_stats(self, raw: np.ndarray) -> None:
        """Chan et al. parallel Welford merge of the batch into the running statistics."""
        ok = np.isfinite(raw)
        nb = ok.sum(axis=0).astype(np.float64)
        has = nb > 0
        safe = np.where(ok, raw, 0.0)
        mb = np.where(has, safe.sum(axis=0) / np.maximum(nb, 1), 0.0)
        m2b = (np.where(ok, raw - mb, 0.0) ** 2).sum(axis=0)
        tot = self._count + nb
        delta = mb - self._mean
        frac = np.where(tot > 0, nb / np.maximum(tot, 1), 0.0)
        self._mean = self._mean + delta * frac
        self._m2 = self._m2 + m2b + delta**2 * self._count * frac
        self._count = tot

    def snapshot(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "count": self._count.copy(),
            "mean": self._mean.copy(),
            "m2": self._m2.copy(),
            "vocab": {f: dict(v) for f, v in self._vocab.items()},
        }

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> Featurizer:
        fz = cls(snap["spec"])
        fz._count = np.array(snap["count"], dtype=np.float64)
        fz._mean = np.array(snap["mean"], dtype=np.float64)
        fz._m2 = np.array(snap["m2"], dtype=np.float64)
        fz._vocab = {f: dict(v) for f, v in snap["vocab"].items()}
        return fz


_SLOT_CACHE_MAX = 100_000  # values remembered per categorical field


def _as_float(values: Any) -> np.ndarray:
    """Column (or a scalar) -> float64, read only (a float64 array comes back as a view);
    anything unparsable (None, 'abc') becomes NaN, never an exception."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values.reshape(-1)
    if np.ndim(values) == 0:
        try:
            return np.array([float(values)])
        except (TypeError, ValueError):
            return np.array([np.nan])
    try:
        return np.array(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        out = np.empty(len(values))
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = np.nan
        return out
