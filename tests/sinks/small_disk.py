"""A small filesystem to fill: a tmpfs of a few megabytes mounted on a test's directory.

Mounting needs root (CAP_SYS_ADMIN), which the test machines and CI have (a container run as
root). Without it the test fails saying so: a full disk is not a case to skip quietly.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["small_tmpfs"]


@contextmanager
def small_tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """``path`` (created) with a ``size_mb`` MB tmpfs mounted on it, unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"cannot mount a {size_mb} MB tmpfs on {path} to fill it (needs root or "
            f"CAP_SYS_ADMIN): {proc.stderr.strip()}"
        )
    try:
        yield path
    finally:
        # lazy: a process of the test that still holds a file open must not keep it mounted
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
