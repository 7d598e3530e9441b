"""Referral lifecycles between institutions (pure).

Statuses follow Primero/CPIMS+: CREATED puts a referral in SENT; the
receiving institution accepts or rejects it, may schedule an appointment, starts
the service and completes it; the referring institution may revoke it. EXPIRED is
the hub's to emit, so the simulator never sends it: referrals it leaves at SENT past
``response_due_at`` are the ones the hub should expire. Each transition is published
by whoever made it (CREATED and REVOKED by the referring institution, the rest by
the receiving one).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from services.policy.projection import SERVICE_GROUPS
from services.sim import people as pp
from services.sim import reference as ref
from services.sim.people import Event, SimulationError, Stamps
from services.sim.reference import Weighted

SERVICE_GROUP: Final = SERVICE_GROUPS
SERVICE_PURPOSE: Final = {
    "HEALTH_MEDICAL": "HEALTH_CARE",
    "MENTAL_HEALTH_PSYCHOSOCIAL": "HEALTH_CARE",
    "EMPLOYMENT_LIVELIHOODS": "EMPLOYMENT_REINTEGRATION",
    "EDUCATION": "EDUCATION_CONTINUITY",
    "LEGAL_AID": "LEGAL_AID",
    "IDENTITY_DOCUMENTATION": "IDENTITY_DOCUMENTATION",
    "SHELTER_ACCOMMODATION": "HUMANITARIAN_SHELTER",
    "BASIC_NEEDS_CASH_FOOD": "HUMANITARIAN_SHELTER",
    "CHILD_PROTECTION": "CHILD_PROTECTION",
    "GBV_SPECIALISED": "VICTIM_ASSISTANCE",
    "TRAFFICKING_VICTIM_ASSISTANCE": "VICTIM_ASSISTANCE",
    "VICTIM_ASSISTANCE_GENERAL": "VICTIM_ASSISTANCE",
    "FAMILY_TRACING_REUNIFICATION": "CHILD_PROTECTION",
    "OTHER": "OTHER",
}
_HIGHLY_SENSITIVE: Final = frozenset(
    {"CHILD_PROTECTION", "GBV_SPECIALISED", "TRAFFICKING_VICTIM_ASSISTANCE"}
)
RESPONSE_WINDOW: Final = {
    "IMMEDIATE_24H": timedelta(hours=24),
    "PRIORITY_72H": timedelta(hours=72),
    "STANDARD": timedelta(days=10),
}
URGENT: Final = Weighted((("IMMEDIATE_24H", 70), ("PRIORITY_72H", 30)))
PRIORITY: Final = Weighted((("PRIORITY_72H", 70), ("STANDARD", 30)))
ROUTINE: Final = Weighted((("STANDARD", 85), ("PRIORITY_72H", 15)))


@dataclass(frozen=True, slots=True)
class Pathway:
    """Who refers whom to which service, for which kind of person."""

    referring: str
    receiving: str
    category: str
    origin: str
    urgency: Weighted[str]
    subject: str
    flags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``referring->receiving:CATEGORY``, e.g. ``dgme->conapina:CHILD_PROTECTION``."""
        return f"{self.referring}->{self.receiving}:{self.category}"


