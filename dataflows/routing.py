"""Names for shard keys that Bytewax places on chosen workers.

Bytewax sends a stateful step's key to worker ``route(key) % workers``, with ``route`` Rust's
default hasher (SipHash-1-3, zero keys) over the key's bytes and a 0xFF terminator. A shard's
name is its index plus the first suffix whose route lands it on worker ``index % workers``:
shards spread evenly, whatever the hash does to a handful of short names (the test suite
checks which worker each shard lands on in a real two-worker dataflow).
"""

from __future__ import annotations

__all__ = ["decoder_keys", "shard_names", "worker_of"]

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _siphash13(data: bytes) -> int:
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        rounds(1)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    rounds(1)
    v0 ^= last
    v2 ^= 0xFF
    rounds(3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax sends state key ``key`` to."""
    return _siphash13(key.encode() + b"\xff") % workers


def shard_names(prefix: str, shards: int, workers: int, start: int = 0) -> list[str]:
    """One key per shard; shard ``i`` lands on worker ``(start + i) % workers``."""
    names = []
    for i in range(shards):
        suffix = 0
        while worker_of(f"{prefix}{i}.{suffix}", workers) != (start + i) % workers:
            suffix += 1
        names.append(f"{prefix}{i}.{suffix}")
    return names


def decoder_keys(workers: int, decide_keys: dict[str, list[str]]) -> list[str]:
    """One key per worker that decodes raw batches: the workers without a decide shard, when
    there are any (a decide shard's step is often the heaviest of all: it scores and learns
    every decision of its share), else every worker. ``decide_keys``: each decide stage's
    shard keys."""
    keys = shard_names("decode-", workers, workers)
    busy = {worker_of(k, workers) for names in decide_keys.values() for k in names}
    free = [k for w, k in enumerate(keys) if w not in busy]
    return free or keys
