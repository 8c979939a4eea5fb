"""End to end, a domain eddy does not ship: a payment gateway routing card payments to acquirers.

A user's own spec (written into tmp_path, relative source paths) reads two files of seeded data:
``payments.jsonl`` (decision events: txn_id, ISO time, merchant category, card brand, amount and
the eligible ``acquirers``) and ``settlements.csv`` (outcomes seconds later: txn_id, acquirer,
approved, latency, fee, an optional risk score). ``eddy check`` and ``eddy run`` (subprocesses)
must then prove, by DuckDB queries on the result file:

- every decision picks an arm of its own eligible list, with a propensity in (0, 1] that keeps
  the documented floor; an event naming no arm of the stage gets no decision;
- every learned reward equals the reward expression computed here from the raw CSV values, and
  every outcome row is either learned exactly once or a row of ``unmatched_outcomes`` with a reason;
- ``features_acq_health`` (per-event trailing features, stored) equals a DuckDB SQL oracle written
  from the definition in docs/spec.md, and the tumbling windows equal a SQL GROUP BY;
- every injected bad line (9 kinds in the JSONL, 7 in the CSV) is exactly one dead letter at its
  position, naming the field at fault, and no good line is one;
- a 45 s outage of one acquirer (approvals collapse, latency x4) is detected by a ``rates``
  detector within seconds, with no alarm outside it and at most one on the healthy acquirers.

The closed loop: outcomes should answer the decisions eddy makes, which the data cannot know in
advance. The settlements file therefore answers *every eligible acquirer* of every payment
(full information, like a gateway that probes all its acquirers): the data, the features, the
windows and the detector are then independent of eddy's choices, and with ``reward.arm`` the
outcomes of the acquirers eddy did not choose must be unmatched (another arm), never learned.
Both files are in event-time order (the CSV has millisecond ties, kept in file order) with no late
events, so the watermark clause of the trailing definition never bites (the test checks it).

No documented promise checked here is one eddy does not keep yet: there is no xfail (a CSV
row's dead letter keeps the row's bytes, like a JSONL line's).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

SEED = 20260302
T0 = int(datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp() * 1000)
N_DECISIONS = 6_000
SPAN_MS = 300_000  # five minutes of event time
ARMS = ("acq_north", "acq_south", "acq_east", "acq_west")
# per acquirer: approval probability, median latency (ms), fee (% of amount)
HEALTH = {
    "acq_north": (0.93, 300.0, 1.8),
    "acq_south": (0.90, 450.0, 2.2),
    "acq_east": (0.88, 380.0, 1.5),
    "acq_west": (0.91, 520.0, 2.6),
}
OUTAGE_ARM = "acq_east"
OUTAGE_START = T0 + 150_000
OUTAGE_END = T0 + 195_000  # 45 s of decision time
OUTAGE_APPROVAL, OUTAGE_LATENCY_FACTOR = 0.40, 4.0
CATEGORIES = ("grocery", "travel", "gaming", "fashion", "utilities")
BRANDS = ("visa", "mastercard", "amex")
CSV_HEADER = ["settled_at", "txn_id", "acquirer", "approved", "latency_ms", "fee_pct", "risk_score"]
REWARD = "approved * (1 - fee_pct / 100) - min(latency_ms, 5000) / 10000"

SPEC = f"""
[pipeline]
name = "acquirer_routing"
seed = 7

[time]
allowed_lateness = "2s"
late_policy = "drop"

[streams.payments]
source = "jsonl:payments.jsonl"
id = "txn_id"
time = "ts"
[streams.payments.fields]
merchant_category = "string"
card_brand = "string"
amount = {{ type = "float", min = 0.01, max = 50000 }}
acquirers = {{ type = "list[string]", min = 1 }}

[streams.settlements]
source = "csv:settlements.csv"
time = "settled_at"
[streams.settlements.fields]
txn_id = "string"
acquirer = "string"
approved = "bool"
latency_ms = {{ type = "float", min = 0, max = 60000 }}
fee_pct = {{ type = "float", min = 0, max = 10 }}
risk_score = {{ type = "float", min = 0, max = 1, optional = true }}

