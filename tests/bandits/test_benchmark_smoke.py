from __future__ import annotations

from eddy.benchmarks.bandits import run, table


def test_benchmark_runs_end_to_end_on_a_tiny_stream() -> None:
    res = run(True, rounds=3000, seeds=1, window=1000, batch=256, river=True)
    methods = {r["method"]: r for r in res["results"]}
    assert set(methods) == {
        "eddy LinUCB",
        "eddy LinTS",
        "eddy EpsilonGreedy",
        "eddy LinUCB floor=0",
        "VW cb_explore_adf --squarecb",
        "VW cb_explore_adf --epsilon 0.05",
        "River LinUCBDisjoint",
    }
    assert methods["eddy LinUCB"]["mode"] == "micro-batch 256"
    for r in res["results"]:
        assert r["reward_last"] <= res["oracle_reward_last"] + 1e-12
        assert r["total_us"] >= r["decide_us"] > 0
    # every eddy policy learns something within 3000 rounds
    for name in ("eddy LinUCB", "eddy LinTS", "eddy EpsilonGreedy"):
        assert methods[name]["reward_last"] > res["uniform_reward_last"] + 0.5
    assert "| oracle |" in table(res)
