"""What the keyed stages hand a decide stage: rows to decide, rows to learn, and progress.

The keyed part of a pipeline (features, detectors, late rows, repeats) and its decide stages
can run on different shards (``operators/engine/keyed.py``, ``.../decide.py``): decisions are
spread by decision id, outcomes by their join field. A shard of the keyed part tells a decide
stage everything in these messages, in the order it happened; ``partition`` is the shard's own
identity travels with the messages (``sender``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eddy.schemas.batch import EventBatch

__all__ = [
    "ArmValues",
    "DecideMessage",
    "Decided",
    "OutcomesSeen",
    "ToDecide",
    "ToLearn",
]


@dataclass(frozen=True)
class ToDecide:
    """Decision events with their context features ((n, F), the stage's own columns)."""

    batch: EventBatch
    features: np.ndarray


@dataclass(frozen=True)
class Decided:
    """Keyed shard ``sender`` has handed over every decision event of ``partition`` up to
    event time ``top``."""

    partition: int
    top: int
    sender: int


@dataclass(frozen=True)
class ToLearn:
    """Outcome events whose decisions have been handed over."""

    batch: EventBatch


@dataclass(frozen=True)
class OutcomesSeen:
    """The stage's outcome stream has reached event time ``top`` (decisions time out by it)."""

    top: int


@dataclass(frozen=True)
class ArmValues:
    """The latest features of the arms the keyed shard holds (``owned``), (n_arms, G)."""

    owned: np.ndarray
    values: np.ndarray


DecideMessage = ToDecide | Decided | ToLearn | OutcomesSeen | ArmValues
