"""Verify a ledger, pure: recompute the chain, check every signature, compare anchors.

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
- ``checkpoint_beyond_chain``: a checkpoint covers entries the ledger no longer has;
- ``key_rotation_refused``: a key rotation is not signed by a key trusted at its seq.

Signatures verify only with *pinned* keys (configuration) and the keys they rotated
to, never with keys stored in the ledger. The ledger is then compared with signed
heads kept outside it (*anchors*: the witness file, the checkpoint topic):

- ``anchor_untrusted``: an anchor's signature does not verify with a trusted key;
- ``forked``: at an anchored seq the ledger's chain hash is another one (its
  history was rewritten after that head was witnessed);
- ``rolled_back``: the ledger ends before the newest anchor and lacks checkpoints
  witnessed outside it (entries were cut together with their checkpoints, or an
  old copy was restored);
- ``truncated``: the ledger ends before the newest anchor but keeps every witnessed
  checkpoint (entries were cut from its end, past its last checkpoint);
- ``ledger_replaced``: every anchor found is of another ledger id.

Against Kafka (`topic_problems`), the audit topic read to its end:

- ``records_skipped``: the ledger refused records of the audit topic;
- ``not_in_ledger``: the audit topic holds entries the ledger lacks.
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
from services.audit.rotation import Keyring, Rotation

ProblemKind = Literal[
    "seq_gap",
    "prev_link_broken",
    "hash_mismatch",
    "columns_mismatch",
    "signature_invalid",
    "unknown_key",
    "checkpoint_head_mismatch",
    "checkpoint_beyond_chain",
    "key_rotation_refused",
    "anchor_untrusted",
    "forked",
    "rolled_back",
    "truncated",
    "ledger_replaced",
    "records_skipped",
    "not_in_ledger",
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
    "key_rotation_refused",
    "anchor_untrusted",
    "forked",
    "rolled_back",
    "truncated",
    "ledger_replaced",
    "records_skipped",
    "not_in_ledger",
)
_ON: Final[dict[ProblemKind, str]] = {
    "signature_invalid": "checkpoint",
    "unknown_key": "checkpoint",
    "checkpoint_head_mismatch": "checkpoint",
    "checkpoint_beyond_chain": "checkpoint",
    "key_rotation_refused": "rotation",
    "anchor_untrusted": "anchor",
    "forked": "ledger",
    "rolled_back": "ledger",
    "truncated": "ledger",
    "ledger_replaced": "ledger",
    "records_skipped": "kafka",
    "not_in_ledger": "kafka",
}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A signed head found outside the ledger, and where it was found."""

    checkpoint: Checkpoint
    where: str
    is_checkpoint: bool = True  # False: a head witnessed after a batch


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not hold, at entry or checkpoint ``seq``."""

    kind: ProblemKind
    seq: int
    detail: str

    @property
    def on(self) -> str:
        """Where the problem is found: entry, checkpoint, rotation, anchor or ledger."""
        return _ON.get(self.kind, "entry")

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
    anchors: int = 0
    newest_anchor: Anchor | None = None

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
    pinned_keys: Mapping[str, bytes],
    *,
    ledger_id: str,
    rotations: Iterable[Rotation] = (),
    anchors: Iterable[Anchor] = (),
) -> Report:
    """Check the chain of ``rows``, every signature, and the anchors (module doc)."""
    keyring = Keyring(pinned_keys)
    problems = [
        Problem("key_rotation_refused", r.seq, f"rotation to key {r.next_key_id} is "
                f"not signed by a key trusted at seq {r.seq} (signer {r.key_id})")
        for r in keyring.follow(rotations, ledger_id)
    ]  # fmt: skip
    points = sorted(checkpoints, key=lambda c: c.seq)
    problems += [p for c in points if (p := _signature_problem(c, keyring))]
    outside = list(anchors)
    trusted_anchors, untrusted = _trusted_anchors(outside, keyring, ledger_id)
    problems += untrusted
    wanted = {c.seq for c in points} | {a.checkpoint.seq for a in trusted_anchors}
    hashes: dict[int, bytes] = {}
    count, last, previous = 0, 0, GENESIS
    for row in rows:
        count += 1
        problems.extend(_entry_problems(row, last + 1, previous))
        if row.seq in wanted:
            hashes[row.seq] = row.hash
        last, previous = row.seq, row.hash
    problems.extend(p for c in points if (p := _head_problem(c, hashes, last)))
    own = points[-1].seq if points else 0
    problems.extend(_anchor_problems(trusted_anchors, hashes, last, own))
    if not trusted_anchors and (other := _other_ledger(outside, ledger_id)):
        problems.append(other)
    problems.sort(key=lambda p: (p.seq, _ORDER.index(p.kind)))
    newest = max(trusted_anchors, key=lambda a: a.checkpoint.seq, default=None)
    return Report(
        entries=count,
        head_seq=last,
        head=previous,
        checkpoints=len(points),
        last_checkpoint_seq=points[-1].seq if points else 0,
        trusted_keys=keyring.all(),
        pinned=True,
        problems=problems,
        anchors=len(trusted_anchors),
        newest_anchor=newest,
    )


def _trusted_anchors(
    anchors: list[Anchor], keyring: Keyring, ledger_id: str
) -> tuple[list[Anchor], list[Problem]]:
    trusted, problems = [], []
    for anchor in anchors:
        point = anchor.checkpoint
        if point.ledger_id != ledger_id:
            continue
        key = keyring.key(point.key_id, point.seq)
        if key is not None and point.valid_under(key):
            trusted.append(anchor)
            continue
        problems.append(
            Problem(
                "anchor_untrusted",
                point.seq,
                f"the signed head at seq {point.seq} in the {anchor.where} does not "
                f"verify with a trusted key (key {point.key_id})",
            )
        )
    return trusted, problems


def _anchor_problems(
    anchors: list[Anchor], hashes: Mapping[int, bytes], last: int, own_checkpoint: int
) -> list[Problem]:
    """Fork, rollback or truncation against the heads witnessed outside the ledger."""
    problems = []
    covered = sorted(
        (a for a in anchors if a.checkpoint.seq <= last), key=lambda a: a.checkpoint.seq
    )
    for anchor in covered:
        point = anchor.checkpoint
        actual = hashes.get(point.seq)
        if actual is not None and actual != point.head:
            problems.append(
                Problem(
                    "forked",
                    point.seq,
                    f"the ledger's hash at seq {point.seq} is {actual.hex()[:16]}…, "
                    f"but the {anchor.where} holds head {point.head.hex()[:16]}… "
                    f"signed at {point.time}: its history was rewritten",
                )
            )
            break
    beyond = [a for a in anchors if a.checkpoint.seq > last]
    if not beyond:
        return problems
    newest = max(beyond, key=lambda a: a.checkpoint.seq)
    point = newest.checkpoint
    cut = point.seq - last
    ends = f"the ledger ends at seq {last}" if last else "the ledger is empty"
    lost = sorted(
        a.checkpoint.seq
        for a in anchors
        if a.is_checkpoint and a.checkpoint.seq > own_checkpoint
    )
    if lost:
        own = f"at seq {own_checkpoint}" if own_checkpoint else "nowhere"
        problems.append(
            Problem(
                "rolled_back",
                last,
                f"{ends} and its checkpoints end {own}; the {newest.where} holds a "
                f"head at seq {point.seq} signed at {point.time}, and checkpoints up "
                f"to seq {lost[-1]}: {cut} entries and their checkpoints are gone",
            )
        )
    else:
        problems.append(
            Problem(
                "truncated",
                last,
                f"{ends}, but the {newest.where} holds a head at seq {point.seq} "
                f"signed at {point.time}: {cut} entries were cut from its end",
            )
        )
    return problems


def _other_ledger(anchors: list[Anchor], ledger_id: str) -> Problem | None:
    others = sorted({a.checkpoint.ledger_id for a in anchors} - {ledger_id})
    if not others:
        return None
    return Problem(
        "ledger_replaced",
        0,
        f"every head witnessed outside the ledger is of ledger {others[0]}, "
        f"not of this ledger {ledger_id}: it was replaced",
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


def _signature_problem(point: Checkpoint, keyring: Keyring) -> Problem | None:
    key = keyring.key(point.key_id, point.seq)
    if key is None:
        return Problem(
            "unknown_key",
            point.seq,
            f"signing key {point.key_id} is not pinned, nor rotated to by a pinned key "
            f"before seq {point.seq}",
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


@dataclass(frozen=True, slots=True)
class TopicEntries:
    """The audit topic read to its end: entry ids and where each was found."""

    ids: Mapping[str, tuple[int, int]]  # audit_id -> (partition, offset)
    unreadable: int
    ends: Mapping[int, int]  # partition -> end offset


def topic_problems(
    topic: str,
    entries: TopicEntries,
    ledger_ids: set[str],
    skipped: int,
    positions: Mapping[int, int],
) -> list[Problem]:
    """The ledger against the audit topic: skipped records, entries it lacks."""
    problems = []
    if skipped:
        problems.append(
            Problem(
                "records_skipped",
                0,
                f"the ledger refused {skipped} records of {topic} (see its skipped "
                "table): the disclosures they describe have no entry",
            )
        )
    missing = sorted(
        (where, audit_id)
        for audit_id, where in entries.ids.items()
        if audit_id not in ledger_ids
    )
    if entries.unreadable:
        problems.append(
            Problem(
                "not_in_ledger",
                0,
                f"{entries.unreadable} records of {topic} are not readable audit entries",
            )
        )
    if missing:
        (partition, offset), audit_id = missing[0]
        pending = sum(1 for (p, o), _ in missing if o >= positions.get(p, 0))
        note = (
            f"; {pending} of them lie past the ledger's positions (not consumed yet: "
            "verify again when its lag is 0)"
            if pending
            else ""
        )
        problems.append(
            Problem(
                "not_in_ledger",
                0,
                f"{len(missing)} entries of {topic} are not in the ledger (first: "
                f"{audit_id} at partition {partition} offset {offset}){note}",
            )
        )
    return problems
