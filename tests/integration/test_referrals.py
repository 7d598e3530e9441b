"""The referral tracker on a real broker, fed by a real router."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.cli import app
from services.contracts.catalog import Catalog
from services.contracts.natural import format_timestamp
from services.referrals.app import ReferralsService
from services.referrals.rebuild import differences, rebuild
from services.referrals.settings import ReferralsSettings
from services.referrals.store import Store, Tracked
from services.router.app import RouterService
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.integration.referrals_support import notices_delivered
from tests.support.kafka import kafka_env
from tests.support.router import running_router

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"
# Whole seconds in the past: the router refuses events from the future.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


class SetClock:
    """The tracker's clock, set by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def router(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RouterService]:
    """One router for this module (tests use their own referral ids)."""
    state = tmp_path_factory.mktemp("router-state")
    async with running_router(session_kafka, state) as service:
        yield service


def tracker_settings(kafka: KafkaSettings, state: Path, group: str) -> ReferralsSettings:
    """A tracker of its own: group, port, state dir; deadline checks only when asked."""
    return ReferralsSettings(
        group_id=group,
        port=free_port(),
        check_seconds=3600,
        hub=HubSettings(state_dir=state),
        kafka=kafka,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tracker(
    router: RouterService,
    session_kafka: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ReferralsService, SetClock]]:
    """The tracker with a test clock, started after the router."""
    del router
    kafka = session_kafka
    settings = tracker_settings(
        kafka,
        tmp_path_factory.mktemp("tracker-state"),
        f"hub_referrals.t-{uuid.uuid4().hex[:8]}",
    )
    clock = SetClock()
    service = ReferralsService(settings, CollectorRegistry(), clock)
    await service.start()
    yield service, clock
    await service.stop()


def referral_event(
    referral_id: str,
    lifecycle_event: str,
    status: str,
    previous: str | None,
    *,
    source: str,
    at: datetime,
    **payload: Any,
) -> Any:
    """The example referral (a child, dgme to conapina) as one lifecycle event."""
    event = json.loads((EXAMPLES / "referral.json").read_text())
    stamp = at.isoformat().replace("+00:00", "Z")
    event["envelope"].update(
        event_id=str(uuid.uuid4()),
        source_institution_id=source,
        occurred_at=stamp,
        recorded_at=stamp,
        published_at=stamp,
        correlation_id=referral_id,
    )
    event["payload"].update(
        referral_id=referral_id,
        lifecycle_event=lifecycle_event,
        status=status,
        previous_status=previous,
        urgency="IMMEDIATE_24H",
        response_due_at=None,
        **payload,
    )
    return event


async def publish(kafka: KafkaSettings, catalog: Catalog, *events: Any) -> None:
    prepared = [
        pubsub.prepare(catalog, "referral", e["envelope"]["source_institution_id"], e)
        for e in events
    ]
    await pubsub.send_all(kafka, prepared)


async def until(
    service: ReferralsService,
    referral_id: str,
    done: Callable[[Tracked], bool],
    timeout: float = 60.0,
) -> Tracked:
    """Wait until the tracker holds ``referral_id`` in a state ``done`` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = Store.open(service.settings.db_file, readonly=True)
        try:
            found = store.get(referral_id)
        finally:
            store.close()
        if found is not None and done(found):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"the tracker did not reach the expected state of {referral_id}")


async def scrape(service: ReferralsService) -> str:
    """The tracker's /metrics, fetched over HTTP (off the loop that serves it)."""
    url = f"http://127.0.0.1:{service.settings.port}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(fetch)


async def test_a_childs_immediate_referral_left_unanswered_is_overdue_at_24_hours(
    tracker: tuple[ReferralsService, SetClock], kafka: KafkaSettings
) -> None:
    service, clock = tracker
    referral_id = str(uuid.uuid4())
    created = referral_event(referral_id, "CREATED", "SENT", None, source="dgme", at=T0)
    await publish(kafka, service.catalog, created)
    tracked = await until(service, referral_id, lambda t: True)
    assert (tracked.referral.referring, tracked.referral.receiving) == (
        "dgme",
        "conapina",
    )
    assert tracked.referral.is_minor

    clock.now = T0 + timedelta(hours=23, minutes=59)
    await service.check_deadlines()
    assert await until(service, referral_id, lambda t: t.overdue is None)

    clock.now = T0 + timedelta(hours=24)
    result = await service.check_deadlines()
    assert result is not None
    mine = {
        (n.recipient, n.role, n.level)
        for n in result.issued
        if n.referral_id == referral_id
    }
    # CONAPINA is the receiving party, so the child's representative (PGR) supervises
    assert mine == {("dgme", "referring", 1), ("pgr", "supervisor", 1)}
    overdue = (await until(service, referral_id, lambda t: t.overdue is not None)).overdue
    assert overdue is not None
    assert (overdue.stage, overdue.level, overdue.due_at) == (
        "acknowledge",
        1,
        T0 + timedelta(hours=24),
    )
    metrics = await scrape(service)
    assert (
        'puente_referrals_overdue{level="1",minor="true",receiving_institution="conapina",'
        'stage="acknowledge",urgency="IMMEDIATE_24H"}'
    ) in metrics
    # checked again, nothing is issued twice
    again = await service.check_deadlines()
    assert again is not None
    assert [n for n in again.issued if n.referral_id == referral_id] == []


