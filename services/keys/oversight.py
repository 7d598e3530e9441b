"""Who may compute a person's subject keys: the oversight role.

A subject key links a person to every disclosure about them, so computing one from
an identity document is for a data-subject (ARCO) request, answered by oversight
(the data protection officer, the supervisory authority).
"""

from __future__ import annotations

import logging

from services.contracts.errors import PuenteError
from services.keys.environment import PRODUCTION, current_environment

log = logging.getLogger(__name__)


class OversightRequiredError(PuenteError):
    """The caller did not show the oversight role."""


def authorise(credential: str | None, *, attested: bool) -> str:
    """Who is acting, for the record; `OversightRequiredError` if nobody may.

    No credential store with roles exists in this release, so a credential cannot
    be checked: in production the operator must attest acting for oversight
    (``--operator-attests-oversight``); in development the request is allowed.
    """
    if credential is not None:
        raise OversightRequiredError(
            "--oversight-credential cannot be checked: this hub has no credential "
            "store with roles; use --operator-attests-oversight"
        )
    if attested:
        return "an operator attesting to act for oversight"
    if current_environment() == PRODUCTION:
        raise OversightRequiredError(
            "subject keys are for the oversight role: PUENTE_ENV=production needs "
            "--operator-attests-oversight"
        )
    log.warning("subject keys computed without an oversight role (development)")
    return "a development operator"
