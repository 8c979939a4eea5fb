"""Bytewax wiring of sources -> operators -> sinks, the pipeline config and the ``eddy`` CLI."""
