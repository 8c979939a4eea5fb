"""What one run asks for: the spec plus what the command line overrides.

Source paths in a spec are relative to the spec file's folder (a spec and its data travel
together); paths given on the command line are relative to the working directory.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from eddy.schemas.spec import PipelineSpec

__all__ = ["RunOptions", "resolve_source"]


def resolve_source(source: str, base: Path | None) -> str:
    """``source`` with a relative file path made absolute against ``base`` (or the cwd)."""
    kind, sep, target = source.partition(":")
    if not sep or kind not in ("jsonl", "csv", "parquet"):
        return source
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{kind}:{path.resolve() if not any(c in target for c in '*?[') else path}"


@dataclass
class RunOptions:
    """A run of ``spec``. ``sources`` overrides streams' sources (``--source STREAM=SPEC``)."""

    spec: PipelineSpec
    sources: dict[str, str] = field(default_factory=dict)
    duckdb: str | None = None
    batch_size: int | None = None
    events: int | None = None  # simulator: events to generate (None: the spec's)
    forever: bool = False  # simulator: no end
    seconds: float | None = None
    follow: bool = False
    speed: float | None = None
    until_end: bool = False  # kafka: stop at the end of what the topics held at start
    kafka_out: str | None = None  # bootstrap to publish results to (None: no Kafka output)
    recovery: str | None = None  # Bytewax recovery directory
    exchange_dir: str | None = None  # where decide shards of several processes share statistics
    snapshot_interval_s: float = 1.0
    processes: int = 1  # cluster members, one Bytewax worker each (``--workers``/``--processes``)
    shards: int | None = None  # overrides the spec's ``[pipeline] shards``
    no_duckdb: bool = False  # results only counted (and published to Kafka, if configured)
    process_id: int = 0
    addresses: list[str] | None = None
    topic_prefix: str = ""  # output topics are prefix + "<pipeline>.<table>"
    duckdb_memory_limit: str | None = None  # DuckDB's memory_limit (None: the writer's default)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def source_of(self, stream: str) -> str:
        """The stream's source, as this run reads it (file paths absolute)."""
        if stream in self.sources:
            return resolve_source(self.sources[stream], None)
        base = Path(self.spec.path).parent if self.spec.path else None
        return resolve_source(self.spec.stream(stream).source, base)

    @property
    def db(self) -> str:
        return self.duckdb or self.spec.duckdb_path

    @property
    def n_shards(self) -> int:
        """Shards of keyed state: as asked, else the spec's, else one per worker."""
        return self.shards or self.spec.shards or self.processes

    @property
    def batch(self) -> int:
        return self.batch_size or self.spec.batch_size
