"""The engine: a pipeline spec's stages over decoded micro-batches, pure.

:class:`PipelineEngine` runs every stage in one place; a dataflow spreads the same work over
shards: :class:`KeyedEngine` (features, detectors, late rows, repeats; keyed by the stages'
keys) and :class:`DecideEngine` (one decide stage; by decision id), talking through
:mod:`.messages`.
"""

from eddy.operators.engine.decide import DecideEngine
from eddy.operators.engine.keyed import KeyedEngine
from eddy.operators.engine.pipeline import PipelineEngine

__all__ = ["DecideEngine", "KeyedEngine", "PipelineEngine"]
