"""Events through a real router into the audit ledger; the three questions answered.

One router and one audit service run for the whole module on the session broker.
The audit service consumes the real ``hub.audit``, which other tests (and this
router replaying their inbound backlog) also write, so every assertion is about
this module's own event ids or this module's own subject key.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.audit import queries
from services.audit.api import reading, verify_ledger
from services.audit.app import AuditService
from services.audit.app import build_service as build_audit
from services.audit.credentials import CredentialStore, Role
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for, format_timestamp
from services.policy import Decision, Policy, SubjectKeys
from services.router.app import RouterService
from services.router.app import build_service as build_router
from services.router.settings import RouterSettings
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"
# Generous: in a full run the router first replays every other test's inbound backlog.
INGEST_TIMEOUT = 60.0

# One row of the ledger's answer, in the order it is compared.
Outcome = tuple[str, str, str | None, str, str, str, str, tuple[str, ...]]


@dataclass(frozen=True)
class Published:
    """One event this module published, and what the policy decides for it."""

    event_type: str
    event_id: str
    subject_key: str | None
    decisions: list[Decision]

    def delivered_to(self) -> set[str]:
        """The institutions the policy delivers this event to."""
        return {d.recipient for d in self.decisions if d.delivered}

    def outcomes(self, *, delivered_only: bool = False) -> list[Outcome]:
        """What the ledger must hold about each decision, sorted."""
        return sorted(
            expected_outcome(d)
            for d in self.decisions
            if d.delivered or not delivered_only
        )


@dataclass(frozen=True)
class Hub:
    """The running services and what was published through them."""

    router: RouterService
    audit: AuditService
    ledger: Path
    keys: SubjectKeys
    events: dict[str, Published]
    since: datetime
    until: datetime

    @property
    def child_key(self) -> str:
        """The hub subject key of the unaccompanied child."""
        key = self.events["arrival"].subject_key
        assert key is not None
        return key


def expected_outcome(decision: Decision) -> Outcome:
    """A policy decision as the ledger records it (withheld ones disclose no field)."""
    return (
        decision.recipient,
        "delivered" if decision.delivered else "withheld",
        decision.withheld_reason,
        decision.view,
        decision.rule_id,
        decision.purpose,
        decision.legal_basis,
        tuple(decision.projection.field_paths) if decision.delivered else (),
    )


def recorded_outcome(disclosure: queries.Disclosure) -> Outcome:
    """A ledger disclosure in the same shape as `expected_outcome`."""
    return (
        disclosure.recipient_institution_id,
        disclosure.decision,
        disclosure.withheld_reason,
        disclosure.view,
        disclosure.rule_id,
        disclosure.purpose,
        disclosure.legal_basis,
        tuple(disclosure.disclosed_fields),
    )


def example(name: str) -> Any:
    """An example event with a fresh event id."""
    event = json.loads((EXAMPLES / f"{name}.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    return event


def scenario() -> dict[str, Any]:
    """A child's arrival, her referral to CONAPINA, and an unrelated border crossing.

    The child's document number is fresh, so her subject key matches no event
    another test published (their copies of the example share its document).
    """
    arrival = example("return_arrival")
    identity = arrival["payload"]["person_identity"]
    identity["documents"][0]["document_number"] = f"{uuid.uuid4().int % 10**8:08d}-7"
    referral = example("referral")
    referral["payload"]["referral_id"] = str(uuid.uuid4())
    referral["payload"]["subject_identity"] = copy.deepcopy(identity)
    referral["payload"]["subject_profile"] = copy.deepcopy(
        arrival["payload"]["person_profile"]
    )
    return {
        "arrival": arrival,
        "referral": referral,
        "crossing": example("border_crossing"),
    }


def decide(
    catalog: Catalog, policy: Policy, keys: SubjectKeys, natural: Any
) -> Published:
    """What the router must do with ``natural``, computed offline."""
    event_type = natural["envelope"]["event_type"]
    entry = catalog.get(event_type)
    datum = codec_for(entry).to_datum(natural)
    subject_key, _ = keys.subject_key(event_type, datum)
    return Published(
        event_type=event_type,
        event_id=natural["envelope"]["event_id"],
        subject_key=subject_key,
        decisions=policy.decide(event_type, datum, entry.version),
    )


def decisions_in_ledger(ledger: Path, event_id: str) -> int:
    """How many decisions on ``event_id`` the ledger holds (0 before it exists)."""
    if not ledger.is_file():
        return 0
    with reading(ledger) as opened:
        return len(queries.who_received(opened, event_id).decisions)


async def until_ingested(ledger: Path, events: Iterable[Published]) -> None:
    """Wait until the ledger holds one entry per decision of every event."""
    pending = list(events)
    deadline = time.monotonic() + INGEST_TIMEOUT
    while pending:
        pending = [
            p
            for p in pending
            if decisions_in_ledger(ledger, p.event_id) < len(p.decisions)
        ]
        assert time.monotonic() < deadline, f"not in the ledger: {pending}"
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Hub]:
    """Router and audit sharing one state dir (so one dev hub key); events routed."""
    suffix = uuid.uuid4().hex[:8]
    state = HubSettings(state_dir=tmp_path_factory.mktemp("hub-state"))
    kafka = session_kafka
    router = build_router(
        RouterSettings(
            group_id=f"router-e2e-{suffix}", port=free_port(), hub=state, kafka=kafka
        ),
        CollectorRegistry(),
    )
    audit = build_audit(
        AuditSettings(
            port=free_port(),
            group_id=f"audit-e2e-{suffix}",
            # Checkpoints of this throwaway ledger stay off the shared checkpoint topic.
            checkpoint_topic=f"hub.audit.checkpoints.{suffix}",
            hub=state,
            kafka=kafka,
        ),
        CollectorRegistry(),
    )
    keys = subject_keys(HubKeySettings(hub=state))
    await router.start()
    try:
        await audit.start()
        try:
            natural = scenario()
            events = {
                label: decide(router.catalog, router.policy, keys, event)
                for label, event in natural.items()
            }
            since = datetime.now(UTC)
            await pubsub.send_all(
                kafka,
                [
                    pubsub.prepare(router.catalog, e["envelope"]["event_type"], "dgme", e)
                    for e in natural.values()
                ],
            )
            ledger = audit.settings.ledger_file
            await until_ingested(ledger, events.values())
            yield Hub(
                router=router,
                audit=audit,
                ledger=ledger,
                keys=keys,
                events=events,
                since=since,
                until=datetime.now(UTC) + timedelta(milliseconds=1),
            )
        finally:
            await audit.stop()
    finally:
        await router.stop()


def test_the_scenario_exercises_a_withheld_decision_and_a_shared_subject(
    hub: Hub,
) -> None:
    arrival, referral, crossing = (
        hub.events[k] for k in ("arrival", "referral", "crossing")
    )
    assert any(not d.delivered for d in arrival.decisions)
    assert "conapina" in arrival.delivered_to()
    assert referral.subject_key == hub.child_key
    assert crossing.subject_key not in (None, hub.child_key)


@pytest.mark.parametrize("label", ["arrival", "referral", "crossing"])
def test_who_received_lists_exactly_the_policys_recipients_with_withheld_ones_marked(
    hub: Hub, label: str
) -> None:
    published = hub.events[label]
    with reading(hub.ledger) as ledger:
        answer = queries.who_received(ledger, published.event_id)

    assert answer.recipients == sorted(published.delivered_to())
    assert sorted(map(recorded_outcome, answer.decisions)) == published.outcomes()
    for disclosure in answer.decisions:
        assert disclosure.event_id == published.event_id
        assert disclosure.event_type == published.event_type
        assert disclosure.source_institution_id == "dgme"
        assert disclosure.subject_key == published.subject_key
        assert disclosure.policy_version == hub.router.policy.version


def test_the_childs_arrival_shows_conapina_in_full_and_the_withheld_rule_without_fields(
    hub: Hub,
) -> None:
    with reading(hub.ledger) as ledger:
        answer = queries.who_received(ledger, hub.events["arrival"].event_id)
    to_conapina = [
        d for d in answer.decisions if d.recipient_institution_id == "conapina"
    ]
    withheld = [d for d in answer.decisions if d.decision == "withheld"]

    assert [(d.view, d.decision) for d in to_conapina] == [("FULL", "delivered")]
    assert "payload.person_identity.given_names" in to_conapina[0].disclosed_fields
    assert withheld
    assert all(d.withheld_reason and d.disclosed_fields == [] for d in withheld)


def test_what_conapina_received_in_the_window_counts_the_childs_arrival(
    hub: Hub,
) -> None:
    mine = {p.event_id: p for p in hub.events.values()}
    with reading(hub.ledger) as ledger:
        answer = queries.received(ledger, "conapina", hub.since, hub.until, 10_000)
        before = queries.received(ledger, "conapina", until=hub.since, limit=10_000)

    counts = {(c.event_type, c.view): c.count for c in answer.counts}
    own = [e for e in answer.entries if e.event_id in mine]
    assert counts.get(("return_arrival", "FULL"), 0) >= 1
    assert counts.get(("referral", "FULL"), 0) >= 1
    assert sorted((e.event_type, e.view, e.rule_id) for e in own) == [
        ("referral", "FULL", "referral-to-child-protection"),
        ("return_arrival", "FULL", "conapina-ra-minor"),
    ]
    assert answer.total == sum(counts.values()) >= len(own)
    low, high = format_timestamp(hub.since), format_timestamp(hub.until)
    assert (answer.since, answer.until) == (low, high)
    for entry in answer.entries:
        assert entry.recipient_institution_id == "conapina"
        assert entry.decision == "delivered"
        assert low <= entry.decided_at < high
    assert not any(e.event_id in mine for e in before.entries)


def test_the_subject_report_names_every_institution_that_received_data_about_the_child(
    hub: Hub,
) -> None:
    about_her = [hub.events["arrival"], hub.events["referral"]]
    with reading(hub.ledger) as ledger:
        report = queries.subject_report(ledger, hub.child_key)

    deliveries: dict[str, int] = {}
    for published in about_her:
        for recipient in published.delivered_to():
            deliveries[recipient] = deliveries.get(recipient, 0) + 1
    assert {i.institution: i.deliveries for i in report.institutions} == deliveries
    assert sorted(map(recorded_outcome, report.disclosures)) == sorted(
        o for p in about_her for o in p.outcomes(delivered_only=True)
    )
    assert {d.event_id for d in report.disclosures} == {p.event_id for p in about_her}
    for summary in report.institutions:
        assert summary.first <= summary.last


async def test_the_cli_answers_who_received_as_json(hub: Hub) -> None:
    event_id = hub.events["arrival"].event_id
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "audit",
        "who-received",
        event_id,
        "--ledger",
        str(hub.ledger),
        "--json",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()

    answer = queries.EventRecipients.model_validate_json(stdout)
    assert answer.event_id == event_id
    assert answer.recipients == sorted(hub.events["arrival"].delivered_to())
    assert sorted(map(recorded_outcome, answer.decisions)) == (
        hub.events["arrival"].outcomes()
    )


async def test_the_http_api_answers_who_received(hub: Hub) -> None:
    published = hub.events["referral"]
    base = f"http://127.0.0.1:{hub.audit.settings.port}"
    store = CredentialStore(hub.audit.settings.credentials_file)
    _, token = store.create(Role.OVERSIGHT)
    store.close()
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=bearer) as http:
        response = await http.get(f"/v1/events/{published.event_id}/recipients")
        bad = await http.get("/v1/events/not-a-uuid/recipients")

    assert response.status_code == 200
    answer = queries.EventRecipients.model_validate(response.json())
    assert answer.recipients == sorted(published.delivered_to())
    assert sorted(map(recorded_outcome, answer.decisions)) == published.outcomes()
    assert bad.status_code == 400


async def test_the_ledger_verifies_after_the_run(hub: Hub) -> None:
    # Stopping signs a last checkpoint, so every entry is covered by a signature.
    await hub.audit.stop()
    result = verify_ledger(hub.ledger, pinned_keys(hub.audit.settings))

    assert result.ok, result.problems
    assert result.entries == result.head_seq == result.last_checkpoint_seq
    assert result.entries >= sum(len(p.decisions) for p in hub.events.values())
    assert result.uncovered_entries == 0
