"""The three questions, through the library, the CLI and the HTTP API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.audit import queries
from services.audit.api import ApiConfig, audit_app, reading
from services.audit.cli import app
from services.audit.credentials import CredentialStore, Role
from services.audit.keys import key_id, raw_public
from services.audit.ledger import Ledger
from services.contracts.catalog import Catalog
from services.contracts.errors import InvalidIdError
from tests.unit.audit.support import OTHER_SUBJECT, SUBJECT, T0, entry, prepared

runner = CliRunner()
EVENT = uuid.UUID("5f0c3c1e-8d43-4b5e-9d6a-0c1d2e3f4a5b")


@pytest.fixture
def story(ledger_path: Path, catalog: Catalog) -> Path:
    """One event to three recipients (one withheld), plus other traffic."""
    datums = [
        entry(EVENT, "conapina", at=T0),
        entry(EVENT, "minsal", view="IDENT", at=T0, rule_id="ra_health"),
        entry(EVENT, "mtps", decision="withheld", at=T0, rule_id="ra_jobs"),
        entry(None, "conapina", view="PSEUDO", event_type="border_crossing",
              at=T0 + timedelta(days=1), subject_key=OTHER_SUBJECT),
        entry(None, "conapina", at=T0 + timedelta(days=2)),
    ]  # fmt: skip
    ledger = Ledger.open_writer(ledger_path)
    ledger.append([prepared(catalog, d) for d in datums], [], {("hub.audit", 0): 5})
    ledger.close()
    return ledger_path


def http(ledger_path: Path) -> httpx.AsyncClient:
    """An oversight client of the API over ``ledger_path``."""
    credentials = ledger_path.parent / "credentials.sqlite"
    store = CredentialStore(credentials)
    _, token = store.create(Role.OVERSIGHT)
    store.close()
    public = raw_public(Ed25519PrivateKey.generate())
    config = ApiConfig(ledger_path, credentials, {key_id(public): public})
    api = audit_app(config, CollectorRegistry(), lambda: {"ok": True})
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://audit",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest_asyncio.fixture
async def client(story: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with http(story) as c:
        yield c


def test_who_received_lists_delivered_recipients_and_every_decision(story: Path) -> None:
    with reading(story) as ledger:
        result = queries.who_received(ledger, str(EVENT).upper())
    assert result.event_id == str(EVENT)
    assert result.recipients == ["conapina", "minsal"]
    assert [(d.recipient_institution_id, d.decision) for d in result.decisions] == [
        ("conapina", "delivered"),
        ("minsal", "delivered"),
        ("mtps", "withheld"),
    ]
    assert result.decisions[2].withheld_reason == "consent_scope_missing"


def test_received_counts_deliveries_by_event_type_and_view_in_a_window(
    story: Path,
) -> None:
    with reading(story) as ledger:
        everything = queries.received(ledger, "conapina")
        window = queries.received(ledger, "conapina", T0, T0 + timedelta(days=2))
    assert [(c.event_type, c.view, c.count) for c in everything.counts] == [
        ("border_crossing", "PSEUDO", 1),
        ("return_arrival", "FULL", 2),
    ]
    assert everything.total == 3
    assert window.total == 2  # until is exclusive
    assert window.since == "2025-03-01T12:00:00.000Z"
    assert {e.event_type for e in window.entries} == {"return_arrival", "border_crossing"}


def test_received_reports_truncation_past_the_limit(story: Path) -> None:
    with reading(story) as ledger:
        result = queries.received(ledger, "conapina", limit=1)
    assert (result.total, len(result.entries), result.truncated) == (3, 1, True)


def test_the_subject_report_names_institutions_rules_purposes_and_fields(
    story: Path,
) -> None:
    with reading(story) as ledger:
        report = queries.subject_report(ledger, SUBJECT)
    assert [(i.institution, i.deliveries) for i in report.institutions] == [
        ("conapina", 2),
        ("minsal", 1),
    ]
    first = report.disclosures[0]
    assert first.purpose == "CHILD_PROTECTION"
    assert first.legal_basis == "BEST_INTEREST_OF_CHILD"
    assert first.rule_id == "ra_minors_conapina"
    assert first.disclosed_fields == ["envelope.event_id", "payload.person_profile.age"]
    assert all(d.decision == "delivered" for d in report.disclosures)


def test_malformed_query_arguments_are_refused(story: Path) -> None:
    with reading(story) as ledger:
        with pytest.raises(queries.QueryError, match="UUID"):
            queries.who_received(ledger, "not-a-uuid")
        with pytest.raises(InvalidIdError):
            queries.received(ledger, "Not An Id")
        with pytest.raises(queries.QueryError, match="before"):
            queries.received(ledger, "conapina", T0, T0)


def test_the_cli_answers_who_received_as_json(story: Path) -> None:
    result = runner.invoke(
        app, ["who-received", str(EVENT), "--ledger", str(story), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["recipients"] == ["conapina", "minsal"]


def test_the_cli_answers_received_with_a_table(story: Path) -> None:
    result = runner.invoke(
        app,
        ["received", "--institution", "conapina", "--since", "2025-03-02T00:00:00Z",
         "--ledger", str(story)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "border_crossing" in result.output
    assert "total" in result.output


def test_the_cli_refuses_a_time_without_an_offset(story: Path) -> None:
    result = runner.invoke(
        app,
        ["received", "--institution", "conapina", "--since", "2025-03-02T00:00:00",
         "--ledger", str(story)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "offset" in result.output


def test_the_cli_subject_report_lists_each_disclosure(story: Path) -> None:
    result = runner.invoke(
        app, ["subject-report", SUBJECT, "--ledger", str(story), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["disclosures"]) == 3
    assert report["institutions"][1]["institution"] == "minsal"


async def test_the_http_api_answers_the_three_questions_and_verify(
    client: httpx.AsyncClient,
) -> None:
    recipients = await client.get(f"/v1/events/{EVENT}/recipients")
    assert recipients.status_code == 200
    assert recipients.json()["recipients"] == ["conapina", "minsal"]
    received = await client.get(
        "/v1/institutions/conapina/received",
        params={"since": "2025-03-02T00:00:00Z", "until": "2025-03-10T00:00:00Z"},
    )
    assert received.status_code == 200
    assert received.json()["total"] == 2
    report = await client.get(f"/v1/subjects/{SUBJECT}/report")
    assert [i["institution"] for i in report.json()["institutions"]] == [
        "conapina",
        "minsal",
    ]
    verified = await client.get("/v1/verify")
    assert verified.json()["ok"] is True
    assert verified.json()["entries"] == 5


async def test_the_http_api_answers_bad_queries_with_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/events/nope/recipients")
    assert response.status_code == 400
    assert "UUID" in response.json()["detail"]


async def test_the_http_api_answers_503_when_there_is_no_ledger(tmp_path: Path) -> None:
    async with http(tmp_path / "none.sqlite") as c:
        response = await c.get(f"/v1/events/{EVENT}/recipients")
    assert response.status_code == 503
