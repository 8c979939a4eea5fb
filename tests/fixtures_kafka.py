"""A real Apache Kafka broker for tests: start/stop helper and pytest fixtures.

The broker is started by ``scripts/kafka.sh up`` (KRaft, single node, 127.0.0.1, free port)
with a private state directory, once per test process, and stopped when the process exits (and
by a watchdog if the process is killed). Startup waits until a metadata request succeeds; if the
broker cannot start, the fixture FAILS (never skips) with the broker's log tail.

Use from any conftest::

    from tests.fixtures_kafka import kafka_broker, make_topic  # noqa: F401

then ``def test_x(kafka_broker, make_topic): topic = make_topic(partitions=3)``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["KafkaBroker", "KafkaBrokerError", "kafka_broker", "make_topic", "shared_broker"]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "kafka.sh"


class KafkaBrokerError(RuntimeError):
    """The broker could not be started or did not answer; the message has its log tail."""


class KafkaBroker:
    """A broker process managed through ``scripts/kafka.sh`` with state in ``state_dir``."""

    def __init__(self, state_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.bootstrap = ""
        self.pid = 0
        self.start_seconds = 0.0
        self._counter = itertools.count()

    def _run(self, cmd: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "EDDY_KAFKA_STATE": str(self.state_dir),
            "EDDY_KAFKA_OWNER_PID": str(os.getpid()),
            "EDDY_KAFKA_TIMEOUT": str(int(timeout_s)),
            "EDDY_PYTHON": sys.executable,
            **self.env,
        }
        return subprocess.run(
            ["bash", str(SCRIPT), cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s + 120,  # + the first-time jar download
            check=False,
        )

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for name in ("broker.log", "stdout.log"):
            path = self.state_dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"---- {path} (last {len(tail)} lines) ----\n" + "\n".join(tail))
        return "\n".join(out) or f"(no broker logs in {self.state_dir})"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the broker and wait until a metadata request succeeds.

        The free ports are picked just before the JVM binds them; if another process took one
        in between, the start is retried once with new ports.
        """
        t0 = time.monotonic()
        proc = self._run("up", timeout_s)
        if proc.returncode != 0 and "Address already in use" in self.log_tail():
            proc = self._run("up", timeout_s)
        if proc.returncode != 0:
            # The script's stderr has the reason and the tails of the broker's logs.
            raise KafkaBrokerError(
                f"scripts/kafka.sh up failed (exit {proc.returncode}), state in "
                f"{self.state_dir}:\n{proc.stderr}"
            )
        self.bootstrap = proc.stdout.strip().splitlines()[-1]
        self.pid = int((self.state_dir / "pid").read_text().strip())
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        last: Exception | None = None
        while time.monotonic() - t0 < timeout_s:
            try:
                md = admin.list_topics(timeout=5.0)
                if md.brokers:
                    self.start_seconds = time.monotonic() - t0
                    return
            except Exception as e:
                last = e
            time.sleep(0.2)
        raise KafkaBrokerError(
            f"broker at {self.bootstrap} did not answer a metadata request within "
            f"{timeout_s:.0f}s (last error: {last})\n" + self.log_tail()
        )

    def stop(self) -> None:
        if self.pid:
            self._run("down", 60.0)
            self.pid = 0

    def alive(self) -> bool:
        return bool(self.pid) and Path(f"/proc/{self.pid}").exists()

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(
        self,
        name: str | None = None,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> str:
        """Create a topic (a fresh unique name by default) and wait until it is usable."""
        topic = name or f"test-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        admin = self.admin()  # keep the client alive until the future resolves
        futs = admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    config=dict(config or {}),
                )
            ]
        )
        futs[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = admin.list_topics(topic=topic, timeout=5.0).topics.get(topic)
            if (
                md is not None
                and md.error is None
                and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values())
            ):
                return topic
            time.sleep(0.05)
        raise KafkaBrokerError(f"topic {topic!r} has no leaders after 30s\n" + self.log_tail())

    def produce(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        """Produce ``values`` in order (to ``partition`` if given) and wait for delivery."""
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        errors: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        for i, value in enumerate(values):
            kwargs: dict[str, object] = {"value": value, "on_delivery": on_delivery}
            if keys is not None:
                kwargs["key"] = keys[i]
            if partition is not None:
                kwargs["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kwargs)  # type: ignore[arg-type]
                    break
                except BufferError:
                    producer.poll(0.05)
        left = producer.flush(30)
        if errors or left:
            raise KafkaBrokerError(
                f"test produce to {topic!r}: {left} undelivered, errors {errors[:3]}"
            )


_LOCK = threading.Lock()
_BROKER: KafkaBroker | None = None
_FAILURE: str | None = None


def shared_broker(timeout_s: float = 60.0) -> KafkaBroker:
    """The process-wide test broker, started on first use and stopped at interpreter exit."""
    global _BROKER, _FAILURE
    with _LOCK:
        if _FAILURE is not None:
            raise KafkaBrokerError(_FAILURE)
        if _BROKER is None:
            state = Path(tempfile.mkdtemp(prefix="eddy-kafka-"))
            broker = KafkaBroker(state)
            try:
                broker.start(timeout_s)
            except Exception as e:
                _FAILURE = f"the test Kafka broker could not start: {e}"
                broker.stop()
                raise KafkaBrokerError(_FAILURE) from e

            def _cleanup() -> None:
                broker.stop()
                shutil.rmtree(state, ignore_errors=True)

            atexit.register(_cleanup)
            _BROKER = broker
        return _BROKER


@pytest.fixture(scope="session")
def kafka_broker() -> KafkaBroker:
    """The running test broker (``.bootstrap`` is ``127.0.0.1:PORT``). Fails if it cannot start."""
    try:
        broker = shared_broker()
    except KafkaBrokerError as e:
        pytest.fail(str(e), pytrace=False)
    if not broker.alive():
        pytest.fail("the test Kafka broker died:\n" + broker.log_tail(), pytrace=False)
    return broker


@pytest.fixture
def make_topic(kafka_broker: KafkaBroker) -> Iterator[Callable[..., str]]:
    """``make_topic(partitions=N, config={...}) -> name``: a fresh topic on the test broker."""

    if not kafka_broker.alive():
        pytest.fail("the test Kafka broker died:\n" + kafka_broker.log_tail(), pytrace=False)

    def _make(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        return kafka_broker.create_topic(partitions=partitions, config=config)

    yield _make
