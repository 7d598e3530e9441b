"""Compose the hub: which services exist, how to build them, the embedded broker."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry

from services.contracts.errors import ConfigurationError
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings

BOOTSTRAP_ENV: Final = "PUENTE_KAFKA_BOOTSTRAP_SERVERS"
# State tied to what one broker holds (its offsets and event ids); kept per run when
# the broker keeps nothing across a restart. Set only where the operator did not.
STATE_ENV: Final = {
    "PUENTE_ROUTER_DEDUPE_PATH": "router-dedupe.sqlite",
    "PUENTE_AUDIT_LEDGER_PATH": "audit-ledger.sqlite",
    "PUENTE_REFERRALS_DB_PATH": "referrals.sqlite",
}
# Where `puente up` keeps broker-bound state when it runs the embedded broker.
EMBEDDED_STATE: Final = "embedded"


def embedded_ledger(state_dir: Path) -> Path:
    """The audit ledger a `puente up` on the embedded broker writes."""
    return state_dir / EMBEDDED_STATE / STATE_ENV["PUENTE_AUDIT_LEDGER_PATH"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Where a service's settings and builder live, and what it serves."""

    name: str
    module: str
    settings: str
    paths: tuple[str, ...]


_ADMIN: Final = ("/docs", "/metrics")
# Order matters: consumers of hub.audit and hub.out start before the router feeds them.
SPECS: Final = (
    ServiceSpec("audit", "services.audit", "AuditSettings", ("/health", "/metrics")),
    ServiceSpec(
        "referrals", "services.referrals", "ReferralsSettings", ("/health", "/metrics")
    ),
    ServiceSpec("router", "services.router", "RouterSettings", ("/health", "/metrics")),
    ServiceSpec("gateway", "services.gateway", "GatewaySettings", ("/health",)),
)


@dataclass
class Built:
    """A built service with its registry and settings."""

    spec: ServiceSpec
    service: Any
    settings: Any
    registry: CollectorRegistry

    @property
    def endpoints(self) -> list[str]:
        """URLs an operator opens."""
        host = getattr(self.settings, "host", "127.0.0.1")
        urls = [f"http://{host}:{self.settings.port}{p}" for p in self.spec.paths]
        # The gateway serves its documents and metrics on a separate admin port.
        admin = getattr(self.settings, "admin_port", None)
        if admin is not None:
            urls += [f"http://{self.settings.admin_host}:{admin}{p}" for p in _ADMIN]
        return urls


def available() -> list[ServiceSpec]:
    """The services present in this checkout (others are built later)."""
    present = []
    for spec in SPECS:
        try:
            importlib.import_module(f"{spec.module}.app")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(spec.module):
                continue
            raise
        present.append(spec)
    return present


def spec_named(name: str) -> ServiceSpec:
    """The spec of service ``name``; a clear error if there is no such service."""
    names = [s.name for s in available()]
    for spec in available():
        if spec.name == name:
            return spec
    raise ConfigurationError(f"no service {name!r}; available: {', '.join(names)}")


def build(spec: ServiceSpec) -> Built:
    """Read the service's settings from the environment and build it."""
    settings_cls = getattr(
        importlib.import_module(f"{spec.module}.settings"), spec.settings
    )
    builder = importlib.import_module(f"{spec.module}.app").build_service
    settings = settings_cls()
    registry = CollectorRegistry()
    return Built(spec, builder(settings, registry), settings, registry)


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
