"""A spec's input streams as JSONL files, written once and replayed by every throughput variant.

Why a recording: every variant (eddy, the floor, the baselines) must read the same bytes, and
a measurement must not include a simulator's cost. :func:`record` writes one JSONL file per
stream of the spec:

* a simulator's streams are played once. A closed-loop simulator only answers decisions, so
  the recording decides for it: uniformly at random among each event's eligible arms (the
  decide stage's ``eligible`` field, else all its arms), with a fixed seed. The lines do not
  depend on any variant's choices; the throughput replay joins outcomes by id alone
  (``throughput.replay_spec``), so it measures the cost of every stage, not the quality of
  the decisions (``eddy eval`` measures that, closed loop).
* a file stream (``jsonl``, ``csv``, ``parquet``) is copied to JSONL as its source reads it
  (the lines ``sources.files.frame_rows`` emits for CSV and Parquet; the files of a glob one
  after the other), so the replay is a single partition per stream.

Kafka streams are not recordable (there is no fixed input); ``benchmarks/kafka_latency.py``
measures those.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from eddy.benchmarks.closed_loop import SimFeed, spec_simulator, with_simulator
from eddy.dataflows.run_options import RunOptions
from eddy.schemas.batch import EventBatch
from eddy.schemas.spec import DecideSpec, PipelineSpec

__all__ = ["Recording", "record"]

_POLICY_SEED = 99  # the recording's random policy: fixed, so the lines are too


@dataclass(frozen=True)
class Recording:
    """JSONL files of one run of ``spec``'s streams (stream -> path) and their line counts.

    ``driving`` is the stream whose prefix :meth:`head` keeps (the decision stream, or the
    only stream)."""

    spec: PipelineSpec
    files: dict[str, str]
    lines: dict[str, int]
    driving: str
    seed: int

    @property
    def n_events(self) -> int:
        """Input lines in all: what a complete run reads."""
        return sum(self.lines.values())

    @property
    def sources(self) -> dict[str, str]:
        """``RunOptions.sources`` that replay this recording."""
        return {s: f"jsonl:{p}" for s, p in self.files.items()}

    def path(self, stream: str) -> str:
        return self.files[stream]

    def head(self, directory: str | Path, n: int) -> Recording:
        """The warm-up input: the first ``n`` lines of the driving stream, the outcomes that
        answer them (lines of a reward stream whose join field names one of them) and the
        other streams' lines up to the last one's event time."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        driving = self.spec.stream(self.driving)
        first = _read_lines(self.files[self.driving])[:n]
        heads = [_fields(x, driving.time, driving.id) for x in first]
        last = max((t for t, _ in heads if t is not None), default=0.0)
        ids = {i for _, i in heads} - {None}
        joins = {
            dec.reward.stream: dec.reward.join
            for dec in self.spec.decide
            if dec.stream == driving.name
        }
        files, counts = {}, {}
        for stream, path in self.files.items():
            if stream == self.driving:
                keep = first
            elif stream in joins:
                keep = [x for x in _read_lines(path) if _fields(x, "", joins[stream])[1] in ids]
            else:
                field = self.spec.stream(stream).time
                keep = [x for x in _read_lines(path) if (_fields(x, field)[0] or 0.0) <= last]
            out = d / f"{stream}.jsonl"
            out.write_bytes(b"".join(keep))
            files[stream], counts[stream] = str(out), len(keep)
        return replace(self, files=files, lines=counts)


def _read_lines(path: str) -> list[bytes]:
    with open(path, "rb") as fh:
        return fh.readlines()


def _fields(line: bytes, time: str, key: str | None = None) -> tuple[float | None, object]:
    """A line's event time (None unless a number) and the value of its field ``key``."""
    try:
        obj = orjson.loads(line)
        t, k = obj.get(time), obj.get(key) if key else None
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    return (float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None), k