PATHWAYS: Final = Weighted(
    (
        (Pathway("dgme", "conapina", "CHILD_PROTECTION", "RETURN_RECEPTION", URGENT,
                 "child", ("UNACCOMPANIED_CHILD", "SEPARATED_CHILD")), 10),
        (Pathway("dgme", "minsal", "HEALTH_MEDICAL", "RETURN_RECEPTION", PRIORITY,
                 "any", ("SERIOUS_MEDICAL_CONDITION", "PREGNANT_OR_LACTATING")), 12),
        (Pathway("dgme", "rnpn", "IDENTITY_DOCUMENTATION", "RETURN_RECEPTION", ROUTINE,
                 "adult"), 10),
        (Pathway("dgme", "mtps", "EMPLOYMENT_LIVELIHOODS", "RETURN_RECEPTION", ROUTINE,
                 "adult"), 10),
        (Pathway("dgme", "pgr", "LEGAL_AID", "RETURN_RECEPTION", ROUTINE, "adult",
                 ("FAMILY_SEPARATION",)), 4),
        (Pathway("dgme", "mjsp_dnavmf", "VICTIM_ASSISTANCE_GENERAL", "RETURN_RECEPTION",
                 PRIORITY, "adult", ("FORCED_DISPLACEMENT_RISK",
                                     "INTERNATIONAL_PROTECTION_NEED")), 5),
        (Pathway("dgme", "mjsp_dnavmf", "TRAFFICKING_VICTIM_ASSISTANCE",
                 "RETURN_RECEPTION", URGENT, "any", ("POSSIBLE_TRAFFICKING_VICTIM",)), 1),
        (Pathway("mjsp_dnavmf", "isdemu", "GBV_SPECIALISED", "DISPLACEMENT_REGISTRATION",
                 URGENT, "woman", ("GBV_SURVIVOR",)), 6),
        (Pathway("mjsp_dnavmf", "conapina", "CHILD_PROTECTION",
                 "DISPLACEMENT_REGISTRATION", PRIORITY, "child"), 5),
        (Pathway("mjsp_dnavmf", "minsal", "MENTAL_HEALTH_PSYCHOSOCIAL",
                 "DISPLACEMENT_REGISTRATION", ROUTINE, "any",
                 ("MENTAL_HEALTH_NEED",)), 5),
        (Pathway("mjsp_dnavmf", "mineducyt", "EDUCATION", "DISPLACEMENT_REGISTRATION",
                 ROUTINE, "child"), 4),
        (Pathway("mjsp_dnavmf", "pgr", "LEGAL_AID", "DISPLACEMENT_REGISTRATION", ROUTINE,
                 "adult"), 3),
        (Pathway("migobdt_dgpc", "minsal", "HEALTH_MEDICAL", "DISPLACEMENT_REGISTRATION",
                 PRIORITY, "any", ("OLDER_PERSON_AT_RISK", "PERSON_WITH_DISABILITY")), 4),
        (Pathway("migobdt_dgpc", "conapina", "CHILD_PROTECTION",
                 "DISPLACEMENT_REGISTRATION", PRIORITY, "child",
                 ("SEPARATED_CHILD",)), 2),
        (Pathway("minsal", "isdemu", "GBV_SPECIALISED", "OTHER", URGENT, "woman",
                 ("GBV_SURVIVOR",)), 3),
        (Pathway("conapina", "pgr", "LEGAL_AID", "OTHER", ROUTINE, "child"), 3),
        (Pathway("conapina", "minsal", "HEALTH_MEDICAL", "OTHER", PRIORITY, "child"), 2),
        (Pathway("rree_vmdmh", "mtps", "EMPLOYMENT_LIVELIHOODS",
                 "MUNICIPAL_MIGRATION_DESK", ROUTINE, "adult"), 4),
    )
)  # fmt: skip
PATHWAY_BY_NAME: Final = {p.name: p for p in PATHWAYS.items}

