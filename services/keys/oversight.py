"""Who may compute a person's subject keys: the oversight role.

A subject key links a person to every disclosure about them, so computing one from
an identity document is for a data-subject (ARCO) request, answered by oversight
(the data protection officer, the supervisory authority). The proof is a credential
of the audit API with the role ``oversight``, checked against the audit service's
credential store, the same one the audit API checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from services.audit.credentials import CredentialStore, Role
from services.audit.settings import AuditSettings
from services.contracts.errors import PuenteError
from services.keys.environment import PRODUCTION, current_environment
from services.runtime.settings import Environment

CREDENTIAL_ENV: Final = "PUENTE_OVERSIGHT_CREDENTIAL"
log = logging.getLogger(__name__)


class OversightRequiredError(PuenteError):
    """The caller did not show the oversight role."""


def authorise(
    credential: str | None,
    *,
    attested: bool,
    env: Environment | None = None,
    store: Path | None = None,
) -> str:
    """Who is acting, for the record; `OversightRequiredError` if nobody may.

    A credential must be a live audit credential of role ``oversight``. Without
    one, only outside production may an operator attest to act for oversight.
    """
    if credential is not None:
        return _oversight(credential, store or AuditSettings().credentials_file)
    if (env or current_environment()) == PRODUCTION:
        raise OversightRequiredError(
            "subject keys are for the oversight role: give --oversight-credential "
            f"(or {CREDENTIAL_ENV}), an audit credential of role oversight"
        )
    if not attested:
        raise OversightRequiredError(
            "subject keys are for the oversight role: give --oversight-credential, "
            "or (outside production) --operator-attests-oversight"
        )
    log.warning("subject keys computed on an operator's word (development)")
    return "an operator attesting to act for oversight (development)"


def _oversight(token: str, path: Path) -> str:
    if not path.exists():
        # Opening the store would create an empty one; there is nothing to check.
        raise OversightRequiredError(
            f"no audit credential store at {path}: `puente audit credential create "
            "--role oversight` where the audit service keeps its state"
        )
    store = CredentialStore(path)
    try:
        found = store.check(token.strip())
    finally:
        store.close()
    if found is None or found.role is not Role.OVERSIGHT:
        raise OversightRequiredError(
            "the credential is not a live audit credential of role oversight "
            "(`puente audit credential list` shows them)"
        )
    return f"oversight credential {found.id}"
