"""Referral deadlines (``deploy/policy/referral_deadlines.toml``) and their checker.

Deadlines are computed in El Salvador's time zone: a span in days ends at the end
of a local calendar day, whatever the server's zone. The checker takes its clock
as an argument, so tests move time instead of waiting for it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from services.referrals.errors import DeadlinesFileError
from services.referrals.machine import Referral
from services.referrals.outbound import OverdueNotice, expiry_event_id
from services.referrals.store import Compose, Notice, Overdue, Store
from services.runtime.pubsub import Prepared

Clock = Callable[[], datetime]
URGENCIES: Final = ("IMMEDIATE_24H", "PRIORITY_72H", "STANDARD")
ACKNOWLEDGE: Final = "acknowledge"
SERVICE: Final = "service"
# Statuses in which the receiving institution still owes an answer or the service.
WAITING: Final = frozenset({"SENT", "ACCEPTED"})


# El Salvador has kept UTC-6 all year since 1988: where the system has no time zone
# database (slim container images), that fixed offset is the same zone.
EL_SALVADOR: Final = "America/El_Salvador"
_EL_SALVADOR_FIXED: Final = timezone(timedelta(hours=-6), "CST")


def time_zone(name: str) -> tzinfo:
    """The zone ``name`` from the system's database (El Salvador's without one)."""
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        if name == EL_SALVADOR:
            return _EL_SALVADOR_FIXED
        raise


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(_Spec):
    """Elapsed ``hours``, or ``days`` to the end of a local calendar day."""

    hours: int | None = None
    days: int | None = None

    @model_validator(mode="after")
    def _one(self) -> Span:
        if (self.hours is None) == (self.days is None):
            raise ValueError("give exactly one of hours or days")
        if (self.hours or self.days or 0) <= 0:
            raise ValueError("a span is positive")
        return self

    def after(self, start: datetime, zone: tzinfo) -> datetime:
        """When a span that begins at ``start`` ends."""
        if self.hours is not None:
            return start + timedelta(hours=self.hours)
        local_day = start.astimezone(zone).date() + timedelta(days=(self.days or 0) + 1)
        return datetime.combine(local_day, time(0), zone).astimezone(UTC)

    def length(self) -> timedelta:
        """Roughly how long the span is (to compare two spans)."""
        return timedelta(hours=self.hours or 0, days=self.days or 0)


class Limits(_Spec):
    """The deadlines of one urgency or service group."""

    acknowledge: Span
    service: Span
    escalate: Span
    # A referral not in service this long after it was received expires (the hub
    # publishes EXPIRED); None: it never does.
    expire: Span | None = None


class SupervisorSpec(_Spec):
    """Who supervises a case: the first entry that matches and is not a party."""

    institution: str
    minor: bool | None = None  # None: children and adults alike
    service_groups: list[str] = []
    note: str = ""


class DeadlinesFile(_Spec):
    """The whole file."""

    time_zone: str = EL_SALVADOR
    urgency: dict[str, Limits]
    service_group: dict[str, Limits] = {}
    supervisor: list[SupervisorSpec] = []

    @model_validator(mode="after")
    def _every_urgency(self) -> DeadlinesFile:
        missing = [u for u in URGENCIES if u not in self.urgency]
        unknown = [u for u in self.urgency if u not in URGENCIES]
        if missing or unknown:
            raise ValueError(
                f"urgency needs exactly {', '.join(URGENCIES)} "
                f"(missing: {missing or 'none'}, unknown: {unknown or 'none'})"
            )
        return self


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The deadlines policy, ready to apply to referrals."""

    spec: DeadlinesFile
    zone: tzinfo

    @classmethod
    def load(cls, path: Path) -> Deadlines:
        """Read and check the file at ``path``."""
        try:
            spec = DeadlinesFile.model_validate(tomllib.loads(path.read_text("utf-8")))
            zone = time_zone(spec.time_zone)
        except OSError as e:
            raise DeadlinesFileError(f"cannot read {path}: {e.strerror}") from e
        except (tomllib.TOMLDecodeError, ValidationError) as e:
            raise DeadlinesFileError(f"{path} is not a valid deadlines file: {e}") from e
        except ZoneInfoNotFoundError as e:
            raise DeadlinesFileError(f"{path}: unknown time zone {spec.time_zone}") from e
        return cls(spec, zone)

    def _span(self, referral: Referral, kind: str) -> Span:
        spans: list[Span] = [getattr(self.spec.urgency[referral.urgency], kind)]
        group = self.spec.service_group.get(referral.service_group)
        if group is not None:
            spans.append(getattr(group, kind))
        return min(spans, key=Span.length)

    def due(self, referral: Referral, stage: str) -> datetime:
        """When the receiving institution must have acknowledged, or started service."""
        due = self._span(referral, stage).after(referral.sent_at, self.zone)
        if stage == ACKNOWLEDGE and referral.response_due_at is not None:
            due = min(due, referral.response_due_at)
        return due

    def expires_at(self, referral: Referral) -> datetime | None:
        """When the referral expires unless service starts first (None: never)."""
        if referral.status not in WAITING:
            return None
        spans = [self.spec.urgency[referral.urgency].expire]
        group = self.spec.service_group.get(referral.service_group)
        if group is not None:
            spans.append(group.expire)
        given = [s for s in spans if s is not None]
        if not given:
            return None
        return min(given, key=Span.length).after(referral.sent_at, self.zone)

    def overdue(self, referral: Referral, now: datetime) -> Overdue | None:
        """The referral's overdue mark at ``now`` (None: open within its deadlines)."""
        if referral.status == "SENT":
            stage = ACKNOWLEDGE
        elif referral.status == "ACCEPTED":
            stage = SERVICE
        else:
            return None  # in service, or closed: nothing is awaited
        due = self.due(referral, stage)
        if now < due:
            return None
        second = self._span(referral, "escalate").after(due, self.zone)
        return Overdue(stage, 2 if now >= second else 1, due)

    def supervisor(self, referral: Referral) -> str | None:
        """The institution that supervises this case, not itself a party."""
        parties = {referral.referring, referral.receiving}
        for entry in self.spec.supervisor:
            if entry.minor is not None and entry.minor != referral.is_minor:
                continue
            if (
                entry.service_groups
                and referral.service_group not in entry.service_groups
            ):
                continue
            if entry.institution not in parties:
                return entry.institution
        return None

    def notices(
        self, referral: Referral, overdue: Overdue, now: datetime
    ) -> list[Notice]:
        """The notices every level reached so far calls for."""
        recipients = [(referral.referring, "referring")]
        supervisor = self.supervisor(referral)
        if supervisor is not None:
            recipients.append((supervisor, "supervisor"))
        return [
            Notice(
                referral.referral_id,
                overdue.stage,
                level,
                who,
                role,
                overdue.due_at,
                now,
                referral.sent_at,
            )
            for level in range(1, overdue.level + 1)
            for who, role in recipients
        ]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check found."""

    overdue: int
    issued: list[Notice]
    expired: list[str] = dataclasses.field(default_factory=list)  # referral ids


# The events of one check's new escalations (referral_overdue notices to publish).
Announce = Callable[[Sequence[OverdueNotice], datetime], Sequence[Prepared]]
# The EXPIRED events of referrals past their expiry (referral events to publish).
Expire = Callable[[Sequence[Referral], datetime], Sequence[Prepared]]


class DeadlineChecker:
    """Marks overdue referrals and issues each notice once.

    With ``announce``, each new escalation (referral, deadline, level) also gets one
    event, queued in the tracker's outbox in the transaction that issues it. With
    ``expire``, a referral past its expiry gets its EXPIRED event queued once; the
    referral closes when that event comes back through the router, like any other.
    """

    def __init__(
        self,
        store: Store,
        deadlines: Deadlines,
        clock: Clock = utc_now,
        announce: Announce | None = None,
        expire: Expire | None = None,
    ) -> None:
        self.store = store
        self.deadlines = deadlines
        self.clock = clock
        self.announce = announce
        self.expire = expire

    def check(self) -> CheckResult:
        """Compare every open referral with its deadlines at the clock's time."""
        now = self.clock()
        marks: dict[str, Overdue | None] = {}
        wanted: list[Notice] = []
        count = 0
        referrals: dict[str, Referral] = {}
        for tracked in self.store.all():
            referral = tracked.referral
            referrals[referral.referral_id] = referral
            overdue = self.deadlines.overdue(referral, now) if referral.open else None
            if overdue != tracked.overdue:
                marks[referral.referral_id] = overdue
            if overdue is not None:
                count += 1
                wanted.extend(self.deadlines.notices(referral, overdue, now))
        compose = None
        if self.announce is not None:
            compose = self._composer(referrals, now, self.announce)
        expiring = self._expiring(referrals.values(), now)
        events = self.expire(expiring, now) if self.expire and expiring else ()
        issued = self.store.mark(marks, wanted, compose, events)
        return CheckResult(count, issued, [r.referral_id for r in expiring])

    def _expiring(self, referrals: Iterable[Referral], now: datetime) -> list[Referral]:
        """Referrals past their expiry whose EXPIRED is not queued yet."""
        out = []
        for referral in referrals:
            at = self.deadlines.expires_at(referral)
            due = at is not None and at <= now
            if due and not self.store.queued(expiry_event_id(referral)):
                out.append(referral)
        return out

    def _composer(
        self, referrals: dict[str, Referral], now: datetime, announce: Announce
    ) -> Compose:
        def compose(issued: Sequence[Notice]) -> Sequence[Prepared]:
            levels = dict.fromkeys((n.referral_id, n.stage, n.level) for n in issued)
            notices = [
                OverdueNotice(
                    referrals[ref],
                    stage,
                    level,
                    self.deadlines.due(referrals[ref], stage),
                    self.deadlines.supervisor(referrals[ref]),
                )
                for ref, stage, level in levels
            ]
            return announce(notices, now)

        return compose
