"""Over Kafka, the router refuses what the ledger would refuse: no delivery without
its ledger entry (a non-UUID event id used to be delivered and then skipped)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.router.app import RouterService
from services.runtime.settings import REPO_ROOT, KafkaSettings
from tests.support.kafka import collect, header, produce
from tests.support.router import running_router

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def router(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RouterService]:
    state = tmp_path_factory.mktemp("router-state")
    async with running_router(session_kafka, state) as service:
        yield service


def plain_event(catalog: Catalog, event_id: str) -> bytes:
    """The example return arrival with ``event_id`` as published by a Kafka client."""
    natural = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
    natural["envelope"]["event_id"] = str(uuid.uuid4())
    entry = catalog.get("return_arrival")
    datum = codec_for(entry).to_plain_datum(natural)
    datum["envelope"]["event_id"] = event_id  # no client-side check stops this
    return codec.encode(entry, datum, plain=True)


async def test_a_non_uuid_event_id_over_kafka_is_rejected_as_invalid_and_not_delivered(
    router: RouterService, kafka: KafkaSettings
) -> None:
    bad_id = f"ORDER-{uuid.uuid4().hex[:12]}"
    value = plain_event(router.catalog, bad_id)
    event = headers.CloudEvent(bad_id, "dgme", "return_arrival", None)
    await produce(
        kafka,
        [("hub.in.dgme.return_arrival", bad_id.encode(), value, headers.build(event))],
    )

    rejections = await collect(
        kafka,
        ["hub.rejected.dgme"],
        lambda r: (r.key or b"").decode() == bad_id,
        expected=1,
        timeout=60,
    )
    assert len(rejections) == 1
    _, datum = codec.decode(router.catalog, rejections[0].value)
    assert datum["reason"] == "invalid"
    assert (
        datum["message"] == "envelope.event_id: expected a UUID (lowercase, hyphenated)"
    )
    outs = [
        topics.outbound(r, "return_arrival") for r in sorted(router.policy.institutions)
    ]
    delivered = await collect(
        kafka, [*outs, topics.AUDIT], lambda r: header(r, "ce_id") == bad_id, timeout=3
    )
    assert delivered == []
    audited = await collect(
        kafka, [topics.AUDIT], lambda r: (r.key or b"").decode() == bad_id, timeout=2
    )
    assert audited == []