ENDINGS: Final = Weighted(
    (("completed", 30), ("appointment", 14), ("not_successful", 6), ("in_service", 6),
     ("accepted", 8), ("rejected", 12), ("revoked", 3), ("overdue", 13), ("pending", 8))
)  # fmt: skip
# Transitions of each ending after CREATED: (lifecycle event, status after, before).
PLANS: Final[Mapping[str, tuple[tuple[str, str, str], ...]]] = {
    "pending": (),
    "overdue": (),
    "accepted": (("ACCEPTED", "ACCEPTED", "SENT"),),
    "rejected": (("REJECTED", "REJECTED", "SENT"),),
    "revoked": (("REVOKED", "REVOKED", "SENT"),),
    "in_service": (
        ("ACCEPTED", "ACCEPTED", "SENT"),
        ("SERVICE_STARTED", "IN_SERVICE", "ACCEPTED"),
    ),
    "completed": (
        ("ACCEPTED", "ACCEPTED", "SENT"),
        ("SERVICE_STARTED", "IN_SERVICE", "ACCEPTED"),
        ("COMPLETED", "DONE", "IN_SERVICE"),
    ),
    "appointment": (
        ("ACCEPTED", "ACCEPTED", "SENT"),
        ("APPOINTMENT_SCHEDULED", "ACCEPTED", "ACCEPTED"),
        ("SERVICE_STARTED", "IN_SERVICE", "ACCEPTED"),
        ("COMPLETED", "DONE", "IN_SERVICE"),
    ),
    "not_successful": (
        ("ACCEPTED", "ACCEPTED", "SENT"),
        ("COMPLETED", "DONE", "ACCEPTED"),
    ),
}
REJECTIONS: Final = Weighted(
    (("NOT_ELIGIBLE", 25), ("NO_CAPACITY", 25), ("OUTSIDE_COVERAGE_AREA", 15),
     ("SERVICE_NOT_OFFERED", 10), ("DUPLICATE_REFERRAL", 10),
     ("INSUFFICIENT_INFORMATION", 12), ("OTHER", 3))
)  # fmt: skip
NOT_SUCCESSFUL: Final = Weighted(
    (("UNABLE_TO_CONTACT_CLIENT", 40), ("CLIENT_REFUSED_SERVICES", 20),
     ("SERVICES_NO_LONGER_NEEDED", 20), ("LACK_OF_CAPACITY", 10), ("OTHER", 10))
)  # fmt: skip
REVOCATIONS: Final = Weighted(
    (("CONSENT_WITHDRAWN", 30), ("REFERRED_IN_ERROR", 30), ("NEED_RESOLVED", 30),
     ("OTHER", 10))
)  # fmt: skip
CHANNELS: Final = Weighted(
    (("PHONE_CALL", 50), ("MESSAGING_APP", 30), ("SMS", 10), ("IN_PERSON", 10))
)
_PRIVATE_SERVICES: Final = frozenset({"GBV_SPECIALISED", "TRAFFICKING_VICTIM_ASSISTANCE"})
_STEP: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Subject:
    """The person referred, as the referring institution holds them."""

    profile: Event
    identity: Event | None
    location: Event | None
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """Consent as recorded, or why it was overridden, and the resulting legal basis."""

    record: Event
    overridden: bool
    override_reason: str | None
    legal_basis: str
    ref: str | None


@dataclass(frozen=True, slots=True)
class _Step:
    lifecycle_event: str
    status: str
    previous: str | None
    at: datetime


def referral_lifecycle(
    rng: random.Random,
    now: datetime,
    *,
    pathway: str | None = None,
    ending: str | None = None,
) -> list[Event]:
    """A whole referral, every transition already in the past; one ``referral_id``.

    ``pathway`` (e.g. ``dgme->conapina:CHILD_PROTECTION``) and ``ending`` (one of
    `ENDINGS`: completed, appointment, not_successful, in_service, accepted,
    rejected, revoked, overdue, pending) are drawn when not given. An ``overdue``
    referral stays SENT with ``response_due_at`` already past.
    """
    now = pp.check_now(now)
    path = _pathway(rng, pathway)
    end = _ending(rng, ending)
    urgency = path.urgency.pick(rng)
    subject = _subject(rng, now, path)
    offsets = _offsets(rng, PLANS[end], urgency)
    window = RESPONSE_WINDOW[urgency]
    if end == "overdue":
        created = now - window - pp.seconds(rng, 1800, 72 * 3600)
    elif end == "pending":
        created = now - window * rng.uniform(0.0, 0.7) - 2 * _STEP
    else:
        created = now - offsets[-1][3] - 2 * _STEP - pp.seconds(rng, 0, 48 * 3600)
    consent = _consent(rng, path, subject, urgency, created - pp.seconds(rng, 60, 3600))
    steps = [_Step(e, s, p, created + off) for e, s, p, off in offsets]
    return _events(
        rng,
        path=path,
        subject=subject,
        consent=consent,
        urgency=urgency,
        steps=steps,
        now=now,
    )


