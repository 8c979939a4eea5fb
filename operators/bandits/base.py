"""The contextual-bandit policy interface and the per-arm ridge-regression state it shares.

Every policy is built as ``Policy(n_arms, n_features, seed=0, **params)`` and offers::

    arms, propensities = policy.choose(X, eligible=None)  # X (n, d) -> int (n,), float (n,)
    P = policy.probabilities(X, eligible=None)            # (n, n_arms), rows sum to one
    policy.learn(X, arms, rewards)          # batch update, rows applied in order
    snap = policy.snapshot(); policy2 = Policy.restore(snap)

Decisions inside one ``choose`` call all use the model as it was at the start of the call (that
is how the pipeline uses it: a micro-batch of contexts is decided, their rewards are learned
later). ``propensities[i]`` is ``P[i, arms[i]]`` under the policy at decision time.

Exploration floor: every policy mixes its own choice distribution with the uniform one,
``P = (1 - floor) * P_policy + floor / n_arms``, so every arm keeps a propensity of at least
``floor / n_arms`` (what off-policy evaluation needs to be well defined).

Eligible arms. Not every arm may be allowed for every event (an ad outside its targeting, an
item out of stock), so ``choose`` and ``probabilities`` take ``eligible``: ``None`` (every arm)
or a bool array (n, n_arms). The policy then works on the eligible arms of each row only: its own
distribution is restricted to them and the floor is spread over them,
``P = (1 - floor) * P_policy_restricted + floor / n_eligible`` on eligible arms and exactly 0
elsewhere, so an ineligible arm is never chosen and the logged propensity is the true one
(the one OPE must divide by). A row with no eligible arm is read as "every arm eligible": the
caller is expected to dead-letter such events beforehand, but a policy must not crash on them.
An all-``True`` mask is the same as ``None``, and ``None`` gives bit-for-bit the results (and
random stream) of the policies before eligibility existed.

Numerical stability: the sufficient statistics ``A_a = l2 I + sum x x^T`` and ``b_a = sum r x``
are accumulated exactly (sums only, no rank-one inverse updates), and before the next decision
after a ``learn`` the inverse of each touched ``A_a`` is recomputed from ``A_a`` through its
Cholesky factor. Errors therefore never compound across updates, whatever the number of rounds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import lapack

__all__ = [
    "POLICIES",
    "LinearArms",
    "LinearPolicy",
    "Policy",
    "argmax_probabilities",
    "check_batch",
    "check_eligible",
]

# name -> class, filled by Policy.__init_subclass__ (used by Policy.restore and the CLI)
POLICIES: dict[str, type[Policy]] = {}


def check_batch(X: Any, n_features: int) -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 (n, d) array, or raise ``ValueError``."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X: expected shape (n, {n_features}), got {X.shape}")
    return X


def check_eligible(eligible: Any, n: int, n_arms: int) -> np.ndarray | None:
    """Return the eligibility mask as a bool (n, n_arms) array, or ``None`` for "all arms".

    Rows with no eligible arm become all-``True`` (the documented fallback: the caller
    dead-letters such events, the policy only must not crash). A mask that allows every arm
    everywhere is returned as ``None`` so that it takes the exact code path, and the exact
    random stream, of ``eligible=None``. Raises ``ValueError`` on a wrong shape or dtype: a
    0/1 float array is refused rather than guessed at.
    """
    if eligible is None:
        return None
    E = np.asarray(eligible)
    if E.dtype != np.bool_ or E.shape != (n, n_arms):
        raise ValueError(
            f"eligible: expected a bool array of shape ({n}, {n_arms}), got {E.dtype} {E.shape}"
        )
    if E.all():
        return None
    none = ~E.any(axis=1)
    if none.any():
        E = E.copy()
        E[none] = True
    return np.ascontiguousarray(E)


class LinearArms:
    """Per-arm ridge regression: ``A`` (k, d, d), ``b`` (k, d), derived ``A_inv`` and ``theta``.

    ``A`` and ``b`` are the exact sufficient statistics; ``A_inv``, ``theta`` and ``L_inv`` (the
    inverse Cholesky factor, ``A^-1 = L_inv^T L_inv``) are recomputed from them for the arms
    touched since the last read, when they are next read: several ``update`` calls between two
    decisions cost one re-inversion.
    """

    def __init__(
        self,
        A: np.ndarray,
        b: np.ndarray,
        counts: np.ndarray,
        A_inv: np.ndarray | None = None,
        theta: np.ndarray | None = None,
        L_inv: np.ndarray | None = None,
    ) -> None:
        k, d = b.shape
        self.A = A
        self.b = b
        self.counts = counts
        self._A_inv = np.zeros((k, d, d)) if A_inv is None else A_inv
        self._theta = np.zeros((k, d)) if theta is None else theta
        self._L_inv = np.zeros((k, d, d)) if L_inv is None else L_inv
        # variances are read in float32 (2.5x the float64 GEMMs; relative error ~1e-7)
        self._L_inv32 = self._L_inv.astype(np.float32)
        self._stale = np.full(k, A_inv is None or theta is None or L_inv is None)
        self._A_inv_stale = np.zeros(k, dtype=bool)

    @classmethod
    def create(cls, n_arms: int, n_features: int, l2: float) -> LinearArms:
        eye = np.eye(n_features)
        return cls(
            A=np.repeat(eye[None] * l2, n_arms, axis=0),
            b=np.zeros((n_arms, n_features)),
            counts=np.zeros(n_arms, dtype=np.int64),
        )

    @property
    def A_inv(self) -> np.ndarray:
        self._refresh()
        if self._A_inv_stale.any():
            arms = np.flatnonzero(self._A_inv_stale)
            L_inv = self._L_inv[arms]
            self._A_inv[arms] = np.swapaxes(L_inv, 1, 2) @ L_inv
            self._A_inv_stale[arms] = False
        return self._A_inv

    @property
    def theta(self) -> np.ndarray:
        self._refresh()
        return self._theta

    @property
    def L_inv(self) -> np.ndarray:
        self._refresh()
        return self._L_inv

    def update(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        touched = np.unique(arms)
        for a in touched:
            rows = arms == a
            Xa = X[rows]
            self.A[a] += Xa.T @ Xa
            self.b[a] += Xa.T @ rewards[rows]
            self.counts[a] += Xa.shape[0]
        self._stale[touched] = True

    def _refresh(self) -> None:
        if not self._stale.any():
            return
        arms = np.flatnonzero(self._stale)
        A = self.A[arms]
        A = 0.5 * (A + np.swapaxes(A, 1, 2))  # exact symmetry
        L = np.linalg.cholesky(A)
        L_inv = np.empty_like(L)
        for j in range(len(arms)):  # LAPACK's triangular inverse: 3x a general inverse
            L_inv[j], info = lapack.dtrtri(L[j], lower=1)
            if info:
                raise np.linalg.LinAlgError(f"arm {arms[j]}: singular Cholesky factor")
        L_inv = np.tril(L_inv)
        self._L_inv[arms] = L_inv
        self._L_inv32[arms] = L_inv
        # theta = A^-1 b = L_inv^T (L_inv b): two mat-vecs, A^-1 itself only when asked for
        self._theta[arms] = np.einsum(
            "kji,kj->ki", L_inv, np.einsum("kij,kj->ki", L_inv, self.b[arms])
        )
        self._A_inv_stale[arms] = True
        self._stale[arms] = False

    def means(self, X: np.ndarray) -> np.ndarray:
        """``x . theta_a`` for every row and arm: (n, k)."""
        return np.asarray(X @ self.theta.T)

    def moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means ``x . theta_a`` and variances ``x^T A_a^{-1} x = |L_a^{-1} x|^2`` (>= 0), each
        (n, k). Single-threaded BLAS (see ``operators/__init__``) is ~3x the numba loop."""
        self._refresh()
        k = self._theta.shape[0]
        V = np.empty((X.shape[0], k))
        X32 = X.astype(np.float32)
        for a in range(k):
            Y = X32 @ self._L_inv32[a].T
            V[:, a] = np.einsum("ij,ij->i", Y, Y)
        return self.means(X), V

    def variances(self, X: np.ndarray) -> np.ndarray:
        """``x^T A_a^{-1} x`` for every row and arm: (n, k)."""
        return self.moments(X)[1]

    def add(self, A: np.ndarray, b: np.ndarray, counts: np.ndarray) -> None:
        """Add sums learned elsewhere (another shard's ``A`` without the prior, ``b``,
        ``counts``); only the arms they change are refreshed."""
        changed = (counts != 0) | np.any(b != 0.0, axis=1) | np.any(A != 0.0, axis=(1, 2))
        self.A += A
        self.b += b
        self.counts += counts
        self._stale |= changed

    def to_dict(self) -> dict[str, np.ndarray]:
        self._refresh()
        return {
            "A": self.A.copy(),
            "b": self.b.copy(),
            "counts": self.counts.copy(),
            "A_inv": self.A_inv.copy(),
            "theta": self._theta.copy(),
            "L_inv": self._L_inv.copy(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, np.ndarray]) -> LinearArms:
        return cls(**{k: np.array(v, copy=True) for k, v in d.items()})


