"""The router on a real broker: who receives what, rejections, the pipeline going on."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.policy import load_policy
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect, header, produce

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def router(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RouterService]:
    """One router for this module (tests use their own event ids)."""
    settings = RouterSettings(
        group_id=f"router-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        hub=HubSettings(state_dir=tmp_path_factory.mktemp("router-state")),
        kafka=session_kafka,
    )
    # The spoofed-source cases write to a topic minsal has no right to; create it
    # up front so the router's pattern sees it without a metadata refresh.
    await runtime_topics.create(settings.kafka, {"hub.in.minsal.return_arrival": 4})
    service = build_service(settings, CollectorRegistry())
    await service.start()
    yield service
    await service.stop()


def example(name: str, **payload: Any) -> Any:
    event = json.loads((EXAMPLES / f"{name}.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["payload"].update(payload)
    return event


def expected(router: RouterService, event_type: str, natural: Any) -> dict[str, str]:
    """recipient -> view the policy decides for this event (computed offline)."""
    catalog = router.catalog
    datum = codec_for(catalog.get(event_type)).to_datum(natural)
    decisions = router.policy.decide(event_type, datum)
    return {d.recipient: d.view for d in decisions if d.delivered}


async def publish(
    kafka: KafkaSettings, catalog: Catalog, event_type: str, event: Any
) -> None:
    source = event["envelope"]["source_institution_id"]
    prepared = pubsub.prepare(catalog, event_type, source, event)
    await pubsub.send_all(kafka, [prepared])


async def deliveries(
    kafka: KafkaSettings,
    router: RouterService,
    event_type: str,
    event_id: str,
    count: int,
) -> list[Any]:
    """Deliveries of ``event_id``, under it or a pseudonymous recipient's own id."""
    recipients = sorted(router.policy.institutions)
    keys = subject_keys(HubKeySettings(hub=router.settings.hub))
    ids = {event_id, *(keys.recipient_id(r, event_id) for r in recipients)}
    outs = [topics.outbound(r, event_type) for r in recipients]
    # Generous: in a full run other tests create hub.in topics, and each new one
    # rebalances the router's pattern subscription.
    return await collect(
        kafka, outs, lambda r: header(r, "ce_id") in ids, expected=count, timeout=60
    )


async def test_an_unaccompanied_childs_arrival_reaches_exactly_whom_the_policy_names(
    router: RouterService, kafka: KafkaSettings
) -> None:
    event = example("return_arrival")
    assert event["payload"]["accompaniment"] == "CHILD_UNACCOMPANIED"
    want = expected(router, "return_arrival", event)
    assert want["conapina"] == "FULL"
    assert "fgr" not in want
    assert "pnc" not in want

    await publish(kafka, router.catalog, "return_arrival", event)
    got = await deliveries(
        kafka, router, "return_arrival", event["envelope"]["event_id"], len(want)
    )

    received = {r.topic.split(".")[2]: header(r, "puente_view") for r in got}
    assert received == want
    for record in got:
        _, datum = codec.decode(router.catalog, record.value)
        view = header(record, "puente_view")
        if view in ("PSEUDO", "PSEUDO_S"):
            assert "person_identity" not in datum["payload"]
            assert "protection_flags" not in datum["payload"]
        if view == "FULL":
            assert datum["payload"]["person_identity"]["given_names"]
        assert header(record, headers.POLICY_VERSION) == router.policy.version


async def test_nothing_ever_reaches_fgr_or_pnc_from_a_return_arrival(
    router: RouterService, kafka: KafkaSettings
) -> None:
    event = example("return_arrival")
    await publish(kafka, router.catalog, "return_arrival", event)
    event_id = event["envelope"]["event_id"]
    others = await collect(
        kafka,
        [
            topics.outbound(i, t)
            for i in ("fgr", "pnc")
            for t in ("return_arrival", "border_crossing")
        ],
        lambda r: True,
        timeout=3,
    )
    assert others == []
    assert await deliveries(kafka, router, "return_arrival", event_id, 1)


async def test_a_referral_reaches_its_receiving_institution_in_full_and_no_one_else(
    router: RouterService, kafka: KafkaSettings
) -> None:
    event = example("referral")
    receiving = event["payload"]["receiving_institution_id"]
    want = expected(router, "referral", event)
    assert want[receiving] == "FULL"
    await publish(kafka, router.catalog, "referral", event)
    got = await deliveries(
        kafka, router, "referral", event["envelope"]["event_id"], len(want)
    )
    views = {r.topic.split(".")[2]: header(r, "puente_view") for r in got}
    assert views == want
    full = [inst for inst, view in views.items() if view in ("FULL", "IDENT")]
    # the hub's referral tracker: FULL restricted to the lifecycle fields
    assert sorted(full) == sorted([receiving, "hub_referrals"])
    tracker = next(r for r in got if r.topic.split(".")[2] == "hub_referrals")
    _, lifecycle = codec.decode(router.catalog, tracker.value)
    assert "subject_identity" not in lifecycle["payload"]


