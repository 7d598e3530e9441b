"""Mutated gateway bodies, and which answers break the gateway's contract."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from services.contracts.ids import EVENT_TYPES
from services.fuzz.bodies import BodyMutator
from services.fuzz.gateway import PROBLEM, _why_wrong
from services.runtime.settings import REPO_ROOT


def _examples() -> dict[str, Any]:
    return {
        t: json.loads((REPO_ROOT / "examples" / f"{t}.json").read_text())
        for t in EVENT_TYPES
    }


def _mutator(seed: int) -> BodyMutator:
    return BodyMutator(random.Random(seed), _examples(), 4 * 1024 * 1024)


def test_the_same_seed_draws_the_same_requests() -> None:
    first, again = _mutator(1), _mutator(1)
    assert [first.draw() for _ in range(50)] == [again.draw() for _ in range(50)]
    mutator, other = _mutator(1), _mutator(2)
    assert [mutator.draw() for _ in range(50)] != [other.draw() for _ in range(50)]


def test_requests_mix_valid_broken_and_batched_bodies() -> None:
    mutator = _mutator(3)
    requests = [mutator.draw() for _ in range(2000)]
    kinds = Counter(r.kind for r in requests)
    assert {"valid", "removed", "retyped", "unicode", "nested", "not_json"} <= set(kinds)
    assert any(k.startswith("batch_") for k in kinds)
    assert any(r.path == "/v1/events:batch" for r in requests)
    assert any(len(r.body or b"") > 4 * 1024 * 1024 for r in requests)


def test_a_valid_body_is_the_example_with_a_fresh_event_id() -> None:
    mutator = _mutator(4)
    request = next(r for r in iter(mutator.draw, None) if r.kind == "valid")
    body = json.loads(request.body or b"")
    event_type = request.path.rsplit("/", 1)[1]
    example = _examples()[event_type]
    assert body["payload"] == example["payload"]
    assert body["envelope"]["event_id"] != example["envelope"]["event_id"]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "broken"),
    [
        (202, "application/json", b"{}", False),
        (422, PROBLEM, b'{"type": "about:blank", "title": "x"}', False),
        (500, PROBLEM, b'{"type": "x"}', True),
        (503, "application/json", b"{}", True),
        (404, "text/html", b"<h1>no</h1>", True),
        (400, PROBLEM, b"not json", True),
        (401, PROBLEM, b'{"title": "no type"}', True),
        (302, "text/html", b"", True),
        (None, "", b"", True),
    ],
)
def test_only_2xx_json_and_4xx_problem_documents_count_as_answers(
    status: int | None, content_type: str, body: bytes, broken: bool
) -> None:
    assert (_why_wrong(status, content_type, body) is not None) is broken
