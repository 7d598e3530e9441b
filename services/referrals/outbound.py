"""What the tracker publishes as the hub: overdue notices and expirations.

A notice is an event like any institution's, published on the tracker's own inbound
topic (``hub.in.hub_referrals.referral_overdue``) and routed by the router under the
policy (``deploy/policy/rules/referral_overdue.toml``) to the referring institution
and the case's supervisor, each with the view its rule grants. It holds ids, symbols
and times only.

Each notice is encoded once, when the deadline check first finds it due, and kept
in the tracker's database (its outbox) in the same transaction that records it; it
is sent from there until the broker acknowledges it. A crash between the send and
that acknowledgement's record sends the very same bytes again under the same event
id, which the router's de-duplication delivers once.

A referral that the deadlines policy expires gets an ``EXPIRED`` referral event from
the hub (on ``hub.in.hub_referrals.referral``): the one lifecycle event only the hub
may publish. The tracker knows a referral's lifecycle, not the person: the event
holds the referral's ids, parties, urgency and status, whether the person is a
child, and placeholders the schema requires (no consent recorded, category OTHER).
The policy's rules for EXPIRED deliver only lifecycle fields, so no placeholder
leaves the hub. The referral closes when the event comes back to the tracker
through the router, as every transition does (a rebuild from the topic agrees).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError
from services.contracts.natural import format_timestamp
from services.referrals.machine import Referral
from services.runtime import pubsub
from services.runtime.kafka import producer_config
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

OVERDUE: Final = "referral_overdue"
# The tracker's identity in the policy (``hub_referrals``) is its source.
SOURCE_SYSTEM: Final = "puente-referrals"
# Event ids of notices: one per referral, deadline, level and receiving clock.
_NAMESPACE: Final = uuid.UUID("6f1c2a0e-3b5d-4c8e-9a7f-1d2e3f4a5b6c")
_DEADLINES: Final = {"acknowledge": "ACKNOWLEDGE", "service": "SERVICE"}
REFERRAL: Final = "referral"


@dataclass(frozen=True, slots=True)
class OverdueNotice:
    """One escalation of one referral: what the notice event says."""

    referral: Referral
    stage: str  # acknowledge | service
    level: int
    due_at: datetime
    supervisor: str | None


def notice_event_id(notice: OverdueNotice) -> str:
    """The notice's event id: the same for the same escalation, on every computation."""
    r = notice.referral
    name = f"{r.referral_id}|{r.sent_at.isoformat()}|{notice.stage}|{notice.level}"
    return str(uuid.uuid5(_NAMESPACE, name))


def overdue_natural(notice: OverdueNotice, source: str, now: datetime) -> dict[str, Any]:
    """The notice as natural JSON: nothing personal, only the case's coordinates."""
    r = notice.referral
    purposes = ["POLICY_COORDINATION"] + (["CHILD_PROTECTION"] if r.is_minor else [])
    return {
        "envelope": _hub_envelope(
            notice_event_id(notice), OVERDUE, r, source, now, purposes
        ),
        "payload": {
            "referral_id": r.referral_id,
            "deadline": _DEADLINES.get(notice.stage, "OTHER"),
            "due_at": format_timestamp(notice.due_at),
            "escalation_level": notice.level,
            "urgency": r.urgency,
            "service_group": r.service_group,
            "referring_institution_id": r.referring,
            "receiving_institution_id": r.receiving,
            "supervising_institution_id": notice.supervisor,
        },
    }


def prepare_overdue(
    catalog: Catalog, notices: Sequence[OverdueNotice], source: str, now: datetime
) -> list[pubsub.Prepared]:
    """Each notice validated and encoded for ``hub.in.<source>.referral_overdue``."""
    out = []
    for notice in notices:
        try:
            prepared = pubsub.prepare(
                catalog, OVERDUE, source, overdue_natural(notice, source, now)
            )
        except ContractError as e:
            # One unwritable notice (a referral id that is no UUID) must not hold
            # back the others; its notice rows stay, so the operator still sees it.
            log.error("overdue notice not encodable: %s", e)  # noqa: TRY400 - enough
            continue
        # Keyed by referral, as its lifecycle is: one referral's notices stay in order.
        key = notice.referral.referral_id.encode()
        out.append(dataclasses.replace(prepared, key=key))
    return out