[[features]]
name = "acq_health"
stream = "settlements"
key = "acquirer"
metrics = ["approved", "latency_ms", "risk_score"]
trailing = ["10s", "1m"]
aggregations = ["count", "sum", "mean", "min", "max"]
tumbling = ["30s"]
store = true

[[detect]]
name = "acq_alerts"
stream = "settlements"
key = "acquirer"
metrics = ["approved", "latency_ms"]
detector = "rates"
params = {{ bucket = "2s", alert = {{ approved = "drop 0.2", latency_ms = "rise 50%" }} }}
threshold = 0.99
cooldown = "30s"

[[decide]]
name = "route_payment"
stream = "payments"
arms = {json.dumps(list(ARMS))}
eligible = "acquirers"
policy = "linucb"
params = {{ alpha = 0.5, floor = 0.05 }}
context = {{ categorical = ["merchant_category", "card_brand"], numeric = ["amount"], \
arm_features = ["acq_health.approved_mean_1m", "acq_health.latency_ms_mean_10s"] }}
reward = {{ stream = "settlements", join = "txn_id", arm = "acquirer", value = "{REWARD}", \
ttl = "30s", default = 0.0 }}
"""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _generate(rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Good decision events (time order) and one outcome per eligible arm (time order)."""
    ts = T0 + np.cumsum(rng.exponential(SPAN_MS / N_DECISIONS, N_DECISIONS)).astype(np.int64)
    decisions, outcomes = [], []
    for i in range(N_DECISIONS):
        elig = [a for a in ARMS if rng.random() < 0.75] or [ARMS[int(rng.integers(4))]]
        elig = [str(a) for a in rng.permutation(elig)]
        if rng.random() < 0.05:
            elig.append("acq_legacy")  # not an arm of the stage: ignored
        d = {
            "txn_id": f"t{i:05d}",
            "ts": _iso(int(ts[i])),
            "merchant_category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
            "card_brand": BRANDS[int(rng.integers(len(BRANDS)))],
            "amount": round(float(rng.lognormal(3.5, 1.0)) + 0.01, 2),
            "acquirers": elig,
            "_ms": int(ts[i]),
        }
        decisions.append(d)
        for arm in elig:
            if arm not in HEALTH:
                continue
            p, median, fee = HEALTH[arm]
            latency = float(rng.lognormal(np.log(median), 0.35))
            if arm == OUTAGE_ARM and OUTAGE_START <= ts[i] < OUTAGE_END:
                p, latency = OUTAGE_APPROVAL, latency * OUTAGE_LATENCY_FACTOR
            at = int(ts[i]) + int(latency) + int(rng.integers(200, 1500))
            outcomes.append(
                {
                    "settled_at": at,
                    "txn_id": d["txn_id"],
                    "acquirer": arm,
                    "approved": bool(rng.random() < p),
                    "latency_ms": round(latency, 3),
                    "fee_pct": round(fee + float(rng.uniform(-0.3, 0.3)), 4),
                    "risk_score": None if rng.random() < 0.05 else round(float(rng.random()), 6),
                }
            )
    outcomes.sort(key=lambda o: o["settled_at"])  # stable: ties keep generation order
    return decisions, outcomes


def _bad_payment_lines(ms: int) -> list[tuple[bytes, str | None]]:
    """(raw line, field the reason must name) for each kind of bad decision event."""
    good = {
        "txn_id": f"bad-{ms}",
        "ts": _iso(ms),
        "merchant_category": "grocery",
        "card_brand": "visa",
        "amount": 12.5,
        "acquirers": ["acq_north"],
    }

    def dump(**over: object) -> bytes:
        return json.dumps({**good, **over}).encode()

    missing = {k: v for k, v in good.items() if k != "amount"}
    return [
        (b'{"txn_id": "bad", "ts": ', None),  # not JSON
        (json.dumps(missing).encode(), "amount"),  # a required field missing
        (dump(amount="twelve"), "amount"),  # wrong type
        (dump(amount=-3.0), "amount"),  # below min
        (dump(ts=_iso(ms)[:-1]), "ts"),  # a timestamp without a zone
        (dump(card_brand="vis-a").replace(b"vis-a", b"vis\xffa"), None),  # not UTF-8
        (dump(acquirers=[]), "acquirers"),  # list shorter than min = 1
        (dump(acquirers=["acq_legacy"]), "acquirers"),  # no arm of the stage is eligible
        (dump(acquirers="acq_north"), "acquirers"),  # a string, not a list
    ]


