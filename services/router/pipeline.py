"""The router's decisions for one inbound record, pure: no I/O, no clock.

`inspect` decodes and checks a record (source, publish right, semantics);
`deliver` computes the subject key, evaluates every rule, projects and encodes each
delivery and one audit entry per decision; `reject` encodes the rejection.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol

from services.contracts import admission, codec, headers, lifecycle, segments, topics
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, DecodeError
from services.contracts.natural import format_timestamp
from services.policy import REKEYED_VIEWS
from services.router.entries import AuditEncoder, RuleOutcome

OutputKind = Literal["delivery", "rejection", "audit"]
AUDIT_NAMESPACE: Final = uuid.UUID("5a8e3c1e-2f4b-4c1d-9a57-0b1de1e5a001")
_NAMESPACE_BYTES: Final = AUDIT_NAMESPACE.bytes
_NOTICE_HEADERS: Final = frozenset({"ce_id", *headers.REFUSAL_HEADERS})
# What a refusal notice's headers may hold; longer values are not taken as such.
_MAX_ID_CHARS: Final = 128
_MAX_DIGITS: Final = 12


class Projection(Protocol):
    """What the router needs of a policy projection."""

    entry: SchemaEntry
    source: SchemaEntry
    field_paths: tuple[str, ...]
    payload_verbatim: bool
    payload_key: tuple[Any, ...]

    def apply(
        self,
        datum: Mapping[str, Any],
        subject_key: str | None,
        ids: Callable[[str], str] | None = None,
    ) -> Any:
        """The projected datum (``ids``: the recipient's own identifiers)."""


class Decision(Protocol):
    """What the router needs of a policy decision."""

    rule_id: str
    recipient: str
    view: str
    purpose: str
    legal_basis: str
    delivered: bool
    withheld_reason: str | None
    projection: Projection


class Policy(Protocol):
    """What the router needs of the access policy."""

    version: str

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether ``source`` holds the publish right for ``event_type``."""

    def knows(self, institution: str) -> bool:
        """Whether ``institution`` is a member."""

    def decide(
        self, event_type: str, datum: Mapping[str, Any], version: int | None = None
    ) -> list[Any]:
        """The decisions of every rule whose condition matched."""


class SubjectKeys(Protocol):
    """What the router needs of the subject-key service."""

    def subject_key(
        self, event_type: str, datum: Mapping[str, Any]
    ) -> tuple[str | None, str]:
        """The hub subject key and its basis."""

    def rekey(self, recipient: str, subject_key: str) -> str:
        """The recipient-specific key."""

    def recipient_id(self, recipient: str, value: str) -> str:
        """The recipient-specific UUID standing for an identifier."""


# Inbound and Output are made once per record and per output: not frozen, as a
# frozen dataclass takes five times as long to build.
@dataclass(slots=True)
class Inbound:
    """One record read from ``hub.in.*``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass(slots=True)
class Output:
    """One record to produce, with what metrics need to know about it."""

    kind: OutputKind
    topic: str
    key: bytes | None
    value: bytes
    headers: headers.KafkaHeaders
    recipient: str | None = None
    view: str | None = None
    event_id: str | None = None
    # Audit entries of withheld decisions: why, for the withheld-decisions metric.
    withheld: str | None = None
    event_type: str | None = None


@dataclass(slots=True)
class Accepted:
    """A decoded record that passed every check up to de-duplication."""

    record: Inbound
    source: str
    event_type: str
    entry: SchemaEntry
    datum: dict[str, Any]
    event_id: str
    digest: bytes
    recorded_at_ms: int
    payload: bytes = b""  # the payload's bytes as published (empty: not split)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the hub refuses, with the reason code and a message for the sender."""

    record: Inbound
    source: str
    event_type: str | None
    reason: str
    message: str
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Checks that depend on settings."""

    max_event_bytes: int
    future_skew: timedelta


@dataclass
class Pipeline:
    """Everything the router decides, given the catalog, policy and keys."""

    catalog: Catalog
    policy: Policy
    keys: SubjectKeys
    limits: Limits
    _audit: AuditEncoder = field(init=False)
    _rejection: SchemaEntry = field(init=False)
    _reasons: frozenset[str] = field(init=False)

    _stamped: tuple[datetime, str] | None = field(init=False, default=None)
    _split: dict[int, segments.Segments | None] = field(init=False, default_factory=dict)
    _ext_cache: dict[tuple[str, str, str], headers.KafkaHeaders] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._audit = AuditEncoder(self.catalog.get("audit_entry"))
        self._rejection = self.catalog.get("rejection")
        self._reasons = _reason_codes(self._rejection)

    def warm(self, entries: Iterable[SchemaEntry]) -> None:
        """Build the readers and writers of ``entries`` now, before any record waits.

        Generating them takes ~10 ms a schema: done lazily, the first records of a
        run waited ~140 ms in all, and a batch holding several waited for each.
        """
        for entry in entries:
            self._parts(entry)

    def _extensions(self, decision: Decision) -> headers.KafkaHeaders:
        # The same four headers for every delivery under one rule: encoded once.
        key = (decision.view, decision.purpose, decision.legal_basis)
        found = self._ext_cache.get(key)
        if found is None:
            found = headers.extensions(
                {
                    headers.VIEW: decision.view,
                    headers.PURPOSE: decision.purpose,
                    headers.LEGAL_BASIS: decision.legal_basis,
                    headers.POLICY_VERSION: self.policy.version,
                }
            )
            self._ext_cache[key] = found
        return found

    def _stamp(self, now: datetime) -> str:
        # Every output of a batch shares one `now`: format it once.
        if self._stamped is None or self._stamped[0] != now:
            self._stamped = (now, format_timestamp(now))
        return self._stamped[1]

    def inspect(self, record: Inbound, now: datetime) -> Accepted | Rejected:
        """Decode ``record`` and check it against the contract and the policy."""
        try:
            ref = topics.parse(record.topic)
        except ContractError as e:
            # The subscription pattern guarantees hub.in.<valid source>.<word>.
            return Rejected(record, record.topic.split(".")[2], None, e.reason, str(e))
        source, event_type = str(ref.institution), str(ref.event_type)
        value = record.value or b""
        if not value:
            notice = _refusal_notice(record, source, event_type, self._reasons)
            if notice is not None:
                return notice
        if len(value) > self.limits.max_event_bytes:
            return Rejected(
                record,
                source,
                event_type,
                "too_large",
                f"record is {len(value)} bytes; the limit is "
                f"{self.limits.max_event_bytes}",
            )
        try:
            entry, datum, payload = self._decode(value)
        except DecodeError as e:
            return Rejected(record, source, event_type, e.reason, str(e))
        event_id = str(datum.get("envelope", {}).get("event_id", "")) or None
        problem = self._check(entry, datum, source, event_type, now)
        if problem is not None:
            return Rejected(record, source, event_type, problem[0], problem[1], event_id)
        return Accepted(
            record,
            source,
            event_type,
            entry,
            datum,
            str(event_id),
            hashlib.sha256(value).digest()[:16],
            datum["envelope"]["recorded_at"],
            payload,
        )

    def _decode(self, value: bytes) -> tuple[SchemaEntry, Any, bytes]:
        entry = self.catalog.by_fingerprint(codec.fingerprint_of(value))
        parts = self._parts(entry)
        if parts is None:
            return entry, codec.read_body(entry, value, plain=True), b""
        datum, starts = segments.read(parts, value)
        return entry, datum, value[starts[1] : starts[2]]

    def _parts(self, entry: SchemaEntry) -> segments.Segments | None:
        """``entry`` split into envelope and payload; None for other records."""
        if entry.fingerprint not in self._split:
            names = tuple(f["name"] for f in entry.schema.get("fields", ()))
            split = names == ("envelope", "payload")
            self._split[entry.fingerprint] = segments.split(entry) if split else None
        return self._split[entry.fingerprint]

    def _check(
        self, entry: SchemaEntry, datum: Any, source: str, event_type: str, now: datetime
    ) -> tuple[str, str] | None:
        if entry.name != event_type:
            if not entry.is_event:
                return "unknown_schema", f"a {entry.name} record is not an event"
            return (
                "invalid",
                f"a {entry.name} record was published on the {event_type} topic",
            )
        envelope = datum["envelope"]
        if envelope["source_institution_id"] != source:
            return "source_mismatch", (
                f"envelope.source_institution_id is "
                f"{envelope['source_institution_id']!r} but the record was published on "
                f"{source}'s topic"
            )
        if envelope["event_type"] != event_type:
            return "invalid", f"envelope.event_type is not {event_type!r}"
        if not self.policy.may_publish(source, event_type):
            return "not_allowed_to_publish", f"{source} may not publish {event_type}"
        latest = _epoch_ms(now + self.limits.future_skew)
        return _semantics(datum, event_type, latest, self.policy)

    def deliver(self, accepted: Accepted, now: datetime) -> list[Output]:
        """Every delivery and audit entry for an accepted, first-seen event."""
        datum, event_type = accepted.datum, accepted.event_type
        subject_key, basis = self.keys.subject_key(event_type, datum)
        datum["envelope"]["subject_key"] = subject_key
        datum["envelope"]["subject_key_basis"] = basis
        cloud = headers.for_envelope(datum["envelope"])
        base = headers.attributes(cloud.id, cloud.source, cloud.type, cloud.time)
        event_part = self._audit.event_part(
            accepted.event_id, event_type, accepted.source, subject_key, _epoch_ms(now)
        )
        outputs: list[Output] = []
        payloads: dict[tuple[Any, ...], bytes] = {}
        for decision in self.policy.decide(event_type, datum, accepted.entry.version):
            if decision.delivered:
                outputs.append(
                    self._delivery(accepted, decision, subject_key, base, payloads)
                )
            outputs.append(self._audit_entry(accepted, decision, event_part, now))
        return outputs

    def _delivery(
        self,
        accepted: Accepted,
        decision: Decision,
        subject_key: str | None,
        base: headers.KafkaHeaders,
        payloads: dict[tuple[Any, ...], bytes],
    ) -> Output:
        """One delivery; its headers come from the projected record.

        Pseudonymous views get the recipient's own event id, cut time and masked
        source in the headers exactly as in the body, and a Kafka key no other
        recipient holds.
        """
        recipient = decision.recipient
        if decision.view not in REKEYED_VIEWS:  # the hub's own identifiers
            projected = decision.projection.apply(accepted.datum, subject_key)
            value = self._encode(accepted, decision.projection, projected, payloads)
            if accepted.event_type == "referral":
                partition_key = str(accepted.datum["payload"]["referral_id"])
            else:
                partition_key = subject_key or accepted.event_id
            first = base
        else:

            def ids(value: str) -> str:
                return self.keys.recipient_id(recipient, value)

            key = subject_key and self.keys.rekey(recipient, subject_key)
            projected = decision.projection.apply(accepted.datum, key, ids)
            value = self._encode(accepted, decision.projection, projected, payloads)
            envelope = projected["envelope"]
            if accepted.event_type == "referral":
                partition_key = ids(str(accepted.datum["payload"]["referral_id"]))
            else:
                partition_key = key or str(envelope["event_id"])
            cloud = headers.for_envelope(envelope)
            first = headers.attributes(cloud.id, cloud.source, cloud.type, cloud.time)
        return Output(
            "delivery",
            topics.outbound(recipient, accepted.event_type),
            partition_key.encode(),
            value,
            first
            + headers.dataschema(decision.projection.entry.fingerprint)
            + self._extensions(decision),
            recipient,
            decision.view,
            accepted.event_id,
        )

    def _encode(
        self,
        accepted: Accepted,
        projection: Projection,
        projected: Any,
        payloads: dict[tuple[Any, ...], bytes],
    ) -> bytes:
        """The delivery's bytes: a fresh envelope, the payload reused where it can be.

        The payload is the publisher's own bytes when the projection passes it
        through, else one encoding per distinct payload projection of the event
        (none shared when it holds per-recipient ids: an empty ``payload_key``).
        """
        parts = self._parts(projection.entry) if accepted.payload else None
        if parts is None:
            return codec.encode(projection.entry, projected, plain=True)
        if projection.payload_verbatim and projection.source is accepted.entry:
            payload = accepted.payload
        elif not projection.payload_key:
            payload = segments.write(parts, 1, projected["payload"])
        else:
            cached = payloads.get(projection.payload_key)
            payload = cached or segments.write(parts, 1, projected["payload"])
            payloads[projection.payload_key] = payload
        envelope = segments.write(parts, 0, projected["envelope"])
        return b"".join((projection.entry.header, envelope, payload))

    def _audit_entry(
        self, accepted: Accepted, decision: Decision, event_part: bytes, now: datetime
    ) -> Output:
        audit_id = audit_uuid(
            f"{accepted.event_id}|{decision.recipient}|{decision.rule_id}|{self.policy.version}"
        )
        rule = RuleOutcome(
            self.policy.version,
            decision.recipient,
            "delivered" if decision.delivered else "withheld",
            decision.withheld_reason,
            decision.view,
            decision.rule_id,
            decision.purpose,
            decision.legal_basis,
            tuple(decision.projection.field_paths) if decision.delivered else (),
        )
        cloud = headers.attributes(audit_id, "puente", "audit_entry", self._stamp(now))
        cloud += headers.dataschema(self._audit.entry.fingerprint)
        return Output(
            "audit",
            topics.AUDIT,
            accepted.event_id.encode(),
            self._audit.encode(audit_id, event_part, rule),
            cloud,
            decision.recipient,
            decision.view,
            None,
            decision.withheld_reason,
            accepted.event_type,
        )

    def reject(self, rejected: Rejected, now: datetime) -> Output:
        """The rejection record sent back to the publisher."""
        record = rejected.record
        original = record.value
        if original is not None and len(original) > self.limits.max_event_bytes:
            original = None
        rejection_id = audit_uuid(f"{record.topic}|{record.partition}|{record.offset}")
        datum = {
            "rejection_id": rejection_id,
            # A code the schema lacks would make the rejection unwritable and stall
            # the partition; it is sent as "other" (the message still says why).
            "reason": rejected.reason if rejected.reason in self._reasons else "other",
            "message": rejected.message,
            "source_institution_id": rejected.source,
            "event_id": rejected.event_id,
            "event_type": rejected.event_type,
            "original_topic": record.topic,
            "original_partition": record.partition,
            "original_offset": record.offset,
            "received_at": record.timestamp_ms,
            "rejected_at": _epoch_ms(now),
            "original_value": original,
        }
        event = headers.CloudEvent(rejection_id, "puente", "rejection", self._stamp(now))
        return Output(
            "rejection",
            topics.rejected(rejected.source),
            (rejected.event_id or rejection_id).encode(),
            codec.encode(self._rejection, datum, plain=True),
            headers.build(event) + headers.dataschema(self._rejection.fingerprint),
        )


def _refusal_notice(
    record: Inbound, source: str, event_type: str, reasons: frozenset[str]
) -> Rejected | None:
    """The rejection a relay's refusal notice asks for; None if it is none.

    A notice stands in for an event the broker refused (``headers.REFUSED``): it has
    no value, so it is never routed, and its rejection goes to the source of the topic
    it was read from. Any publisher may set these headers on a record of its own: that
    only makes the hub answer that one record to that publisher, as it would answer an
    empty record anyway. Only the value-less record is read this way: a record with a
    value is judged by its value, whatever its headers say.
    """
    found: dict[str, bytes] = {}
    for key, raw in record.headers:
        if key in _NOTICE_HEADERS:
            found.setdefault(key, raw or b"")  # the first of repeats, as headers.parse
    code = found.get(headers.REFUSED)
    if code is None:
        return None
    reason = code.decode("utf-8", "replace")
    event_id = found.get("ce_id", b"").decode("utf-8", "replace")
    return Rejected(
        record,
        source,
        event_type,
        # Bounded: the code names a metric label and an enum symbol.
        reason if reason in reasons else "other",
        _notice_message(reason, found),
        event_id if 0 < len(event_id) <= _MAX_ID_CHARS else None,
    )


def _notice_message(reason: str, found: Mapping[str, bytes]) -> str:
    size = _count(found.get(headers.REFUSED_BYTES))
    if reason != "too_large":
        return "the broker refused the event for good"
    if size is None:
        return "the broker refused the event as too large"
    limit = _count(found.get(headers.REFUSED_LIMIT))
    if limit is None:
        return f"the broker refused the event as too large ({size} bytes)"
    return f"the broker refused the event as too large ({size} bytes > {limit})"


def _count(raw: bytes | None) -> int | None:
    """A header's non-negative integer; None when absent or not one."""
    if raw is None or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        return None
    return int(raw)


def _reason_codes(rejection: SchemaEntry) -> frozenset[str]:
    """The reason codes the rejection schema can carry."""
    [field_type] = [
        f["type"] for f in rejection.schema["fields"] if f["name"] == "reason"
    ]
    return frozenset(field_type["symbols"])


def audit_uuid(name: str) -> str:
    """``str(uuid.uuid5(AUDIT_NAMESPACE, name))``, without the UUID objects (hot path)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest[:16].hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _semantics(
    datum: Any, event_type: str, latest: int, policy: Policy
) -> tuple[str, str] | None:
    """Checks Avro cannot express: times not in the future, referral parties known."""
    # What the ledger would refuse is refused here: no delivery without its entry.
    problem = admission.event_problem(datum)
    if problem is not None:
        return "invalid", problem
    envelope = datum["envelope"]
    for name in ("occurred_at", "recorded_at"):
        if envelope[name] > latest:
            return "invalid", f"envelope.{name} lies in the future"
    if envelope["occurred_at"] > envelope["recorded_at"]:
        return "invalid", "envelope.occurred_at is after envelope.recorded_at"
    if event_type == "referral":
        payload = datum["payload"]
        for name in ("referring_institution_id", "receiving_institution_id"):
            if not policy.knows(payload[name]):
                return "invalid", f"payload.{name} is not a member institution"
        return lifecycle.transition_problem(payload, envelope["source_institution_id"])
    return None


def conflicting_duplicate(accepted: Accepted) -> Rejected:
    """The rejection for an event id reused with different content."""
    return Rejected(
        accepted.record,
        accepted.source,
        accepted.event_type,
        "conflicting_duplicate",
        f"event {accepted.event_id} was already routed with different content",
        accepted.event_id,
    )
