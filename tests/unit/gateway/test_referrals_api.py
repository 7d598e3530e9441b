"""``GET /v1/referrals``: each institution sees its own referrals, over real HTTP.

The gateway and the tracker's views each listen on a loopback port, as in
production: the institution's request reaches the gateway over HTTP, and the
gateway asks the tracker over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.gateway.app import build_app
from services.gateway.handlers import Gateway
from services.gateway.referrals_api import ReferralsLink
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.referrals.api import referral_views
from services.referrals.store import Overdue, Store
from services.runtime.embedded import free_port
from services.runtime.ops import OpsServer
from tests.unit.referrals.support import START, event

CHILD = str(uuid.uuid4())  # dgme -> conapina, answered
HEALTH = str(uuid.uuid4())  # dgme -> minsal, unanswered and overdue
TO_POLICE = str(uuid.uuid4())  # minsal -> pnc (no stream), never answered
FORGED_ACCEPT = str(uuid.uuid4())


@dataclass
class Site:
    """The gateway's address and the store behind the tracker's views."""

    url: str
    gateway: Gateway
    db: Path

    def token(self, institution: str) -> str:
        return self.gateway.tokens.create(institution)[1]


def fill(db: Path) -> None:
    store = Store.open(db)
    hour = timedelta(hours=1)
    store.apply(
        [
            event("CREATED", None, referral_id=CHILD),
            event("ACCEPTED", "SENT", referral_id=CHILD, at=START + hour, event_id=None),
            # minsal forges an answer for conapina: refused, never shown to the parties
            event(
                "ACCEPTED",
                "SENT",
                referral_id=CHILD,
                source="minsal",
                at=START + 2 * hour,
                event_id=FORGED_ACCEPT,
            ),
            event(
                "CREATED",
                None,
                referral_id=HEALTH,
                receiving="minsal",
                service_group="HEALTH",
                is_minor=False,
            ),
            event(
                "CREATED",
                None,
                referral_id=TO_POLICE,
                referring="minsal",
                receiving="pnc",
                service_group="OTHER",
                is_minor=False,
            ),
        ]
    )
    store.mark({HEALTH: Overdue("acknowledge", 1, START + 24 * hour)}, [])
    store.close()


@pytest.fixture
async def site(
    tmp_path: Path,
    state_dir: Path,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Site]:
    db = tmp_path / "tracker.sqlite"
    fill(db)
    views = FastAPI()
    referral_views(views, db, no_stream=["pnc", "fgr"])
    tracker = OpsServer(views, free_port())
    await tracker.start()
    monkeypatch.setenv("PUENTE_GATEWAY_REFERRALS_URL", f"http://127.0.0.1:{tracker.port}")
    settings = GatewaySettings(
        hub={"state_dir": state_dir},
        kafka={"bootstrap_servers": "127.0.0.1:9"},
    )
    app = build_app(settings, CollectorRegistry(), StaticRights({}), catalog=catalog)
    gateway = OpsServer(app, free_port())
    async with app.router.lifespan_context(app):
        await gateway.start()
        try:
            yield Site(f"http://127.0.0.1:{gateway.port}", app.state.gateway, db)
        finally:
            await gateway.stop()
            await tracker.stop()


async def get(site: Site, institution: str, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {site.token(institution)}"}
    async with httpx.AsyncClient(base_url=site.url, headers=headers) as http:
        return await http.get(path, params=params)


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [r["referral_id"] for r in answer.json()["referrals"]]


async def test_the_referring_institution_sees_what_it_sent_and_nothing_else(
    site: Site,
) -> None:
    assert sorted(ids(await get(site, "dgme", "/v1/referrals", role="sent"))) == sorted(
        [CHILD, HEALTH]
    )
    assert ids(await get(site, "dgme", "/v1/referrals", role="received")) == []


async def test_the_receiving_institution_sees_what_it_received_with_its_filters(
    site: Site,
) -> None:
    assert ids(await get(site, "minsal", "/v1/referrals", role="received")) == [HEALTH]
    assert ids(await get(site, "minsal", "/v1/referrals", role="sent")) == [TO_POLICE]
    overdue = await get(site, "minsal", "/v1/referrals", overdue="true")
    [only] = overdue.json()["referrals"]
    assert only["referral_id"] == HEALTH
    assert only["role"] == "received"
    assert only["overdue"] == {
        "deadline": "ACKNOWLEDGE",
        "escalation_level": 1,
        "due_at": "2026-11-03T15:00:00.000Z",
    }
    answered = await get(site, "conapina", "/v1/referrals", status="ACCEPTED")
    assert ids(answered) == [CHILD]
    assert ids(await get(site, "conapina", "/v1/referrals", status="SENT")) == []


async def test_a_view_holds_no_personal_data_and_no_hub_internals(site: Site) -> None:
    [view] = (await get(site, "conapina", "/v1/referrals")).json()["referrals"]
    assert set(view) == {
        "referral_id", "role", "referring_institution_id", "receiving_institution_id",
        "status", "urgency", "service_group", "created_at", "received_at",
        "updated_at", "acknowledged_at", "service_started_at", "closed_at", "overdue",
    }  # fmt: skip


async def test_a_referrals_history_shows_each_transition_with_time_and_institution(
    site: Site,
) -> None:
    answer = await get(site, "dgme", f"/v1/referrals/{CHILD}")
    assert answer.status_code == 200, answer.text
    history = answer.json()["history"]
    assert [(h["institution"], h["lifecycle_event"], h["at"]) for h in history] == [
        ("dgme", "CREATED", "2026-11-02T15:00:00.000Z"),
        ("conapina", "ACCEPTED", "2026-11-02T16:00:00.000Z"),
    ]  # minsal's forged answer is not among them


async def test_another_institutions_referral_is_not_found_as_if_it_did_not_exist(
    site: Site,
) -> None:
    for path in (f"/v1/referrals/{CHILD}", f"/v1/referrals/{uuid.uuid4()}"):
        answer = await get(site, "minsal", path)
        assert answer.status_code == 404
        assert answer.json()["status"] == 404


async def test_an_institution_without_a_stream_sees_no_referral_it_never_acted_on(
    site: Site,
) -> None:
    assert ids(await get(site, "pnc", "/v1/referrals", role="received")) == []
    assert (await get(site, "pnc", f"/v1/referrals/{TO_POLICE}")).status_code == 404
    # once it has answered, it knew the referral: it sees it
    store = Store.open(site.db)
    store.apply(
        [
            event(
                "ACCEPTED",
                "SENT",
                referral_id=TO_POLICE,
                referring="minsal",
                receiving="pnc",
                at=START + timedelta(hours=3),
            )
        ]
    )
    store.close()
    assert ids(await get(site, "pnc", "/v1/referrals", role="received")) == [TO_POLICE]


async def test_without_a_token_or_with_a_bad_filter_nothing_is_asked_of_the_tracker(
    site: Site,
) -> None:
    async with httpx.AsyncClient(base_url=site.url) as http:
        assert (await http.get("/v1/referrals")).status_code == 401
    assert (await get(site, "dgme", "/v1/referrals", status="LOST")).status_code == 400
    assert (await get(site, "dgme", "/v1/referrals", role="both")).status_code == 400


async def test_the_gateway_answers_503_when_the_tracker_is_down(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.db.unlink()
    site.db.mkdir()  # a database that cannot be opened
    answer = await get(site, "dgme", "/v1/referrals")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"


def test_the_gateway_finds_the_tracker_on_the_port_it_was_moved_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PUENTE_GATEWAY_REFERRALS_URL", raising=False)
    monkeypatch.setenv("PUENTE_REFERRALS_HOST", "0.0.0.0")
    monkeypatch.setenv("PUENTE_REFERRALS_PORT", "19103")
    assert ReferralsLink().url == "http://127.0.0.1:19103"
    monkeypatch.setenv("PUENTE_GATEWAY_REFERRALS_URL", "http://referrals:9103")
    assert ReferralsLink().url == "http://referrals:9103"


async def test_a_referral_closed_since_the_last_check_is_no_longer_overdue(
    site: Site,
) -> None:
    store = Store.open(site.db)
    store.apply(
        [
            event(
                "REJECTED",
                "SENT",
                referral_id=HEALTH,
                receiving="minsal",
                service_group="HEALTH",
                is_minor=False,
                at=START + timedelta(hours=30),
            )
        ]
    )
    store.close()  # the deadline check has not run since: its mark is still there
    assert ids(await get(site, "minsal", "/v1/referrals", overdue="true")) == []
    [view] = (await get(site, "minsal", "/v1/referrals", role="received")).json()[
        "referrals"
    ]
    assert (view["status"], view["overdue"]) == ("REJECTED", None)