def _bad_settlement_rows(ms: int) -> list[tuple[bytes, str | None]]:
    """(raw CSV row, field the reason must name) for each kind of bad outcome row."""
    return [
        (f"{ms},t00001,acq_north,true,fast,1.8,0.5".encode(), "latency_ms"),  # not a number
        (f"{ms},t00001,acq_north,true".encode(), None),  # short row
        (f"{ms},t00001,acq_north,maybe,300.0,1.8,0.5".encode(), "approved"),  # bad bool
        (f"{ms},t00001,acq_north,true,300.0,55.0,0.5".encode(), "fee_pct"),  # above max
        (f"{ms},,acq_north,true,300.0,1.8,0.5".encode(), "txn_id"),  # required cell empty
        (b"12,t00001,acq_north,true,300.0,1.8,0.5", "settled_at"),  # time out of range
        (f"{ms},t00001,acq_n\xffrth,true,300.0,1.8,0.5".encode("latin-1"), None),  # not UTF-8
    ]


def _interleave(
    good: list[bytes], times: list[int], bad_kinds, rng: np.random.Generator, first_line: int
) -> tuple[bytes, dict[int, tuple[bytes, str | None]]]:
    """Insert every bad kind three times at seeded positions; returns the file and
    {1-based line number: (raw, field)} of the bad lines."""
    n_bad = 3 * len(bad_kinds(0))
    slots = set(rng.choice(np.arange(20, len(good)), n_bad, replace=False).tolist())
    lines, bad, k = [], {}, 0
    for j, raw in enumerate(good):
        if j in slots:
            kind = bad_kinds(times[j])[k % len(bad_kinds(0))]
            k += 1
            bad[first_line + len(lines)] = kind
            lines.append(kind[0])
        lines.append(raw)
    return b"\n".join(lines) + b"\n", bad


def _csv_row(o: dict) -> bytes:
    buf = io.StringIO()
    cells = [o[c] for c in CSV_HEADER]
    cells[3] = "true" if o["approved"] else "false"
    cells[6] = "" if o["risk_score"] is None else repr(o["risk_score"])
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue().encode()


def _write_inputs(tmp_path: Path, rng: np.random.Generator):
    decisions, outcomes = _generate(rng)
    good_j = [
        json.dumps({k: v for k, v in d.items() if not k.startswith("_")}).encode()
        for d in decisions
    ]
    pay, bad_pay = _interleave(good_j, [d["_ms"] for d in decisions], _bad_payment_lines, rng, 1)
    (tmp_path / "payments.jsonl").write_bytes(pay)
    good_c = [_csv_row(o) for o in outcomes]
    body, bad_set = _interleave(
        good_c, [o["settled_at"] for o in outcomes], _bad_settlement_rows, rng, 2
    )
    (tmp_path / "settlements.csv").write_bytes(",".join(CSV_HEADER).encode() + b"\n" + body)
    (tmp_path / "routing.toml").write_text(SPEC)
    return decisions, outcomes, bad_pay, bad_set


# --------------------------------------------------------------------------------------------
# one run shared by the assertions below


