"""Reading the deployment files the way Docker Compose and Prometheus would."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic_settings import BaseSettings

from services.acl.settings import AclSettings
from services.audit.settings import AuditSettings
from services.gateway.indicators_api import IndicatorsLink
from services.gateway.referrals_api import ReferralsLink
from services.gateway.settings import GatewaySettings
from services.indicators.settings import IndicatorsSettings
from services.referrals.settings import ReferralsSettings
from services.router.settings import RouterSettings
from services.runtime.hub_key_store import HubKeySettings
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings, TopicSettings

COMPOSE_FILE: Final = REPO_ROOT / "docker-compose.yml"
DEPLOY: Final = REPO_ROOT / "deploy"
PUENTE_DOCKERFILE: Final = "deploy/Dockerfile"
# Every settings class a Puente container reads (each with its own env prefix).
SETTINGS: Final[tuple[type[BaseSettings], ...]] = (
    HubSettings, KafkaSettings, TopicSettings, HubKeySettings, RouterSettings,
    GatewaySettings, AuditSettings, AclSettings, ReferralsSettings,
    IndicatorsSettings, IndicatorsLink, ReferralsLink,
)  # fmt: skip
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
_INTERPOLATION: Final = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")


@cache
def compose() -> dict[str, Any]:
    """The compose file as Compose reads it (YAML anchors and merge keys resolved)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    """Compose service name -> service definition."""
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def puente_services() -> dict[str, dict[str, Any]]:
    """The services that run the Puente image (built from deploy/Dockerfile)."""
    return {
        name: spec
        for name, spec in services().items()
        if spec.get("build", {}).get("dockerfile") == PUENTE_DOCKERFILE
    }


def environment(spec: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose accepts a list or a mapping)."""
    env = spec.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolated(value: str, sample: str = "sample") -> str:
    """``value`` with ``${...}`` replaced by its default, or ``sample`` if it has none."""

    def replace(match: re.Match[str]) -> str:
        kind, text = match[3], match[4]
        return text if kind == "-" else sample

    return _INTERPOLATION.sub(replace, value)


def variables(value: str) -> list[tuple[str, str | None]]:
    """The variables ``value`` interpolates: (name, default or None if required/none)."""
    return [(m[1], m[4] if m[3] == "-" else None) for m in _INTERPOLATION.finditer(value)]


def env_settings() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every environment variable a Puente setting reads -> (settings class, field)."""
    found: dict[str, tuple[type[BaseSettings], str]] = {}
    for cls in SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, info in cls.model_fields.items():
            nested = info.annotation
            if isinstance(nested, type) and issubclass(nested, BaseSettings):
                continue  # built by default_factory from its own prefix
            found[f"{prefix}{name}".upper()] = (cls, name)
    return found


def service_port(name: str) -> int:
    """The port a Puente service listens on in the compose stack."""
    env = environment(services()[name])
    key = f"PUENTE_{name.upper()}_PORT"
    if key in env:
        return int(interpolated(env[key]))
    cls, field = env_settings()[key]
    default = cls.model_fields[field].default
    assert isinstance(default, int)
    return default


def metrics_port(name: str) -> int:
    """The port a Puente service serves /metrics on (the gateway: its admin port)."""
    env = environment(services()[name])
    admin = f"PUENTE_{name.upper()}_ADMIN_PORT"
    if admin in env:
        return int(interpolated(env[admin]))
    return service_port(name)


def yaml_file(path: Path) -> Any:
    """A YAML file of the repository."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))
