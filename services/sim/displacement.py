"""Displacement registrations under both regimes (pure).

Violence-induced displacement is registered by MJSP's victims directorate under
DL 539 at its OLAV offices; disaster displacement by Protección Civil in its
shelters, with the hazard and its event id. The two never share a publisher.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

from services.sim import people as pp
from services.sim import reference as ref
from services.sim.people import Event, Person, SimulationError, Stamps
from services.sim.reference import Weighted

Regime = Literal["VIOLENCE_DL539", "DISASTER_CIVIL_PROTECTION"]
REGIMES: Final[tuple[Regime, ...]] = ("VIOLENCE_DL539", "DISASTER_CIVIL_PROTECTION")
VIOLENCE_SOURCE: Final = "mjsp_dnavmf"
DISASTER_SOURCE: Final = "migobdt_dgpc"

VIOLENCE_CAUSES: Final = Weighted(
    (("THREAT_OR_EXTORTION_BY_CRIMINAL_GROUP", 45), ("HOMICIDE_OR_ATTACK_ON_FAMILY", 15),
     ("FORCED_RECRUITMENT_RISK", 14), ("SEXUAL_OR_GENDER_BASED_VIOLENCE", 8),
     ("DOMESTIC_VIOLENCE", 10), ("OTHER_VIOLENCE", 8))
)  # fmt: skip
HAZARDS: Final = Weighted(
    (("FLOOD", 35), ("TROPICAL_STORM_OR_HURRICANE", 28), ("LANDSLIDE", 20),
     ("EARTHQUAKE", 5), ("VOLCANIC_ACTIVITY", 3), ("DROUGHT", 3),
     ("COASTAL_EROSION_OR_SEA_LEVEL", 3), ("FIRE", 3))
)  # fmt: skip
# GLIDE hazard codes (glidenumber.net); coastal erosion has none and files as OT.
GLIDE: Final = {
    "FLOOD": "FL", "TROPICAL_STORM_OR_HURRICANE": "TC", "LANDSLIDE": "LS",
    "EARTHQUAKE": "EQ", "VOLCANIC_ACTIVITY": "VO", "DROUGHT": "DR",
    "COASTAL_EROSION_OR_SEA_LEVEL": "OT", "FIRE": "FR",
}  # fmt: skip
OLAV_OFFICES: Final = (
    "SS", "SM", "SA", "SO", "US", "LI", "CH", "AH", "UN", "MO", "PA", "CU", "CA", "SV",
    "GAMI",
)  # fmt: skip
VIOLENCE_SHELTER: Final = Weighted(
    (("HOST_FAMILY", 45), ("RENTED_HOUSING", 25), ("PROTECTION_SAFE_HOUSE", 12),
     ("STILL_AT_ORIGIN_AT_RISK", 10), ("SELF_SETTLED", 8))
)  # fmt: skip
DISASTER_SHELTER: Final = Weighted(
    (("COLLECTIVE_SHELTER", 60), ("HOST_FAMILY", 30), ("SELF_SETTLED", 5),
     ("RENTED_HOUSING", 5))
)  # fmt: skip
VIOLENCE_HOUSING: Final = Weighted(
    (("ABANDONED_UNDER_THREAT", 55), ("OCCUPIED_BY_OTHERS", 10), ("NONE", 25),
     ("UNKNOWN", 10))
)  # fmt: skip
DISASTER_HOUSING: Final = Weighted(
    (("PARTIALLY_DAMAGED", 40), ("DESTROYED", 20), ("NONE", 30), ("UNKNOWN", 10))
)
VIOLENCE_INTENTION: Final = Weighted(
    (("RELOCATION_IN_COUNTRY", 40), ("LOCAL_INTEGRATION", 20), ("MIGRATE_ABROAD", 15),
     ("RETURN_TO_ORIGIN", 5), ("UNDECIDED", 20))
)  # fmt: skip
DISASTER_INTENTION: Final = Weighted(
    (("RETURN_TO_ORIGIN", 65), ("RELOCATION_IN_COUNTRY", 15), ("UNDECIDED", 20))
)
PURPOSE_ORDER: Final = (
    "CHILD_PROTECTION", "HEALTH_CARE", "VICTIM_ASSISTANCE", "EDUCATION_CONTINUITY",
    "LEGAL_AID", "HUMANITARIAN_SHELTER", "OFFICIAL_STATISTICS", "POLICY_COORDINATION",
)  # fmt: skip
FLAG_ORDER: Final = (
    "SEPARATED_CHILD", "PREGNANT_OR_LACTATING", "PERSON_WITH_DISABILITY",
    "OLDER_PERSON_AT_RISK", "MENTAL_HEALTH_NEED", "GBV_SURVIVOR",
    "FORCED_DISPLACEMENT_RISK",
)  # fmt: skip
_GENDER_CAUSES: Final = frozenset(
    {"SEXUAL_OR_GENDER_BASED_VIOLENCE", "DOMESTIC_VIOLENCE"}
)


@dataclass(frozen=True, slots=True)
class Hazard:
    """A disaster that displaces several households in one department."""

    hazard_type: str
    event_id: str
    department: str
    started: date
    shelters: tuple[str, ...]


def new_hazard(rng: random.Random, now: datetime) -> Hazard:
    """A hazard that began in the last few days, with its GLIDE-style event id."""
    now = pp.check_now(now)
    kind = HAZARDS.pick(rng)
    started = now.date() - timedelta(days=rng.randint(0, 6))
    event_id = f"{GLIDE[kind]}-{started.year}-{pp.digits(rng, 6)}-SLV"
    dept = ref.DESTINATIONS.pick(rng)
    shelters = tuple(f"DGPC-ALB-{pp.digits(rng, 4)}" for _ in range(3))
    return Hazard(kind, event_id, dept.iso, started, shelters)


@dataclass(frozen=True, slots=True)
class _Member:
    person: Person
    relationship: str
    flags: frozenset[str]


def displacement(
    rng: random.Random,
    now: datetime,
    regime: Regime,
    *,
    hazard: Hazard | None = None,
) -> Event:
    """One `displacement_registration`: DL 539 by mjsp_dnavmf, disasters by DGPC."""
    now = pp.check_now(now)
    if regime == "VIOLENCE_DL539":
        return _violence(rng, now)
    if regime == "DISASTER_CIVIL_PROTECTION":
        return _disaster(rng, now, hazard or new_hazard(rng, now))
    raise SimulationError(f"unknown displacement regime {regime!r}; use one of {REGIMES}")


def _violence(rng: random.Random, now: datetime) -> Event:
    cause = VIOLENCE_CAUSES.pick(rng)
    secondary = VIOLENCE_CAUSES.pick(rng) if rng.random() < 0.3 else cause
    members = _household(
        rng, now.date(), female_head=0.75 if cause in _GENDER_CAUSES else 0.55
    )
    _violence_flags(rng, members, cause)
    office = ref.pick(rng, OLAV_OFFICES)
    origin = pp.location(rng)
    shelter = VIOLENCE_SHELTER.pick(rng)
    housing = VIOLENCE_HOUSING.pick(rng)
    current = origin if shelter == "STILL_AT_ORIGIN_AT_RISK" else pp.location(rng)
    safe_house = shelter == "PROTECTION_SAFE_HOUSE"
    has_children = any(m.person.is_minor for m in members)
    scopes = {"VICTIM_ASSISTANCE"}
    scopes.update(s for s, p in (("HUMANITARIAN_SHELTER", 0.5), ("LEGAL_AID", 0.4),
                                 ("HEALTH_CARE", 0.3)) if rng.random() < p)  # fmt: skip
    if has_children:
        scopes.add("CHILD_PROTECTION")
        if rng.random() < 0.5:
            scopes.add("EDUCATION_CONTINUITY")
    purposes = {"VICTIM_ASSISTANCE", "OFFICIAL_STATISTICS", "POLICY_COORDINATION"}
    if shelter in ("PROTECTION_SAFE_HOUSE", "HOST_FAMILY"):
        purposes.add("HUMANITARIAN_SHELTER")
    if has_children:
        purposes.add("CHILD_PROTECTION")
    return _registration(
        rng,
        now,
        source=VIOLENCE_SOURCE,
        unit_id=f"DNAVMF-OLAV-{office}",
        system="dnavmf-registry",
        regime="VIOLENCE_DL539",
        cause=cause,
        secondary=[] if secondary == cause else [secondary],
        hazard=None,
        displaced_on=now.date() - timedelta(days=rng.randint(0, 120)),
        members=members,
        origin=origin,
        current=current,
        shelter=(shelter, f"DNAVMF-CP-{pp.digits(rng, 2)}" if safe_house else None),
        housing=housing,
        intention=VIOLENCE_INTENTION.pick(rng),
        reported=None if rng.random() < 0.15 else rng.random() < 0.4,
        consent_scopes=pp.ordered(scopes, PURPOSE_ORDER) if rng.random() < 0.95 else None,
        purposes=pp.ordered(purposes, PURPOSE_ORDER),
        sensitivity="HIGHLY_SENSITIVE",
    )


def _disaster(rng: random.Random, now: datetime, hazard: Hazard) -> Event:
    members = _household(rng, now.date(), female_head=0.45)
    _disaster_flags(rng, members)
    dept = ref.DEPARTMENT_BY_ISO[hazard.department]
    origin = pp.location(rng, dept)
    shelter = DISASTER_SHELTER.pick(rng)
    albergue = ref.pick(rng, hazard.shelters)
    has_children = any(m.person.is_minor for m in members)
    scopes = {"HUMANITARIAN_SHELTER"}
    if rng.random() < 0.4:
        scopes.add("HEALTH_CARE")
    purposes = {"HUMANITARIAN_SHELTER", "OFFICIAL_STATISTICS", "POLICY_COORDINATION"}
    if has_children:
        scopes.add("CHILD_PROTECTION")
        purposes.add("CHILD_PROTECTION")
    if any(m.flags for m in members):
        purposes.add("HEALTH_CARE")
    return _registration(
        rng,
        now,
        source=DISASTER_SOURCE,
        unit_id=albergue,
        system="dgpc-albergues",
        regime="DISASTER_CIVIL_PROTECTION",
        cause=hazard.hazard_type,
        secondary=[],
        hazard=hazard,
        displaced_on=hazard.started,
        members=members,
        origin=origin,
        current=pp.location(rng, dept),
        shelter=(shelter, albergue if shelter == "COLLECTIVE_SHELTER" else None),
        housing=DISASTER_HOUSING.pick(rng),
        intention=DISASTER_INTENTION.pick(rng),
        reported=None,
        consent_scopes=pp.ordered(scopes, PURPOSE_ORDER) if rng.random() < 0.85 else None,
        purposes=pp.ordered(purposes, PURPOSE_ORDER),
        sensitivity="SENSITIVE",
    )


def _household(rng: random.Random, today: date, *, female_head: float) -> list[_Member]:
    sex = "FEMALE" if rng.random() < female_head else "MALE"
    head = pp.new_person(rng, today, sex=sex, age=rng.randint(19, 68))
    members = [_Member(head, "HEAD", frozenset())]
    if rng.random() < 0.25:
        return members
    if rng.random() < 0.5:
        other = "MALE" if sex == "FEMALE" else "FEMALE"
        age = max(18, head.age + rng.randint(-8, 8))
        members.append(_Member(pp.new_person(rng, today, sex=other, age=age),
                               "SPOUSE_PARTNER", frozenset()))  # fmt: skip
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
        age = rng.randint(0, min(17, max(0, head.age - 16)))
        child_sex = "FEMALE" if rng.random() < 0.5 else "MALE"
        names = pp.child_family_names(rng, head)
        child = pp.new_person(rng, today, sex=child_sex, age=age, family_names=names)
        members.append(_Member(child, "CHILD", frozenset()))
    if rng.random() < 0.12:
        elder = pp.new_person(rng, today, sex="FEMALE", age=rng.randint(60, 85))
        members.append(_Member(elder, "PARENT", frozenset()))
    return members


def _violence_flags(rng: random.Random, members: list[_Member], cause: str) -> None:
    for i, member in enumerate(members):
        flags: set[str] = set()
        if member.relationship == "HEAD" and rng.random() < 0.6:
            flags.add("FORCED_DISPLACEMENT_RISK")
        if cause in _GENDER_CAUSES and member.person.sex == "FEMALE" and i == 0:
            flags.add("GBV_SURVIVOR")
        if rng.random() < 0.08:
            flags.add("MENTAL_HEALTH_NEED")
        members[i] = _Member(member.person, member.relationship, frozenset(flags))


def _disaster_flags(rng: random.Random, members: list[_Member]) -> None:
    for i, member in enumerate(members):
        person = member.person
        flags: set[str] = set()
        if person.age >= 60 and rng.random() < 0.25:
            flags.add("OLDER_PERSON_AT_RISK")
        if rng.random() < 0.03:
            flags.add("PERSON_WITH_DISABILITY")
        if person.sex == "FEMALE" and 18 <= person.age <= 44 and rng.random() < 0.04:
            flags.add("PREGNANT_OR_LACTATING")
        members[i] = _Member(person, member.relationship, frozenset(flags))


def _member(rng: random.Random, member: _Member) -> Event:
    person = member.person
    identified = member.relationship == "HEAD" or rng.random() < 0.6
    identity = None
    if identified:
        docs = (
            pp.child_documents(rng)
            if person.is_minor
            else pp.adult_documents(rng, valid_dui=rng.random() < 0.9)
        )
        phone = ref.synthetic_phone(rng) if member.relationship == "HEAD" else None
        identity = pp.identity(person, docs, phone)
    return {
        "member_key": pp.token(rng, "mbr"),
        "relationship_to_head": member.relationship,
        "profile": pp.profile(person),
        "identity": identity,
        "protection_flags": pp.ordered(set(member.flags), FLAG_ORDER),
    }


def _composition(members: list[_Member]) -> list[Event]:
    counts: dict[tuple[str, str], int] = {}
    for member in members:
        key = (member.person.sex, pp.age_group(member.person.age))
        counts[key] = counts.get(key, 0) + 1
    return [{"sex": s, "age_group": g, "count": n} for (s, g), n in counts.items()]


def _registration(
    rng: random.Random,
    now: datetime,
    *,
    source: str,
    unit_id: str,
    system: str,
    regime: str,
    cause: str,
    secondary: list[str],
    hazard: Hazard | None,
    displaced_on: date,
    members: list[_Member],
    origin: Event,
    current: Event,
    shelter: tuple[str, str | None],
    housing: str,
    intention: str,
    reported: bool | None,
    consent_scopes: list[str] | None,
    purposes: list[str],
    sensitivity: str,
) -> Event:
    stamps = Stamps.before(rng, now, record_lag=(300, 3600), publish_lag=(1, 120))
    record_id = f"{unit_id}-{stamps.recorded.year}-{pp.digits(rng, 6)}"
    consent_at = stamps.occurred + (stamps.recorded - stamps.occurred) / 2
    household = len(members) > 1 or rng.random() < 0.3
    return {
        "envelope": pp.envelope(
            rng,
            event_type="displacement_registration",
            source=source,
            unit=f"{source}-{unit_id.split('-', 1)[1].lower()}",
            system=system,
            record_id=record_id,
            stamps=stamps,
            correlation_id=pp.new_uuid(rng),
            purposes=purposes,
            legal_basis="LEGAL_MANDATE",
            sensitivity=sensitivity,
            retention_years=10,
            consent_ref=f"{unit_id}-CONS-{pp.digits(rng, 6)}" if consent_scopes else None,
            group_key=pp.token(rng, "hh") if len(members) > 1 else None,
        ),
        "payload": {
            "registration_id": record_id,
            "regime": regime,
            "registering_unit_id": unit_id,
            "cause_primary": cause,
            "causes_secondary": secondary,
            "hazard_type": hazard.hazard_type if hazard else None,
            "hazard_event_id": hazard.event_id if hazard else None,
            "displacement_date": min(displaced_on, stamps.occurred.date()).isoformat(),
            "registration_unit": "HOUSEHOLD" if household else "INDIVIDUAL",
            "household_size": len(members),
            "composition": _composition(members),
            "members": [_member(rng, m) for m in members],
            "origin": origin,
            "current_location": current,
            "current_shelter_type": shelter[0],
            "shelter_id": shelter[1],
            "housing_impact": housing,
            "property_left_behind": housing
            in ("ABANDONED_UNDER_THREAT", "OCCUPIED_BY_OTHERS", "DESTROYED"),
            "intention": intention,
            "previous_displacements": rng.choice((0, 0, 0, 0, 1, 1, 2, 3)),
            "reported_to_authorities": reported,
            "registration_status": "ACTIVE",
            "consent": pp.consent(
                consent_scopes,
                method=pp.CONSENT_METHODS.pick(rng),
                given_at=consent_at,
            ),
        },
    }