def referral_for(
    rng: random.Random,
    now: datetime,
    *,
    pathway: str,
    subject: Subject,
    consent: ConsentDecision,
    identified_at: datetime,
) -> list[Event]:
    """A referral made about a known person at ``identified_at``, cut at ``now``.

    Transitions that would happen after ``now`` are left out: the referral is
    still open when it reaches the hub, as it would be in real time.
    """
    now = pp.check_now(now)
    path = _pathway(rng, pathway)
    urgency = path.urgency.pick(rng)
    offsets = _offsets(rng, PLANS[_ending(rng, None)], urgency)
    # However little time has passed since, the referral itself is already made.
    room = now - identified_at
    created = identified_at + room * rng.uniform(0.0, 0.3)
    recorded = created + (now - created) * rng.uniform(0.3, 0.9)
    first = Stamps(created, recorded, recorded + (now - recorded) * rng.uniform(0.1, 0.9))
    steps = [_Step(e, s, p, created + off) for e, s, p, off in offsets]
    return _events(
        rng,
        first=first,
        path=path,
        subject=subject,
        consent=consent,
        urgency=urgency,
        steps=steps,
        now=now,
    )


def _pathway(rng: random.Random, name: str | None) -> Pathway:
    if name is None:
        return PATHWAYS.pick(rng)
    try:
        return PATHWAY_BY_NAME[name]
    except KeyError as e:
        raise SimulationError(
            f"unknown referral pathway {name!r}; known: {', '.join(PATHWAY_BY_NAME)}"
        ) from e


def _ending(rng: random.Random, name: str | None) -> str:
    if name is None:
        return ENDINGS.pick(rng)
    if name not in PLANS:
        raise SimulationError(
            f"unknown referral ending {name!r}; known: {', '.join(PLANS)}"
        )
    return name


def _offsets(
    rng: random.Random, plan: tuple[tuple[str, str, str], ...], urgency: str
) -> list[tuple[str, str, str | None, timedelta]]:
    """Each transition with its delay after CREATED; answers come before the due time."""
    window = RESPONSE_WINDOW[urgency]
    out: list[tuple[str, str, str | None, timedelta]] = [
        ("CREATED", "SENT", None, timedelta(0))
    ]
    at = max(_STEP, window * rng.uniform(0.03, 0.85))
    for event, status, previous in plan:
        out.append((event, status, previous, at))
        if event == "APPOINTMENT_SCHEDULED":
            # Service starts at the appointment, a few days later.
            at += timedelta(days=rng.uniform(1, 10))
        elif event == "ACCEPTED":
            at += pp.seconds(rng, 3600, 5 * 86400)
        else:
            at += pp.seconds(rng, 2 * 3600, 20 * 86400)
    return out


def _subject(rng: random.Random, now: datetime, path: Pathway) -> Subject:
    kind = path.subject
    if kind == "any":
        kind = "child" if rng.random() < 0.25 else "adult"
    today = now.date()
    if kind == "child":
        age = (
            rng.randint(6, 17)
            if path.category == "CHILD_PROTECTION"
            else rng.randint(0, 17)
        )
        sex = "FEMALE" if rng.random() < 0.5 else "MALE"
        person = pp.new_person(rng, today, sex=sex, age=age)
        docs = pp.child_documents(rng)
    else:
        female = kind == "woman" or rng.random() < 0.4
        age = rng.randint(18, 55) if kind == "woman" else pp.adult_age(rng)
        person = pp.new_person(rng, today, sex="FEMALE" if female else "MALE", age=age)
        valid_dui = path.category != "IDENTITY_DOCUMENTATION" and rng.random() < 0.9
        docs = pp.adult_documents(rng, valid_dui=valid_dui)
    flags = (ref.pick(rng, path.flags),) if path.flags and rng.random() < 0.8 else ()
    return Subject(
        pp.profile(person), pp.identity(person, docs, None), pp.location(rng), flags
    )


