"""The broker the hub runs on from one machine, and the state bound to that broker.

``puente up`` (and the demo) use the configured cluster or start an embedded broker;
state that only makes sense with one broker's offsets and event ids is then kept per
run. Which services run, and how each is built, is `services.hub`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings

BOOTSTRAP_ENV: Final = "PUENTE_KAFKA_BOOTSTRAP_SERVERS"
# State tied to what one broker holds (its offsets and event ids); kept per run when
# the broker keeps nothing across a restart. Set only where the operator did not.
STATE_ENV: Final = {
    "PUENTE_ROUTER_DEDUPE_PATH": "router-dedupe.sqlite",
    "PUENTE_AUDIT_LEDGER_PATH": "audit-ledger.sqlite",
    "PUENTE_REFERRALS_DB_PATH": "referrals.sqlite",
    "PUENTE_INDICATORS_DB_PATH": "indicators.sqlite",
}
# Where `puente up` keeps broker-bound state when it runs the embedded broker.
EMBEDDED_STATE: Final = "embedded"


def embedded_ledger(state_dir: Path) -> Path:
    """The audit ledger a `puente up` on the embedded broker writes."""
    return state_dir / EMBEDDED_STATE / STATE_ENV["PUENTE_AUDIT_LEDGER_PATH"]


@contextlib.contextmanager
def kafka_or_embedded() -> Iterator[tuple[str, EmbeddedBroker | None]]:
    """The configured cluster, or an embedded broker exported via the environment."""
    configured = KafkaSettings()
    if configured.bootstrap_servers:
        yield configured.bootstrap_servers, None
        return
    with EmbeddedBroker(port=configured.embedded_port) as broker:
        os.environ[BOOTSTRAP_ENV] = broker.bootstrap_servers
        try:
            yield broker.bootstrap_servers, broker
        finally:
            os.environ.pop(BOOTSTRAP_ENV, None)


@contextlib.contextmanager
def ephemeral_state(state_dir: Path, name: str) -> Iterator[Path]:
    """Point broker-bound state (dedupe store, ledger) at a fresh ``state_dir/name``.

    The embedded broker forgets every topic and offset on restart; a ledger or
    dedupe store kept from an earlier run would point at offsets and ids it no
    longer has. Keys, gateway tokens and the outbox stay where they are.
    """
    folder = state_dir / name
    mine = [env for env in STATE_ENV if env not in os.environ]
    if mine:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    for env in mine:
        os.environ[env] = str(folder / STATE_ENV[env])
    try:
        yield folder
    finally:
        for env in mine:
            os.environ.pop(env, None)
