"""The Python entry points behind ``import eddy``: check a spec, build its dataflow, run it."""

from __future__ import annotations

import threading
from pathlib import Path

from bytewax.dataflow import Dataflow

from eddy.dataflows.flow import build_flow
from eddy.dataflows.plan import check_engine, describe
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.runner import RunResult, make_run_simulator, open_writer, run_pipeline
from eddy.operators.stats import RunStats
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import load_spec

__all__ = ["check", "dataflow", "run"]


def _spec(spec: PipelineSpec | str | Path) -> PipelineSpec:
    return spec if isinstance(spec, PipelineSpec) else load_spec(spec)


def check(spec: PipelineSpec | str | Path) -> str:
    """What ``spec`` (a spec or a path) will compute, as ``eddy check`` prints it; raises
    :class:`~eddy.schemas.spec.SpecError` for anything the engine cannot run."""
    spec = _spec(spec)
    check_engine(spec)
    return describe(spec)


def dataflow(
    spec: PipelineSpec | str | Path,
    *,
    duckdb: str | None = None,
    sources: dict[str, str] | None = None,
) -> Dataflow:
    """The Bytewax dataflow of ``spec``, to run with ``bytewax.testing.run_main``,
    ``python -m bytewax.run`` or a cluster: it opens the DuckDB file when it starts and closes
    it when it ends. ``sources`` overrides streams' sources (stream -> ``kind:target``)."""
    spec = _spec(spec)
    check_engine(spec)
    opts = RunOptions(spec, dict(sources or {}), duckdb=duckdb)
    return build_flow(
        opts,
        None,
        RunStats(),
        threading.Event(),
        make_run_simulator(opts),
        open_writer=lambda: open_writer(opts),
    )


def run(
    spec: PipelineSpec | str | Path,
    *,
    duckdb: str | None = None,
    sources: dict[str, str] | None = None,
    events: int | None = None,
) -> RunResult:
    """Run ``spec`` to the end of its input (as ``eddy run``, without the status line and the
    query endpoint): the counters, latency and tables it wrote."""
    spec = _spec(spec)
    check_engine(spec)
    return run_pipeline(RunOptions(spec, dict(sources or {}), duckdb=duckdb, events=events))
