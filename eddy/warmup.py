"""Compile eddy's numba kernels before a user's first run: ``python -m eddy.warmup``.

The kernels are compiled on first call and cached on disk (``@njit(cache=True)``, next to their
modules). Without this step the first ``eddy run`` spends tens of seconds compiling at 0
events/s, and its latency figures include that time. ``make install`` runs it once: it plays
the shipped examples through the engine, plus variants of the reference spec that reach the
kernels no example uses (every policy, session windows, every aggregation, reward drift on
and off), so
every kernel is compiled for the argument types a run passes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import pickle
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

from eddy.schemas.spec import AGGREGATIONS, PipelineSpec, Window

__all__ = ["compile_kernels", "ensure_compiled", "main", "prime", "warm_specs"]

_EVENTS = 3_000  # enough for every detector and window to get past its warm-up


def warm_specs() -> list[PipelineSpec]:
    """The shipped examples and the variants that cover the remaining kernels."""
    import eddy.examples
    from eddy.schemas.spec_load import load_spec

    folder = Path(eddy.examples.__file__).parent
    specs = [load_spec(p) for p in sorted(folder.glob("*.toml"))]
    reference = next(s for s in specs if s.name == "adserving")
    d = reference.decide[0]
    for policy in ("lints", "epsilon_greedy"):
        specs.append(replace(reference, decide=(replace(d, policy=policy, params=()),)))
    # the ensemble on the reference's simulator too: an installed package has no NAB data
    ensemble = tuple(replace(x, detector="ensemble", params=()) for x in reference.detect)
    specs.append(replace(reference, detect=ensemble))
    f = reference.features[0]
    specs.append(
        replace(
            reference,
            features=(
                replace(f, aggregations=AGGREGATIONS, session_gap=(Window.of(5_000),)),
                *reference.features[1:],
            ),
            decide=(replace(d, drift=not d.drift),),
        )
    )
    return specs


_STAMP = Path(__file__).resolve().parent / ".kernels-compiled"
# every kernel's argument types after the warm-up, by "module:name": a run loads them first
_SIGNATURES = Path(__file__).resolve().parent / ".kernel-signatures.pkl"


def _stamp() -> str:
    """What the compiled kernels depend on: every module that defines one, and the versions."""
    import numba

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(f"{numba.__version__} {platform.python_version()}".encode())
    for path in sorted([*root.glob("*.py"), *root.glob("*/**/*.py")]):
        text = path.read_bytes()
        if b"@njit" in text:
            h.update(str(path.relative_to(root)).encode() + b"\0" + text)
    return h.hexdigest()


@njit(cache=True)
def _first_kernel(x: np.ndarray) -> float:
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
    return total


def prime() -> None:
    """Load eddy's compiled kernels into this process before the input flows. The first
    kernel a process loads, even from the cache, pays about 0.4 s for numba's code generator,
    and each kernel's first call another 5-50 ms to type its arguments and find its cached
    code: about 0.7 s in all that would land on the first batches. Loading every kernel for
    the argument types the warm-up recorded takes about 0.1 s after the code generator; it is
    skipped (each kernel then loads on first call) when the kernels changed since the
    warm-up."""
    _first_kernel(np.zeros(1))
    try:
        if _STAMP.read_text() != _stamp():
            return
        signatures = pickle.loads(_SIGNATURES.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):  # no file
        return
    for name, sigs in signatures.items():
        module, _, attr = name.partition(":")
        try:
            kernel = getattr(importlib.import_module(module), attr, None)
        except ImportError:  # a module gone since the warm-up: nothing of it to load
            continue
        if isinstance(kernel, Dispatcher):
            for sig in sigs:
                kernel.compile(sig)


def _kernels() -> dict[str, Dispatcher]:
    """The numba kernels of every eddy module imported so far, by "module:name"."""
    return {
        f"{name}:{attr}": value
        for name, module in list(sys.modules.items())
        if name.startswith("eddy.")
        for attr, value in list(vars(module).items())
        if isinstance(value, Dispatcher) and value.__module__ == name
    }


def compile_kernels() -> float:
    """Play every warm-up spec through the engine; the seconds it took."""
    from eddy.benchmarks.closed_loop import SimFeed, play, spec_simulator

    start = time.perf_counter()
    prime()
    for spec in warm_specs():
        try:
            feed = SimFeed(spec, spec_simulator(spec, events=_EVENTS))
        except (OSError, ValueError):  # an example whose data is not installed
            continue
        for _ in play(feed, batch=500):
            pass
    _rare_paths()
    signatures = {name: list(k.signatures) for name, k in _kernels().items() if k.signatures}
    with contextlib.suppress(OSError):  # a read-only install: each run compiles, and says so
        _SIGNATURES.write_bytes(pickle.dumps(signatures, protocol=pickle.HIGHEST_PROTOCOL))
        _STAMP.write_text(_stamp())
    return time.perf_counter() - start


def _rare_paths() -> None:
    """Kernels a short run does not reach: the window store closes its holes only once keys
    have moved often enough (minutes into a long run)."""
    from eddy.operators.windows.store import KeyStore

    store = KeyStore(n_metrics=2)
    store.add_keys(3)
    store.reserve(np.array([5, 1, 2], dtype=np.int64))
    store.close_holes()


def ensure_compiled() -> None:
    """Compile the kernels now, saying so, unless the stamp shows they already are."""
    try:
        if _STAMP.read_text() == _stamp():
            return
    except OSError:
        pass
    print("eddy: compiling numba kernels (once after an install or upgrade)...", file=sys.stderr)
    took = compile_kernels()
    print(f"eddy: kernels compiled in {took:.0f} s; starting", file=sys.stderr)


def main() -> int:
    took = compile_kernels()
    print(f"eddy: numba kernels compiled and cached in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