def _consent(
    rng: random.Random, path: Pathway, subject: Subject, urgency: str, given_at: datetime
) -> ConsentDecision:
    purpose = SERVICE_PURPOSE[path.category]
    minor = bool(subject.profile["is_minor"])
    if minor and rng.random() < 0.4:
        return overridden("BEST_INTEREST_OF_CHILD")
    if not minor and rng.random() < 0.04:
        urgent = urgency == "IMMEDIATE_24H"
        return overridden("RISK_TO_LIFE" if urgent else "LEGAL_OBLIGATION")
    method = "GUARDIAN_OR_REPRESENTATIVE" if minor else pp.CONSENT_METHODS.pick(rng)
    record = pp.consent([purpose], method=method, given_at=given_at)
    return consented(record, _consent_ref(rng, path.referring))


def overridden(reason: str) -> ConsentDecision:
    """Consent not obtained; the referral goes ahead for ``reason``."""
    basis = {
        "BEST_INTEREST_OF_CHILD": "BEST_INTEREST_OF_CHILD",
        "RISK_TO_LIFE": "VITAL_INTEREST",
        "LEGAL_OBLIGATION": "LEGAL_MANDATE",
    }[reason]
    return ConsentDecision(
        record=pp.consent(None),
        overridden=True,
        override_reason=reason,
        legal_basis=basis,
        ref=None,
    )


def consented(record: Event, ref_id: str | None) -> ConsentDecision:
    """Consent the person already gave (e.g. at reception), reused for the referral."""
    return ConsentDecision(
        record=record,
        overridden=False,
        override_reason=None,
        legal_basis="CONSENT",
        ref=ref_id,
    )


def _consent_ref(rng: random.Random, institution: str) -> str:
    return f"{institution.upper()}-CONS-{pp.digits(rng, 8)}"


def _contact(rng: random.Random, path: Pathway, subject: Subject) -> Event:
    minor = bool(subject.profile["is_minor"])
    private = path.category in _PRIVATE_SERVICES
    return {
        "phone": ref.synthetic_phone(rng) if rng.random() < 0.8 else None,
        "preferred_channel": "VIA_GUARDIAN" if minor else CHANNELS.pick(rng),
        # Calling a GBV or trafficking survivor can put them at risk.
        "safe_to_contact": rng.random() < (0.55 if private else 0.97),
    }


