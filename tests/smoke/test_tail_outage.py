"""``puente tail`` when its broker is gone or dies: one clear line, not aiokafka's log.

A real ``puente`` process reads a broker of the test's own, which the test kills
(SIGKILL). Without ``--follow`` the command ends with one line on stderr and a
non-zero status; with ``--follow`` it says once that it waits for the broker and once
that the broker answers again, then goes on printing records. Its stdout holds the
records alone, as natural JSON, one per line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from services.contracts.catalog import Catalog
from services.runtime import pubsub, topic_admin
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from tests.support.tail import (
    BOUND_S,
    TOPIC,
    Running,
    assert_quiet,
    event_ids,
    prepared,
)

pytestmark = [pytest.mark.smoke, pytest.mark.slow, pytest.mark.timeout(120)]

# Enough records that a tail without --follow is still reading when the broker dies:
# about three fetches, of which aiokafka reads at most one ahead.
MANY = 40_000
# The --timeout of a tail without --follow whose broker dies.
TIMEOUT_S = 3


async def test_a_tail_of_a_broker_that_is_gone_says_so_in_one_line(
    own_broker: EmbeddedBroker,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    own_broker.stop()  # nothing listens on its port now

    tail = Running(kafka, "--from-beginning")
    try:
        took = tail.until("the tail did not end", tail.ended)
    finally:
        tail.stop()

    print(f"\ntail ended after {took:.1f} s: {tail.err}")
    assert tail.process.returncode == 1, tail.err
    assert len(tail.err) == 1, tail.err
    assert tail.err[0] == (
        f"error: cannot reach the broker at {own_broker.bootstrap_servers}; "
        "nothing was read"
    )
    assert tail.out == []


async def test_a_tail_whose_broker_dies_mid_read_ends_within_its_timeout(
    own_broker: EmbeddedBroker, catalog: Catalog
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    await topic_admin.create(kafka, {TOPIC: 1})
    await pubsub.send_all(kafka, prepared(catalog, MANY))

    tail = Running(kafka, "--from-beginning", "--timeout", str(TIMEOUT_S))
    try:
        tail.until("no record was printed", lambda: len(tail.out) > 0, bound_s=60)
        own_broker.stop()
        took = tail.until("the tail did not end", tail.ended, TIMEOUT_S + BOUND_S)
    finally:
        tail.stop()

    print(
        f"\ntail ended {took:.1f} s after the kill, {len(tail.out)} printed: {tail.err}"
    )
    assert len(tail.out) < MANY, "every record was printed before the kill"
    assert tail.process.returncode == 3, tail.err
    assert len(tail.err) == 1, tail.err
    assert tail.err[0].startswith(
        f"error: the broker at {own_broker.bootstrap_servers} did not answer for "
        f"{TIMEOUT_S} s;"
    )
    assert "not all of" in tail.err[0]
    assert len(event_ids(tail.out)) == len(tail.out)


async def test_a_followed_tail_waits_for_a_killed_broker_and_says_when_it_is_back(
    own_broker: EmbeddedBroker, catalog: Catalog
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    await topic_admin.create(kafka, {TOPIC: 1})
    before = prepared(catalog, 3)
    await pubsub.send_all(kafka, before)
    where = f"the broker at {own_broker.bootstrap_servers}"
    waiting = f"{where} does not answer; waiting for it"
    back = f"{where} answers again; following {TOPIC}"
    empty = f"{where} holds no topic {TOPIC}; waiting for it"

    tail = Running(kafka, "--follow", "--from-beginning")
    try:
        tail.until("the records were not printed", lambda: len(tail.out) == 3)
        own_broker.stop()
        lost = tail.until("no line said the broker is gone", lambda: bool(tail.err))
        # Waiting on: several failed reconnects, no more lines, the process runs.
        await asyncio.sleep(3)
        assert tail.err == [waiting]
        assert tail.process.poll() is None, tail.err
        # It comes back empty (memory storage): the topic is created again.
        restarted = EmbeddedBroker(port=own_broker.port).start()
        try:
            await topic_admin.create(kafka, {TOPIC: 1})
            tail.until("no line said the broker is back", lambda: back in tail.err)
            after = prepared(catalog, 1)
            await pubsub.send_all(kafka, after)
            tail.until(
                "the record sent after the outage was not printed",
                lambda: len(tail.out) == 4,
            )
        finally:
            restarted.stop()
    finally:
        tail.stop()

    print(f"\nsaid {lost:.1f} s after the kill: {tail.err}")
    assert_quiet(tail.err)
    assert tail.err[0] == waiting
    assert tail.err[-1] == back
    # The broker may answer before the topic is created again: said once too.
    assert tail.err[1:-1] in ([], [empty])
    assert event_ids(tail.out) == [e.event_id for e in [*before, *after]]


async def test_a_followed_tail_of_a_broker_that_is_gone_waits_and_says_so_once(
    own_broker: EmbeddedBroker,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    own_broker.stop()  # nothing listens on its port now
    waiting = (
        f"the broker at {own_broker.bootstrap_servers} does not answer; waiting for it"
    )

    tail = Running(kafka, "--follow")
    try:
        tail.until("no line said the broker is gone", lambda: bool(tail.err))
        # Several attempts to reach it later: still one line, still waiting.
        await asyncio.sleep(3)
        assert tail.process.poll() is None, tail.err
        tail.process.send_signal(signal.SIGINT)
        tail.until("Ctrl-C did not end the tail", tail.ended)
    finally:
        tail.stop()

    assert tail.err == [waiting]
    assert tail.process.returncode == 130, tail.err
    assert tail.out == []


def test_tail_help_shows_the_timeout_and_its_default() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "services", "tail", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=True,
    )
    assert "--timeout" in shown.stdout
    assert "default: 30" in shown.stdout
    assert "With --follow it waits for the broker" in shown.stdout
