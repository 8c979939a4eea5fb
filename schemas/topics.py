"""Kafka output topics: ``<topic prefix>.<table>`` for the tables a pipeline publishes.

>>> output_topics("video")["decisions"]
'video.decisions'
>>> output_topics("video", "staging.")["anomalies"]
'staging.video.anomalies'
"""

from __future__ import annotations

__all__ = ["OUTPUT_TOPICS", "PUBLISHED", "output_topics"]

#: tables whose rows are also published to Kafka
PUBLISHED = ("decisions", "anomalies", "metrics", "dead_letters", "drift_alerts")


def output_topics(topic_prefix: str, run_prefix: str = "") -> dict[str, str]:
    """Table -> topic: ``<run_prefix><topic_prefix>.<table>`` (``[pipeline] topic_prefix``,
    and ``eddy run --topic-prefix`` in front of it)."""
    return {t: f"{run_prefix}{topic_prefix}.{t}" for t in PUBLISHED}


#: the topics of a pipeline whose topic prefix is ``eddy`` (the sinks' default)
OUTPUT_TOPICS: dict[str, str] = output_topics("eddy")
