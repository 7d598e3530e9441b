"""The audit API over real HTTP: a role credential for every question, each one logged."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.audit import querylog
from services.audit.api import ApiConfig, audit_app, reading
from services.audit.cli import app
from services.audit.credentials import CredentialStore, Role
from services.audit.keys import key_id, raw_public
from services.audit.ledger import Ledger
from services.contracts.catalog import Catalog
from services.runtime.embedded import free_port
from services.runtime.ops import OpsServer
from tests.unit.audit.support import SUBJECT, T0, entry, prepared

runner = CliRunner()
EVENT = uuid.UUID("0b7a9c1e-8d43-4b5e-9d6a-0c1d2e3f4a5b")


@dataclass(frozen=True)
class Api:
    """A running audit API and a token of each kind."""

    base: str
    ledger: Path
    credentials: Path
    oversight: str
    conapina: str
    minsal: str


@pytest_asyncio.fixture
async def api(ledger_path: Path, catalog: Catalog) -> AsyncIterator[Api]:
    ledger = Ledger.open_writer(ledger_path)
    datums = [
        entry(EVENT, "conapina", at=T0),
        entry(EVENT, "minsal", view="IDENT", at=T0, rule_id="ra_health"),
    ]
    ledger.append([prepared(catalog, d) for d in datums], [], {("hub.audit", 0): 2})
    ledger.close()
    credentials = ledger_path.parent / "credentials.sqlite"
    store = CredentialStore(credentials)
    tokens = [
        store.create(Role.OVERSIGHT, label="DPO")[1],
        store.create(Role.INSTITUTION, "conapina")[1],
        store.create(Role.INSTITUTION, "minsal")[1],
    ]
    store.close()
    public = raw_public(Ed25519PrivateKey.generate())
    config = ApiConfig(ledger_path, credentials, {key_id(public): public})
    port = free_port()
    server = OpsServer(audit_app(config, CollectorRegistry(), lambda: {"ok": True}), port)
    await server.start()
    try:
        yield Api(f"http://127.0.0.1:{port}", ledger_path, credentials, *tokens)
    finally:
        await server.stop()


async def get(api: Api, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=api.base, headers=headers) as client:
        return await client.get(path)


def logged(api: Api) -> list[querylog.Asked]:
    with reading(api.ledger) as ledger:
        return querylog.read(ledger)


async def test_a_question_without_a_credential_is_refused_with_401(api: Api) -> None:
    for path in (
        f"/v1/events/{EVENT}/recipients",
        "/v1/institutions/conapina/received",
        f"/v1/subjects/{SUBJECT}/report",
        "/v1/verify",
    ):
        response = await get(api, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    wrong = await get(api, "/v1/verify", "pta_" + "0" * 64)
    assert wrong.status_code == 401


async def test_health_and_metrics_stay_open(api: Api) -> None:
    assert (await get(api, "/health")).status_code == 200
    assert (await get(api, "/metrics")).status_code == 200


async def test_oversight_may_ask_everything(api: Api) -> None:
    who = await get(api, f"/v1/events/{EVENT}/recipients", api.oversight)
    assert who.status_code == 200
    assert who.json()["recipients"] == ["conapina", "minsal"]
    report = await get(api, f"/v1/subjects/{SUBJECT}/report", api.oversight)
    assert report.status_code == 200
    assert len(report.json()["disclosures"]) == 2
    received = await get(api, "/v1/institutions/minsal/received", api.oversight)
    assert received.json()["total"] == 1
    verified = await get(api, "/v1/verify", api.oversight)
    assert verified.status_code == 200
    assert verified.json()["ok"] is True


async def test_an_institution_asking_about_another_institution_is_refused_with_403(
    api: Api,
) -> None:
    response = await get(api, "/v1/institutions/minsal/received", api.conapina)
    assert response.status_code == 403
    assert "its own institution" in response.json()["detail"]
    own = await get(api, "/v1/institutions/conapina/received", api.conapina)
    assert own.status_code == 200
    assert own.json()["total"] == 1


async def test_an_institution_sees_only_its_own_part_of_who_received(api: Api) -> None:
    response = await get(api, f"/v1/events/{EVENT}/recipients", api.minsal)
    assert response.status_code == 200
    body = response.json()
    assert body["recipients"] == ["minsal"]
    assert {d["recipient_institution_id"] for d in body["decisions"]} == {"minsal"}


async def test_an_institution_gets_no_subject_report_and_no_verification(
    api: Api,
) -> None:
    report = await get(api, f"/v1/subjects/{SUBJECT}/report", api.conapina)
    assert report.status_code == 403
    assert (await get(api, "/v1/verify", api.conapina)).status_code == 403


async def test_every_question_is_logged_with_who_asked_it(api: Api) -> None:
    await get(api, f"/v1/subjects/{SUBJECT}/report", api.oversight)
    await get(api, "/v1/institutions/minsal/received", api.conapina)
    asked = logged(api)
    assert [(a.role, a.institution, a.query, a.query_key, a.outcome) for a in asked] == [
        ("oversight", None, "subject_report", SUBJECT, 200),
        ("institution", "conapina", "received", "minsal", 403),
    ]
    store = CredentialStore(api.credentials)
    ids = {c.institution or c.role.value: c.id for c in store.all()}
    store.close()
    assert asked[0].credential_id == ids["oversight"]
    assert asked[1].credential_id == ids["conapina"]
    shown = runner.invoke(app, ["query-log", "--ledger", str(api.ledger), "--json"])
    assert shown.exit_code == 0, shown.output
    assert [q["query"] for q in json.loads(shown.output)] == [
        "subject_report",
        "received",
    ]


def test_a_question_on_the_command_line_is_logged_as_the_operator_who_asked(
    api: Api,
) -> None:
    ledger = ["--ledger", str(api.ledger), "--json"]
    report = runner.invoke(app, ["subject-report", SUBJECT, *ledger])
    assert report.exit_code == 0, report.output
    received = runner.invoke(app, ["received", "--institution", "minsal", *ledger])
    assert received.exit_code == 0, received.output
    bad = runner.invoke(app, ["who-received", "not-a-uuid", *ledger])
    assert bad.exit_code != 0
    asked = logged(api)
    assert [(a.role, a.institution, a.query, a.query_key, a.outcome) for a in asked] == [
        ("operator", None, "subject_report", SUBJECT, 200),
        ("operator", None, "received", "minsal", 200),
        ("operator", None, "who_received", "not-a-uuid", 400),
    ]
    assert all(a.credential_id.startswith("cli:") for a in asked)


async def test_the_query_log_cannot_be_rewritten(api: Api) -> None:
    await get(api, "/v1/verify", api.oversight)
    ledger = Ledger.open_writer(api.ledger)
    try:
        with pytest.raises(Exception, match="append-only"):
            ledger.db.execute("DELETE FROM queries")
    finally:
        ledger.close()


async def test_a_revoked_credential_is_refused_from_the_next_request(api: Api) -> None:
    assert (await get(api, "/v1/verify", api.oversight)).status_code == 200
    listed = runner.invoke(
        app, ["credential", "list", "--credentials", str(api.credentials), "--json"]
    )
    assert listed.exit_code == 0, listed.output
    oversight = next(c for c in json.loads(listed.output) if c["role"] == "oversight")
    assert oversight["label"] == "DPO"
    revoked = runner.invoke(
        app,
        ["credential", "revoke", oversight["id"], "--credentials", str(api.credentials)],
    )
    assert revoked.exit_code == 0, revoked.output
    assert (await get(api, "/v1/verify", api.oversight)).status_code == 401


def test_the_cli_creates_a_credential_shown_once_and_stored_hashed(
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "credentials.sqlite"
    result = runner.invoke(
        app,
        [
            "credential", "create", "--role", "institution", "--institution", "minsal",
            "--credentials", str(store_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("pta_")
    assert token.encode() not in store_path.read_bytes()
    store = CredentialStore(store_path)
    found = store.check(token)
    store.close()
    assert found is not None
    assert (found.role, found.institution) == (Role.INSTITUTION, "minsal")


def test_an_institution_credential_needs_its_institution(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "credential", "create", "--role", "institution",
            "--credentials", str(tmp_path / "c.sqlite"),
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "needs --institution" in result.output