class Sender:
    """Sends the outbox's events, marking each sent once the broker acknowledged it."""

    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self.kafka = kafka
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer."""
        producer = AIOKafkaProducer(**producer_config(self.kafka, self.client_id))
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, events: Sequence[pubsub.Prepared]) -> list[str]:
        """Send ``events``; the ids of those the broker acknowledged (in order)."""
        producer = self._producer
        if producer is None or not events:
            return []
        futures = []
        for e in events:
            future = await producer.send(e.topic, e.value, key=e.key, headers=e.headers)
            futures.append((e.event_id, future))
        acked = []
        for event_id, future in futures:
            try:
                await future
            except (TimeoutError, KafkaError) as error:
                log.warning("notice %s not acknowledged (sent again later): %s",
                            event_id, error)  # fmt: skip
                continue
            acked.append(event_id)
        return acked


def expiry_event_id(referral: Referral) -> str:
    """The EXPIRED event's id: one per referral and receiving clock."""
    name = f"{referral.referral_id}|{referral.sent_at.isoformat()}|EXPIRED"
    return str(uuid.uuid5(_NAMESPACE, name))


def expired_natural(referral: Referral, source: str, now: datetime) -> dict[str, Any]:
    """The hub's EXPIRED event of ``referral`` as natural JSON."""
    r = referral
    return {
        "envelope": _hub_envelope(
            expiry_event_id(r), REFERRAL, r, source, now, ["POLICY_COORDINATION"]
        ),
        "payload": {
            "referral_id": r.referral_id,
            "lifecycle_event": "EXPIRED",
            "status": "EXPIRED",
            "previous_status": r.status,
            "referring_institution_id": r.referring,
            "receiving_institution_id": r.receiving,
            # Unknown to the tracker, and never delivered (the rules for EXPIRED
            # deliver lifecycle fields only).
            "service_category": "OTHER",
            "service_group": r.service_group,
            "urgency": r.urgency,
            "subject_profile": {
                "sex": "UNKNOWN",
                "age_group": "UNKNOWN",
                "is_minor": r.is_minor,
            },
            "consent": {
                "obtained": False,
                "method": "NOT_OBTAINED",
                "scopes": [],
                "disclosure_to_other_institutions": False,
            },
        },
    }


def prepare_expired(
    catalog: Catalog, referrals: Sequence[Referral], source: str, now: datetime
) -> list[pubsub.Prepared]:
    """Each referral's EXPIRED event, encoded for ``hub.in.<source>.referral``."""
    out = []
    for referral in referrals:
        try:
            natural = expired_natural(referral, source, now)
            out.append(pubsub.prepare(catalog, REFERRAL, source, natural))
        except ContractError as e:
            log.error("EXPIRED not encodable: %s", e)  # noqa: TRY400 - enough
    return out


def _hub_envelope(  # noqa: PLR0917 - the envelope's own fields
    event_id: str,
    event_type: str,
    referral: Referral,
    source: str,
    now: datetime,
    purposes: list[str],
) -> dict[str, Any]:
    """The envelope of an event the hub publishes about ``referral`` at ``now``."""
    at = format_timestamp(now)
    return {
        "event_id": event_id,
        "event_type": event_type,
        "source_institution_id": source,
        "source_system": SOURCE_SYSTEM,
        "occurred_at": at,
        "recorded_at": at,
        "published_at": at,
        # A referral's thread: its lifecycle events carry the same correlation.
        "correlation_id": referral.referral_id,
        "subject_key_basis": "NONE",
        "record_sensitivity": "STANDARD",
        "legal_basis": "LEGAL_MANDATE",
        "purposes": purposes,
    }