def _events(
    rng: random.Random,
    *,
    path: Pathway,
    subject: Subject,
    consent: ConsentDecision,
    urgency: str,
    steps: list[_Step],
    now: datetime,
    first: Stamps | None = None,
) -> list[Event]:
    referral_id = pp.new_uuid(rng)
    created = steps[0].at
    due = pp.timestamp(created + RESPONSE_WINDOW[urgency])
    units = {
        path.referring: _unit(rng, path.referring, subject),
        path.receiving: _unit(rng, path.receiving, subject),
    }
    case_ids = {
        path.referring: _case_id(rng, path.referring),
        path.receiving: _case_id(rng, path.receiving),
    }
    common: dict[str, Any] = {
        "referral_id": referral_id,
        "referring_institution_id": path.referring,
        "referring_unit_id": units[path.referring],
        "referring_worker_key": pp.token(rng, "w"),
        "receiving_institution_id": path.receiving,
        "receiving_unit_id": units[path.receiving],
        "service_category": path.category,
        "service_group": SERVICE_GROUP[path.category],
        "service_code": f"{path.receiving.upper()}-SVC-{pp.digits(rng, 2)}"
        if rng.random() < 0.6
        else None,
        "urgency": urgency,
        "origin_context": path.origin,
        "subject_profile": subject.profile,
        "subject_location": subject.location,
        "consent": consent.record,
        "consent_overridden": consent.overridden,
        "override_reason": consent.override_reason,
        "response_due_at": due,
    }
    contact = _contact(rng, path, subject)
    outcome = "SUCCESSFUL" if rng.random() < 0.8 else "NOT_SUCCESSFUL"
    events: list[Event] = []
    appointment: str | None = None
    for step in steps:
        stamps = (
            first
            if first and not events
            else Stamps.after(rng, step.at, record_lag=(30, 600), publish_lag=(0.2, 30))
        )
        if stamps.published > now:
            break
        actor = (
            path.referring
            if step.lifecycle_event in ("CREATED", "REVOKED")
            else path.receiving
        )
        if step.lifecycle_event == "APPOINTMENT_SCHEDULED":
            appointment = pp.timestamp(step.at + timedelta(days=rng.uniform(1, 10)))
        payload = {
            **common,
            "lifecycle_event": step.lifecycle_event,
            "status": step.status,
            "previous_status": step.previous,
            "appointment_at": appointment,
            **_details(rng, step, outcome, stamps),
        }
        if step.lifecycle_event == "CREATED":
            # Only the first message carries who the person is; later ones refer to it.
            payload |= {
                "subject_identity": subject.identity,
                "subject_contact": contact,
                "protection_flags": list(subject.flags),
            }
        events.append(
            {
                "envelope": pp.envelope(
                    rng,
                    event_type="referral",
                    source=actor,
                    unit=(units[actor] or "").lower() or None,
                    system=f"{actor}-case-management",
                    record_id=case_ids[actor],
                    stamps=stamps,
                    correlation_id=referral_id,
                    purposes=[SERVICE_PURPOSE[path.category], "POLICY_COORDINATION"],
                    legal_basis=consent.legal_basis,
                    sensitivity=_sensitivity(path, subject),
                    retention_years=5,
                    consent_ref=consent.ref,
                    causation_id=events[-1]["envelope"]["event_id"] if events else None,
                ),
                "payload": payload,
            }
        )
    return events


def _details(rng: random.Random, step: _Step, outcome: str, stamps: Stamps) -> Event:
    event = step.lifecycle_event
    details: Event = {}
    if event == "REJECTED":
        details["rejection_reason"] = REJECTIONS.pick(rng)
    elif event == "REVOKED":
        details["revocation_reason"] = REVOCATIONS.pick(rng)
    elif event == "COMPLETED":
        success = step.previous == "IN_SERVICE" and outcome == "SUCCESSFUL"
        details["outcome"] = "SUCCESSFUL" if success else "NOT_SUCCESSFUL"
        details["reason_not_successful"] = None if success else NOT_SUCCESSFUL.pick(rng)
        details["service_implemented"] = success
        details["service_implemented_at"] = (
            pp.timestamp(stamps.occurred) if success else None
        )
    return details


def _sensitivity(path: Pathway, subject: Subject) -> str:
    if path.category in _HIGHLY_SENSITIVE or subject.flags:
        return "HIGHLY_SENSITIVE"
    return "SENSITIVE"


def _unit(rng: random.Random, institution: str, subject: Subject) -> str | None:
    dept = (subject.location or {}).get("department_code", "SV-SS")[3:]
    units = {
        "dgme": "DGME-GAMI",
        "minsal": f"MINSAL-UCSF-{dept}-{rng.randrange(1, 40):02d}",
        "conapina": f"CONAPINA-{dept}",
        "isdemu": f"ISDEMU-CM-{dept}",
        "mjsp_dnavmf": f"DNAVMF-OLAV-{dept}",
        "mtps": f"MTPS-OD-{dept}",
        "pgr": f"PGR-{dept}",
        "rnpn": "RNPN-DUI-GAMI",
        "mineducyt": f"MINED-DD-{dept}",
        "migobdt_dgpc": f"DGPC-{dept}",
    }
    return units.get(institution)


