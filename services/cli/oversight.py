"""Who may compute a person's subject keys: the oversight role.

A subject key links a person to every disclosure about them, so computing one from
an identity document is for a data-subject (ARCO) request, answered by oversight
(the data protection officer, the supervisory authority). The proof is a credential
of the audit API with the role ``oversight``, checked against the audit service's
credential store, the same one the audit API checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.audit import querylog
from services.audit.credentials import CredentialStore, Role
from services.audit.settings import AuditSettings
from services.contracts.errors import PuenteError
from services.runtime.environment import PRODUCTION, current_environment
from services.runtime.settings import Environment

CREDENTIAL_ENV: Final = "PUENTE_OVERSIGHT_CREDENTIAL"
QUERY: Final = "subject-key"
ANSWERED: Final = 200  # the query log's outcomes are HTTP status codes
log = logging.getLogger(__name__)


class OversightRequiredError(PuenteError):
    """The caller did not show the oversight role."""


class RequestNotRecordedError(PuenteError):
    """A data-subject request could not be written to the audit query log."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who computes subject keys: an oversight credential, or an attesting operator."""

    credential_id: str
    role: str

    @property
    def has_credential(self) -> bool:
        """Whether an audit credential vouched for the role."""
        return self.role == Role.OVERSIGHT.value

    def __str__(self) -> str:
        return f"{self.role} {self.credential_id}"


def authorise(
    credential: str | None,
    *,
    attested: bool,
    env: Environment | None = None,
    store: Path | None = None,
) -> Requester:
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
    return Requester("operator", "operator")


def record_request(requester: Requester, subject_key: str) -> None:
    """Write the request to the audit query log, as the audit API logs its questions.

    The logged key is the person's newest subject key (what `subject-report` is
    asked with), never the document. With a credential the request must be logged
    or it is not answered; an operator's development request is logged when a
    ledger is at hand.
    """
    ledger = AuditSettings().ledger_file
    if not ledger.is_file():
        if requester.has_credential:
            raise RequestNotRecordedError(
                f"no audit ledger at {ledger} to record the request in; run this "
                "where the ledger is, or set PUENTE_AUDIT_LEDGER_PATH"
            )
        log.warning("no audit ledger at hand: the request is not in the query log")
        return
    asked = querylog.Asked(
        querylog.now(), requester.credential_id, requester.role, None, QUERY,
        subject_key, ANSWERED,
    )  # fmt: skip
    querylog.record(ledger, asked)


def _oversight(token: str, path: Path) -> Requester:
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
    return Requester(found.id, found.role.value)
