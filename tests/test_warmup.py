"""The kernels compile at install; a run whose kernels are stale compiles first and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from eddy import warmup


def test_a_stale_stamp_compiles_before_the_run_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(warmup, "_STAMP", tmp_path / "stamp")
    monkeypatch.setattr(warmup, "compile_kernels", lambda: calls.append(1) or 2.0)
    warmup.ensure_compiled()  # no stamp at all: compile
    assert calls == [1] and "compiling numba kernels" in capsys.readouterr().err
    (tmp_path / "stamp").write_text(warmup._stamp())
    warmup.ensure_compiled()  # the stamp matches: nothing to do, nothing said
    assert calls == [1] and capsys.readouterr().err == ""
    (tmp_path / "stamp").write_text("an older kernel")
    warmup.ensure_compiled()
    assert calls == [1, 1]


def test_the_stamp_covers_every_kernel_module() -> None:
    root = Path(warmup.__file__).resolve().parent
    kernels = [p for p in root.glob("*/**/*.py") if b"@njit" in p.read_bytes()]
    assert len(kernels) >= 10  # the symlinked folders are followed
    assert any(p.name == "median_mad.py" for p in kernels)


def test_every_warm_up_spec_is_a_valid_pipeline() -> None:
    from eddy.dataflows.plan import check_engine

    specs = warmup.warm_specs()
    policies = {d.policy for s in specs for d in s.decide}
    assert policies == {"linucb", "lints", "epsilon_greedy"}
    assert {x.detector for s in specs for x in s.detect} >= {"ensemble", "rates"}
    for spec in specs:
        check_engine(spec)


def test_a_run_starts_numba_before_it_builds_its_dataflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eddy.dataflows import runner
    from eddy.dataflows.run_options import RunOptions
    from eddy.schemas.spec_load import load_spec

    order: list[str] = []

    def build_flow(*_args: object) -> None:
        order.append("build")
        raise RuntimeError("stop before running")

    monkeypatch.setattr(runner, "prime", lambda: order.append("prime"))
    monkeypatch.setattr(runner, "build_flow", build_flow)
    spec = load_spec(Path(warmup.__file__).parent / "examples" / "sensors.toml")
    with pytest.raises(RuntimeError, match="stop before running"):
        runner.run_pipeline(RunOptions(spec, no_duckdb=True, events=10))
    assert order == ["prime", "build"]


def test_prime_leaves_a_kernel_loaded() -> None:
    warmup.prime()
    assert warmup._first_kernel.signatures  # loaded from the cache, or compiled once


def test_prime_loads_the_recorded_kernels_before_any_call(tmp_path: Path) -> None:
    """In a fresh process, after prime() a window store kernel already holds the recorded
    argument types before anything calls it. A signature file the stamp does not vouch
    for is not used."""
    import subprocess
    import sys

    code = """
import pickle, sys
from pathlib import Path
from eddy import warmup
from eddy.operators.windows import store
from numba.core import types
warmup._SIGNATURES = Path(sys.argv[1]) / "sigs.pkl"
kernels = {"eddy.operators.windows.store:slot_size": [(types.int64,)]}
warmup._SIGNATURES.write_bytes(pickle.dumps(kernels))
warmup._STAMP = Path(sys.argv[1]) / "stamp"
warmup._STAMP.write_text(sys.argv[2])
warmup.prime()
print(len(store.slot_size.signatures))
"""
    for stamp, loaded in ((warmup._stamp(), "1"), ("an older kernel", "0")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path), stamp],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == loaded, out.stderr
