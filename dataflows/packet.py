"""Items that cross to another process, pickled once.

Timely sends an item to a worker in another process by serializing it twice: once to learn its
size, then again to write it (its zero-copy allocator's ``Pusher::push``), and Bytewax
serializes with pickle. A :class:`Packet` keeps what its first pickling wrote for the second,
so a batch crossing between processes is pickled once. An item that stays on its worker is
never pickled, and a packet costs it one small object.

>>> import pickle
>>> p = Packet({"rows": [1, 2, 3]})
>>> first, second = pickle.dumps(p), pickle.dumps(p)
>>> first == second, pickle.loads(first).value
(True, {'rows': [1, 2, 3]})
"""

from __future__ import annotations

import pickle
from typing import Any, Generic, TypeVar

__all__ = ["Packet"]

T = TypeVar("T")


class Packet(Generic[T]):
    """``value`` on its way to a step that may run on another worker."""

    __slots__ = ("_pickled", "value")

    def __init__(self, value: T) -> None:
        self.value = value
        self._pickled: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        if self._pickled is None:
            self._pickled = pickle.dumps(self.value, protocol=pickle.HIGHEST_PROTOCOL)
        return _opened, (self._pickled,)

    def __repr__(self) -> str:
        return f"Packet({self.value!r})"


def _opened(pickled: bytes) -> Packet[Any]:
    return Packet(pickle.loads(pickled))
