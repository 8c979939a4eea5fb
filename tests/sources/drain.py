"""Read a source's one partition to its end, as the dataflow would."""

from __future__ import annotations

from typing import Any

from eddy.sources.base import RawBatch


def drain(source: Any, resume: Any = None) -> tuple[list[RawBatch], Any]:
    """Every batch of the source's single partition (from ``resume``), and the partition's
    snapshot after the last one."""
    (key,) = source.list_parts()
    part = source.build_part("in", key, resume)
    out: list[RawBatch] = []
    try:
        while True:
            out.extend(part.next_batch())
    except StopIteration:
        pass
    return out, part.snapshot()