class Policy:
    """Base class: validation, the exploration floor, sampling, snapshots, versioning.

    Subclasses set ``name``, ``ALGO_VERSION`` and ``PARAMS`` (defaults of their keyword params),
    and implement ``_policy_probabilities`` (the distribution before the floor, restricted to
    the eligible arms) and ``_learn``. Only classes that define ``name`` themselves are
    registered in ``POLICIES`` (so an intermediate base such as ``LinearPolicy`` is not).
    """

    name: ClassVar[str] = "policy"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            POLICIES[cls.name] = cls

    def __init__(self, n_arms: int, n_features: int, seed: int = 0, **params: Any) -> None:
        if not isinstance(n_arms, (int, np.integer)) or n_arms < 1:
            raise ValueError(f"n_arms: expected an int >= 1, got {n_arms!r}")
        if not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise ValueError(f"n_features: expected an int >= 1, got {n_features!r}")
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown params {unknown}; expected some of {sorted(self.PARAMS)}"
            )
        self.n_arms = int(n_arms)
        self.n_features = int(n_features)
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.PARAMS, **params}
        floor = self.params.get("floor", 0.0)
        if not 0.0 <= float(floor) <= 1.0:
            raise ValueError(f"floor: expected a number in [0, 1], got {floor!r}")
        self._validate_params()
        self._rng = np.random.default_rng(self.seed)
        self._n_learned = 0

    # ----------------------------------------------------------------- subclass hooks
    def _validate_params(self) -> None:
        """Raise ``ValueError`` naming a bad param."""

    def _policy_probabilities(self, X: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
        """(n, n_arms) distribution before the floor; with ``eligible`` (from
        ``check_eligible``: no empty row) it must be 0 off the mask and sum to 1 on it."""
        raise NotImplementedError

    def _learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    # ----------------------------------------------------------------- public API
    @property
    def floor(self) -> float:
        return float(self.params.get("floor", 0.0))

    @property
    def version(self) -> str:
        """Stable for (algorithm, version, shape, params): ``linucb-v1-<hash>``."""
        spec = {"n_arms": self.n_arms, "n_features": self.n_features, "params": self.params}
        h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}-v{self.ALGO_VERSION}-{h[:10]}"

    @property
    def n_learned(self) -> int:
        """Number of (context, arm, reward) rows learned so far."""
        return self._n_learned

    def probabilities(self, X: Any, eligible: Any = None) -> np.ndarray:
        """(n, n_arms) choice probabilities under the current model, floor included.

        ``eligible``: ``None`` (all arms) or bool (n, n_arms); ineligible arms get exactly 0 and
        the floor is ``floor / n_eligible`` per row (see the module docstring; a row with no
        eligible arm counts as all eligible). Non-finite context values are read as 0 (a
        decision is still made for that row)."""
        X = self._clean(X)
        E = check_eligible(eligible, X.shape[0], self.n_arms)
        return self._floored(self._policy_probabilities(X, E), E)

    def _floored(self, P: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
        """Mix the floor in: uniform over all arms, or over each row's eligible arms."""
        f = self.floor
        if eligible is None:
            if f > 0.0:
                P = (1.0 - f) * P + f / self.n_arms
            return P
        n_eligible = eligible.sum(axis=1, keepdims=True)
        return np.where(eligible, (1.0 - f) * P + f / n_eligible, 0.0)

    def _clean(self, X: Any) -> np.ndarray:
        X = check_batch(X, self.n_features)
        if not np.isfinite(X).all():
            X = np.where(np.isfinite(X), X, 0.0)
        return X

    def choose(self, X: Any, eligible: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample one arm per row; return ``(arms int64 (n,), propensities float64 (n,))``.

        Only eligible arms are chosen (``eligible`` as in :meth:`probabilities`), and
        ``propensities[i] == probabilities(X, eligible)[i, arms[i]]``. One uniform per row is
        drawn whatever the mask, so the random stream does not depend on it."""
        P = self.probabilities(X, eligible)
        return self._sample(P)

    def _sample(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = P.shape[0]
        u = np.asarray(self._rng.random(size=n))
        cdf = np.cumsum(P, axis=1)
        cdf[:, -1] = np.inf  # rounding can leave the last entry a hair below 1
        arms = (cdf <= u[:, None]).sum(axis=1).astype(np.int64)
        # zero-probability arms can never be chosen (floor = 0): step back to a supported arm
        bad = P[np.arange(n), arms] <= 0.0
        if bad.any():
            arms[bad] = np.argmax(P[bad], axis=1)
        return arms, P[np.arange(n), arms]

    def learn(self, X: Any, arms: Any, rewards: Any) -> None:
        """Update on a batch of (context, arm, reward) rows. Non-finite rewards/contexts and
        out-of-range arms raise ``ValueError`` (the caller decides what a bad row means)."""
        X = check_batch(X, self.n_features)
        arms = np.asarray(arms)
        rewards = np.asarray(rewards, dtype=np.float64)
        n = X.shape[0]
        if arms.shape != (n,) or rewards.shape != (n,):
            raise ValueError(
                f"arms, rewards: expected shape ({n},), got {arms.shape} and {rewards.shape}"
            )
        if n == 0:
            return
        if not np.issubdtype(arms.dtype, np.integer):
            raise ValueError(f"arms: expected integers, got dtype {arms.dtype}")
        arms = arms.astype(np.int64)
        if arms.min() < 0 or arms.max() >= self.n_arms:
            raise ValueError(f"arms: expected values in [0, {self.n_arms}), got {arms.min()}..")
        if not (np.isfinite(X).all() and np.isfinite(rewards).all()):
            raise ValueError("X, rewards: expected finite values, got NaN or inf")
        self._learn(X, arms, rewards)
        self._n_learned += n

    def snapshot(self) -> dict[str, Any]:
        """A cheap, picklable copy of everything: restoring it continues bit-for-bit."""
        return {
            "policy": self.name,
            "algo_version": self.ALGO_VERSION,
            "n_arms": self.n_arms,
            "n_features": self.n_features,
            "seed": self.seed,
            "params": dict(self.params),
            "rng": self._rng.bit_generator.state,
            "n_learned": self._n_learned,
            "state": self._state(),
        }

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> Policy:
        """Rebuild a policy from :meth:`snapshot` (``Policy.restore`` dispatches on the name)."""
        klass = POLICIES.get(snap.get("policy", ""))
        if klass is None or (cls is not Policy and klass is not cls):
            raise ValueError(
                f"snapshot: expected a {cls.name} snapshot, got {snap.get('policy')!r}"
            )
        if snap.get("algo_version") != klass.ALGO_VERSION:
            raise ValueError(
                f"snapshot: expected algo_version {klass.ALGO_VERSION}, "
                f"got {snap.get('algo_version')!r}"
            )
        pol = klass(snap["n_arms"], snap["n_features"], snap["seed"], **snap["params"])
        pol._rng.bit_generator.state = snap["rng"]
        pol._n_learned = int(snap["n_learned"])
        pol._set_state(snap["state"])
        return pol

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.n_arms}, {self.n_features}, seed={self.seed}, {args})"


def argmax_probabilities(scores: np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
    """Greedy distribution: all mass on the best arm, split evenly between exact ties.

    With ``eligible`` (bool (n, k), no empty row) the best and the ties are taken among the
    eligible arms only; ineligible arms get 0 whatever their score."""
    if eligible is not None:
        scores = np.where(eligible, scores, -np.inf)
    best = scores.max(axis=1, keepdims=True)
    top = scores == best
    if eligible is not None:
        top &= eligible  # an eligible arm at -inf would otherwise tie with the masked ones
    return top / top.sum(axis=1, keepdims=True)


class LinearPolicy(Policy):
    """A policy over per-arm ridge regressions (``LinearArms``): LinUCB, LinTS, EpsilonGreedy.

    Holds what those share so it is written once: the model built from the ``l2`` param, the
    batch update, and the snapshot state ``{"arms": LinearArms.to_dict()}``. Not registered in
    ``POLICIES`` (it defines no ``name``); subclasses must have an ``l2`` entry in ``PARAMS``.
    """

    def __init__(self, n_arms: int, n_features: int, seed: int = 0, **params: Any) -> None:
        super().__init__(n_arms, n_features, seed, **params)
        self._arms = LinearArms.create(self.n_arms, self.n_features, float(self.params["l2"]))
        # what other shards learned, as last received (peer -> {"A", "b", "counts"})
        self._peers: dict[int, dict[str, np.ndarray]] = {}

    # -------------------------------------------------- statistics shared between shards
    def own_stats(self) -> dict[str, np.ndarray]:
        """The sums this policy learned itself (``A`` without the prior, ``b``, ``counts``):
        what another shard adds with :meth:`set_peer_stats`."""
        k, d = self.n_arms, self.n_features
        prior = np.repeat(np.eye(d)[None] * float(self.params["l2"]), k, axis=0)
        A, b, counts = self._arms.A - prior, self._arms.b.copy(), self._arms.counts.copy()
        for peer in self._peers.values():
            A -= peer["A"]
            b -= peer["b"]
            counts -= peer["counts"]
        return {"A": A, "b": b, "counts": counts}

    def set_peer_stats(self, peer: int, stats: dict[str, np.ndarray]) -> None:
        """Take ``stats`` (another shard's :meth:`own_stats`) as everything shard ``peer`` has
        learned, in place of what it sent before."""
        old = self._peers.get(peer)
        A, b, counts = stats["A"], stats["b"], stats["counts"]
        if old is None:
            self._arms.add(A, b, counts)
        else:
            self._arms.add(A - old["A"], b - old["b"], counts - old["counts"])
        self._peers[peer] = {"A": A.copy(), "b": b.copy(), "counts": counts.copy()}

    def _validate_params(self) -> None:
        l2 = self.params["l2"]
        if not float(l2) > 0.0:
            raise ValueError(f"l2: expected a number > 0, got {l2!r}")

    def _learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        self._arms.update(X, arms, rewards)

    def _state(self) -> dict[str, Any]:
        peers = {p: {k: v.copy() for k, v in s.items()} for p, s in self._peers.items()}
        return {"arms": self._arms.to_dict(), "peers": peers}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._arms = LinearArms.from_dict(state["arms"])
        self._peers = {
            int(p): {k: np.array(v, copy=True) for k, v in s.items()}
            for p, s in state.get("peers", {}).items()
        }
