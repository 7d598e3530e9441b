"""Byte-level mutations of valid encodings, deterministic per seed (pure, no I/O).

Each mutation takes a valid inbound record (topic, key, value, headers) and returns
a damaged copy named by its kind, so the figures can say which kinds of damage the
router answered how: flipped bits, cut or spliced bodies, a wrong or foreign
fingerprint, oversized values, the right bytes on the wrong topic, garbage headers
and keys, empty and null values.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from services.contracts import codec

Headers = list[tuple[str, bytes]]
_HEADER_NAMES: Final = (
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "content-type",
    "\x00",
    "",
)
_TEXT: Final = 'aZ09 -_:/{}"\\\x00\x7fáñ€\u200b\U0001f600\ufffd'


def _junk_text(rng: random.Random) -> str:
    return "".join(rng.choice(_TEXT) for _ in range(rng.randint(0, 40)))


@dataclass(frozen=True, slots=True)
class RawInput:
    """One Kafka record to produce to ``hub.in.*``, labelled with how it was made."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: str


@dataclass(frozen=True, slots=True)
class Mutator:
    """Applies one of the mutation kinds, chosen at random, to valid records."""

    rng: random.Random
    # Topics a valid record may be moved to (created before the router starts).
    topics: Sequence[str]
    # Fingerprint headers (C3 01 + 8 bytes) of every schema in the catalog.
    headers_of_schemas: Sequence[bytes]
    # The router's limit: oversized values go just past it.
    max_event_bytes: int

    # Kinds left out (a known break the campaign should not stop at every round).
    without: frozenset[str] = frozenset()

    def mutate(self, record: RawInput, other: RawInput) -> RawInput:
        """A damaged copy of ``record`` (``other`` is spliced in by some kinds)."""
        kinds = [(name, how) for name, how, _ in _KINDS if name not in self.without]
        weights = [weight for name, _, weight in _KINDS if name not in self.without]
        kind, how = self.rng.choices(kinds, weights)[0]
        return how(self, record, other, kind)

    def bit_flips(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """One to eight flipped bits anywhere in the value."""
        data = bytearray(record.value or b"\x00")
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return replace(record, value=bytes(data), kind=kind)

    def body_flips(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """Flipped bits past the fingerprint: the schema is found, the body is wrong."""
        data = bytearray(record.value or b"")
        if len(data) <= codec.HEADER_SIZE:
            return self.bit_flips(record, _other, kind)
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(codec.HEADER_SIZE, len(data))
            data[at] ^= 1 << self.rng.randrange(8)
        return replace(record, value=bytes(data), kind=kind)

    def byte_sets(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """Bytes past the fingerprint set to edge values (0x00, 0x7F, 0x80, 0xFF)."""
        data = bytearray(record.value or b"")
        if len(data) <= codec.HEADER_SIZE:
            return self.bit_flips(record, _other, kind)
        for _ in range(self.rng.randint(1, 6)):
            at = self.rng.randrange(codec.HEADER_SIZE, len(data))
            data[at] = self.rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF))
        return replace(record, value=bytes(data), kind=kind)

    def truncation(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """The value cut anywhere, the fingerprint included."""
        data = record.value or b""
        return replace(record, value=data[: self.rng.randrange(len(data) + 1)], kind=kind)

    def trailing(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """Junk appended after a complete body."""
        junk = self.rng.randbytes(self.rng.randint(1, 64))
        return replace(record, value=(record.value or b"") + junk, kind=kind)

    def splice(self, record: RawInput, other: RawInput, kind: str) -> RawInput:
        """The head of one valid value joined to the tail of another."""
        mine, theirs = record.value or b"", other.value or b""
        cut = self.rng.randrange(len(mine) + 1)
        at = self.rng.randrange(len(theirs) + 1)
        return replace(record, value=mine[:cut] + theirs[at:], kind=kind)

    def insert(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """Random bytes inserted in the middle of the body."""
        data = record.value or b""
        at = self.rng.randrange(len(data) + 1)
        junk = self.rng.randbytes(self.rng.randint(1, 32))
        return replace(record, value=data[:at] + junk + data[at:], kind=kind)

    def foreign_fingerprint(
        self, record: RawInput, _other: RawInput, kind: str
    ) -> RawInput:
        """The body under another catalog schema's fingerprint (audit, rejection, …)."""
        data = record.value or b""
        head = self.rng.choice(list(self.headers_of_schemas))
        return replace(record, value=head + data[codec.HEADER_SIZE :], kind=kind)

    def unknown_fingerprint(
        self, record: RawInput, _other: RawInput, kind: str
    ) -> RawInput:
        """A fingerprint no schema has, or a wrong magic."""
        data = record.value or b""
        magic = self.rng.choice((b"\xc3\x01", b"\xc3\x00", b"\x00\x00", b"\xc3"))
        fake = magic + self.rng.randbytes(8)
        return replace(record, value=fake + data[codec.HEADER_SIZE :], kind=kind)

    def oversized(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """A value just past the router's limit (padding after a valid body)."""
        data = record.value or b""
        pad = max(0, self.max_event_bytes - len(data)) + self.rng.randint(1, 4096)
        return replace(record, value=data + bytes(pad), kind=kind)

    def wrong_topic(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """A valid value on another source's or another event type's topic."""
        others = [t for t in self.topics if t != record.topic]
        return replace(record, topic=self.rng.choice(others), kind=kind)

    def garbage_headers(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """The value untouched; headers (UTF-8 text) and key replaced by junk."""
        headers = [
            (self.rng.choice(_HEADER_NAMES), _junk_text(self.rng).encode())
            for _ in range(self.rng.randint(0, 12))
        ]
        return replace(record, key=self._junk_key(), headers=headers, kind=kind)

    def binary_headers(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """The value untouched; header values random bytes (mostly not UTF-8)."""
        headers = [
            (self.rng.choice(_HEADER_NAMES), self.rng.randbytes(self.rng.randint(1, 40)))
            for _ in range(self.rng.randint(1, 6))
        ]
        return replace(record, key=self._junk_key(), headers=headers, kind=kind)

    def _junk_key(self) -> bytes | None:
        return self.rng.choice((None, b"", self.rng.randbytes(16)))

    def empty(self, record: RawInput, _other: RawInput, kind: str) -> RawInput:
        """A null value (a tombstone), an empty one, or a lone magic."""
        value = self.rng.choice((None, b"", b"\xc3", b"\xc3\x01"))
        return replace(record, value=value, kind=kind)


_Mutation = Callable[[Mutator, RawInput, RawInput, str], RawInput]
# (kind, mutation, weight). Oversized values are rare: each one costs the in-memory
# broker half a megabyte, and one per few hundred inputs already covers the limit.
_KINDS: Final[tuple[tuple[str, _Mutation, int], ...]] = (
    ("bit_flips", Mutator.bit_flips, 6),
    ("body_flips", Mutator.body_flips, 12),
    ("byte_sets", Mutator.byte_sets, 12),
    ("truncation", Mutator.truncation, 6),
    ("trailing", Mutator.trailing, 6),
    ("splice", Mutator.splice, 6),
    ("insert", Mutator.insert, 6),
    ("foreign_fingerprint", Mutator.foreign_fingerprint, 6),
    ("unknown_fingerprint", Mutator.unknown_fingerprint, 6),
    ("oversized", Mutator.oversized, 1),
    ("wrong_topic", Mutator.wrong_topic, 6),
    ("garbage_headers", Mutator.garbage_headers, 5),
    ("binary_headers", Mutator.binary_headers, 1),
    ("empty", Mutator.empty, 6),
)
# Every kind a mutation may be labelled with (for tests and the figures).
KINDS: Final = frozenset(name for name, _, _ in _KINDS)
