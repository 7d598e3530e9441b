"""The router campaign's input stream: its mix, and the same stream for one seed."""

from __future__ import annotations

from collections import Counter

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.policy import Policy
from tests.unit.fuzz.conftest import stream


def test_the_same_seed_gives_the_same_inputs(catalog: Catalog, policy: Policy) -> None:
    first = stream(catalog, policy, seed=9).take(500)
    again = stream(catalog, policy, seed=9).take(500)
    other = stream(catalog, policy, seed=10).take(500)
    assert first == again
    assert first != other


def test_the_stream_mixes_simulated_generated_mutated_and_repeated_inputs(
    catalog: Catalog, policy: Policy
) -> None:
    made = Counter(r.kind for r in stream(catalog, policy, seed=1).take(4000))
    assert made["sim"] > 1000
    assert made["datum"] > 700
    assert made["duplicate"] > 50
    assert made["respelled_id"] > 20
    assert sum(made.values()) - made["sim"] - made["datum"] - made["duplicate"] > 1000


def test_a_respelled_input_is_the_same_event_under_another_spelling_of_its_id(
    catalog: Catalog, policy: Policy
) -> None:
    inputs = stream(catalog, policy, seed=2).take(2000)
    respelled = next(r for r in inputs if r.kind == "respelled_id")
    _, datum = codec.decode(catalog, respelled.value or b"", plain=True)
    event_id = datum["envelope"]["event_id"]
    originals = [
        codec.decode(catalog, r.value or b"", plain=True)[1]
        for r in inputs
        if r.kind == "sim" and r.topic == respelled.topic
    ]
    canonical = {str(o["envelope"]["event_id"]) for o in originals}
    assert event_id not in canonical
    assert any(c.replace("-", "") in event_id.lower().replace("-", "") for c in canonical)


def test_generated_datums_mostly_go_to_the_topic_their_envelope_names(
    catalog: Catalog, policy: Policy
) -> None:
    datums = [r for r in stream(catalog, policy, seed=3).take(3000) if r.kind == "datum"]
    matching = 0
    for record in datums:
        _, datum = codec.decode(catalog, record.value or b"", plain=True)
        envelope = datum["envelope"]
        topic = f"hub.in.{envelope['source_institution_id']}.{envelope['event_type']}"
        matching += topic == record.topic
    assert matching > 0.7 * len(datums)
