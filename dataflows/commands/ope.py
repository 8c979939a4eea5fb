"""`eddy ope`: off-policy evaluation of a bandit policy from the logged DuckDB tables.

Reads ``decisions`` (context, arm, propensity) joined with ``rewards`` (reward) by
``decision_id``, in event-time order, from a DuckDB file opened read-only, and prints IPS, SNIPS
and doubly-robust estimates of the target policy's value with confidence intervals.

Target policies: ``linucb``, ``lints``, ``epsilon_greedy`` — a fresh policy replayed over the log
in micro-batches and trained online on the logged rows (see ``operators.bandits.ope``);
``uniform`` — every arm equally likely; ``logged`` — the logging policy itself (the mean reward).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "load_log"]

_TARGETS = ("linucb", "lints", "epsilon_greedy", "uniform", "logged")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ope",
        help="off-policy evaluation (IPS, SNIPS, DR) of a bandit policy from logged decisions",
        description=(
            "Estimate a target policy's average reward from the decisions/rewards tables: "
            "IPS, SNIPS and doubly robust (cross-fitted ridge reward model) with CIs."
        ),
    )
    p.add_argument("--duckdb", default="eddy.duckdb", help="DuckDB file (opened read-only)")
    p.add_argument("--policy", default="linucb", choices=_TARGETS, help="target policy")
    p.add_argument(
        "--decide", metavar="NAME", help="the decide stage (needed when the file holds several)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="target policy parameter, e.g. --param alpha=0.5 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ci", default="normal", choices=("normal", "bootstrap"))
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")
    p.add_argument("--batch-size", type=int, default=512, help="replay micro-batch size")
    p.add_argument("--folds", type=int, default=2, help="cross-fitting folds for DR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _parse_params(items: list[str]) -> dict[str, Any]:
    from eddy.dataflows.cli import UsageError

    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param: expected NAME=VALUE, got {item!r}")
        value: Any
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        out[name] = value
    return out


def load_log(path: str, decide: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Logged rows as numpy arrays (``X``, ``arms``, ``propensities``, ``rewards``, in event-time
    order) and counts of the rows that could not be used (never silently dropped)."""
    import os

    import duckdb
    import numpy as np

    from eddy.dataflows.cli import UsageError

    if not os.path.exists(path):
        raise UsageError(f"--duckdb: no such file {path!r}")
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error as e:
        raise UsageError(
            f"--duckdb: cannot open {path!r} read-only ({e}); if a pipeline owns it, "
            "stop it or evaluate a copy"
        ) from e
    try:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        missing = {"decisions", "rewards"} - tables
        if missing:
            raise UsageError(f"--duckdb: {path!r} has no table(s) {sorted(missing)}")
        stages = [r[0] for r in con.execute("SELECT DISTINCT decide FROM decisions").fetchall()]
        if decide is None and len(stages) > 1:
            raise UsageError(f"--decide: the file holds decide stages {sorted(stages)}; name one")
        if decide is not None and decide not in stages:
            raise UsageError(f"--decide: no decisions of {decide!r}; stages: {sorted(stages)}")
        stage = decide if decide is not None else (stages[0] if stages else "")
        n_decisions = con.execute(
            "SELECT count(*) FROM decisions WHERE decide = ?", [stage]
        ).fetchall()[0]
        t = con.sql(
            """
            SELECT d.context, d.arm_index AS arm, d.propensity, r.reward
            FROM decisions d JOIN rewards r USING (decision_id)
            WHERE d.decide = $stage
            ORDER BY d.event_time, d.decision_id
            """,
            params={"stage": stage},
        ).to_arrow_table()
    finally:
        con.close()
    n = t.num_rows
    ctx = t.column("context").to_pylist()
    arm = np.asarray(t.column("arm").to_numpy(zero_copy_only=False), dtype=np.float64)
    prop = np.asarray(t.column("propensity").to_numpy(zero_copy_only=False), dtype=np.float64)
    rew = np.asarray(t.column("reward").to_numpy(zero_copy_only=False), dtype=np.float64)
    lengths = np.array([len(c) if c is not None else -1 for c in ctx], dtype=np.int64)
    d = int(np.bincount(lengths[lengths > 0]).argmax()) if (lengths > 0).any() else 0
    ok_ctx = lengths == d
    X = np.zeros((n, max(d, 1)))
    for i in np.flatnonzero(ok_ctx):
        X[i] = [np.nan if v is None else v for v in ctx[i]]
    ok_ctx &= np.isfinite(X).all(axis=1)
    good = (
        ok_ctx
        & np.isfinite(arm)
        & (arm >= 0)
        & np.isfinite(prop)
        & (prop > 0)
        & (prop <= 1)
        & np.isfinite(rew)
    )
    skipped = {
        "decisions": int(n_decisions[0]) if n_decisions else 0,
        "joined": n,
        "without_reward": (int(n_decisions[0]) if n_decisions else 0) - n,
        "bad_context": int((~ok_ctx).sum()),
        "bad_arm_propensity_or_reward": int((ok_ctx & ~good).sum()),
    }
    log = {
        "X": X[good],
        "arms": arm[good].astype(np.int64),
        "propensities": prop[good],
        "rewards": rew[good],
    }
    return log, skipped


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import orjson

    from eddy.dataflows.cli import UsageError
    from eddy.operators.bandits import POLICIES
    from eddy.operators.bandits.ope import effective_sample_size, estimate, replay_probabilities

    params = _parse_params(args.param)
    if params and args.policy in ("uniform", "logged"):
        raise UsageError(f"--param: policy {args.policy!r} takes no parameters")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected an int >= 1, got {args.batch_size}")
    if args.folds < 2:
        raise UsageError(f"--folds: expected an int >= 2, got {args.folds}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: expected a number in (0, 1), got {args.alpha}")
    log, counts = load_log(args.duckdb, args.decide)
    X, arms, mu, r = log["X"], log["arms"], log["propensities"], log["rewards"]
    n = len(r)
    if n < 2 * args.folds:
        raise UsageError(
            f"--duckdb: expected at least {2 * args.folds} decisions with rewards, got {n}"
        )
    n_arms = int(arms.max()) + 1
    version = None
    target: np.ndarray | None
    if args.policy == "logged":
        target = None
    elif args.policy == "uniform":
        target = np.full((n, n_arms), 1.0 / n_arms)
    else:
        try:
            pol = POLICIES[args.policy](n_arms, X.shape[1], seed=args.seed, **params)
        except (ValueError, TypeError) as e:
            raise UsageError(f"--param: {e}") from e
        version = pol.version
        target = replay_probabilities(pol, X, arms, r, batch_size=args.batch_size)
    est = estimate(
        X,
        arms,
        mu,
        r,
        target,
        n_arms=n_arms,
        alpha=args.alpha,
        ci=args.ci,
        n_folds=args.folds,
        seed=args.seed,
    )
    result = {
        "policy": args.policy,
        "policy_version": version,
        "evaluation": "replay, trained online on the log" if version else args.policy,
        "n": n,
        "n_arms": n_arms,
        "n_features": int(X.shape[1]),
        "logged_mean_reward": float(r.mean()),
        "effective_sample_size": effective_sample_size(target, arms, mu),
        "confidence": 1 - args.alpha,
        "ci": args.ci,
        "estimates": {k: v.to_dict() for k, v in est.items()},
        "rows": counts,
    }
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    conf = f"{100 * (1 - args.alpha):g}%"
    print(
        f"off-policy value of {args.policy!r} on {n} logged decisions "
        f"({n_arms} arms, {X.shape[1]} features; ESS {result['effective_sample_size']:.0f})"
    )
    print(f"logged policy mean reward: {r.mean():.6g}")
    print(
        f"{'estimator':<10}{'value':>12}{conf + ' CI low':>14}{conf + ' CI high':>14}{'s.e.':>12}"
    )
    for name in ("ips", "snips", "dr", "dm"):
        x = est[name]
        print(f"{name:<10}{x.value:>12.6g}{x.ci_low:>14.6g}{x.ci_high:>14.6g}{x.std_err:>12.4g}")
    print("(dm = direct method, model-based: its interval ignores model bias)")
    unused = {k: v for k, v in counts.items() if k not in ("decisions", "joined") and v}
    if unused:
        print(f"rows not used: {unused}")
    return 0
