"""``puente publish`` as a real process whose broker dies under it (smoke and fault).

The tests start the command, wait until the broker stores its first record (the
publish is under way), kill the broker, and read the command's one-line answer.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings
from tests.support.kafka import kafka_env

# How long the command may take before its first record reaches the broker.
FIRST_RECORD_S = 120


def start_publish(
    kafka: KafkaSettings,
    path: Path,
    source: str,
    *options: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``puente publish return_arrival <path> --as <source> <options>``, running.

    ``env``: variables beyond the ``PUENTE_KAFKA_*`` ones that reach ``kafka``.
    """
    command = ["publish", "return_arrival", str(path), "--as", source, *options]
    return subprocess.Popen(
        [sys.executable, "-m", "services", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **kafka_env(kafka), **(env or {})},
    )


async def until_first_record(
    kafka: KafkaSettings, topic: str, process: subprocess.Popen[str]
) -> None:
    """Return once the broker holds a record of ``topic`` (partition 0)."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-publish-watch"))
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        deadline = time.monotonic() + FIRST_RECORD_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"publish ended early: {process.returncode}"
            if await consumer.getmany(partition, timeout_ms=20, max_records=1):
                return
        pytest.fail(f"no record reached the broker within {FIRST_RECORD_S} s")
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class Ended:
    """A publish that ended after its broker was killed, and how long after."""

    process: subprocess.Popen[str]
    stdout: str
    stderr: str
    took: float  # seconds from the kill to the end


async def publish_and_kill(
    kafka: KafkaSettings,
    path: Path,
    topic: str,
    kill: Callable[[], object],
    *options: str,
    wait_s: float,
    env: dict[str, str] | None = None,
) -> Ended:
    """Publish ``path`` as dgme, ``kill`` the broker once ``topic`` holds a record.

    Waits ``wait_s`` for the command to end after the kill (then kills it).
    """
    with start_publish(kafka, path, "dgme", *options, env=env) as process:
        try:
            await until_first_record(kafka, topic, process)
            kill()
            killed = time.monotonic()
            stdout, stderr = await asyncio.to_thread(process.communicate, timeout=wait_s)
            took = time.monotonic() - killed
        finally:
            if process.poll() is None:
                process.kill()
    return Ended(process, stdout, stderr, took)


@dataclass(frozen=True, slots=True)
class Incomplete:
    """What an incomplete publish said: its message and the counts in it."""

    message: str
    acknowledged: int
    total: int


def incomplete(process: subprocess.Popen[str], stdout: str, stderr: str) -> Incomplete:
    """Check an incomplete publish's answer: exit 3, one line, no traceback.

    The line names the acknowledged count and says that publishing again is safe;
    stdout holds exactly the acknowledged events' ids.
    """
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    found = re.search(r"(\d+) of (\d+) event\(s\) acknowledged", lines[0])
    assert found, lines[0]
    assert "may or may not be stored" in lines[0]
    assert "again is safe" in lines[0]
    assert "de-duplicates by event id" in lines[0]
    acknowledged = int(found[1])
    assert len(stdout.split()) == acknowledged
    return Incomplete(lines[0], acknowledged, int(found[2]))
