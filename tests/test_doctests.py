"""The examples in the public modules' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "eddy",
    "eddy.dataflows.ops",
    "eddy.dataflows.packet",
    "eddy.schemas.batch",
    "eddy.schemas.durations",
    "eddy.schemas.packing",
    "eddy.schemas.spec_load",
    "eddy.operators.dedup",
    "eddy.operators.expressions",
    "eddy.operators.stages.features",
    "eddy.sources.base",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
