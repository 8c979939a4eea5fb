"""parse_kafka_spec: the `kafka:HOST:PORT/TOPIC` strings of the CLI (no broker needed)."""

from __future__ import annotations

import pytest

from eddy.sources.kafka import parse_kafka_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("kafka:127.0.0.1:9092/eddy.requests", ("127.0.0.1:9092", "eddy.requests")),
        ("kafka:localhost:1/t", ("localhost:1", "t")),
        ("kafka:a:9092,b.example.com:9093/x_y-z", ("a:9092,b.example.com:9093", "x_y-z")),
        ("kafka:[::1]:9092/t", ("[::1]:9092", "t")),
    ],
)
def test_valid_specs(spec: str, expected: tuple[str, str]) -> None:
    assert parse_kafka_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("127.0.0.1:9092/t", "expected 'kafka:HOST:PORT/TOPIC'"),
        ("kafka:127.0.0.1:9092", "missing '/TOPIC'"),
        ("kafka:127.0.0.1:9092/", "not a valid Kafka topic name"),
        ("kafka:127.0.0.1:9092/a/b", "not a valid Kafka topic name"),
        ("kafka:127.0.0.1:9092/..", "not a valid Kafka topic name"),
        ("kafka:127.0.0.1:9092/" + "x" * 250, "not a valid Kafka topic name"),
        ("kafka:/t", "missing bootstrap HOST:PORT"),
        ("kafka:127.0.0.1/t", "is not HOST:PORT"),
        ("kafka::9092/t", "is not HOST:PORT"),
        ("kafka:host:port/t", "has port 'port'"),
        ("kafka:host:70000/t", "expected an integer in 1..65535"),
        ("kafka:host:9092,/t", "is not HOST:PORT"),
    ],
)
def test_invalid_specs_raise_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)kafka") as exc:
        parse_kafka_spec(spec)
    assert message in str(exc.value)
