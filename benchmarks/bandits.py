"""Bandit benchmark: eddy's policies vs Vowpal Wabbit and River on one synthetic stream.

Stream: 8 arms, 16 context features (an intercept plus 15 standard normals), reward of arm ``a``
for context ``x`` = ``x . W_a + N(0, 1)`` with ``W ~ N(0, 0.5^2)`` (a fresh ``W`` per seed).
Every method sees the same contexts and the same noise draws. Reported per method, averaged over
seeds: the mean *expected* reward ``x . W_a`` of the arms chosen in the last ``window`` rounds
(the noise-free value, same expectation as the realised reward, less noise), next to the
oracle's ``max_a x . W_a``; and microseconds per decision (decide = choosing; total = choosing +
learning), wall clock on this machine.

eddy's policies decide in micro-batches (``--batch`` contexts per ``choose`` call, then
``learn`` on that batch — how the pipeline uses them). VW (``cb_explore_adf``, ``--squarecb`` or
``--epsilon``, per-arm linear models through ``--interactions sa``) and River
(``bandit.LinUCBDisjoint``) decide and learn one round at a time, which is their API; VW
examples are built as text (its usual Python usage, formatting included in the timing).

    python -m eddy.benchmarks.bandits                # full: 200,000 rounds, 3 seeds
    python -m eddy.benchmarks.bandits --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from eddy.operators.bandits import POLICIES

__all__ = ["main", "make_stream", "run"]

N_ARMS, N_FEATURES = 8, 16

EDDY = {
    "eddy LinUCB": ("linucb", {"alpha": 1.0, "floor": 0.02}),
    "eddy LinTS": ("lints", {"v": 0.5, "floor": 0.02}),
    "eddy EpsilonGreedy": ("epsilon_greedy", {"epsilon": 0.05}),
    # no exploration floor: shows what the floor costs (no propensity guarantee for OPE)
    "eddy LinUCB floor=0": ("linucb", {"alpha": 1.0, "floor": 0.0}),
}
VW = {
    "VW cb_explore_adf --squarecb": "--squarecb",
    "VW cb_explore_adf --epsilon 0.05": "--epsilon 0.05",
}


def make_stream(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts (n, 16), weights (8, 16) and per-round noise (n, 8)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 0] = 1.0
    W = rng.normal(scale=0.5, size=(N_ARMS, N_FEATURES))
    noise = rng.normal(size=(n, N_ARMS))
    return X, W, noise


def _eddy(
    name: str,
    params: dict[str, Any],
    X: np.ndarray,
    W: np.ndarray,
    noise: np.ndarray,
    seed: int,
    batch: int,
) -> tuple[np.ndarray, float, float]:
    warm = POLICIES[name](N_ARMS, N_FEATURES, seed=seed, **params)
    for _ in range(2):  # compile / load the numba kernels outside the timing
        a0, _ = warm.choose(X[:batch])
        warm.learn(X[:batch], a0, np.zeros(len(a0)))
    pol = POLICIES[name](N_ARMS, N_FEATURES, seed=seed, **params)
    n = len(X)
    chosen = np.empty(n, dtype=np.int64)
    t_choose = t_learn = 0.0
    for s in range(0, n, batch):
        xb = X[s : s + batch]
        t0 = time.perf_counter()
        arms, _ = pol.choose(xb)
        t1 = time.perf_counter()
        r = np.einsum("nd,nd->n", xb, W[arms]) + noise[s : s + batch][np.arange(len(xb)), arms]
        t2 = time.perf_counter()
        pol.learn(xb, arms, r)
        t3 = time.perf_counter()
        t_choose += t1 - t0
        t_learn += t3 - t2
        chosen[s : s + batch] = arms
    return chosen, t_choose, t_learn


def _vw(
    flags: str, X: np.ndarray, W: np.ndarray, noise: np.ndarray, seed: int
) -> tuple[np.ndarray, float, float]:
    import vowpalwabbit

    vw = vowpalwabbit.Workspace(
        f"--cb_explore_adf {flags} --interactions sa --quiet --random_seed {seed}"
    )
    rng = np.random.default_rng(seed)
    actions = [f"|a a{k}" for k in range(N_ARMS)]
    n = len(X)
    chosen = np.empty(n, dtype=np.int64)
    us = rng.random(n)
    t_choose = t_learn = 0.0
    for i in range(n):
        x = X[i]
        t0 = time.perf_counter()
        shared = "shared |s " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(x.tolist()))
        pmf = vw.predict([shared, *actions])
        cdf = np.cumsum(pmf)
        a = min(int(np.searchsorted(cdf, us[i] * cdf[-1], side="right")), N_ARMS - 1)
        t1 = time.perf_counter()
        cost = -(float(x @ W[a]) + float(noise[i, a]))
        lines = list(actions)
        lines[a] = f"0:{cost:.6g}:{pmf[a]:.6g} {actions[a]}"
        vw.learn([shared, *lines])
        t3 = time.perf_counter()
        t_choose += t1 - t0
        t_learn += t3 - t1  # formatting the label is part of learning
        chosen[i] = a
    vw.finish()
    return chosen, t_choose, t_learn


def _river(
    X: np.ndarray, W: np.ndarray, noise: np.ndarray, seed: int
) -> tuple[np.ndarray, float, float]:
    from river import bandit

    pol = bandit.LinUCBDisjoint(seed=seed)
    arm_ids: list[int | str] = list(range(N_ARMS))
    n = len(X)
    chosen = np.empty(n, dtype=np.int64)
    t_choose = t_learn = 0.0
    names = [f"x{j}" for j in range(N_FEATURES)]
    for i in range(n):
        x = X[i]
        t0 = time.perf_counter()
        ctx = dict(zip(names, x.tolist(), strict=True))
        a = int(pol.pull(arm_ids, context=ctx))
        t1 = time.perf_counter()
        r = float(x @ W[a]) + float(noise[i, a])
        t2 = time.perf_counter()
        pol.update(a, ctx, r)
        t3 = time.perf_counter()
        t_choose += t1 - t0
        t_learn += t3 - t2
        chosen[i] = a
    return chosen, t_choose, t_learn


def run(
    quick: bool = False,
    *,
    rounds: int | None = None,
    seeds: int | None = None,
    window: int | None = None,
    batch: int = 512,
    river: bool = True,
    vw: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; return a JSON-able dict (``results``: one row per method)."""
    n = rounds or (20_000 if quick else 200_000)
    n_seeds = seeds or (1 if quick else 3)
    win = window or (5_000 if quick else 50_000)
    if win > n:
        raise ValueError(f"window: expected <= rounds ({n}), got {win}")
    say = log or (lambda _msg: None)
    methods: dict[str, Callable[..., tuple[np.ndarray, float, float]]] = {}
    for label, (name, params) in EDDY.items():
        methods[label] = lambda X, W, e, s, name=name, params=params: _eddy(
            name, params, X, W, e, s, batch
        )
    for label, flags in VW.items() if vw else ():
        methods[label] = lambda X, W, e, s, flags=flags: _vw(flags, X, W, e, s)
    if river:
        methods["River LinUCBDisjoint"] = _river
    per: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    oracle: list[float] = []
    uniform: list[float] = []
    for seed in range(n_seeds):
        X, W, noise = make_stream(seed, n)
        value = X @ W.T
        tail = slice(n - win, n)
        oracle.append(float(value[tail].max(axis=1).mean()))
        uniform.append(float(value[tail].mean()))
        for label, fn in methods.items():
            chosen, tc, tl = fn(X, W, noise, seed)
            got = value[np.arange(n), chosen]
            per[label].append(
                {
                    "reward_last": float(got[tail].mean()),
                    "reward_all": float(got.mean()),
                    "oracle_match_last": float((chosen[tail] == value[tail].argmax(axis=1)).mean()),
                    "decide_us": 1e6 * tc / n,
                    "total_us": 1e6 * (tc + tl) / n,
                }
            )
            say(
                f"seed {seed} {label}: reward(last {win}) {got[tail].mean():.4f} "
                f"oracle {oracle[-1]:.4f} total {1e6 * (tc + tl) / n:.2f} us/decision"
            )
    results = []
    for label, rows in per.items():
        agg = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        agg["reward_last_std"] = float(np.std([r["reward_last"] for r in rows]))
        mode = f"micro-batch {batch}" if label.startswith("eddy") else "per round"
        results.append({"method": label, "mode": mode, **agg})
    return {
        "benchmark": "bandits",
        "command": "python -m eddy.benchmarks.bandits" + (" --quick" if quick else ""),
        "rounds": n,
        "seeds": n_seeds,
        "window": win,
        "batch": batch,
        "n_arms": N_ARMS,
        "n_features": N_FEATURES,
        "oracle_reward_last": float(np.mean(oracle)),
        "uniform_reward_last": float(np.mean(uniform)),
        "results": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }


