"""eddy: a streaming analytics engine on Bytewax.

The repository keeps the parts at its top (``schemas``, ``sources``, ``operators``, ``sinks``,
``dataflows``, ``benchmarks``); installed, they are the subpackages of this one package.
"""

__all__: list[str] = []
