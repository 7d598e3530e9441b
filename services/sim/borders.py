"""Entries and exits at the CA-4 land posts, the airport and the ports (pure).

Rules of the migration authority: CA-4 nationals cross with their national
ID, minors need a passport and, without both parents, a notarised permit; the
Perquín border-resident card; H-2 and Canadian seasonal workers leave and come
back through the airport.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from services.sim import people as pp
from services.sim import reference as ref
from services.sim.people import Event, Person, Stamps
from services.sim.reference import CrossingPoint, Weighted

SOURCE: Final = "dgme"
SYSTEM: Final = "dgme-border-control"

LAND_TRANSPORT: Final = Weighted(
    (("PEDESTRIAN", 20), ("PRIVATE_VEHICLE", 30), ("BUS", 40), ("CARGO_VEHICLE", 10))
)
COMPANIONS: Final = Weighted(
    (("BOTH_PARENTS", 40), ("ONE_PARENT", 35), ("LEGAL_GUARDIAN", 5),
     ("AUTHORIZED_ADULT", 12), ("UNACCOMPANIED", 8))
)  # fmt: skip
NATIONAL_ENTRY: Final = Weighted(
    (("RETURN_TO_RESIDENCE", 60), ("FAMILY_VISIT", 10), ("TOURISM_LEISURE", 8),
     ("BUSINESS", 10), ("HEALTH", 2), ("OTHER", 3), ("NOT_DECLARED", 7))
)  # fmt: skip
NATIONAL_EXIT: Final = Weighted(
    (("TOURISM_LEISURE", 25), ("FAMILY_VISIT", 25), ("BUSINESS", 15),
     ("TEMPORARY_WORK", 6), ("STUDY", 3), ("HEALTH", 2), ("OTHER", 5),
     ("NOT_DECLARED", 19))
)  # fmt: skip
FOREIGN_ENTRY: Final = Weighted(
    (("TOURISM_LEISURE", 35), ("FAMILY_VISIT", 18), ("BUSINESS", 20), ("TRANSIT", 10),
     ("TEMPORARY_WORK", 5), ("STUDY", 2), ("HEALTH", 2), ("NOT_DECLARED", 8))
)  # fmt: skip
FOREIGN_EXIT: Final = Weighted(
    (("RETURN_TO_RESIDENCE", 50), ("TRANSIT", 15), ("TOURISM_LEISURE", 15),
     ("NOT_DECLARED", 20))
)  # fmt: skip
ENTRY_REFUSALS: Final = Weighted(
    (("INVALID_OR_MISSING_DOCUMENT", 35), ("ENTRY_REQUIREMENTS_NOT_MET", 40),
     ("HEALTH_REQUIREMENT", 5), ("MIGRATION_RESTRICTION", 15), ("OTHER", 5))
)  # fmt: skip
EXIT_REFUSALS: Final = Weighted(
    (("MIGRATION_RESTRICTION", 60), ("INVALID_OR_MISSING_DOCUMENT", 40))
)
ONWARD_NORTH: Final = Weighted((("GT", 70), ("MX", 18), ("US", 12)))
ONWARD_SOUTH: Final = Weighted((("HN", 30), ("NI", 35), ("CR", 25), ("PA", 10)))


@dataclass(frozen=True, slots=True)
class _Traveller:
    person: Person
    nationality: str
    resident: bool


def border_crossing(rng: random.Random, now: datetime) -> Event:
    """One entry or exit recorded by DGME at an official border point."""
    now = pp.check_now(now)
    point = ref.BORDER_POINTS.pick(rng)
    entering = rng.random() < 0.5
    counterpart = _counterpart(rng, point)
    traveller = _traveller(rng, now, point, counterpart)
    person = traveller.person
    doc_type, regime, number = _document(rng, point, traveller)
    programme = _programme(rng, traveller, point, counterpart, entering=entering)
    purpose = _purpose(rng, traveller, programme, entering=entering)
    minor_travel = _minor_travel(rng, entering=entering) if person.is_minor else None
    outcome, refusal = _outcome(rng, traveller, minor_travel, entering=entering)
    stamps = Stamps.before(rng, now, record_lag=(1, 120), publish_lag=(0.1, 8))
    day = stamps.recorded.date().isoformat().replace("-", "")
    record_id = f"{point.id}-{day}-{pp.digits(rng, 6)}"
    purposes = {"BORDER_MANAGEMENT", "OFFICIAL_STATISTICS"}
    if person.is_minor:
        purposes.add("CHILD_PROTECTION")
    if programme:
        purposes.add("POLICY_COORDINATION")
    issuing = "SV" if regime in ("NATIONAL", "BORDER_RESIDENT_CARD") else None
    issuing = issuing or (None if doc_type == "RESIDENCE_CARD" else traveller.nationality)
    return {
        "envelope": pp.envelope(
            rng,
            event_type="border_crossing",
            source=SOURCE,
            unit=f"dgme-{point.id.lower()}",
            system=SYSTEM,
            record_id=record_id,
            stamps=stamps,
            correlation_id=pp.new_uuid(rng),
            purposes=[p for p in _PURPOSE_ORDER if p in purposes],
            legal_basis="LEGAL_MANDATE",
            sensitivity="SENSITIVE" if refusal or minor_travel else "STANDARD",
            retention_years=5,
        ),
        "payload": {
            "crossing_id": record_id,
            "border_point_id": point.id,
            "border_type": point.mode,
            "direction": "ENTRY" if entering else "EXIT",
            "traveller_profile": pp.profile(person, traveller.nationality),
            "traveller_identity": pp.identity(
                person, [pp.document(doc_type, number, issuing)], None
            ),
            "travel_document_type": doc_type,
            "mobility_regime": regime,
            "counterpart_country": counterpart,
            "declared_final_destination": _final_destination(
                rng, traveller, counterpart, purpose, entering=entering
            ),
            "declared_purpose": purpose,
            "transport": _transport(rng, point),
            "outcome": outcome,
            "refusal_reason": refusal,
            "minor_travel": minor_travel,
            "labour_mobility_programme": programme,
        },
    }


_PURPOSE_ORDER: Final = (
    "CHILD_PROTECTION",
    "BORDER_MANAGEMENT",
    "OFFICIAL_STATISTICS",
    "POLICY_COORDINATION",
)


def _counterpart(rng: random.Random, point: CrossingPoint) -> str:
    if point.mode == "AIR":
        return ref.AIR_COUNTERPARTS.pick(rng)
    if point.neighbours:
        return ref.pick(rng, point.neighbours)
    return "US" if rng.random() < 0.5 else "PA"


def _traveller(
    rng: random.Random, now: datetime, point: CrossingPoint, counterpart: str
) -> _Traveller:
    roll = rng.random()
    national_share = {"LAND": 0.45, "AIR": 0.55, "SEA": 0.4}[point.mode]
    ca4_share = {"LAND": 0.4, "AIR": 0.08, "SEA": 0.4}[point.mode]
    if roll < national_share:
        nationality = "SV"
    elif roll < national_share + ca4_share:
        nationality = counterpart if counterpart in ref.CA4 else ref.pick(rng, ref.CA4)
    else:
        nationality = ref.EXTRA_REGIONAL.pick(rng)
    minor = rng.random() < 0.09
    age = rng.randint(0, 17) if minor else pp.adult_age(rng)
    sex = "FEMALE" if rng.random() < 0.42 else "MALE"
    person = pp.new_person(rng, now.date(), sex=sex, age=age)
    resident = nationality != "SV" and rng.random() < 0.05
    return _Traveller(person, nationality, resident)


def _document(
    rng: random.Random, point: CrossingPoint, traveller: _Traveller
) -> tuple[str, str, str]:
    """(document type, mobility regime, synthetic number)."""
    nationality = traveller.nationality
    minor = traveller.person.is_minor
    if nationality == "SV":
        if minor and point.id in ref.BORDER_RESIDENT_POINTS and rng.random() < 0.4:
            number = f"ZZBR-{pp.digits(rng, 7)}"
            return "BORDER_RESIDENT_CARD", "BORDER_RESIDENT_CARD", number
        if not minor and point.mode == "LAND":
            return "DUI", "NATIONAL", ref.synthetic_dui(rng)
        return "PASSPORT_SV", "NATIONAL", ref.synthetic_passport(rng, "SV")
    if traveller.resident:
        return "RESIDENCE_CARD", "RESIDENT_PERMIT", f"ZZRC-{pp.digits(rng, 7)}"
    passport = ref.synthetic_passport(rng, nationality)
    if nationality in ref.CA4:
        # CA-4 adults cross on their national ID; minors need a passport.
        if not minor and (point.mode == "LAND" or rng.random() < 0.5):
            number = f"ZZ{nationality}{pp.digits(rng, 8)}"
            return "CA4_NATIONAL_ID", "CA4_FREE_MOBILITY", number
        return "PASSPORT_FOREIGN", "CA4_FREE_MOBILITY", passport
    if nationality in ref.VISA_REQUIRED:
        regime = "CA4_SINGLE_VISA" if rng.random() < 0.4 else "VISA"
        return "PASSPORT_FOREIGN", regime, passport
    return "PASSPORT_FOREIGN", "VISA_EXEMPT", passport


def _programme(
    rng: random.Random,
    traveller: _Traveller,
    point: CrossingPoint,
    counterpart: str,
    *,
    entering: bool,
) -> str | None:
    """Seasonal workers: H-2A/H-2B to the US, temporary foreign workers to Canada."""
    if traveller.nationality != "SV" or traveller.person.is_minor or point.mode != "AIR":
        return None
    odds = 0.06 if entering else 0.12
    if counterpart == "US" and rng.random() < odds:
        return "US_H2A" if rng.random() < 0.6 else "US_H2B"
    if counterpart == "CA" and rng.random() < odds * 3:
        return "CANADA_TFW"
    return None


def _purpose(
    rng: random.Random, traveller: _Traveller, programme: str | None, *, entering: bool
) -> str:
    if programme:
        return "RETURN_TO_RESIDENCE" if entering else "TEMPORARY_WORK"
    if traveller.resident:
        return "RETURN_TO_RESIDENCE" if entering else "FAMILY_VISIT"
    if traveller.nationality == "SV":
        return (NATIONAL_ENTRY if entering else NATIONAL_EXIT).pick(rng)
    return (FOREIGN_ENTRY if entering else FOREIGN_EXIT).pick(rng)


def _minor_travel(rng: random.Random, *, entering: bool) -> Event:
    companion = COMPANIONS.pick(rng)
    if companion == "BOTH_PARENTS":
        authorization = "NOT_REQUIRED"
    elif entering:
        authorization = "NOT_REQUIRED" if rng.random() < 0.8 else "NOTARIAL_PERMIT"
    elif companion == "LEGAL_GUARDIAN":
        authorization = (
            "JUDICIAL_OR_ADMIN_AUTHORIZATION" if rng.random() < 0.75 else "NONE_PRESENTED"
        )
    else:
        roll = rng.random()
        authorization = (
            "NOTARIAL_PERMIT"
            if roll < 0.8
            else "JUDICIAL_OR_ADMIN_AUTHORIZATION"
            if roll < 0.86
            else "NONE_PRESENTED"
        )
    return {"accompanied_by": companion, "authorization": authorization}


def _outcome(
    rng: random.Random,
    traveller: _Traveller,
    minor_travel: Event | None,
    *,
    entering: bool,
) -> tuple[str, str | None]:
    unauthorised_minor = (
        minor_travel is not None and minor_travel["authorization"] == "NONE_PRESENTED"
    )
    if entering:
        # Nationals cannot be refused entry to their own country.
        if traveller.nationality == "SV":
            return "ADMITTED", None
        if unauthorised_minor and rng.random() < 0.5:
            return "REFUSED", "MINOR_WITHOUT_REQUIRED_AUTHORIZATION"
        if rng.random() < 0.03:
            return "REFUSED", ENTRY_REFUSALS.pick(rng)
        return "ADMITTED", None
    if unauthorised_minor:
        return "EXIT_PREVENTED", "MINOR_WITHOUT_REQUIRED_AUTHORIZATION"
    if rng.random() < 0.01:
        return "EXIT_PREVENTED", EXIT_REFUSALS.pick(rng)
    return "EXIT_CLEARED", None


def _final_destination(
    rng: random.Random,
    traveller: _Traveller,
    counterpart: str,
    purpose: str,
    *,
    entering: bool,
) -> str | None:
    if rng.random() < 0.15:
        return None
    if entering:
        if purpose != "TRANSIT":
            return "SV"
        return (
            ONWARD_NORTH.pick(rng)
            if counterpart in ("HN", "NI")
            else ONWARD_SOUTH.pick(rng)
        )
    if traveller.nationality == "SV" and counterpart == "GT" and rng.random() < 0.15:
        return ONWARD_NORTH.pick(rng)
    return counterpart


def _transport(rng: random.Random, point: CrossingPoint) -> str:
    if point.mode == "AIR":
        return "AIRCRAFT_COMMERCIAL" if rng.random() < 0.97 else "AIRCRAFT_CHARTER"
    if point.mode == "SEA":
        return "VESSEL"
    return LAND_TRANSPORT.pick(rng)
