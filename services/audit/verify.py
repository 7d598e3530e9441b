"""Verify a ledger, pure: recompute the chain, check every checkpoint signature.

Each entry is checked against the stored values around it, so one tampering shows
up where it happened instead of breaking everything after it:

- ``seq_gap``: sequence numbers are not 1, 2, 3, ... (an entry was removed);
- ``prev_link_broken``: an entry's prev hash is not the previous entry's hash
  (entries were reordered, removed or inserted);
- ``hash_mismatch``: ``SHA-256(prev || bytes)`` is not the stored hash (the entry's
  bytes were changed);
- ``columns_mismatch``: the indexed query columns disagree with the entry's bytes;
- ``signature_invalid`` / ``unknown_key``: a checkpoint's signature does not verify
  with the trusted key (the stored one, or the pinned ones);
- ``checkpoint_head_mismatch``: a validly signed head is not the chain's hash at
  that seq (entries up to it were rewritten and re-hashed after it was signed);
- ``checkpoint_beyond_chain``: a checkpoint covers entries the ledger no longer has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from services.audit.chain import (
    GENESIS,
    NotAnAuditEntryError,
    columns_of,
    link,
    parse_canonical,
)
from services.audit.checkpoints import Checkpoint
from services.audit.ledger import Row

ProblemKind = Literal[
    "seq_gap",
    "prev_link_broken",
    "hash_mismatch",
    "columns_mismatch",
    "signature_invalid",
    "unknown_key",
    "checkpoint_head_mismatch",
    "checkpoint_beyond_chain",
]
# At the same seq, entry problems come first, in the order a reader would fix them.
_ORDER: Final[tuple[ProblemKind, ...]] = (
    "seq_gap",
    "prev_link_broken",
    "hash_mismatch",
    "columns_mismatch",
    "signature_invalid",
    "unknown_key",
    "checkpoint_head_mismatch",
    "checkpoint_beyond_chain",
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not hold, at entry or checkpoint ``seq``."""

    kind: ProblemKind
    seq: int
    detail: str

    @property
    def on(self) -> Literal["entry", "checkpoint"]:
        """Whether the problem is found on an entry or on a checkpoint."""
        return "checkpoint" if self.kind in _ORDER[4:] else "entry"

    def __str__(self) -> str:
        return f"{self.on} {self.seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a verification."""

    entries: int
    head_seq: int
    head: bytes
    checkpoints: int
    last_checkpoint_seq: int
    trusted_keys: Mapping[str, bytes]
    pinned: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The first broken place, in ledger order."""
        return self.problems[0] if self.problems else None

    @property
    def uncovered(self) -> int:
        """Entries after the last checkpoint (not yet protected by a signature)."""
        return max(self.head_seq - self.last_checkpoint_seq, 0)


def verify(
    rows: Iterable[Row],
    checkpoints: Iterable[Checkpoint],
    stored_keys: Mapping[str, bytes],
    pinned_keys: Mapping[str, bytes] | None = None,
) -> Report:
    """Check the chain of ``rows`` and every checkpoint (see the module docstring)."""
    trusted = dict(pinned_keys if pinned_keys is not None else stored_keys)
    points = sorted(checkpoints, key=lambda c: c.seq)
    problems = [p for c in points if (p := _signature_problem(c, trusted, pinned_keys))]
    wanted = {c.seq for c in points}
    hashes: dict[int, bytes] = {}
    count, last, previous = 0, 0, GENESIS
    for row in rows:
        count += 1
        problems.extend(_entry_problems(row, last + 1, previous))
        if row.seq in wanted:
            hashes[row.seq] = row.hash
        last, previous = row.seq, row.hash
    problems.extend(p for c in points if (p := _head_problem(c, hashes, last)))
    problems.sort(key=lambda p: (p.seq, _ORDER.index(p.kind)))
    return Report(
        entries=count,
        head_seq=last,
        head=previous,
        checkpoints=len(points),
        last_checkpoint_seq=points[-1].seq if points else 0,
        trusted_keys=trusted,
        pinned=pinned_keys is not None,
        problems=problems,
    )


def _entry_problems(row: Row, expected_seq: int, previous: bytes) -> list[Problem]:
    found = []
    if row.seq != expected_seq:
        missing = row.seq - expected_seq
        detail = f"expected seq {expected_seq}, found {row.seq} " + (
            f"({missing} entries missing)" if missing > 0 else "(out of order)"
        )
        found.append(Problem("seq_gap", row.seq, detail))
    if row.prev_hash != previous:
        found.append(
            Problem(
                "prev_link_broken",
                row.seq,
                f"prev hash {row.prev_hash.hex()[:16]}… is not the hash of the entry "
                f"before it ({previous.hex()[:16]}…)",
            )
        )
    if link(row.prev_hash, row.entry) != row.hash:
        found.append(
            Problem(
                "hash_mismatch",
                row.seq,
                "SHA-256(prev || entry bytes) is not the stored hash",
            )
        )
    elif disagreement := _columns_detail(row):
        found.append(Problem("columns_mismatch", row.seq, disagreement))
    return found


def _columns_detail(row: Row) -> str | None:
    try:
        derived = columns_of(parse_canonical(row.entry))
    except NotAnAuditEntryError as e:
        return str(e)
    if derived == row.columns:
        return None
    differing = [
        f.name
        for f in dataclasses.fields(derived)
        if getattr(derived, f.name) != getattr(row.columns, f.name)
    ]
    return f"query columns {', '.join(differing)} disagree with the entry bytes"


def _signature_problem(
    point: Checkpoint, trusted: Mapping[str, bytes], pinned: Mapping[str, bytes] | None
) -> Problem | None:
    key = trusted.get(point.key_id)
    if key is None:
        where = "among the pinned keys" if pinned is not None else "in the ledger"
        return Problem(
            "unknown_key", point.seq, f"signing key {point.key_id} is not {where}"
        )
    if not point.valid_under(key):
        return Problem(
            "signature_invalid",
            point.seq,
            f"signature does not verify with key {point.key_id}",
        )
    return None


def _head_problem(
    point: Checkpoint, hashes: Mapping[int, bytes], last: int
) -> Problem | None:
    if point.seq > last:
        return Problem(
            "checkpoint_beyond_chain",
            point.seq,
            f"checkpoint covers seq {point.seq} but the ledger ends at {last}",
        )
    actual = hashes.get(point.seq)
    if actual is None:
        return Problem(
            "checkpoint_head_mismatch", point.seq, f"entry {point.seq} is missing"
        )
    if actual != point.head:
        return Problem(
            "checkpoint_head_mismatch",
            point.seq,
            f"signed head {point.head.hex()[:16]}… is not the chain hash "
            f"{actual.hex()[:16]}… at that seq",
        )
    return None