def _parse_inputs(tmp: Path, bad_pay: dict, bad_set: dict):
    """Read the two files back as eddy should: every line that is not a bad one."""
    payments = {}
    for ln, raw in enumerate((tmp / "payments.jsonl").read_bytes().split(b"\n")[:-1], start=1):
        if ln not in bad_pay:
            ev = json.loads(raw)
            payments[ev["txn_id"]] = ev
    rows = []
    lines = (tmp / "settlements.csv").read_bytes().split(b"\n")[:-1]
    assert lines[0].decode().split(",") == CSV_HEADER
    for ln, raw in enumerate(lines[1:], start=2):
        if ln in bad_set:
            continue
        c = next(csv.reader([raw.decode()]))
        rows.append(
            {
                "pos": ln - 1,  # eddy's CSV position: the data row, 1-based, header not counted
                "settled_at": int(c[0]),
                "txn_id": c[1],
                "acquirer": c[2],
                "approved": {"true": 1.0, "false": 0.0}[c[3]],
                "latency_ms": float(c[4]),
                "fee_pct": float(c[5]),
                "risk_score": float(c[6]) if c[6] else None,
            }
        )
    return payments, rows


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("acquirers")
    _, outcomes, bad_pay, bad_set = _write_inputs(tmp, np.random.default_rng(SEED))
    spec, db = tmp / "routing.toml", tmp / "routing.duckdb"
    eddy = [sys.executable, "-m", "eddy"]
    check = subprocess.run([*eddy, "check", str(spec)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "features_acq_health" in check.stdout
    proc = subprocess.run(
        [*eddy, "run", "--pipeline", str(spec), "--duckdb", str(db), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr
    payments, rows = _parse_inputs(tmp, bad_pay, bad_set)
    assert len(payments) == N_DECISIONS and len(rows) == len(outcomes)
    con = duckdb.connect(str(db), read_only=True)
    out = pa.Table.from_pylist(rows)
    con.register("raw_outcomes", out)
    yield {
        "con": con,
        "tmp": tmp,
        "payments": payments,
        "outcomes": rows,
        "bad_pay": bad_pay,
        "bad_set": bad_set,
    }
    con.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal to 1e-9 relative, NaN (or SQL NULL) equal to NaN."""
    a = np.ma.filled(np.ma.asarray(a, dtype=np.float64), np.nan)
    b = np.ma.filled(np.ma.asarray(b, dtype=np.float64), np.nan)
    return np.isclose(a, b, rtol=1e-9, atol=1e-12) | (np.isnan(a) & np.isnan(b))


# --------------------------------------------------------------------------------------------
# decisions and rewards


def test_every_decision_is_an_eligible_arm_with_a_valid_propensity(run: dict) -> None:
    payments = run["payments"]
    got = _rows(run["con"], "SELECT decision_id, decide, arm, propensity, policy FROM decisions")
    assert len(got) == len(payments) and {r[0] for r in got} == set(payments)  # one per event
    # some good events also list "acq_legacy" (ignored); an event listing only it: no decision
    assert any("acq_legacy" in ev["acquirers"] for ev in payments.values())
    assert not {r[0] for r in got} & {json.loads(raw)["txn_id"] for raw in _no_arm_lines(run)}
    for tid, decide, arm, propensity, policy in got:
        eligible = [a for a in payments[tid]["acquirers"] if a in ARMS]
        assert (decide, policy) == ("route_payment", "linucb")
        assert arm in eligible, (tid, arm, eligible)
        # floor = 0.05: every eligible arm keeps at least floor / n_eligible
        assert 0.05 / len(eligible) - 1e-12 <= propensity <= 1.0, (tid, propensity)
        if len(eligible) == 1:
            assert propensity == 1.0
    assert {r[2] for r in got} == set(ARMS)  # every acquirer was used at least once


def _expected_reward(o: dict) -> float:
    # REWARD, written out independently of eddy's expression parser
    return o["approved"] * (1 - o["fee_pct"] / 100) - min(o["latency_ms"], 5000) / 10000


def test_rewards_equal_the_expression_over_the_raw_outcome(run: dict) -> None:
    con, outcomes = run["con"], run["outcomes"]
    mine = {(o["txn_id"], o["acquirer"]): o for o in outcomes}
    got = _rows(con, "SELECT decision_id, arm, reward, timed_out, decide FROM rewards")
    assert {r[0] for r in got} == {r[0] for r in _rows(con, "SELECT decision_id FROM decisions")}
    learned = [r for r in got if not r[3]]
    assert len(learned) > 1000
    expected = np.array([_expected_reward(mine[(r[0], r[1])]) for r in learned])
    assert _close(np.array([r[2] for r in learned]), expected).all()
    assert all(r[2] == 0.0 for r in got if r[3])  # timed out: the default reward
    assert {r[4] for r in got} == {"route_payment"}


def test_every_outcome_is_learned_once_or_unmatched_with_a_reason(run: dict) -> None:
    con, outcomes = run["con"], run["outcomes"]
    arm_of = dict(_rows(con, "SELECT decision_id, arm FROM decisions"))
    learned = {
        r[0]: r[1:]
        for r in _rows(
            con,
            "SELECT decision_id, arm, approved, fee_pct, "
            "latency_ms FROM rewards WHERE NOT timed_out",
        )
    }
    unmatched = {}
    for oid, decide, did, stream, reason in _rows(
        con, "SELECT outcome_id, decide, decision_id, stream, reason FROM unmatched_outcomes"
    ):
        prefix, pos = oid.rsplit("#", 1)
        assert prefix.startswith("route_payment:csv:") and prefix.endswith("settlements.csv")
        assert (decide, stream) == ("route_payment", "settlements") and reason
        unmatched[int(pos)] = (did, reason)
    n_learned = 0
    for o in outcomes:
        is_learned = o["txn_id"] in learned and learned[o["txn_id"]][0] == o["acquirer"]
        if is_learned:
            n_learned += 1
            assert learned[o["txn_id"]][1:] == (o["approved"], o["fee_pct"], o["latency_ms"])
        assert is_learned != (o["pos"] in unmatched), o  # exactly one of the two
        if o["pos"] in unmatched:
            assert unmatched[o["pos"]][0] == o["txn_id"]
        if arm_of.get(o["txn_id"]) != o["acquirer"]:  # a counterfactual arm: never learned
            assert not is_learned
    assert n_learned == len(learned)  # each learned reward is exactly one outcome row


def test_every_decision_learns_its_own_on_time_outcome(run: dict) -> None:
    con = run["con"]
    # every decision's arm was eligible, and every eligible arm has an outcome within ~8 s
    assert _rows(con, "SELECT count(*) FROM rewards WHERE timed_out") == [(0,)]
    # so the only outcomes not learned are those of the arms not chosen
    n_decisions = _rows(con, "SELECT count(*) FROM decisions")[0][0]
    n_unmatched = _rows(con, "SELECT count(*) FROM unmatched_outcomes")[0][0]
    assert n_unmatched == len(run["outcomes"]) - n_decisions


# --------------------------------------------------------------------------------------------
# features and windows against SQL over the raw outcome file

METRICS = ("approved", "latency_ms", "risk_score")
TRAILING = {"10s": 10_000, "1m": 60_000}
AGGS = ("count", "sum", "mean", "min", "max")
LATENESS_MS = 2_000


def _agg_sql(agg: str, v: str, cond: str) -> str:
    return {
        # spec.md: every aggregation, count included, reads the values present
        "count": f"count({v}) FILTER (WHERE {cond})",
        "sum": f"coalesce(sum({v}) FILTER (WHERE {cond}), 0)",
        "mean": f"avg({v}) FILTER (WHERE {cond})",
        "min": f"min({v}) FILTER (WHERE {cond})",
        "max": f"max({v}) FILTER (WHERE {cond})",
    }[agg]


def test_stored_trailing_features_equal_a_sql_oracle(run: dict) -> None:
    """spec.md: for an event at t of key k and window D, the events of k that arrived no
    later than it (itself included) with max(t - D, W - longest) < ts <= t, W the watermark
    just before it. The CSV is one partition read in file order (arrival order = row order),
    in event-time order with ties, and has no late events (checked), so W never bites."""
    con = run["con"]
    longest = max(TRAILING.values())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ev AS
        SELECT pos AS seq, acquirer AS key, settled_at AS ts, approved, latency_ms, risk_score,
               coalesce(max(settled_at) OVER (ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING
                                               AND 1 PRECEDING) - {LATENESS_MS}, -1e18) AS wmb
        FROM raw_outcomes
    """)
    assert _rows(con, "SELECT count(*) FROM ev WHERE ts < wmb") == [(0,)]
    assert _rows(con, "SELECT count(*) FROM late_events") == [(0,)]
    cols, sel = [], []
    for m in METRICS:
        for w, d in TRAILING.items():
            for agg in AGGS:
                cols.append(f"{m}_{agg}_{w}")
                sel.append(f"{_agg_sql(agg, 'b.' + m, f'b.ts > a.ts - {d}')}::DOUBLE")
    oracle = con.execute(f"""
        SELECT a.seq, a.key, a.ts, {", ".join(sel)}
        FROM ev a JOIN ev b
          ON b.key = a.key AND b.seq <= a.seq AND b.ts <= a.ts
         AND b.ts > a.ts - {longest} AND b.ts > a.wmb - {longest}
        GROUP BY a.seq, a.key, a.ts ORDER BY a.seq
    """).fetchnumpy()
    got = con.execute(f"""
        SELECT split_part(id, '#', -1)::BIGINT AS seq, key, epoch_ms(event_time) AS ts,
               {", ".join(cols)}
        FROM features_acq_health ORDER BY seq
    """).fetchnumpy()
    assert len(got["seq"]) == len(run["outcomes"])  # one row per good outcome, none for bad
    assert (got["seq"] == oracle["seq"]).all()
    assert (got["key"] == oracle["key"]).all() and (got["ts"] == oracle["ts"]).all()
    prefixes = _rows(con, "SELECT DISTINCT split_part(id, '#', 1) FROM features_acq_health")
    assert len(prefixes) == 1 and prefixes[0][0].startswith("csv:")
    for i, c in enumerate(cols):
        ok = _close(got[c], oracle[list(oracle)[3 + i]])
        assert ok.all(), (
            c,
            int((~ok).sum()),
            got[c][~ok][:3],
            oracle[list(oracle)[3 + i]][~ok][:3],
        )


def test_tumbling_windows_equal_a_sql_group_by(run: dict) -> None:
    """tumbling_30s: epoch-aligned [start, start + 30 s) per acquirer and metric; the input is
    bounded, so every window is closed and emitted at the end."""
    con = run["con"]
    size = 30_000
    parts = [
        f"""SELECT acquirer AS key, '{m}' AS metric, (settled_at // {size}) * {size} AS ws,
                   count({m}) AS n, coalesce(sum({m}), 0)::DOUBLE AS s, avg({m}) AS mean,
                   min({m})::DOUBLE AS lo, max({m})::DOUBLE AS hi
            FROM raw_outcomes GROUP BY ALL"""
        for m in METRICS
    ]
    oracle = con.execute(" UNION ALL ".join(parts) + " ORDER BY key, metric, ws").fetchnumpy()
    got = con.execute("""
        SELECT key, metric, epoch_ms(window_start) AS ws, count AS n, sum AS s, mean,
               min AS lo, max AS hi, epoch_ms(window_end) - epoch_ms(window_start) AS size,
               features, stream
        FROM window_aggregates WHERE "window" = 'tumbling_30s' ORDER BY key, metric, ws
    """).fetchnumpy()
    assert _rows(con, 'SELECT DISTINCT "window" FROM window_aggregates') == [("tumbling_30s",)]
    assert len(got["key"]) == len(oracle["key"]) >= 4 * 3 * 10  # 4 arms, 3 metrics, 5+ min
    for c in ("key", "metric", "ws", "n"):
        assert (got[c] == oracle[c]).all(), c
    assert (got["size"] == size).all()
    assert set(got["features"]) == {"acq_health"} and set(got["stream"]) == {"settlements"}
    for c in ("s", "mean", "lo", "hi"):
        assert _close(got[c], oracle[c]).all(), c


# --------------------------------------------------------------------------------------------
# bad input


def _no_arm(raw: bytes) -> bool:
    """A well-formed event whose eligible list names no arm: nothing can be decided for it, so
    it is a dead letter (with its raw line and position, like any bad line)."""
    try:
        ev = json.loads(raw)
    except ValueError:
        return False
    return isinstance(ev.get("acquirers"), list) and ev["acquirers"] == ["acq_legacy"]


def _no_arm_lines(run: dict) -> list[bytes]:
    return [raw for raw, _field in run["bad_pay"].values() if _no_arm(raw)]


def test_every_bad_line_is_exactly_one_dead_letter(run: dict) -> None:
    con, tmp = run["con"], run["tmp"]
    rows = _rows(con, "SELECT stream, source, position, raw, reason FROM dead_letters")
    by_source = {
        "jsonl": dict(run["bad_pay"]),
        "csv": {ln - 1: v for ln, v in run["bad_set"].items()},  # CSV position: data row
    }
    streams = {"jsonl": "payments", "csv": "settlements"}
    files = {"jsonl": "payments.jsonl", "csv": "settlements.csv"}
    seen: dict[str, dict[int, tuple]] = {"jsonl": {}, "csv": {}}
    for stream, source, position, raw, reason in rows:
        assert reason, (stream, source, position)
        kind = source.split(":", 1)[0]
        assert Path(source.split(":", 1)[1]).resolve() == (tmp / files[kind]).resolve()
        assert stream == streams[kind]
        assert position not in seen[kind], ("two dead letters for one line", source, position)
        seen[kind][position] = (bytes(raw), reason)
    for kind, expected in by_source.items():
        assert set(seen[kind]) == set(expected), kind  # every bad line, and no good line
        for pos, (raw, field) in expected.items():
            got_raw, reason = seen[kind][pos]
            assert got_raw == raw, (kind, pos)
            if field is not None:
                assert f"'{field}'" in reason, (kind, pos, field, reason)
    # an event naming no arm of the stage is decided by nobody: its dead letter says so
    no_arm = [pos for pos, (raw, _f) in run["bad_pay"].items() if _no_arm(raw)]
    assert len(no_arm) == 3
    assert all("'acquirers'" in seen["jsonl"][pos][1] for pos in no_arm)
    assert len(rows) == len(run["bad_pay"]) + len(run["bad_set"])


def test_no_eligible_arm_dead_letter_keeps_raw_line_and_position(run: dict) -> None:
    con, tmp = run["con"], run["tmp"]
    expected = {ln: raw for ln, (raw, _f) in run["bad_pay"].items() if _no_arm(raw)}
    got = _rows(con, "SELECT position, raw, source FROM dead_letters WHERE stream = 'payments'")
    by_position = {r[0]: (bytes(r[1]), r[2]) for r in got}
    source = f"jsonl:{(tmp / 'payments.jsonl').resolve()}"
    assert {ln: by_position.get(ln) for ln in expected} == {
        ln: (raw, source) for ln, raw in expected.items()
    }


def test_csv_dead_letters_keep_the_raw_row_bytes(run: dict) -> None:
    got = dict(
        _rows(run["con"], "SELECT position, raw FROM dead_letters WHERE source LIKE 'csv:%'")
    )
    assert {p: bytes(r) for p, r in got.items()} == {
        ln - 1: raw for ln, (raw, _f) in run["bad_set"].items()
    }


# --------------------------------------------------------------------------------------------
# the outage


# The last outage decision's outcomes settle at most ~1.5 s x e^(3 x 0.35) + 1.5 s ~ 6 s after
# OUTAGE_END (median latency 4 x 380 ms, 3 sigma); a row is stamped with its 2 s bucket; plus
# margin for evidence summed over the last buckets (spans): 11 s.
GRACE_MS = 11_000


def test_the_outage_of_one_acquirer_is_detected_and_healthy_ones_stay_quiet(run: dict) -> None:
    """acq_east's approvals collapse (0.88 -> 0.40) and its latency quadruples for 45 s.
    ~15 outcomes/s per acquirer = ~30 per 2 s bucket, so a 0.2 drop is ~3.5 binomial standard
    deviations of a healthy bucket (p ~ 0.9) and a 50 % latency rise ~6 standard deviations of a
    bucket's mean log (sigma 0.35): outside the outage, a significant change past those bands
    happens well under once in the ~1,200 healthy bucket-metric pairs. One false alarm is
    allowed; this seed has none."""
    con = run["con"]
    rows = _rows(
        con,
        "SELECT key, metric, epoch_ms(event_time), score, detect, stream FROM anomalies "
        "ORDER BY event_time",
    )
    assert all(r[4:] == ("acq_alerts", "settlements") for r in rows)
    assert all(0.99 <= r[3] <= 1.0 and r[1] in ("approved", "latency_ms") for r in rows)
    hits = [r for r in rows if r[0] == OUTAGE_ARM]
    assert hits, rows
    assert all(OUTAGE_START <= r[2] <= OUTAGE_END + GRACE_MS for r in hits), hits
    assert {r[1] for r in hits} == {"approved", "latency_ms"}  # both symptoms
    assert min(r[2] for r in hits) <= OUTAGE_START + 10_000  # found within 10 s
    false_alarms = [r for r in rows if r[0] != OUTAGE_ARM]
    assert len(false_alarms) <= 1, false_alarms
