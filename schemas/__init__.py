"""What data looks like: the pipeline spec, decoding of declared streams, result tables and
Kafka topics."""

from eddy.schemas import batch, decode, records, spec, spec_load, tables, topics

__all__ = ["batch", "decode", "records", "spec", "spec_load", "tables", "topics"]
