"""A packet is pickled once, however often Bytewax's exchange pickles it."""

from __future__ import annotations

import pickle
from typing import Any

from eddy.dataflows.packet import Packet


class _Counted:
    """Counts how often it is pickled."""

    pickled = 0

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        _Counted.pickled += 1
        return _Counted, (self.rows,)


def test_a_packet_pickles_its_value_once_and_opens_to_an_equal_value() -> None:
    _Counted.pickled = 0
    packet = Packet(_Counted([1, 2, 3]))
    sizing, writing = pickle.dumps(packet), pickle.dumps(packet)  # timely's two passes
    assert sizing == writing
    assert _Counted.pickled == 1
    opened = pickle.loads(writing)
    assert isinstance(opened, Packet)
    assert isinstance(opened.value, _Counted) and opened.value.rows == [1, 2, 3]


def test_an_opened_packet_pickles_afresh() -> None:
    _Counted.pickled = 0
    opened = pickle.loads(pickle.dumps(Packet(_Counted([4]))))
    assert pickle.loads(pickle.dumps(opened)).value.rows == [4]
    assert _Counted.pickled == 2
