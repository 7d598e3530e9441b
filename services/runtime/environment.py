"""What ``PUENTE_ENV`` allows: explicit keys in production, announced dev keys otherwise.

A development key is one the hub generates for itself under the state directory. In
production that would be a secret nobody chose, backed up nowhere and readable by
whoever reads the volume, so a service refuses to start instead. In development the
key keeps working, and its use is logged once per process and kind of key.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from services.contracts.errors import ConfigurationError
from services.runtime.settings import Environment, HubSettings

PRODUCTION: Final = "production"
log = logging.getLogger(__name__)
_announced: set[str] = set()
_lock = threading.Lock()


class ExplicitKeyRequiredError(ConfigurationError):
    """``PUENTE_ENV=production`` and a key is not configured explicitly."""


def current_environment() -> Environment:
    """``PUENTE_ENV`` as set in the environment (``development`` if unset)."""
    return HubSettings().env


def allow_development_key(
    what: str, settings_hint: str, env: Environment | None = None
) -> None:
    """Refuse a development key in production; in development, announce it once.

    ``what`` names the key ("hub key"), ``settings_hint`` the settings that would
    configure it explicitly. Neither the key nor its path is ever in the message.
    """
    if (env or current_environment()) == PRODUCTION:
        raise ExplicitKeyRequiredError(
            f"PUENTE_ENV=production and no {what} is configured: set {settings_hint} "
            "(development keys are never used in production)"
        )
    with _lock:
        if what in _announced:
            return
        _announced.add(what)
    log.warning(
        "using a development %s from the state directory; set %s "
        "(and PUENTE_ENV=production) for real data",
        what,
        settings_hint,
    )
