"""`eddy bench` argument handling (the suites themselves run in test_harness.py)."""

from __future__ import annotations

import pytest

from eddy.dataflows.cli import main
from eddy.dataflows.commands.bench import HARNESS_SUITES, SUITES


def test_every_harness_suite_is_registered() -> None:
    assert set(HARNESS_SUITES) <= set(SUITES)


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "warp-speed"]) == 2
    assert "warp-speed" in capsys.readouterr().err


def test_help_lists_the_suites_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("throughput", "latency", "scaling", "memory", "quality", "--quick", "--json"):
        assert word in text
