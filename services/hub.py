"""The hub's assembly: which services exist and how each is built from its settings.

`puente up`, `puente run SERVICE` and the demo build services here and nowhere else.
Every service is imported by name, so mypy checks each builder against its settings
and the import graph shows what the hub is made of.

Adding a service is one entry in `SPECS` (and the two imports it names): its name,
its settings class, its ``build_service(settings, registry)`` and the paths its
operations port serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from rich.table import Table

from services.audit.app import build_service as build_audit
from services.audit.settings import AuditSettings
from services.contracts.errors import ConfigurationError
from services.gateway.app import build_service as build_gateway
from services.gateway.settings import GatewaySettings
from services.indicators.app import build_service as build_indicators
from services.indicators.settings import IndicatorsSettings
from services.referrals.app import build_service as build_referrals
from services.referrals.settings import ReferralsSettings
from services.router.app import build_service as build_router
from services.router.settings import RouterSettings
from services.runtime.broker import embedded_ledger
from services.runtime.service import Service
from services.runtime.settings import HubSettings

S = TypeVar("S")

OPS_PATHS: Final = ("/health", "/metrics")
# The gateway serves its documents and metrics on a separate admin port.
GATEWAY_PATHS: Final = ("/health",)
GATEWAY_ADMIN_PATHS: Final = ("/docs", "/metrics")


class _Listening(Protocol):
    """Settings of a service with an HTTP port."""

    @property
    def host(self) -> str:
        """The interface it listens on."""
        ...

    @property
    def port(self) -> int:
        """Its port."""
        ...


def _urls(host: str, port: int, paths: tuple[str, ...]) -> list[str]:
    return [f"http://{host}:{port}{path}" for path in paths]


def ops_endpoints(settings: _Listening) -> list[str]:
    """The health and metrics URLs of a service's operations port."""
    return _urls(settings.host, settings.port, OPS_PATHS)


def gateway_endpoints(settings: GatewaySettings) -> list[str]:
    """The gateway's public health URL and its admin port's documents and metrics."""
    return _urls(settings.host, settings.port, GATEWAY_PATHS) + _urls(
        settings.admin_host, settings.admin_port, GATEWAY_ADMIN_PATHS
    )


@dataclass(frozen=True, slots=True)
class ServiceSpec(Generic[S]):
    """A service: its name, how to read its settings, build it, and reach it."""

    name: str
    settings: Callable[[], S]
    builder: Callable[[S, CollectorRegistry], Service]
    endpoints: Callable[[S], list[str]]

    def build(self) -> Built:
        """Read the settings from the environment and build the service."""
        settings = self.settings()
        registry = CollectorRegistry()
        service = self.builder(settings, registry)
        return Built(self, service, settings, registry, self.endpoints(settings))


# Order matters: consumers of hub.audit and hub.out start before the router feeds them.
SPECS: Final[tuple[ServiceSpec[Any], ...]] = (
    ServiceSpec("audit", AuditSettings, build_audit, ops_endpoints),
    ServiceSpec("referrals", ReferralsSettings, build_referrals, ops_endpoints),
    ServiceSpec("indicators", IndicatorsSettings, build_indicators, ops_endpoints),
    ServiceSpec("router", RouterSettings, build_router, ops_endpoints),
    ServiceSpec("gateway", GatewaySettings, build_gateway, gateway_endpoints),
)


@dataclass
class Built:
    """A built service with its registry, settings and the URLs an operator opens.

    ``service`` and ``settings`` keep their own types out of this list: the demo and
    the tests reach into the one they asked for by name.
    """

    spec: ServiceSpec[Any]
    service: Any
    settings: Any
    registry: CollectorRegistry
    endpoints: list[str]


def available() -> list[ServiceSpec[Any]]:
    """Every service of the hub, in the order they start."""
    return list(SPECS)


def spec_named(name: str) -> ServiceSpec[Any]:
    """The spec of service ``name``; a clear error if there is no such service."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    names = ", ".join(spec.name for spec in SPECS)
    raise ConfigurationError(f"no service {name!r}; available: {names}")


def build(spec: ServiceSpec[Any]) -> Built:
    """Read the service's settings from the environment and build it."""
    return spec.build()


def endpoints_table(built: list[Built], embedded: str | None) -> Table:
    """What is running where (printed by `puente up` and the demo)."""
    table = Table("service", "endpoints", title="Puente is up")
    if embedded:
        table.add_row("kafka (embedded)", f"PUENTE_KAFKA_BOOTSTRAP_SERVERS={embedded}")
        ledger = embedded_ledger(HubSettings().state_dir)
        table.add_row("audit ledger", f"{ledger} (puente audit finds it)")
    for item in built:
        table.add_row(item.spec.name, "  ".join(item.endpoints))
    return table
