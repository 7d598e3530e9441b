"""The query log: who asked the ledger what, and when, in the ledger's database.

One row per question, over the audit API or the command line: the time, who asked
(an API credential's id, role and institution; on the command line ``cli:<the
operating-system account>`` with role ``operator``), the question's name, its key
(an event id, an institution id, a subject key: the question itself, nothing from
the answer) and how it ended as an HTTP status (200 answered, 400 a bad question,
403 refused, 503 the ledger unavailable). The table is append-only (triggers, see
`services.audit.ledger`). A question whose row cannot be written is not answered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

from services.audit.ledger import Ledger, LedgerError
from services.contracts.errors import ContractError, PuenteError
from services.contracts.natural import format_timestamp

_BUSY_MS: Final = 5000  # the ingesting writer holds the lock for one batch at most
MAX_KEY: Final = 200  # a logged query key is cut here (the API refuses longer ones)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asks: an API credential, or an operator on the command line."""

    id: str
    role: str
    institution: str | None = None


@dataclass(frozen=True, slots=True)
class Asked:
    """One logged question."""

    asked_at: str
    credential_id: str
    role: str
    institution: str | None
    query: str
    query_key: str | None
    outcome: int


def record(ledger_path: Path, asked: Asked) -> None:
    """Append ``asked`` to the query log of the ledger at ``ledger_path``."""
    if not ledger_path.is_file():
        raise LedgerError(f"no ledger at {ledger_path}")
    try:
        db = sqlite3.connect(ledger_path, isolation_level=None, timeout=_BUSY_MS / 1000)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open the query log of {ledger_path}: {e}") from e
    try:
        db.execute(
            "INSERT INTO queries (asked_at, credential_id, role, institution, query, "
            "query_key, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                asked.asked_at, asked.credential_id, asked.role, asked.institution,
                asked.query, asked.query_key, asked.outcome,
            ),
        )  # fmt: skip
    except sqlite3.Error as e:
        raise LedgerError(f"cannot write the query log of {ledger_path}: {e}") from e
    finally:
        db.close()


def logged(
    ledger_path: Path,
    who: Asker,
    query: str,
    key: str | None,
    answer: Callable[[], _T],
    *,
    refused: tuple[type[BaseException], ...] = (),
) -> _T:
    """``answer()``, with the question logged as it ended, before the answer leaves.

    ``refused``: the errors that mean the asker may not know the answer (403). A
    question that cannot be logged raises `LedgerError` and is not answered.
    """
    outcome = 200
    try:
        return answer()
    except refused:
        outcome = 403
        raise
    except ContractError:
        outcome = 400
        raise
    except PuenteError:
        outcome = 503
        raise
    finally:
        asked = Asked(
            now(), who.id, who.role, who.institution, query,
            key[:MAX_KEY] if key else None, outcome,
        )  # fmt: skip
        record(ledger_path, asked)


def now() -> str:
    """The current time as the log writes it."""
    return format_timestamp(datetime.now(UTC))


def read(ledger: Ledger, limit: int = 1000) -> list[Asked]:
    """The newest ``limit`` logged questions, oldest first."""
    rows = ledger.select(
        "SELECT asked_at, credential_id, role, institution, query, query_key, outcome "
        "FROM queries ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        Asked(str(a), str(c), str(r), i, str(q), k, int(o))
        for a, c, r, i, q, k, o in reversed(rows)
    ]
