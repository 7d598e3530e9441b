"""`asking_for_producer_id()` quiets aiokafka only while the question is open."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.runtime.kafka import asking_for_producer_id

SENDER = logging.getLogger("aiokafka.producer.sender")


async def test_a_task_started_inside_a_question_logs_its_errors_once_it_is_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiokafka starts a producer's sender task inside start(), so the task inherits
    # the context of the question; it outlives it for as long as the producer runs.
    answered = asyncio.Event()

    async def sender_routine() -> None:
        SENDER.error("while asking")
        await answered.wait()
        SENDER.error("after the answer")

    with caplog.at_level(logging.INFO):
        with asking_for_producer_id():
            task = asyncio.create_task(sender_routine())
            await asyncio.sleep(0)
        answered.set()
        await task
    messages = [r.getMessage() for r in caplog.records]
    assert "while asking" not in messages
    assert "after the answer" in messages


async def test_a_question_quiets_only_its_own_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asking = asyncio.Event()
    done = asyncio.Event()

    async def ask() -> None:
        with asking_for_producer_id():
            asking.set()
            await done.wait()

    with caplog.at_level(logging.INFO):
        question = asyncio.create_task(ask())
        await asking.wait()
        SENDER.error("elsewhere")
        done.set()
        await question
    assert "elsewhere" in [r.getMessage() for r in caplog.records]
