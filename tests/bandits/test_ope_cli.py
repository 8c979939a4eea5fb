from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from eddy.dataflows.cli import main
from eddy.dataflows.commands.run import reference_spec_path
from eddy.schemas.spec_load import load_spec
from eddy.schemas.tables import arrow_schema, ddl, pipeline_tables
from tests.bandits.test_ope import K, _log, _truth, _world

TABLES = pipeline_tables(load_spec(reference_spec_path()))


def _write_log(path: Path, n: int = 3000, seed: int = 0, bad_rows: bool = True) -> float:
    W = _world(0)
    X, arms, mu, r = _log(seed, n, W)
    ids = [f"req-{i}" for i in range(n)]
    ts = np.arange(n, dtype=np.int64) * 10
    contexts = [list(x) for x in X]
    if bad_rows:
        contexts[5] = [1.0, 2.0]  # wrong length: counted, not used
    cols: dict[str, Any] = {c.name: [None] * n for c in TABLES["decisions"].columns}
    cols.update(
        decision_id=ids,
        decide=["pick"] * n,
        event_time=ts,
        arm=[f"arm{a}" for a in arms.tolist()],
        arm_index=arms.astype(np.int32).tolist(),
        propensity=mu.tolist(),
        context=contexts,
        policy=["logger"] * n,
    )
    decisions = pa.table(
        {
            k: pa.array(v, type=arrow_schema(TABLES["decisions"]).field(k).type)
            for k, v in cols.items()
        }
    )
    rcols: dict[str, Any] = {c.name: [None] * (n - 10) for c in TABLES["rewards"].columns}
    rcols.update(
        decision_id=ids[:-10],
        decide=["pick"] * (n - 10),
        event_time=ts[:-10] + 5,
        arm=[f"arm{a}" for a in arms[:-10].tolist()],
        reward=r[:-10],
        timed_out=[False] * (n - 10),
    )
    rewards = pa.table(
        {
            k: pa.array(v, type=arrow_schema(TABLES["rewards"]).field(k).type)
            for k, v in rcols.items()
        }
    )
    con = duckdb.connect(str(path))
    for name, tab in (("decisions", decisions), ("rewards", rewards)):
        con.execute(ddl(TABLES[name]))
        con.register("batch", tab)
        con.execute(f"INSERT INTO {name} SELECT * FROM batch")
        con.unregister("batch")
    con.close()
    return _truth(W)


def test_eddy_ope_json_for_each_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "log.duckdb"
    _write_log(db)
    for policy in ("linucb", "lints", "epsilon_greedy", "uniform", "logged"):
        assert main(["ope", "--duckdb", str(db), "--policy", policy, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["policy"] == policy and out["n"] == 3000 - 10 - 1 and out["n_arms"] == K
        assert out["rows"]["without_reward"] == 10 and out["rows"]["bad_context"] == 1
        for name in ("ips", "snips", "dr"):
            e = out["estimates"][name]
            assert e["ci_low"] <= e["value"] <= e["ci_high"]
        if policy == "logged":
            assert out["estimates"]["ips"]["value"] == pytest.approx(out["logged_mean_reward"])
        if policy in ("linucb", "lints", "epsilon_greedy"):
            # a learning policy beats this mediocre logger by a wide margin
            assert out["estimates"]["dr"]["ci_low"] > out["logged_mean_reward"]


def test_eddy_ope_table_output_and_uniform_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "log.duckdb"
    _write_log(db, bad_rows=False)
    assert main(["ope", "--duckdb", str(db), "--policy", "uniform"]) == 0
    text = capsys.readouterr().out
    assert "snips" in text and "95% CI low" in text
    # uniform target's true value: mean over arms of the linear reward (context mean is e_0)
    W = _world(0)
    truth = float(W[:, 0].mean())
    assert main(["ope", "--duckdb", str(db), "--policy", "uniform", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)["estimates"]
    for name in ("ips", "snips", "dr"):
        assert est[name]["ci_low"] <= truth <= est[name]["ci_high"]


def test_eddy_ope_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ope", "--duckdb", str(tmp_path / "missing.duckdb")]) == 2
    assert "no such file" in capsys.readouterr().err
    db = tmp_path / "log.duckdb"
    _write_log(db, n=200)
    assert main(["ope", "--duckdb", str(db), "--param", "alpha"]) == 2
    assert main(["ope", "--duckdb", str(db), "--param", "beta=1"]) == 2
    assert "unknown params" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["ope", "--duckdb", str(empty)]) == 2
    assert "no table" in capsys.readouterr().err
