"""The broker helper itself: a broker that cannot start fails loudly, with its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_kafka import KafkaBroker, KafkaBrokerError

pytestmark = pytest.mark.kafka


def test_running_broker_answers_and_reports_its_address(kafka_broker: KafkaBroker) -> None:
    host, port = kafka_broker.bootstrap.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert kafka_broker.alive()
    assert kafka_broker.admin().list_topics(timeout=5).brokers


def test_broker_that_cannot_start_raises_with_its_log_tail(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "state", env={"EDDY_KAFKA_HEAP": "1k"})
    with pytest.raises(KafkaBrokerError) as exc:
        broker.start(timeout_s=30)
    message = str(exc.value)
    assert "the broker exited during startup" in message
    assert "Initial heap size" in message  # the JVM's own complaint is included
    assert not broker.alive()
