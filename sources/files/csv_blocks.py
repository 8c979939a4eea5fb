"""CSV bytes cut into records: where each record ends and how many cells it has.

Why a module: polars' own batched CSV reading can neither tell a short row from a row with
empty cells nor carry on after a malformed row, so :mod:`.csv_rows` splits the records itself.
numpy finds the record ends (newlines outside quotes, so a quoted cell may span lines) and
counts each record's cells in a few vectorised passes over a block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Records", "is_utf8", "split_records"]

_NL, _QUOTE, _COMMA = 10, 34, 44


def split_records(data: bytes, final: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The complete records of ``data`` (which starts at a record start): their starts, ends
    (the newline excluded) and cell counts. With ``final`` a last record without its newline
    counts too, unless it is inside an unclosed quote."""
    a = np.frombuffer(data, np.uint8)
    if b'"' in data:
        outside = (np.cumsum(a == _QUOTE, dtype=np.uint8) & 1) == 0
        ends = np.flatnonzero((a == _NL) & outside)
        seps = np.flatnonzero((a == _COMMA) & outside)
        open_at_end = not outside[-1]
    else:
        ends = np.flatnonzero(a == _NL)
        seps = np.flatnonzero(a == _COMMA)
        open_at_end = False
    if final and not open_at_end and (ends.size == 0 or ends[-1] != a.size - 1):
        ends = np.append(ends, a.size)
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1] + 1
    cells = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    return starts, ends, cells


@dataclass
class Records:
    """Records of one block: ``data[starts[i]:ends[i]]``; ``reason`` rejects them all (a cut
    record: a quote never closed, or too long)."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    cells: np.ndarray
    reason: str | None = None


def is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
