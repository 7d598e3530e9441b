"""The gateway's shared relay to a hub service's operations port."""

from __future__ import annotations

import socket

from services.gateway.service_link import ask, refusal_detail


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_service_that_does_not_answer_reads_as_503() -> None:
    answer = await ask(f"http://127.0.0.1:{_closed_port()}", "/v1/x", {"a": 1}, 2.0)
    assert (answer.status, answer.body) == (503, b"")


def test_a_refusal_without_a_problem_body_is_described_by_the_caller() -> None:
    assert refusal_detail(b"<html>", "the service refused") == "the service refused"


def test_a_refusal_passes_the_services_detail_through() -> None:
    assert refusal_detail(b'{"detail": "no such indicator"}', "x") == "no such indicator"
