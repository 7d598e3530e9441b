"""Minimisation end to end on a real broker (issue 13): the router as `puente up` runs it.

Events go in over Kafka; deliveries are read back from ``hub.out.*`` as each
recipient would read them, and the decisions from ``hub.audit``. Pseudonymous
recipients find their deliveries by their own event ids (``ce_id``), which the
test computes with the hub key, as no recipient can.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts import codec, headers, topics
from services.contracts.natural import codec_for
from services.policy import SubjectKeys
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect, header

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"
PSEUDONYMOUS = ("PSEUDO", "PSEUDO_S")
REGISTRIES: dict[int, CollectorRegistry] = {}  # the router's metrics, by service
# The example arrival is an unaccompanied child; these make it an adult travelling alone.
ADULT: dict[str, Any] = {
    "payload.accompaniment": "ADULT_ALONE",
    "payload.person_profile.is_minor": False,
    "payload.person_profile.age_group": "AGE_30_59",
    "payload.person_profile.age_years": 31,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[RouterService, SubjectKeys]]:
    """One router with the shipped policy, and the hub's keys (for the test only)."""
    state = HubSettings(state_dir=tmp_path_factory.mktemp("minimisation-state"))
    settings = RouterSettings(
        group_id=f"router-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        hub=state,
        kafka=session_kafka,
    )
    registry = CollectorRegistry()
    service = build_service(settings, registry)
    await service.start()
    REGISTRIES[id(service)] = registry
    yield service, subject_keys(HubKeySettings(hub=state))
    await service.stop()