async def test_an_overdue_notice_reaches_the_referrer_and_the_supervisor_once(
    tracker: tuple[ReferralsService, SetClock], kafka: KafkaSettings
) -> None:
    service, clock = tracker
    referral_id = str(uuid.uuid4())
    created = referral_event(referral_id, "CREATED", "SENT", None, source="dgme", at=T0)
    await publish(kafka, service.catalog, created)
    await until(service, referral_id, lambda t: True)
    clock.now = T0 + timedelta(hours=24)
    await service.check_deadlines()
    assert await service.publish_notices() >= 1
    store = Store.open(service.settings.db_file, readonly=True)
    try:
        waiting = [e for e in store.unsent() if e.key == referral_id.encode()]
        mine = store.published(referral_id)
    finally:
        store.close()
    assert waiting == []  # acknowledged, so nothing waits
    assert len(mine) == 1  # one escalation so far: one event for both recipients
    # Sent again, as after a kill -9 between the send and its acknowledgement's record.
    assert await service.sender.send(mine) == [mine[0].event_id]

    for recipient in ("dgme", "pgr"):  # the referrer; the child's representative
        notices = await notices_delivered(
            kafka, service.catalog, recipient, [referral_id], bool
        )
        assert notices == [
            {
                "referral_id": referral_id,
                "deadline": "ACKNOWLEDGE",
                "due_at": format_timestamp(T0 + timedelta(hours=24)),
                "escalation_level": 1,
                "urgency": "IMMEDIATE_24H",
                "service_group": "SPECIALISED_PROTECTION",
                "referring_institution_id": "dgme",
                "receiving_institution_id": "conapina",
                "supervising_institution_id": "pgr",
            }
        ], recipient


async def test_an_unserved_referral_expires_through_the_router_like_any_transition(
    tracker: tuple[ReferralsService, SetClock], kafka: KafkaSettings
) -> None:
    service, clock = tracker
    referral_id = str(uuid.uuid4())
    created = referral_event(referral_id, "CREATED", "SENT", None, source="dgme", at=T0)
    await publish(kafka, service.catalog, created)
    await until(service, referral_id, lambda t: True)
    clock.now = T0 + timedelta(days=15)  # past an IMMEDIATE_24H referral's expiry
    result = await service.check_deadlines()
    assert result is not None
    assert referral_id in result.expired
    assert await service.publish_notices() >= 1
    # the hub's EXPIRED comes back through the router and closes the referral
    tracked = await until(service, referral_id, lambda t: t.referral.status == "EXPIRED")
    assert not tracked.referral.open
    store = Store.open(service.settings.db_file, readonly=True)
    try:
        last = store.history(referral_id)[-1]
    finally:
        store.close()
    assert (last.institution, last.lifecycle_event, last.outcome) == (
        "hub_referrals",
        "EXPIRED",
        "applied",
    )


async def test_a_forged_answer_never_moves_the_referral_and_the_real_one_does(
    tracker: tuple[ReferralsService, SetClock], kafka: KafkaSettings
) -> None:
    service, _ = tracker
    referral_id = str(uuid.uuid4())
    created = referral_event(referral_id, "CREATED", "SENT", None, source="dgme", at=T0)
    # minsal answers a referral addressed to conapina
    forged = referral_event(
        referral_id,
        "ACCEPTED",
        "ACCEPTED",
        "SENT",
        source="minsal",
        at=T0 + timedelta(minutes=5),
    )
    real = referral_event(
        referral_id,
        "ACCEPTED",
        "ACCEPTED",
        "SENT",
        source="conapina",
        at=T0 + timedelta(minutes=9),
    )
    await publish(kafka, service.catalog, created, forged, real)
    tracked = await until(service, referral_id, lambda t: t.referral.status == "ACCEPTED")
    assert tracked.referral.acknowledged_at == T0 + timedelta(minutes=9)
    store = Store.open(service.settings.db_file, readonly=True)
    try:
        history = [
            (s.institution, s.lifecycle_event, s.outcome)
            for s in store.history(referral_id)
        ]
    finally:
        store.close()
    assert ("minsal", "ACCEPTED", "applied") not in history
    assert history[-1] == ("conapina", "ACCEPTED", "applied")
    assert (
        'puente_referrals_time_to_acknowledge_seconds_count{urgency="IMMEDIATE_24H"}'
        in await scrape(service)
    )


