"""Many SQLite rows written with few statements.

``executemany`` steps once per row and gives the GIL up around every step. From a
worker thread beside a busy event loop, taking it back waits for the loop thread's
switch interval each time: the router's 500-row de-duplication write took 150 ms
that way, and ~20 ms as one statement.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

# Bounds the statement text (and the statement cache) for very large batches.
MAX_ROWS_PER_STATEMENT: Final = 5000


def insert_rows(
    db: sqlite3.Connection,
    head: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> None:
    """Run ``{head} VALUES (?,..),(?,..)... {tail}`` over ``rows``, in few statements.

    ``head`` is e.g. ``INSERT OR IGNORE INTO seen``, ``tail`` e.g. an
    ``ON CONFLICT`` clause; every row has the same number of values. The caller
    owns the transaction.
    """
    if not rows:
        return
    width = len(rows[0])
    per_statement = _rows_per_statement(db, width)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = [v for row in chunk for v in row]
        db.execute(_statement(head, width, len(chunk), tail), values)


def _rows_per_statement(db: sqlite3.Connection, width: int) -> int:
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(limit // max(width, 1), MAX_ROWS_PER_STATEMENT))


@functools.lru_cache(maxsize=128)
def _statement(head: str, width: int, count: int, tail: str) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([row] * count)} {tail}".rstrip()