def record(
    spec: PipelineSpec,
    directory: str | Path,
    *,
    events: int | None = None,
    seed: int | None = None,
) -> Recording:
    """Write every stream of ``spec`` to ``directory/<stream>.jsonl`` (see the module
    docstring); ``events`` and ``seed`` override the simulator's options."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        spec = with_simulator(spec, seed=seed)
    files = {s.name: str(d / f"{s.name}.jsonl") for s in spec.streams}
    counts = dict.fromkeys(files, 0)
    handles = {s: open(p, "wb") for s, p in files.items()}  # noqa: SIM115 - closed below
    driving = spec.decision_streams[0] if spec.decision_streams else spec.streams[0].name
    try:
        opts = RunOptions(spec)
        simulated = [s.name for s in spec.streams if s.source_kind == "simulator"]
        if simulated:
            feed = SimFeed(spec, spec_simulator(spec, events))
            driving = feed.decision_stream or driving
            _play_randomly(feed, handles, counts)
        for s in spec.streams:
            if s.name not in simulated:
                counts[s.name] = _copy(opts.source_of(s.name), spec, s.name, handles[s.name])
    finally:
        for fh in handles.values():
            fh.close()
    sim_seed = dict(spec.simulator).get("seed", spec.seed)
    return Recording(spec, files, counts, driving, int(sim_seed))


def _play_randomly(feed: SimFeed, out: Mapping[str, BinaryIO], counts: dict[str, int]) -> None:
    """Play the simulator to its end, answering every decision event at random."""
    spec, sim = feed.spec, feed.sim
    rng = np.random.default_rng([_POLICY_SEED, spec.seed])
    stage = next((d for d in spec.decide if d.stream == feed.decision_stream), None)
    waiting = 0
    while True:
        try:
            got = sim.next_batch(spec.batch_size)
        except StopIteration:
            return
        if got is None:
            waiting += 1
            if waiting > 1:  # nothing was answered since: it would wait forever
                raise RuntimeError(f"simulator {sim.name}: a decision event could not be decoded")
            continue
        waiting = 0
        for sim_stream, lines in got:
            name = feed.names.get(sim_stream)
            if name is not None and lines:
                out[name].write(b"\n".join(lines) + b"\n")
                counts[name] += len(lines)
        items, _ = feed.items(got)
        for _, batch in items:
            if batch.stream == feed.decision_stream:
                sim.respond(batch.ids, _random_arms(batch, stage, sim.arms, rng))


def _random_arms(
    batch: EventBatch, stage: DecideSpec | None, sim_arms: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    """One arm per event, uniform among its eligible arms the simulator knows."""
    arms = [a for a in (stage.arms if stage else sim_arms) if a in sim_arms] or list(sim_arms)
    out = np.empty(len(batch), dtype=object)
    if stage is None or stage.eligible is None:
        out[:] = np.asarray(arms, dtype=object)[rng.integers(0, len(arms), len(batch))]
        return out
    for i, listed in enumerate(batch.columns[stage.eligible].tolist()):
        choice = [a for a in (listed or ()) if a in arms] or arms
        out[i] = choice[int(rng.integers(0, len(choice)))]
    return out


def _copy(source: str, spec: PipelineSpec, stream: str, out: BinaryIO) -> int:
    """A file source's lines, as its source reads them, into ``out``; the line count."""
    kind, _, target = source.partition(":")
    paths = sorted(glob.glob(target)) if kind in ("jsonl", "csv", "parquet") else []
    if not paths:
        raise ValueError(
            f"stream {stream!r}: cannot record source {source!r} (simulator, jsonl, csv or "
            "parquet files only)"
        )
    n = 0
    for path in paths:
        if kind == "jsonl":
            with open(path, "rb") as fh:
                for line in fh:
                    if line.strip():
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        n += 1
            continue
        from eddy.sources.files import frame_rows

        for line in frame_rows(path, kind, spec.stream(stream)):
            # a row its reader rejected carries its reason on a line of its own
            out.write(line.replace(b"\n", b" ") + b"\n")
            n += 1
    return n
