"""The coverage-guided campaign's target, driven here without atheris."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from services.fuzz.coverage import _Target


@pytest.fixture(scope="module")
def target() -> Iterator[_Target]:
    made = _Target()
    yield made
    made.close()


def test_the_seed_corpus_is_valid_events_on_their_own_topics(target: _Target) -> None:
    assert len(target.seeds) > 50
    for seed in target.seeds:
        target.one(seed)  # raises if anything escapes or the ledger refuses an entry


def test_damaged_seeds_are_each_answered_without_an_exception(target: _Target) -> None:
    rng = random.Random(7)
    for index in range(3000):
        data = bytearray(target.seeds[index % len(target.seeds)])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        target.one(bytes(data))
