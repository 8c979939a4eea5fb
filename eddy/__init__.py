"""eddy: a streaming analytics engine on Bytewax, driven by a pipeline spec.

Load a spec (TOML, see docs/spec.md), check what it computes, run it:

>>> import json, pathlib, tempfile
>>> import eddy
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> lines = [{"ts": 1767225600000 + 1000 * i, "room": "lab", "celsius": 20.0 + i % 3}
...          for i in range(150)]
>>> _ = (folder / "temps.jsonl").write_text("".join(json.dumps(x) + "\\n" for x in lines))
>>> _ = (folder / "rooms.toml").write_text('''
... [streams.temps]
... source = "jsonl:temps.jsonl"
... time = "ts"
... fields = { room = "string", celsius = "float" }
... [[features]]
... name = "room_stats"
... stream = "temps"
... key = "room"
... metrics = ["celsius"]
... tumbling = ["1m"]
... ''')
>>> spec = eddy.load_spec(folder / "rooms.toml")
>>> print(eddy.check(spec).splitlines()[0])
pipeline 'rooms': results in rooms.duckdb, topics rooms.*
>>> result = eddy.run(spec, duckdb=str(folder / "rooms.duckdb"))
>>> result.counters["events"], result.tables["window_aggregates"]
(150, 3)

The repository keeps the parts at its top (``schemas``, ``sources``, ``operators``, ``sinks``,
``dataflows``, ``benchmarks``, ``examples``); installed, they are the subpackages of this one
package. The stages as Bytewax operators for a dataflow of your own are ``eddy.decode``,
``eddy.stages``, ``eddy.features``, ``eddy.detect`` and ``eddy.decide``
(``eddy.dataflows.ops``). Names load on first use, so ``eddy sql`` starts without the streaming
stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eddy.dataflows.api import check, dataflow, run
    from eddy.dataflows.ops import decide, decode, detect, features, stages
    from eddy.dataflows.runner import RunResult
    from eddy.schemas.spec import PipelineSpec, SpecError
    from eddy.schemas.spec_load import load_spec, loads_spec

__all__ = [
    "PipelineSpec",
    "RunResult",
    "SpecError",
    "check",
    "dataflow",
    "decide",
    "decode",
    "detect",
    "features",
    "load_spec",
    "loads_spec",
    "run",
    "stages",
]

_HOME = {
    "PipelineSpec": "eddy.schemas.spec",
    "SpecError": "eddy.schemas.spec",
    "load_spec": "eddy.schemas.spec_load",
    "loads_spec": "eddy.schemas.spec_load",
    "RunResult": "eddy.dataflows.runner",
    "check": "eddy.dataflows.api",
    "dataflow": "eddy.dataflows.api",
    "run": "eddy.dataflows.api",
    "decide": "eddy.dataflows.ops",
    "decode": "eddy.dataflows.ops",
    "detect": "eddy.dataflows.ops",
    "features": "eddy.dataflows.ops",
    "stages": "eddy.dataflows.ops",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'eddy' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
