"""Every record the hub writes names its writer schema, and a recipient can fetch it.

A router and a gateway run on the session's broker. One event posted over HTTP and
one garbage record published straight to Kafka give every kind of record the hub
writes: the relayed event (``hub.in``), deliveries (``hub.out``), audit entries
(``hub.audit``) and a rejection (``hub.rejected``). Each is read with the CloudEvents
SDK's Kafka binding, whose ``dataschema`` must name the schema of the record's own
single-object header; a recipient then fetches that schema from the gateway and
decodes its delivery with fastavro and with the Apache ``avro`` library, and finds
it by the fingerprints the ``avro`` library and Java print.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import avro.io
import avro.schema
import fastavro
import httpx
import pytest
import pytest_asyncio
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from prometheus_client import CollectorRegistry

from services.contracts import codec, headers, schema_ids, topics
from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError
from services.contracts.natural import codec_for
from services.gateway.app import GatewayService
from services.gateway.settings import GatewaySettings
from services.policy import load_policy
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import topic_admin
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings, TopicSettings
from tests.support.kafka import collect, header, produce

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"
Hub = tuple[RouterService, GatewayService]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Hub]:
    """A router and a gateway sharing one state dir; every hub topic made first."""
    settings = HubSettings(state_dir=tmp_path_factory.mktemp("dataschema-hub"))
    catalog = Catalog.load(settings.schemas_dir)
    policy = load_policy(settings.policy_dir, catalog)
    wanted = topic_admin.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    await topic_admin.create(session_kafka, wanted)
    router = build_service(
        RouterSettings(
            group_id=f"router-{uuid.uuid4().hex[:8]}",
            port=free_port(),
            hub=settings,
            kafka=session_kafka,
        ),
        CollectorRegistry(),
    )
    gateway = GatewayService(
        GatewaySettings(
            port=free_port(), admin_port=free_port(), hub=settings, kafka=session_kafka
        ),
        CollectorRegistry(),
    )
    await router.start()
    await gateway.start()
    yield router, gateway
    await gateway.stop()
    await router.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def written(hub: Hub, session_kafka: KafkaSettings) -> dict[str, list[Any]]:
    """One event through the hub and one refused: the records it wrote, by kind."""
    router, gateway = hub
    event = json.loads((EXAMPLES / "return_arrival.json").read_text())
    event_id = str(uuid.uuid4())
    event["envelope"]["event_id"] = event_id
    _, token = gateway.gateway.tokens.create("dgme")
    async with http(gateway, token) as client:
        posted = await client.post("/v1/events/return_arrival", json=event)
    assert posted.status_code == 202, posted.text
    garbage_id = str(uuid.uuid4())
    inbound = topics.inbound("dgme", "return_arrival")
    [(_, partition, offset)] = await produce(
        session_kafka,
        [
            (
                inbound,
                garbage_id.encode(),
                b"\xc3\x01not avro",
                [("ce_id", garbage_id.encode())],
            )
        ],
    )

    keys = subject_keys(HubKeySettings(hub=router.settings.hub))
    recipients = sorted(router.policy.institutions)
    ids = {event_id, *(keys.recipient_id(r, event_id) for r in recipients)}
    outs = [topics.outbound(r, "return_arrival") for r in recipients]
    wanted = list(router.policy.decide("return_arrival", _datum(router, event)))
    delivered = sum(d.delivered for d in wanted)
    return {
        "ingest": await collect(
            session_kafka, [inbound], lambda r: header(r, "ce_id") == event_id, expected=1
        ),
        "delivery": await collect(
            session_kafka,
            outs,
            lambda r: header(r, "ce_id") in ids,
            expected=delivered,
            timeout=60,
        ),
        "audit": await collect(
            session_kafka,
            [topics.AUDIT],
            lambda r: r.key == event_id.encode(),
            expected=len(wanted),
            timeout=60,
        ),
        "rejection": await collect(
            session_kafka,
            [topics.rejected("dgme")],
            lambda r: _refused(router.catalog, r) == (inbound, partition, offset),
            expected=1,
            timeout=60,
        ),
    }


def _refused(catalog: Catalog, record: Any) -> tuple[str, int, int] | None:
    """The position of the record a rejection refers to (None: not a rejection)."""
    try:
        datum = codec.decode_as(catalog, record.value, catalog.get("rejection"))
    except ContractError:
        return None
    return (
        datum["original_topic"],
        datum["original_partition"],
        datum["original_offset"],
    )


def _datum(router: RouterService, event: Any) -> Any:
    return codec_for(router.catalog.get("return_arrival")).to_datum(event)


def http(gateway: GatewayService, token: str) -> httpx.AsyncClient:
    """A client of the gateway's public port with ``token``."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def cloud_event(record: Any) -> Any:
    """The record read by the CloudEvents SDK's Kafka binding (binary mode)."""
    message = KafkaMessage(
        headers={k: v or b"" for k, v in record.headers},
        key=record.key,
        value=record.value,
    )
    return from_binary_event(message)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["ingest", "delivery", "audit", "rejection"])
async def test_each_kind_of_record_names_the_schema_of_its_own_bytes_in_dataschema(
    hub: Hub, written: dict[str, list[Any]], kind: str
) -> None:
    router, _ = hub
    records = written[kind]

    assert records, f"no {kind} record arrived"
    for record in records:
        event = cloud_event(record)
        urn = event.get_dataschema()
        assert event.get_data() == record.value
        wire = record.value[2:10].hex()
        assert urn == f"urn:puente:schema:{wire}"
        assert event.get_specversion() == "1.0"
        assert schema_ids.find(router.catalog, urn).fingerprint_hex == wire


@pytest.mark.timeout(240)
async def test_a_recipient_fetches_the_schema_and_decodes_with_fastavro_and_avro(
    hub: Hub, written: dict[str, list[Any]]
) -> None:
    _, gateway = hub
    record = written["delivery"][0]
    recipient = record.topic.split(".")[2]
    _, token = gateway.gateway.tokens.create(recipient)
    urn = header(record, headers.DATASCHEMA)
    assert urn is not None

    async with http(gateway, token) as client:
        served = await client.get(f"/v1/schemas/{urn}")
        schema = served.json()
        avro_schema = avro.schema.parse(json.dumps(schema))
        by_avro = await client.get(f"/v1/schemas/{avro_schema.fingerprint().hex()}")
        java_long = struct.unpack("<q", record.value[2:10])[0]
        by_java = await client.get(f"/v1/schemas/{java_long}")
        unknown = await client.get("/v1/schemas/00000000000000aa")

    body = record.value[10:]
    with_fastavro: Any = fastavro.schemaless_reader(
        io.BytesIO(body), fastavro.parse_schema(schema)
    )
    decoder = avro.io.BinaryDecoder(io.BytesIO(body))
    with_avro: Any = avro.io.DatumReader(avro_schema).read(decoder)
    assert served.status_code == 200, served.text
    assert with_fastavro["envelope"]["event_type"] == "return_arrival"
    assert with_avro["envelope"]["event_type"] == "return_arrival"
    assert str(with_avro["envelope"]["event_id"]) == str(
        with_fastavro["envelope"]["event_id"]
    )
    assert str(with_avro["envelope"]["event_id"]) == header(record, "ce_id")
    # The avro library's fingerprint of this schema (logical types) is another number.
    assert avro_schema.fingerprint().hex() != record.value[2:10].hex()
    assert by_avro.status_code == 200
    assert by_avro.json() == schema
    assert by_java.status_code == 200
    assert by_java.json() == schema
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
