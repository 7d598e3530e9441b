"""What the fuzz campaign found on the router's Kafka path, one case each.

Each case is the smallest input the campaign (`puente fuzz`) reduced a failure to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts import codec, topics
from services.contracts.headers import CloudEvent, build
from services.contracts.natural import codec_for
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect, header, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def router(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[RouterService]:
    settings = RouterSettings(
        group_id=f"fuzz-findings-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        hub=HubSettings(state_dir=tmp_path),
        kafka=kafka,
    )
    service = build_service(settings, CollectorRegistry())
    await service.start()
    yield service
    await service.stop()


def _event(event_id: str | None = None) -> Any:
    event = json.loads((REPO_ROOT / "examples" / "border_crossing.json").read_text())
    event["envelope"]["event_id"] = event_id or str(uuid.uuid4())
    return event


def _encoded(router: RouterService, event: Any) -> bytes:
    entry = router.catalog.get("border_crossing")
    return codec.encode(entry, codec_for(entry).to_datum(event))


def _audit_event_id(router: RouterService, record: Any) -> str:
    _, datum = codec.decode(router.catalog, record.value, plain=True)
    return str(datum["event_id"])


async def test_a_header_value_that_is_not_utf8_does_not_stop_the_router(
    router: RouterService, kafka: KafkaSettings
) -> None:
    # Found by the campaign's binary_headers mutation: FastStream's batch parser
    # decodes every header as UTF-8 before the router sees the records, so one such
    # record fails its whole batch, again and again; the router stops consuming.
    poisoned, after = _event(), _event()
    topic = topics.inbound("dgme", "border_crossing")
    await produce(
        kafka,
        [
            (topic, None, _encoded(router, poisoned), [("ce_id", b"\xff\xfe\x80")]),
            (topic, None, _encoded(router, after), []),
        ],
    )
    wanted = {poisoned["envelope"]["event_id"], after["envelope"]["event_id"]}

    found = await collect(
        kafka,
        [topics.AUDIT],
        lambda r: _audit_event_id(router, r) in wanted,
        expected=2,
        timeout=30,
    )

    assert {_audit_event_id(router, r) for r in found} == wanted


async def test_an_event_id_respelled_as_another_form_of_the_same_uuid_is_not_routed_again(
    router: RouterService, kafka: KafkaSettings
) -> None:
    # Found by the campaign's respelled_id inputs: the router accepts any text
    # `uuid.UUID` reads ("{...}", upper case, no hyphens, "urn:uuid:...") and
    # de-duplicates by the text, while the ledger stores the canonical UUID. The same
    # event under another spelling is delivered again, and its ledger entries and
    # the first routing's carry one event id.
    event = _event()
    event_id = str(event["envelope"]["event_id"])
    # Written plainly: the natural codec would turn the text back into a UUID.
    entry, plain = codec.decode(router.catalog, _encoded(router, event), plain=True)
    plain["envelope"]["event_id"] = "{" + event_id + "}"
    respelled = codec.encode(entry, plain, plain=True)
    topic = topics.inbound("dgme", "border_crossing")
    headers = build(CloudEvent(event_id, "dgme", "border_crossing"))
    await produce(kafka, [(topic, None, _encoded(router, event), headers)])
    first = await collect(
        kafka, [topics.AUDIT], lambda r: _audit_event_id(router, r) == event_id,
        expected=1, timeout=30,
    )  # fmt: skip
    assert first
    positions = await produce(kafka, [(topic, None, respelled, headers)])

    def outcome(record: Any) -> bool:
        if record.topic == topics.AUDIT:
            return _audit_event_id(router, record) == "{" + event_id + "}"
        _, datum = codec.decode(router.catalog, record.value, plain=True)
        where = (datum["original_topic"], datum["original_partition"])
        return bool((*where, datum["original_offset"]) == positions[0])

    found = await collect(
        kafka, [topics.AUDIT, topics.rejected("dgme")], outcome, expected=1, timeout=20
    )

    routed_again = [r for r in found if r.topic == topics.AUDIT]
    assert routed_again == [], f"{len(routed_again)} more ledger entries for the event"
    assert all(header(r, "ce_type") == "rejection" for r in found)


async def test_a_referral_rejected_for_its_lifecycle_is_answered_and_routing_goes_on(
    router: RouterService, kafka: KafkaSettings
) -> None:
    # Found by the campaign's generated referrals: the lifecycle reasons
    # (referral_party_mismatch, referral_transition_invalid) are not symbols of the
    # rejection schema's reason enum, so the rejection cannot be encoded, the batch
    # fails again and again, and the router stops consuming.
    referral = json.loads((REPO_ROOT / "examples" / "referral.json").read_text())
    referral["envelope"]["event_id"] = str(uuid.uuid4())
    referral["payload"].update(
        lifecycle_event="EXPIRED", status="EXPIRED", previous_status="SENT"
    )
    entry = router.catalog.get("referral")
    forged = codec.encode(entry, codec_for(entry).to_datum(referral))
    after = _event()
    positions = await produce(
        kafka,
        [
            (topics.inbound("dgme", "referral"), None, forged, []),
            (
                topics.inbound("dgme", "border_crossing"),
                None,
                _encoded(router, after),
                [],
            ),
        ],
    )

    def answered(record: Any) -> bool:
        if record.topic == topics.AUDIT:
            return _audit_event_id(router, record) == str(after["envelope"]["event_id"])
        _, datum = codec.decode(router.catalog, record.value, plain=True)
        where = (datum["original_topic"], datum["original_partition"])
        return bool((*where, datum["original_offset"]) == positions[0])

    found = await collect(
        kafka, [topics.AUDIT, topics.rejected("dgme")], answered, expected=2, timeout=30
    )

    assert {r.topic for r in found} == {topics.AUDIT, topics.rejected("dgme")}