async def test_a_rebuild_from_the_topic_gives_the_live_state(
    tracker: tuple[ReferralsService, SetClock], kafka: KafkaSettings, tmp_path: Path
) -> None:
    service, _ = tracker
    referral_id = str(uuid.uuid4())
    steps = [
        ("CREATED", "SENT", None, "dgme"),
        ("ACCEPTED", "ACCEPTED", "SENT", "conapina"),
        ("SERVICE_STARTED", "IN_SERVICE", "ACCEPTED", "conapina"),
        ("COMPLETED", "DONE", "IN_SERVICE", "conapina"),
    ]
    events = [
        referral_event(
            referral_id,
            name,
            status,
            previous,
            source=source,
            at=T0 + timedelta(minutes=10 * i),
        )
        for i, (name, status, previous, source) in enumerate(steps)
    ]
    await publish(kafka, service.catalog, *events)
    await until(service, referral_id, lambda t: t.referral.status == "DONE")

    target = tmp_path / "rebuilt.sqlite"
    done = await rebuild(kafka, service.catalog, service.settings.topic, target)
    assert done.applied >= len(steps)
    live = Store.open(service.settings.db_file, readonly=True)
    rebuilt = Store.open(target, readonly=True)
    try:
        assert differences(live, rebuilt) == []
        assert live.snapshot() == rebuilt.snapshot()
        tracked = rebuilt.get(referral_id)
        assert tracked is not None
        assert tracked.referral.status == "DONE"
    finally:
        live.close()
        rebuilt.close()


async def test_the_rebuild_command_reports_that_the_rebuilt_state_matches(
    tracker: tuple[ReferralsService, SetClock],
    kafka: KafkaSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _ = tracker
    referral_id = str(uuid.uuid4())
    created = referral_event(referral_id, "CREATED", "SENT", None, source="dgme", at=T0)
    await publish(kafka, service.catalog, created)
    await until(service, referral_id, lambda t: True)
    for name, value in kafka_env(kafka).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PUENTE_STATE_DIR", str(tmp_path))
    target = tmp_path / "rebuilt.sqlite"
    argv = ["referrals", "rebuild", "--db", str(service.settings.db_file)]
    # The command runs its own event loop: off this one.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, [*argv, "--out", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert f"the rebuilt state matches {service.settings.db_file}" in result.stdout
    rebuilt = Store.open(target, readonly=True)
    try:
        assert rebuilt.get(referral_id) is not None
    finally:
        rebuilt.close()


async def test_reading_everything_again_changes_nothing_and_escalates_nothing_twice(
    router: RouterService, kafka: KafkaSettings, tmp_path: Path
) -> None:
    del router
    referral_id = str(uuid.uuid4())
    clock = SetClock()
    first = ReferralsService(
        tracker_settings(kafka, tmp_path, f"hub_referrals.a-{uuid.uuid4().hex[:8]}"),
        CollectorRegistry(),
        clock,
    )
    await first.start()
    try:
        created = referral_event(
            referral_id, "CREATED", "SENT", None, source="dgme", at=T0
        )
        await publish(kafka, first.catalog, created)
        await until(first, referral_id, lambda t: True)
        clock.now = T0 + timedelta(hours=40)  # past the deadline and the escalation
        result = await first.check_deadlines()
        assert result is not None
        assert {n.level for n in result.issued if n.referral_id == referral_id} == {1, 2}
    finally:
        await first.stop()
    store = Store.open(first.settings.db_file, readonly=True)
    before = store.snapshot()
    store.close()

    # A new group: every delivery is read again, as after a crash before a commit.
    registry = CollectorRegistry()
    again = ReferralsService(
        tracker_settings(kafka, tmp_path, f"hub_referrals.b-{uuid.uuid4().hex[:8]}"),
        registry,
        clock,
    )
    await again.start()
    try:
        deadline = time.monotonic() + 60
        while (registry.get_sample_value("puente_referrals_duplicates_total") or 0) < len(
            before["history"]
        ):
            assert time.monotonic() < deadline, "the tracker did not read the topic again"
            await asyncio.sleep(0.2)
        assert again.applied == 0
        result = await again.check_deadlines()
        assert result is not None
        assert [n for n in result.issued if n.referral_id == referral_id] == []
    finally:
        await again.stop()
    store = Store.open(first.settings.db_file, readonly=True)
    try:
        assert store.snapshot() == before
        assert len(store.notices(referral_id)) == 4
    finally:
        store.close()
