"""Mutations of valid encodings: each kind does the damage its name says."""

from __future__ import annotations

import random

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.fuzz.mutate import KINDS, Mutator, RawInput
from services.policy import Policy
from tests.unit.fuzz.conftest import MAX_EVENT_BYTES, stream


def _valid(catalog: Catalog, policy: Policy) -> list[RawInput]:
    inputs = stream(catalog, policy, seed=4).take(300)
    return [r for r in inputs if r.kind == "sim"][:20]


def _mutator(
    catalog: Catalog, seed: int, without: frozenset[str] = frozenset()
) -> Mutator:
    heads = [e.header for n in catalog.names for e in catalog.versions(n)]
    topics = ["hub.in.dgme.return_arrival", "hub.in.minsal.return_arrival"]
    return Mutator(random.Random(seed), topics, heads, MAX_EVENT_BYTES, without)


def test_every_mutation_kind_is_drawn_and_labels_what_it_made(
    catalog: Catalog, policy: Policy
) -> None:
    valid = _valid(catalog, policy)
    mutator = _mutator(catalog, 1)
    made = [mutator.mutate(valid[i % 20], valid[(i + 1) % 20]) for i in range(3000)]
    assert {m.kind for m in made} == KINDS


def test_oversized_values_pass_the_routers_limit_and_wrong_topics_move(
    catalog: Catalog, policy: Policy
) -> None:
    valid = _valid(catalog, policy)
    mutator = _mutator(catalog, 2)
    original = valid[0]
    oversized = mutator.oversized(original, original, "oversized")
    moved = mutator.wrong_topic(original, original, "wrong_topic")
    assert len(oversized.value or b"") > MAX_EVENT_BYTES
    assert moved.topic != original.topic
    assert moved.value == original.value


def test_body_mutations_keep_the_fingerprint_and_change_the_body(
    catalog: Catalog, policy: Policy
) -> None:
    valid = _valid(catalog, policy)
    mutator = _mutator(catalog, 3)
    for record in valid:
        flipped = mutator.body_flips(record, record, "body_flips")
        value = flipped.value or b""
        assert codec.fingerprint_of(value) == codec.fingerprint_of(record.value or b"")
        assert value != record.value


def test_binary_headers_are_not_utf8_and_garbage_headers_are(
    catalog: Catalog, policy: Policy
) -> None:
    record = _valid(catalog, policy)[0]
    mutator = _mutator(catalog, 5)

    def utf8(value: bytes) -> bool:
        try:
            value.decode()
        except UnicodeDecodeError:
            return False
        return True

    text = [mutator.garbage_headers(record, record, "g") for _ in range(50)]
    binary = [mutator.binary_headers(record, record, "b") for _ in range(50)]
    assert all(utf8(v) for r in text for _, v in r.headers)
    assert any(not utf8(v) for r in binary for _, v in r.headers)


def test_a_kind_left_out_is_never_drawn(catalog: Catalog, policy: Policy) -> None:
    valid = _valid(catalog, policy)
    mutator = _mutator(catalog, 6, frozenset({"binary_headers", "oversized"}))
    kinds = {mutator.mutate(valid[0], valid[1]).kind for _ in range(2000)}
    assert "binary_headers" not in kinds
    assert "oversized" not in kinds
    assert len(kinds) == len(KINDS) - 2