def _case_id(rng: random.Random, institution: str) -> str:
    return f"{institution.upper()}-REF-{pp.digits(rng, 7)}"


_VICTIM_RISK: Final = ("FORCED_DISPLACEMENT_RISK", "INTERNATIONAL_PROTECTION_NEED")
_HEALTH_FLAGS: Final = ("SERIOUS_MEDICAL_CONDITION", "PREGNANT_OR_LACTATING")
_SHELTER_HEALTH_FLAGS: Final = ("OLDER_PERSON_AT_RISK", "PERSON_WITH_DISABILITY")
_CHILD_OVERRIDABLE: Final = frozenset({"CHILD_PROTECTION", "HEALTH_MEDICAL"})


def follow_ups(rng: random.Random, now: datetime, event: Event) -> list[list[Event]]:
    """Referrals a reception or registration leads to, about the same person.

    A lone child always goes to CONAPINA; other needs are referred some of the time.
    Each referral rests on consent the person gave for that purpose, or on a
    recorded override (a child's best interest, a risk to life); without either
    there is no referral.
    """
    now = pp.check_now(now)
    kind = event["envelope"]["event_type"]
    if kind == "return_arrival":
        wanted = _after_arrival(rng, event["payload"])
    elif kind == "displacement_registration":
        wanted = _after_registration(rng, event["payload"])
    else:
        return []
    identified = datetime.fromisoformat(event["envelope"]["recorded_at"])
    consent = event["payload"]["consent"]
    out: list[list[Event]] = []
    for name, subject in wanted:
        decision = _decide_consent(
            name, subject, consent, event["envelope"]["consent_ref"]
        )
        if decision is None:
            continue
        out.append(
            referral_for(
                rng,
                now,
                pathway=name,
                subject=subject,
                consent=decision,
                identified_at=min(identified, now),
            )
        )
    return out


def _decide_consent(
    name: str, subject: Subject, consent: Event, consent_ref: str | None
) -> ConsentDecision | None:
    path = PATHWAY_BY_NAME[name]
    if consent["obtained"] and SERVICE_PURPOSE[path.category] in consent["scopes"]:
        return consented(consent, consent_ref)
    if subject.profile["is_minor"] and path.category in _CHILD_OVERRIDABLE:
        return overridden("BEST_INTEREST_OF_CHILD")
    if path.category == "TRAFFICKING_VICTIM_ASSISTANCE":
        return overridden("RISK_TO_LIFE")
    return None


def _after_arrival(rng: random.Random, payload: Event) -> list[tuple[str, Subject]]:
    flags = set(payload["protection_flags"])

    def subject(*need_to_know: str) -> Subject:
        shared = tuple(f for f in need_to_know if f in flags)
        return Subject(
            payload["person_profile"],
            payload["person_identity"],
            payload["destination"],
            shared,
        )

    wanted = []
    if payload["accompaniment"] in ("CHILD_UNACCOMPANIED", "CHILD_SEPARATED"):
        flags_for_child = ("UNACCOMPANIED_CHILD", "SEPARATED_CHILD")
        wanted.append(("dgme->conapina:CHILD_PROTECTION", subject(*flags_for_child)))
    if payload["medical_attention_required"] and rng.random() < 0.35:
        wanted.append(("dgme->minsal:HEALTH_MEDICAL", subject(*_HEALTH_FLAGS)))
    if payload["has_valid_dui"] is False and rng.random() < 0.5:
        wanted.append(("dgme->rnpn:IDENTITY_DOCUMENTATION", subject()))
    employment = payload["employment_profile"]
    if employment and employment["interested_in_job_placement"] and rng.random() < 0.15:
        wanted.append(("dgme->mtps:EMPLOYMENT_LIVELIHOODS", subject()))
    if flags.intersection(_VICTIM_RISK):
        wanted.append(
            ("dgme->mjsp_dnavmf:VICTIM_ASSISTANCE_GENERAL", subject(*_VICTIM_RISK))
        )
    if "POSSIBLE_TRAFFICKING_VICTIM" in flags:
        wanted.append(
            (
                "dgme->mjsp_dnavmf:TRAFFICKING_VICTIM_ASSISTANCE",
                subject("POSSIBLE_TRAFFICKING_VICTIM"),
            )
        )
    if "FAMILY_SEPARATION" in flags and rng.random() < 0.5:
        wanted.append(("dgme->pgr:LEGAL_AID", subject("FAMILY_SEPARATION")))
    return wanted