def table(res: dict[str, Any]) -> str:
    lines = [
        f"{res['rounds']:,} rounds x {res['seeds']} seeds, {res['n_arms']} arms, "
        f"{res['n_features']} features; reward = mean expected reward over the last "
        f"{res['window']:,} rounds (oracle {res['oracle_reward_last']:.4f}, "
        f"uniform {res['uniform_reward_last']:.4f})",
        "",
        "| method | decisions | reward (last) | ± sd over seeds | best-arm rate | "
        "µs/decision (decide) | µs/decision (decide+learn) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        lines.append(
            f"| {r['method']} | {r['mode']} | {r['reward_last']:.4f} | "
            f"{r['reward_last_std']:.4f} | {r['oracle_match_last']:.3f} | "
            f"{r['decide_us']:.2f} | {r['total_us']:.2f} |"
        )
    lines.append(f"| oracle | | {res['oracle_reward_last']:.4f} | | 1.000 | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m eddy.benchmarks.bandits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="20,000 rounds, 1 seed")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--rounds", type=int)
    p.add_argument("--seeds", type=int)
    p.add_argument("--window", type=int)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--no-river", action="store_true", help="skip River (slow)")
    p.add_argument("--no-vw", action="store_true", help="skip Vowpal Wabbit")
    args = p.parse_args(argv)
    res = run(
        args.quick,
        rounds=args.rounds,
        seeds=args.seeds,
        window=args.window,
        batch=args.batch,
        river=not args.no_river,
        vw=not args.no_vw,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    res["command"] = "python -m eddy.benchmarks.bandits " + " ".join(argv or sys.argv[1:])
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