def bad_inputs(catalog: Catalog) -> list[tuple[str, str, bytes, str]]:
    """(topic, label, value, expected reason) for each kind of bad input."""
    good = example("return_arrival")
    entry = catalog.get("return_arrival")
    encoded = pubsub.prepare(catalog, "return_arrival", "dgme", good).value
    as_minsal = example("return_arrival")
    as_minsal["envelope"]["source_institution_id"] = "minsal"
    minsal_value = codec.encode(entry, codec_for(entry).to_datum(as_minsal))
    future = example("return_arrival")
    future["envelope"]["occurred_at"] = future["envelope"]["recorded_at"] = (
        "2099-01-01T00:00:00Z"
    )
    return [
        ("hub.in.dgme.return_arrival", "garbage", b"\x00not avro at all", "undecodable"),
        ("hub.in.dgme.return_arrival", "truncated", encoded[:40], "undecodable"),
        (
            "hub.in.dgme.return_arrival",
            "unknown",
            b"\xc3\x01" + bytes(9),
            "unknown_schema",
        ),
        ("hub.in.minsal.return_arrival", "spoofed", encoded, "source_mismatch"),
        (
            "hub.in.minsal.return_arrival",
            "no right",
            minsal_value,
            "not_allowed_to_publish",
        ),
        (
            "hub.in.dgme.return_arrival",
            "future",
            codec.encode(entry, codec_for(entry).to_datum(future)),
            "invalid",
        ),
        ("hub.in.dgme.return_arrival", "huge", encoded + bytes(600_000), "too_large"),
    ]


async def test_each_bad_input_is_rejected_with_its_reason_and_the_next_event_goes_through(
    router: RouterService, kafka: KafkaSettings
) -> None:
    cases = bad_inputs(router.catalog)
    positions = await produce(
        kafka, [(topic, None, value, []) for topic, _, value, _ in cases]
    )
    label_at = {pos: case[1] for pos, case in zip(positions, cases, strict=True)}
    good = example("return_arrival")
    await publish(kafka, router.catalog, "return_arrival", good)

    rejections = await collect(
        kafka,
        ["hub.rejected.dgme", "hub.rejected.minsal"],
        lambda r: _original_position(router.catalog, r) in label_at,
        expected=len(cases),
    )
    reasons = {}
    for record in rejections:
        _, datum = codec.decode(router.catalog, record.value)
        reasons[label_at[_original_position(router.catalog, record)]] = datum["reason"]
    assert reasons == {label: reason for _, label, _, reason in cases}
    assert await deliveries(
        kafka, router, "return_arrival", good["envelope"]["event_id"], 1
    )


def _original_position(catalog: Catalog, record: Any) -> tuple[str, int, int]:
    _, datum = codec.decode(catalog, record.value)
    return datum["original_topic"], datum["original_partition"], datum["original_offset"]


async def test_the_same_event_twice_is_delivered_once_and_a_changed_copy_is_rejected(
    router: RouterService, kafka: KafkaSettings
) -> None:
    event = example("return_arrival")
    event_id = event["envelope"]["event_id"]
    await publish(kafka, router.catalog, "return_arrival", event)
    await publish(kafka, router.catalog, "return_arrival", event)
    changed = json.loads(json.dumps(event))
    changed["payload"]["time_abroad"] = "UNDER_1_MONTH"
    await publish(kafka, router.catalog, "return_arrival", changed)
    want = expected(router, "return_arrival", event)

    # All three share a partition (keyed by event id): once the changed copy is
    # rejected, the plain repeat before it has been routed too.
    rejections = await collect(
        kafka,
        ["hub.rejected.dgme"],
        lambda r: (r.key or b"").decode() == event_id,
        expected=1,
    )
    _, datum = codec.decode(router.catalog, rejections[0].value)
    assert datum["reason"] == "conflicting_duplicate"
    got = await deliveries(kafka, router, "return_arrival", event_id, len(want))
    assert sorted(r.topic for r in got) == sorted(
        topics.outbound(r, "return_arrival") for r in want
    )


def test_the_shipped_policy_loads_for_the_router(catalog: Catalog) -> None:
    policy = load_policy(HubSettings().policy_dir, catalog)
    keys = subject_keys(HubKeySettings(hub_key="00" * 32))
    assert policy.may_publish("dgme", "return_arrival")
    assert keys.rekey("conapina", "k:x") != keys.rekey("minsal", "k:x")