def _after_registration(rng: random.Random, payload: Event) -> list[tuple[str, Subject]]:
    members = [m for m in payload["members"] if m["identity"] is not None]
    violence = payload["regime"] == "VIOLENCE_DL539"
    current = payload["current_location"] or payload["origin"]
    # Where a violence-displaced family now lives never leaves DNAVMF: the receiving
    # service learns the department only.
    where = (
        {"department_code": current["department_code"], "municipality_code": None,
         "district_code": None, "locality": None}
        if violence
        else current
    )  # fmt: skip

    def subject(member: Event, *need_to_know: str) -> Subject:
        shared = tuple(f for f in need_to_know if f in member["protection_flags"])
        return Subject(member["profile"], member["identity"], where, shared)

    wanted: list[tuple[str, Subject]] = []
    children = [m for m in members if m["profile"]["is_minor"]]
    if violence:
        gbv = "mjsp_dnavmf->isdemu:GBV_SPECIALISED"
        wanted.extend(
            (gbv, subject(m, "GBV_SURVIVOR"))
            for m in members
            if "GBV_SURVIVOR" in m["protection_flags"]
        )
        if children and rng.random() < 0.3:
            wanted.append(
                ("mjsp_dnavmf->conapina:CHILD_PROTECTION", subject(children[0]))
            )
        if children and rng.random() < 0.25:
            wanted.append(("mjsp_dnavmf->mineducyt:EDUCATION", subject(children[-1])))
        return wanted
    for member in members:
        if set(member["protection_flags"]).intersection(_SHELTER_HEALTH_FLAGS):
            if rng.random() < 0.5:
                wanted.append(
                    (
                        "migobdt_dgpc->minsal:HEALTH_MEDICAL",
                        subject(member, *_SHELTER_HEALTH_FLAGS),
                    )
                )
            break
    return wanted


def overdue_notice(
    rng: random.Random, referral: Event, now: datetime, supervisor: str | None
) -> Event:
    """The hub's ``referral_overdue`` notice for ``referral`` (a CREATED) unanswered.

    The referral tracker publishes these (source ``hub_referrals``); the simulator
    makes one only as an example of what referring and supervising institutions get.
    """
    payload = referral["payload"]
    sent = datetime.fromisoformat(referral["envelope"]["occurred_at"])
    due = sent + RESPONSE_WINDOW[payload["urgency"]]
    at = pp.timestamp(max(now, due))
    return {
        "envelope": {
            "event_id": pp.new_uuid(rng),
            "event_type": "referral_overdue",
            "source_institution_id": "hub_referrals",
            "source_system": "puente-referrals",
            "occurred_at": at,
            "recorded_at": at,
            "published_at": at,
            "correlation_id": payload["referral_id"],
            "subject_key_basis": "NONE",
            "record_sensitivity": "STANDARD",
            "legal_basis": "LEGAL_MANDATE",
            "purposes": ["POLICY_COORDINATION", "CHILD_PROTECTION"],
        },
        "payload": {
            "referral_id": payload["referral_id"],
            "deadline": "ACKNOWLEDGE",
            "due_at": pp.timestamp(due),
            "escalation_level": 1,
            "urgency": payload["urgency"],
            "service_group": payload["service_group"],
            "referring_institution_id": payload["referring_institution_id"],
            "receiving_institution_id": payload["receiving_institution_id"],
            "supervising_institution_id": supervisor,
        },
    }
