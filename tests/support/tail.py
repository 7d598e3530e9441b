"""``puente tail`` as a real process whose broker goes away (smoke and fault tests).

`Running` collects the command's stdout and stderr lines as they come, so a test can
wait for a record or a line about the broker, kill the broker, and wait again.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import pytest

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.runtime import pubsub
from services.runtime.settings import KafkaSettings
from tests.support.kafka import kafka_env

TOPIC = "hub.in.dgme.return_arrival"
# Bound on each thing the command is expected to do or say, on a loaded machine.
BOUND_S = 30
# What would show that aiokafka's own log (or a crash) reached the terminal.
NOISE = ("aiokafka", "Traceback", "Unable connect", "Failed fetch", "metadata")


class Running:
    """A ``puente tail`` process whose stdout and stderr lines are collected as read."""

    def __init__(self, kafka: KafkaSettings, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services", "tail", TOPIC, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **kafka_env(kafka)},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._seen: queue.Queue[None] = queue.Queue()
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stdout, self.out),
                (self.process.stderr, self.err),
            )
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line.rstrip("\n"))
            self._seen.put(None)
        self._seen.put(None)

    def until(
        self, what: str, done: Callable[[], bool], bound_s: float = BOUND_S
    ) -> float:
        """Wait until ``done()``; return the seconds it took (fail after ``bound_s``)."""
        began = time.monotonic()
        while not done():
            left = bound_s - (time.monotonic() - began)
            if left <= 0:
                pytest.fail(f"{what} within {bound_s} s; stderr: {self.err[-5:]}")
            with contextlib.suppress(queue.Empty):
                self._seen.get(timeout=min(left, 0.2))
        return time.monotonic() - began

    def ended(self) -> bool:
        """Whether the process has ended and both its streams are read."""
        return self.process.poll() is not None and not any(
            p.is_alive() for p in self._pumps
        )

    def stop(self) -> None:
        """End the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=BOUND_S)
        for pump in self._pumps:
            pump.join(timeout=BOUND_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def prepared(catalog: Catalog, count: int) -> list[pubsub.Prepared]:
    """``count`` return arrivals published as dgme, ready to send."""
    entry = catalog.get("return_arrival")
    return [
        pubsub.prepare(catalog, "return_arrival", "dgme", minimal_event(entry, "dgme"))
        for _ in range(count)
    ]


def event_ids(lines: list[str]) -> list[Any]:
    """The envelope event id of each natural-JSON line."""
    return [json.loads(line)["envelope"]["event_id"] for line in lines]


def assert_quiet(err: list[str]) -> None:
    """No line of aiokafka's log, no traceback."""
    for line in err:
        assert not any(word in line for word in NOISE), err
