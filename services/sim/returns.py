"""Return arrivals at GAMI and the land posts: charters, buses, individuals (pure).

Mix after IOM returnee statistics: mostly adult men returned
from the US, some women and families, few children travelling alone; about three
in four cite economic reasons; medical attention is mandatory for children aged
0-3, pregnant women, older persons, persons with disabilities and the injured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from services.sim import people as pp
from services.sim import reference as ref
from services.sim.people import Event, Person, Stamps
from services.sim.reference import Weighted

SOURCE: Final = "dgme"
SYSTEM: Final = "SNUIM"
GAMI: Final = "RC_GAMI_SS"

SERVICES: Final = (
    "MEDICAL_CARE", "PSYCHOSOCIAL_FIRST_AID", "FOOD", "HYGIENE_KIT", "CLOTHING",
    "PHONE_CALL", "INTERNET_ACCESS", "TRANSPORT", "EMERGENCY_ACCOMMODATION",
    "CHILD_PROTECTION_ATTENTION", "VICTIM_ASSISTANCE_ORIENTATION",
    "REINTEGRATION_ORIENTATION", "OTHER",
)  # fmt: skip
PURPOSES: Final = (
    "RECEPTION_ASSISTANCE", "CHILD_PROTECTION", "HEALTH_CARE", "VICTIM_ASSISTANCE",
    "EMPLOYMENT_REINTEGRATION", "EDUCATION_CONTINUITY", "LEGAL_AID",
    "IDENTITY_DOCUMENTATION", "HUMANITARIAN_SHELTER", "BORDER_MANAGEMENT",
    "OFFICIAL_STATISTICS", "POLICY_COORDINATION", "OTHER",
)  # fmt: skip
FLAGS: Final = (
    "UNACCOMPANIED_CHILD", "SEPARATED_CHILD", "PREGNANT_OR_LACTATING",
    "PERSON_WITH_DISABILITY", "OLDER_PERSON_AT_RISK", "SERIOUS_MEDICAL_CONDITION",
    "MENTAL_HEALTH_NEED", "POSSIBLE_TRAFFICKING_VICTIM", "GBV_SURVIVOR",
    "LGBTIQ_AT_RISK", "FORCED_DISPLACEMENT_RISK", "CRIME_VICTIM_IN_TRANSIT",
    "FAMILY_SEPARATION", "NO_SUPPORT_NETWORK", "INTERNATIONAL_PROTECTION_NEED", "OTHER",
)  # fmt: skip
VICTIM_FLAGS: Final = frozenset(
    {
        "POSSIBLE_TRAFFICKING_VICTIM",
        "GBV_SURVIVOR",
        "FORCED_DISPLACEMENT_RISK",
        "CRIME_VICTIM_IN_TRANSIT",
        "INTERNATIONAL_PROTECTION_NEED",
    }
)
_MEDICAL_FLAGS: Final = frozenset(
    {"PREGNANT_OR_LACTATING", "SERIOUS_MEDICAL_CONDITION", "PERSON_WITH_DISABILITY"}
)

ADULT_REASONS: Final = Weighted(
    (("ECONOMIC", 74), ("INSECURITY_VIOLENCE", 10), ("FAMILY_REUNIFICATION", 9),
     ("HEALTH", 1), ("EDUCATION", 1), ("ENVIRONMENTAL_OR_DISASTER", 1), ("OTHER", 2),
     ("NOT_STATED", 2))
)  # fmt: skip
CHILD_REASONS: Final = Weighted(
    (("FAMILY_REUNIFICATION", 45), ("ECONOMIC", 22), ("INSECURITY_VIOLENCE", 20),
     ("EDUCATION", 6), ("NOT_STATED", 7))
)  # fmt: skip
TIME_ABROAD_US: Final = Weighted(
    (("UNDER_1_MONTH", 30), ("MONTHS_1_TO_12", 22), ("YEARS_1_TO_5", 26),
     ("OVER_5_YEARS", 20), ("UNKNOWN", 2))
)  # fmt: skip
TIME_ABROAD_TRANSIT: Final = Weighted(
    (("UNDER_1_MONTH", 65), ("MONTHS_1_TO_12", 28), ("YEARS_1_TO_5", 5), ("UNKNOWN", 2))
)
EDUCATION: Final = Weighted(
    (("NONE", 6), ("PRIMARY", 30), ("LOWER_SECONDARY", 28), ("UPPER_SECONDARY", 25),
     ("TECHNICAL", 6), ("TERTIARY", 3), ("UNKNOWN", 2))
)  # fmt: skip
ADULT_FLAG_ODDS: Final = (
    ("FORCED_DISPLACEMENT_RISK", 0.008),
    ("INTERNATIONAL_PROTECTION_NEED", 0.003),
    ("CRIME_VICTIM_IN_TRANSIT", 0.006),
    ("MENTAL_HEALTH_NEED", 0.008),
    ("NO_SUPPORT_NETWORK", 0.008),
    ("SERIOUS_MEDICAL_CONDITION", 0.006),
    ("PERSON_WITH_DISABILITY", 0.003),
    ("FAMILY_SEPARATION", 0.006),
    ("POSSIBLE_TRAFFICKING_VICTIM", 0.0015),
    ("LGBTIQ_AT_RISK", 0.0015),
)


@dataclass(frozen=True, slots=True)
class Traveller:
    """One returnee and the group they travel in."""

    person: Person
    accompaniment: str
    group_key: str | None = None


@dataclass(frozen=True, slots=True)
class Mix:
    """Composition of a returning group."""

    family_share: float
    child_alone_share: float
    female_adult_share: float
    unaccompanied_of_children_alone: float = 0.7


CHARTER_FROM_US: Final = Mix(
    family_share=0.05, child_alone_share=0.012, female_adult_share=0.11
)
BUS_FROM_MX: Final = Mix(
    family_share=0.12, child_alone_share=0.05, female_adult_share=0.2
)
INDIVIDUAL_LAND: Final = Mix(
    family_share=0.2, child_alone_share=0.04, female_adult_share=0.25
)


@dataclass(frozen=True, slots=True)
class Reception:
    """One reception episode (a flight, a bus, one person at a land post)."""

    correlation_id: str
    point: str
    unit: str
    mode: str
    conveyance: str
    country: str
    episode: str
    return_types: Weighted[str]
    time_abroad: Weighted[str]
    arrived: datetime
    victim_boost: float = 1.0


def travellers(rng: random.Random, today: date, size: int, mix: Mix) -> list[Traveller]:
    """Exactly ``size`` travellers grouped as adults alone, families and lone children."""
    group: list[Traveller] = []
    while len(group) < size:
        room = size - len(group)
        roll = rng.random()
        if roll < mix.child_alone_share:
            group.extend(_child_alone(rng, today, mix, room))
        elif roll < mix.child_alone_share + mix.family_share and room >= 2:
            group.extend(_family(rng, today, mix, room))
        else:
            group.append(Traveller(_adult(rng, today, mix), "ADULT_ALONE"))
    return group


def _adult(rng: random.Random, today: date, mix: Mix) -> Person:
    sex = "FEMALE" if rng.random() < mix.female_adult_share else "MALE"
    return pp.new_person(rng, today, sex=sex, age=pp.adult_age(rng))


def _family(rng: random.Random, today: date, mix: Mix, room: int) -> list[Traveller]:
    key = pp.token(rng, "grp")
    parent_sex = "FEMALE" if rng.random() < 0.65 else "MALE"
    parent = pp.new_person(rng, today, sex=parent_sex, age=rng.randint(19, 48))
    members = [Traveller(parent, "ADULT_WITH_FAMILY", key)]
    if room >= 3 and rng.random() < 0.3:
        other = "MALE" if parent_sex == "FEMALE" else "FEMALE"
        partner = pp.new_person(rng, today, sex=other, age=rng.randint(19, 50))
        members.append(Traveller(partner, "ADULT_WITH_FAMILY", key))
    children = min(rng.choice((1, 1, 2, 2, 3)), room - len(members))
    for _ in range(children):
        age = rng.randint(0, min(17, parent.age - 16))
        sex = "FEMALE" if rng.random() < 0.5 else "MALE"
        names = pp.child_family_names(rng, parent)
        child = pp.new_person(rng, today, sex=sex, age=age, family_names=names)
        members.append(Traveller(child, "CHILD_WITH_PARENT_OR_GUARDIAN", key))
    return members


def _child_alone(rng: random.Random, today: date, mix: Mix, room: int) -> list[Traveller]:
    age = rng.randint(12, 17) if rng.random() < 0.8 else rng.randint(6, 11)
    sex = "MALE" if rng.random() < 0.65 else "FEMALE"
    child = pp.new_person(rng, today, sex=sex, age=age)
    if rng.random() < mix.unaccompanied_of_children_alone:
        return [Traveller(child, "CHILD_UNACCOMPANIED")]
    # Separated: with an adult relative who is not a parent or legal guardian.
    key = pp.token(rng, "grp")
    members = [Traveller(child, "CHILD_SEPARATED", key)]
    if room >= 2 and rng.random() < 0.5:
        relative = _adult(rng, today, mix)
        members.append(Traveller(relative, "ADULT_WITH_FAMILY", key))
    return members


def arrival(
    rng: random.Random,
    reception: Reception,
    traveller: Traveller,
    recorded: datetime,
    number: int,
) -> Event:
    """The `return_arrival` of the ``number``-th person interviewed, at ``recorded``."""
    person = traveller.person
    occurred = min(reception.arrived + pp.seconds(rng, 0, 600), recorded)
    stamps = Stamps(occurred, recorded, recorded + pp.seconds(rng, 1, 30))
    flags = _flags(rng, traveller, reception)
    medical = _needs_medical(rng, person, flags)
    valid_dui = None if person.is_minor else rng.random() < 0.82
    docs = (
        pp.child_documents(rng)
        if person.is_minor
        else pp.adult_documents(rng, valid_dui=bool(valid_dui))
    )
    scopes = _consent_scopes(rng, traveller, flags, medical=medical, valid_dui=valid_dui)
    obtained = scopes is not None
    with_phone = obtained and not person.is_minor and rng.random() < 0.55
    phone = ref.synthetic_phone(rng) if with_phone else None
    consent_at = occurred + (recorded - occurred) * rng.uniform(0.5, 1.0)
    method = _consent_method(rng, traveller)
    day = f"{recorded.year:04d}{recorded.month:02d}{recorded.day:02d}"
    arrival_id = f"GAMI-{day}-{reception.episode}-{number:03d}"
    reasons = _reasons(rng, person)
    employment = (
        _employment(rng) if scopes and "EMPLOYMENT_REINTEGRATION" in scopes else None
    )
    return {
        "envelope": pp.envelope(
            rng,
            event_type="return_arrival",
            source=SOURCE,
            unit=reception.unit,
            system=SYSTEM,
            record_id=f"SNUIM-{stamps.recorded.year}-{pp.digits(rng, 7)}",
            stamps=stamps,
            correlation_id=reception.correlation_id,
            purposes=_purposes(
                traveller, flags, scopes, medical=medical, valid_dui=valid_dui
            ),
            legal_basis="BEST_INTEREST_OF_CHILD" if person.is_minor else "LEGAL_MANDATE",
            sensitivity=_sensitivity(traveller, flags),
            retention_years=5,
            consent_ref=f"SNUIM-CONS-{pp.digits(rng, 8)}" if obtained else None,
            group_key=traveller.group_key,
        ),
        "payload": {
            "arrival_id": arrival_id,
            "reception_point_id": reception.point,
            "arrival_mode": reception.mode,
            "conveyance": reception.conveyance,
            "return_type": reception.return_types.pick(rng),
            "returned_from_country": reception.country,
            "time_abroad": _time_abroad(rng, reception, person),
            "person_profile": pp.profile(person),
            "person_identity": pp.identity(person, docs, phone),
            "has_valid_dui": valid_dui,
            "accompaniment": traveller.accompaniment,
            "destination": pp.location(rng),
            "migration_reasons": reasons,
            "needs_protection_followup": bool(flags),
            "protection_flags": pp.ordered(flags, FLAGS),
            "medical_attention_required": medical,
            "immediate_services": _services(rng, traveller, flags, medical=medical),
            "employment_profile": employment,
            "consent": pp.consent(
                scopes, method=method, given_at=consent_at, disclose=rng.random() < 0.9
            ),
        },
    }


def _flags(rng: random.Random, traveller: Traveller, reception: Reception) -> set[str]:
    person = traveller.person
    flags: set[str] = set()
    if traveller.accompaniment == "CHILD_UNACCOMPANIED":
        flags.add("UNACCOMPANIED_CHILD")
    elif traveller.accompaniment == "CHILD_SEPARATED":
        flags.add("SEPARATED_CHILD")
    if person.is_minor:
        if rng.random() < 0.03 * reception.victim_boost:
            flags.add("CRIME_VICTIM_IN_TRANSIT")
        if rng.random() < 0.02:
            flags.add("MENTAL_HEALTH_NEED")
        return flags
    for flag, odds in ADULT_FLAG_ODDS:
        if rng.random() < odds * reception.victim_boost:
            flags.add(flag)
    if person.sex == "FEMALE":
        if rng.random() < 0.015 * reception.victim_boost:
            flags.add("GBV_SURVIVOR")
        if person.age <= 44 and rng.random() < 0.04:
            flags.add("PREGNANT_OR_LACTATING")
    if person.age >= 60 and rng.random() < 0.3:
        flags.add("OLDER_PERSON_AT_RISK")
    return flags


def _needs_medical(rng: random.Random, person: Person, flags: set[str]) -> bool:
    # The reception protocol makes the medical step mandatory for these groups.
    if person.age <= 3 or person.age >= 60 or flags & _MEDICAL_FLAGS:
        return True
    return rng.random() < 0.06


def _reasons(rng: random.Random, person: Person) -> list[str]:
    table = CHILD_REASONS if person.is_minor else ADULT_REASONS
    first = table.pick(rng)
    if first == "NOT_STATED" or rng.random() >= 0.2:
        return [first]
    second = table.pick(rng)
    return [first] if second in (first, "NOT_STATED") else [first, second]


def _time_abroad(rng: random.Random, reception: Reception, person: Person) -> str:
    band = reception.time_abroad.pick(rng)
    # Nobody has been abroad longer than they have been alive.
    if person.age < 1 and band in ("YEARS_1_TO_5", "OVER_5_YEARS"):
        return "MONTHS_1_TO_12"
    if person.age < 6 and band == "OVER_5_YEARS":
        return "YEARS_1_TO_5"
    return band


def _consent_method(rng: random.Random, traveller: Traveller) -> str:
    if traveller.person.is_minor:
        return "GUARDIAN_OR_REPRESENTATIVE"
    return pp.CONSENT_METHODS.pick(rng)


def _consent_scopes(
    rng: random.Random,
    traveller: Traveller,
    flags: set[str],
    *,
    medical: bool,
    valid_dui: bool | None,
) -> list[str] | None:
    person = traveller.person
    lone_child = traveller.accompaniment in ("CHILD_UNACCOMPANIED", "CHILD_SEPARATED")
    obtained_odds = 0.5 if lone_child else (0.95 if person.is_minor else 0.92)
    if rng.random() >= obtained_odds:
        return None
    scopes = {"RECEPTION_ASSISTANCE"}
    if medical or rng.random() < 0.35:
        scopes.add("HEALTH_CARE")
    if flags & VICTIM_FLAGS and rng.random() < 0.85:
        scopes.add("VICTIM_ASSISTANCE")
    if "FAMILY_SEPARATION" in flags or rng.random() < 0.05:
        scopes.add("LEGAL_AID")
    if person.is_minor:
        scopes.add("CHILD_PROTECTION")
        if person.age >= 5 and rng.random() < 0.6:
            scopes.add("EDUCATION_CONTINUITY")
    else:
        if rng.random() < 0.45:
            scopes.add("EMPLOYMENT_REINTEGRATION")
        if valid_dui is False and rng.random() < 0.8:
            scopes.add("IDENTITY_DOCUMENTATION")
    return pp.ordered(scopes, PURPOSES)


def _purposes(
    traveller: Traveller,
    flags: set[str],
    scopes: list[str] | None,
    *,
    medical: bool,
    valid_dui: bool | None,
) -> list[str]:
    wanted = {"RECEPTION_ASSISTANCE", "OFFICIAL_STATISTICS", "POLICY_COORDINATION"}
    if traveller.person.is_minor:
        wanted.add("CHILD_PROTECTION")
    if medical:
        wanted.add("HEALTH_CARE")
    if flags & VICTIM_FLAGS:
        wanted.add("VICTIM_ASSISTANCE")
    if valid_dui is False:
        wanted.add("IDENTITY_DOCUMENTATION")
    if scopes and "EMPLOYMENT_REINTEGRATION" in scopes:
        wanted.add("EMPLOYMENT_REINTEGRATION")
    return pp.ordered(wanted, PURPOSES)


def _sensitivity(traveller: Traveller, flags: set[str]) -> str:
    # The hub raises a record by value: child travel status or any protection flag.
    if flags or traveller.accompaniment.startswith("CHILD_"):
        return "HIGHLY_SENSITIVE"
    return "SENSITIVE"


def _services(
    rng: random.Random, traveller: Traveller, flags: set[str], *, medical: bool
) -> list[str]:
    person = traveller.person
    given = {"FOOD"}
    odds = (
        ("PHONE_CALL", 0.8),
        ("HYGIENE_KIT", 0.5),
        ("TRANSPORT", 0.7),
        ("INTERNET_ACCESS", 0.3),
        ("CLOTHING", 0.1),
        ("PSYCHOSOCIAL_FIRST_AID", 0.12),
    )
    given.update(name for name, p in odds if rng.random() < p)
    if medical:
        given.add("MEDICAL_CARE")
    if person.is_minor:
        given.add("CHILD_PROTECTION_ATTENTION")
    elif rng.random() < 0.4:
        given.add("REINTEGRATION_ORIENTATION")
    if flags & VICTIM_FLAGS:
        given.update(("VICTIM_ASSISTANCE_ORIENTATION", "PSYCHOSOCIAL_FIRST_AID"))
    if "NO_SUPPORT_NETWORK" in flags or rng.random() < 0.02:
        given.add("EMERGENCY_ACCOMMODATION")
    return pp.ordered(given, SERVICES)


def _employment(rng: random.Random) -> Event:
    return {
        "occupation_isco08": ref.OCCUPATIONS.pick(rng) if rng.random() < 0.85 else None,
        "education_level": EDUCATION.pick(rng),
        "interested_in_job_placement": rng.random() < 0.75,
    }


def receive(
    rng: random.Random, reception: Reception, group: list[Traveller]
) -> list[Event]:
    """Interview a group one by one after the reception's arrival time."""
    recorded = reception.arrived + timedelta(minutes=15)
    events = []
    for number, traveller in enumerate(group, start=1):
        recorded += pp.seconds(rng, 20, 75)
        events.append(arrival(rng, reception, traveller, recorded, number))
    return events


def processing_time(size: int) -> timedelta:
    """Upper bound of `receive`'s duration for ``size`` people (incl. publish lag)."""
    return timedelta(minutes=15, seconds=75 * size + 30)