def _example(name: str, **changes: Any) -> Any:
    event = json.loads((EXAMPLES / f"{name}.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target[last] = value
    return event


async def _route(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings, event: Any
) -> tuple[dict[str, Any], list[Any]]:
    """Publish ``event``; its deliveries (by recipient) and its audit entries."""
    router, keys = hub
    event_type = event["envelope"]["event_type"]
    source = event["envelope"]["source_institution_id"]
    event_id = event["envelope"]["event_id"]
    entry = router.catalog.get(event_type)
    decisions = router.policy.decide(event_type, codec_for(entry).to_datum(event))
    await pubsub.send_all(
        kafka, [pubsub.prepare(router.catalog, event_type, source, event)]
    )
    audit = await collect(
        kafka,
        [topics.AUDIT],
        lambda r: r.key == event_id.encode(),
        expected=len(decisions),
        timeout=60,
    )
    decided = [codec.decode(router.catalog, r.value)[1] for r in audit]
    wanted = {
        d["recipient_institution_id"]: d["view"]
        for d in decided
        if d["decision"] == "delivered"
    }
    own_ids = {
        recipient: keys.recipient_id(recipient, event_id)
        if view in PSEUDONYMOUS
        else event_id
        for recipient, view in wanted.items()
    }
    outs = [topics.outbound(r, event_type) for r in sorted(router.policy.institutions)]
    found = await collect(
        kafka,
        outs,
        lambda r: header(r, "ce_id") in own_ids.values(),
        expected=len(wanted),
        timeout=60,
    )
    delivered = {r.topic.split(".")[2]: r for r in found}
    assert set(delivered) == set(wanted)
    for recipient, record in delivered.items():
        assert header(record, "ce_id") == own_ids[recipient]
    return delivered, decided


def _withheld(decided: list[Any], recipient: str) -> set[str]:
    return {
        d["withheld_reason"]
        for d in decided
        if d["recipient_institution_id"] == recipient and d["decision"] == "withheld"
    }


async def test_headers_follow_the_projection_and_name_no_rule(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    event = _example(
        "return_arrival",
        **ADULT,
        **{
            "payload.protection_flags": [],
            "payload.needs_protection_followup": False,
            "envelope.occurred_at": "2026-11-02T13:05:07.123Z",
        },
    )
    delivered, _ = await _route(hub, kafka, event)
    oversight = delivered["rree_vmdmh"]
    assert header(oversight, "ce_time") == "2026-11-02T00:00:00.000Z"
    assert header(delivered["dgme"], "ce_time") == "2026-11-02T13:05:07.123Z"
    assert header(oversight, "ce_id") != event["envelope"]["event_id"]
    for record in delivered.values():
        assert header(record, "puente_rule") is None
        assert header(record, headers.PURPOSE)
        assert header(record, headers.LEGAL_BASIS)


async def test_a_migration_restriction_never_leaves_dgme_not_even_by_absence(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    router, _ = hub
    event = _example(
        "border_crossing",
        **{
            "payload.traveller_profile.is_minor": True,
            "payload.traveller_profile.age_group": "AGE_12_17",
            "payload.outcome": "REFUSED",
            "payload.refusal_reason": "MIGRATION_RESTRICTION",
            "payload.minor_travel": {
                "accompanied_by": "UNACCOMPANIED",
                "authorization": "NONE_PRESENTED",
            },
        },
    )
    delivered, _ = await _route(hub, kafka, event)
    _, body = codec.decode(router.catalog, delivered["conapina"].value)
    assert body["payload"]["refusal_reason"] == "OTHER"
    assert b"MIGRATION_RESTRICTION" not in delivered["conapina"].value


async def test_pseudonymous_recipients_share_no_identifier_with_anyone(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    event = _example(
        "return_arrival",
        **ADULT,
        **{
            "payload.protection_flags": ["PREGNANT_OR_LACTATING"],
            "payload.needs_protection_followup": False,
            "payload.medical_attention_required": True,
        },
    )
    delivered, _ = await _route(hub, kafka, event)
    assert {"dgme", "minsal", "rree_vmdmh"} <= set(delivered)
    shared = {
        event["envelope"]["event_id"],
        event["envelope"]["correlation_id"],
        event["payload"]["arrival_id"],
    }
    for name in ("minsal", "rree_vmdmh"):
        record = delivered[name]
        seen = record.value.decode("latin-1") + (record.key or b"").decode()
        seen += "".join((v or b"").decode() for _, v in record.headers)
        assert not [v for v in shared if v in seen], name
    assert delivered["minsal"].key != delivered["rree_vmdmh"].key


async def test_the_oversight_view_masks_a_gender_violence_service_as_source(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    event = _example(
        "referral",
        **{
            "envelope.source_institution_id": "isdemu",
            "payload.referring_institution_id": "isdemu",
            "payload.receiving_institution_id": "minsal",
            "payload.service_category": "HEALTH_MEDICAL",
            "payload.protection_flags": [],
            "payload.subject_profile.is_minor": False,
            "payload.subject_profile.age_group": "AGE_30_59",
            "payload.consent_overridden": False,
            "payload.override_reason": None,
            "payload.consent.obtained": True,
            "payload.consent.scopes": ["HEALTH_CARE"],
            "payload.consent.disclosure_to_other_institutions": True,
            "envelope.purposes": ["HEALTH_CARE", "POLICY_COORDINATION"],
        },
    )
    delivered, _ = await _route(hub, kafka, event)
    assert header(delivered["rree_vmdmh"], "ce_source") == "masked"
    assert b"isdemu" not in delivered["rree_vmdmh"].value
    assert header(delivered["minsal"], "ce_source") == "isdemu"


async def test_an_adult_is_not_referred_to_child_protection_on_the_childs_basis(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    event = _example(
        "referral",
        **{
            "payload.receiving_institution_id": "conapina",
            "payload.service_category": "CHILD_PROTECTION",
            "payload.subject_profile.is_minor": False,
            "payload.subject_profile.age_group": "AGE_30_59",
        },
    )
    delivered, decided = await _route(hub, kafka, event)
    assert "conapina" not in delivered
    assert all(d["recipient_institution_id"] != "conapina" for d in decided)


async def test_purposes_and_the_no_disclosure_flag_are_honoured_and_audited(
    hub: tuple[RouterService, SubjectKeys], kafka: KafkaSettings
) -> None:
    base = {
        **ADULT,
        "payload.protection_flags": [],
        "payload.needs_protection_followup": False,
        "payload.consent": {
            "obtained": True,
            "method": "WRITTEN",
            "scopes": ["EMPLOYMENT_REINTEGRATION"],
            "disclosure_to_other_institutions": True,
            "given_at": None,
            "withdrawn_at": None,
        },
    }
    undeclared = _example(
        "return_arrival",
        **base,
        **{"envelope.purposes": ["RECEPTION_ASSISTANCE", "POLICY_COORDINATION"]},
    )
    delivered, decided = await _route(hub, kafka, undeclared)
    assert "purpose_not_declared" in _withheld(decided, "rree_vmdmh")
    assert header(delivered["rree_vmdmh"], headers.PURPOSE) == "POLICY_COORDINATION"

    router = hub[0]
    registry = REGISTRIES[id(router)]
    labels = {"recipient": "rree_vmdmh", "event_type": "return_arrival"}
    withheld = "puente_decisions_withheld_total"

    def count(reason: str) -> float:
        return registry.get_sample_value(withheld, {**labels, "reason": reason}) or 0.0

    assert count("purpose_not_declared") >= 1
    before = count("disclosure_not_allowed")
    closed = _example("return_arrival", **base)
    closed["payload"]["consent"]["disclosure_to_other_institutions"] = False
    delivered, decided = await _route(hub, kafka, closed)
    assert set(delivered) == {"dgme"}
    assert _withheld(decided, "rree_vmdmh") == {"disclosure_not_allowed"}
    assert count("disclosure_not_allowed") == before + 2  # both rree_vmdmh rules
    assert all(
        d["disclosed_fields"] == [] for d in decided if d["decision"] != "delivered"
    )
