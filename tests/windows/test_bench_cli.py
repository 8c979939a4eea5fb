"""`eddy bench`: suite table and the error path (the benchmark itself is not a test)."""

from __future__ import annotations

import pytest

from eddy.dataflows.cli import main
from eddy.dataflows.commands.bench import SUITES


def test_features_suite_is_registered() -> None:
    assert "features" in SUITES


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no-such-suite", "--quick"]) == 2
    assert "suite 'no-such-suite' not available yet" in capsys.readouterr().err
