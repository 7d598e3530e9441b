"""Ways an insider with write access to the ledger file could tamper with it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from services.audit.chain import GENESIS, link

_TRIGGERS = (
    "entries_append_only_update",
    "entries_append_only_delete",
    "checkpoints_append_only_update",
    "checkpoints_append_only_delete",
)


def tamper(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Drop the append-only triggers (as an insider would) and run ``statements``."""
    db = sqlite3.connect(path)
    for trigger in _TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()


def entry_bytes(path: Path, seq: int) -> bytes:
    """The stored canonical bytes of entry ``seq``."""
    db = sqlite3.connect(path)
    (value,) = db.execute("SELECT entry FROM entries WHERE seq = ?", (seq,)).fetchone()
    db.close()
    return bytes(value)


def rewrite_and_rehash(path: Path, seq: int, change: Callable[[bytes], bytes]) -> None:
    """Change entry ``seq`` and recompute every hash after it: a consistent chain."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, entry FROM entries ORDER BY seq").fetchall()
    previous = GENESIS
    updates = []
    for number, stored in rows:
        data = change(bytes(stored)) if number == seq else bytes(stored)
        digest = link(previous, data)
        updates.append(
            (
                "UPDATE entries SET entry=?, prev_hash=?, hash=? WHERE seq=?",
                (data, previous, digest, number),
            )
        )
        previous = digest
    db.close()
    tamper(path, *updates)
