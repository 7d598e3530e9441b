"""`puente up` on the embedded broker, as `make demo`'s default runs the hub.

One `puente up` process (router, gateway, audit and referral tracker on an embedded
broker it starts itself) for the module: an event posted over HTTP and one published
over Kafka are each delivered (tailed back from a recipient's topic), audited (the
ledger names their recipients) and, for the referral, applied by the tracker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway.tokens import TokenStore
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT

pytestmark = [pytest.mark.smoke, pytest.mark.slow, pytest.mark.timeout(240)]
# Views whose deliveries keep the source's event id (the others are re-keyed).
SHARED_ID_VIEWS = frozenset({"FULL", "IDENT"})
START_TIMEOUT = 120.0
ARRIVAL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Up:
    """A running `puente up` and how to reach it."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    ports: dict[str, int]
    token: str

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def health(self, service: str) -> dict[str, Any]:
        """The service's /health document (empty while it does not answer)."""
        try:
            response = httpx.get(f"{self.url(service)}/health", timeout=5)
        except httpx.HTTPError:
            return {}
        return dict(response.json()) if response.status_code == 200 else {}

    def puente(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `puente` command against the running hub's broker and state."""
        return subprocess.run(
            [sys.executable, "-m", "services", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
        )


def up_env(state: Path, ports: dict[str, int]) -> dict[str, str]:
    """A private state dir and free ports; no configured cluster (up starts one)."""
    env = {
        **os.environ,
        "PUENTE_STATE_DIR": str(state),
        "PUENTE_KAFKA_EMBEDDED_PORT": str(ports["kafka"]),
        "PUENTE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    for service in ("router", "gateway", "audit", "referrals"):
        env[f"PUENTE_{service.upper()}_PORT"] = str(ports[service])
    env["PUENTE_GATEWAY_ADMIN_PORT"] = str(ports["gateway_admin"])
    for name in [n for n in env if n.startswith("PUENTE_KAFKA_") and "EMBEDDED" not in n]:
        del env[name]
    for name in (
        "PUENTE_ROUTER_DEDUPE_PATH",
        "PUENTE_AUDIT_LEDGER_PATH",
        "PUENTE_REFERRALS_DB_PATH",
    ):
        env.pop(name, None)
    return env


def wait_for(check: Any, seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    pytest.fail(f"{what} within {seconds:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (up stops its services and the embedded broker), SIGKILL if stuck."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    state = tmp_path_factory.mktemp("up-state")
    names = ("kafka", "router", "gateway", "gateway_admin", "audit", "referrals")
    ports = {name: free_port() for name in names}
    store = TokenStore(state / "gateway" / "tokens.sqlite")
    _, token = store.create("dgme")
    store.close()
    env = up_env(state, ports)
    log = (state / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "up"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = Up(process, env, ports, token)
    env["PUENTE_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{ports['kafka']}"
    try:

        def serving() -> bool:
            assert process.poll() is None, (state / "up.log").read_text()[-3000:]
            services = ("router", "gateway", "audit", "referrals")
            return all(running.health(s).get("ok") for s in services)

        wait_for(serving, START_TIMEOUT, "puente up did not serve")
        yield running
    finally:
        stop(process)
        log.close()
    assert process.returncode == 0, (state / "up.log").read_text()[-3000:]
    assert "Puente is up" in (state / "up.log").read_text()


def audited(up: Up, event_id: str) -> dict[str, Any]:
    """`puente audit who-received` once the ledger names a recipient, as JSON."""

    def answer() -> dict[str, Any] | None:
        result = up.puente("audit", "who-received", event_id, "--json")
        if result.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found if found.get("recipients") else None

    return dict(wait_for(answer, ARRIVAL_TIMEOUT, f"no audit entry of {event_id}"))


def tailed(up: Up, event_type: str, answer: dict[str, Any]) -> list[str]:
    """Event ids on the topic of a recipient that received the source's event id."""
    recipients = sorted(
        {
            d["recipient_institution_id"]
            for d in answer["decisions"]
            if d["decision"] == "delivered" and d["view"] in SHARED_ID_VIEWS
        }
    )
    assert recipients, answer
    topic = f"hub.out.{recipients[0]}.{event_type}"
    result = up.puente("tail", topic, "--from-beginning")
    assert result.returncode == 0, result.stderr
    return [
        json.loads(line)["envelope"]["event_id"] for line in result.stdout.splitlines()
    ]


def test_an_event_posted_over_http_is_delivered_tailed_and_audited(
    up: Up, catalog: Catalog
) -> None:
    event = minimal_event(catalog.get("return_arrival"), "dgme")
    event_id = event["envelope"]["event_id"]

    response = httpx.post(
        f"{up.url('gateway')}/v1/events/return_arrival",
        json=event,
        headers={"Authorization": f"Bearer {up.token}"},
        timeout=30,
    )

    assert response.status_code == 202, response.text
    answer = audited(up, event_id)
    assert answer["event_id"] == event_id
    assert event_id in tailed(up, "return_arrival", answer)


def test_a_referral_published_over_kafka_is_delivered_audited_and_tracked(
    up: Up, tmp_path: Path
) -> None:
    event = json.loads((REPO_ROOT / "examples" / "referral.json").read_text())
    event_id = event["envelope"]["event_id"] = str(uuid.uuid4())
    source = event["envelope"]["source_institution_id"]
    path = tmp_path / "referral.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    applied_before = int(up.health("referrals")["applied"])

    published = up.puente("publish", "referral", str(path), "--as", source)

    assert published.returncode == 0, published.stderr
    assert published.stdout.split() == [event_id]
    answer = audited(up, event_id)
    assert event_id in tailed(up, "referral", answer)
    wait_for(
        lambda: int(up.health("referrals")["applied"]) > applied_before,
        ARRIVAL_TIMEOUT,
        "the tracker applied no referral",
    )
