"""Synthetic people and the record parts every event type shares (pure, no I/O).

Builds natural-JSON fragments (docs/contracts.md): `PersonProfile`, `PersonIdentity`,
`LocationSV`, `ConsentRecord` and the `EventEnvelope`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from services.contracts.errors import ConfigurationError
from services.contracts.natural import format_timestamp
from services.sim import reference as ref
from services.sim.reference import Department, Weighted

Event = dict[str, Any]


class SimulationError(ConfigurationError):
    """The simulator was asked for something it cannot build (bad clock, regime...)."""


def check_now(now: datetime) -> datetime:
    """``now`` as an aware UTC datetime; a naive clock is a programming error."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise SimulationError(
            "the simulator's clock must return timezone-aware datetimes"
        )
    return now.astimezone(UTC)


_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (deterministic, unlike `uuid.uuid4`)."""
    # Same bits as uuid.UUID(int=..., version=4), formatted without the object.
    h = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp(value: datetime) -> str:
    """RFC 3339 with milliseconds and ``Z`` (as `format_timestamp`, for UTC values)."""
    if value.utcoffset():
        return format_timestamp(value)
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


def digits(rng: random.Random, count: int) -> str:
    """``count`` random decimal digits (``count`` <= 15)."""
    return f"{int(rng.random() * 10**count):0{count}d}"


def token(rng: random.Random, prefix: str) -> str:
    """An opaque local key such as ``w-3fa2c9d1e0b4``."""
    return f"{prefix}-{rng.getrandbits(48):012x}"


def seconds(rng: random.Random, low: float, high: float) -> timedelta:
    """A random duration between ``low`` and ``high`` seconds."""
    return timedelta(seconds=rng.uniform(low, high))


@dataclass(frozen=True, slots=True)
class Stamps:
    """The three envelope times, always ``occurred <= recorded <= published``."""

    occurred: datetime
    recorded: datetime
    published: datetime

    @classmethod
    def before(
        cls,
        rng: random.Random,
        now: datetime,
        *,
        record_lag: tuple[float, float] = (5, 600),
        publish_lag: tuple[float, float] = (0.2, 20),
    ) -> Stamps:
        """Times counted back from ``now``: published a moment ago, recorded before."""
        published = now - seconds(rng, 0, 2)
        recorded = published - seconds(rng, *publish_lag)
        return cls(recorded - seconds(rng, *record_lag), recorded, published)

    @classmethod
    def after(
        cls,
        rng: random.Random,
        occurred: datetime,
        *,
        record_lag: tuple[float, float] = (30, 600),
        publish_lag: tuple[float, float] = (0.2, 30),
    ) -> Stamps:
        """Times counted forward from the real-world fact."""
        recorded = occurred + seconds(rng, *record_lag)
        return cls(occurred, recorded, recorded + seconds(rng, *publish_lag))


def envelope(
    rng: random.Random,
    *,
    event_type: str,
    source: str,
    unit: str | None,
    system: str,
    record_id: str | None,
    stamps: Stamps,
    correlation_id: str,
    purposes: list[str],
    legal_basis: str,
    sensitivity: str,
    retention_years: int,
    consent_ref: str | None = None,
    causation_id: str | None = None,
    group_key: str | None = None,
) -> Event:
    """A source's envelope: ``subject_key`` left empty for the hub to compute."""
    keep_until = stamps.recorded.date()
    return {
        "event_id": new_uuid(rng),
        "event_type": event_type,
        "source_institution_id": source,
        "source_unit_id": unit,
        "source_system": system,
        "source_record_id": record_id,
        "occurred_at": timestamp(stamps.occurred),
        "recorded_at": timestamp(stamps.recorded),
        "published_at": timestamp(stamps.published),
        "subject_key": None,
        "subject_key_basis": "NONE",
        "group_key": group_key,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "supersedes_event_id": None,
        "record_sensitivity": sensitivity,
        "legal_basis": legal_basis,
        "purposes": purposes,
        "consent_ref": consent_ref,
        "retention_until": _add_years(keep_until, retention_years).isoformat(),
    }


@dataclass(frozen=True, slots=True)
class Person:
    """A synthetic person: enough to fill profile and identity records."""

    sex: str
    age: int
    birth_date: date
    given_names: str
    family_names: str

    @property
    def is_minor(self) -> bool:
        """Under 18."""
        return self.age < 18


ADULT_AGES: Final = Weighted(
    (((18, 29), 45), ((30, 44), 35), ((45, 59), 17), ((60, 75), 3))
)


def adult_age(rng: random.Random, bands: Weighted[tuple[int, int]] = ADULT_AGES) -> int:
    """An adult's age drawn from age bands, uniform inside the band."""
    low, high = bands.pick(rng)
    return rng.randint(low, high)


def new_person(
    rng: random.Random,
    today: date,
    *,
    sex: str,
    age: int,
    family_names: str | None = None,
) -> Person:
    """A person of the given sex and exact age, with synthetic names."""
    pool = ref.GIVEN_NAMES_FEMALE if sex == "FEMALE" else ref.GIVEN_NAMES_MALE
    given = ref.pick(rng, pool)
    if rng.random() < 0.6:
        given = f"{given} {ref.pick(rng, pool)}"
    if family_names is None:
        family_names = (
            f"{ref.pick(rng, ref.FAMILY_NAMES)} {ref.pick(rng, ref.FAMILY_NAMES)}"
        )
    return Person(sex, age, _birth_date(rng, today, age), given, family_names)


def child_family_names(rng: random.Random, parent: Person) -> str:
    """A child's surnames: the parent's first surname and another one."""
    first = parent.family_names.split(" ", 1)[0]
    return f"{first} {ref.pick(rng, ref.FAMILY_NAMES)}"


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year + years, day=28)


def _birth_date(rng: random.Random, today: date, age: int) -> date:
    # Exactly `age` years old today: born after the day `age + 1` years ago.
    latest = _add_years(today, -age)
    earliest = _add_years(today, -age - 1) + timedelta(days=1)
    return earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))


def age_group(age: int) -> str:
    """The `AgeGroup` band of an exact age."""
    if age < 5:
        return "AGE_0_4"
    if age < 12:
        return "AGE_5_11"
    if age < 18:
        return "AGE_12_17"
    if age < 30:
        return "AGE_18_29"
    if age < 60:
        return "AGE_30_59"
    return "AGE_60_PLUS"


def profile(person: Person, nationality: str = "SV") -> Event:
    """A `PersonProfile` record."""
    return {
        "sex": person.sex,
        "age_group": age_group(person.age),
        "age_years": person.age,
        "is_minor": person.is_minor,
        "nationality": nationality,
    }


def document(
    kind: str, number: str, country: str | None, *, verified: bool = False
) -> Event:
    """An `IdentityDocument` record."""
    return {
        "document_type": kind,
        "document_number": number,
        "issuing_country": country,
        "verified_against_registry": verified,
    }


def identity(person: Person, documents: list[Event], phone: str | None) -> Event:
    """A `PersonIdentity` record."""
    return {
        "given_names": person.given_names,
        "family_names": person.family_names,
        "birth_date": person.birth_date.isoformat(),
        "documents": documents,
        "phone": phone,
    }


CHILD_DOCUMENTS: Final = Weighted(
    (("NUI", 35), ("BIRTH_CERTIFICATE", 35), ("PASSPORT_SV", 20), ("NONE", 10))
)


def child_documents(rng: random.Random) -> list[Event]:
    """What a Salvadoran child carries: NUI, birth certificate, passport or nothing."""
    kind = CHILD_DOCUMENTS.pick(rng)
    if kind == "NUI":
        return [document("NUI", ref.synthetic_dui(rng), "SV", verified=True)]
    if kind == "BIRTH_CERTIFICATE":
        number = f"ZZPN-{digits(rng, 7)}"
        return [document("BIRTH_CERTIFICATE", number, "SV")]
    if kind == "PASSPORT_SV":
        return [document("PASSPORT_SV", ref.synthetic_passport(rng, "SV"), "SV")]
    return []


def adult_documents(rng: random.Random, *, valid_dui: bool) -> list[Event]:
    """A Salvadoran adult's documents; without a valid DUI, often nothing at all."""
    if valid_dui:
        docs = [
            document("DUI", ref.synthetic_dui(rng), "SV", verified=rng.random() < 0.75)
        ]
        if rng.random() < 0.15:
            docs.append(document("PASSPORT_SV", ref.synthetic_passport(rng, "SV"), "SV"))
        return docs
    roll = rng.random()
    if roll < 0.4:
        return []
    if roll < 0.8:
        number = f"ZZSC-{digits(rng, 7)}"
        return [document("CONSULAR_SAFE_CONDUCT", number, "SV")]
    return [document("PASSPORT_SV", ref.synthetic_passport(rng, "SV"), "SV")]


def location(rng: random.Random, department: Department | None = None) -> Event:
    """A `LocationSV` at municipality level (no district, no locality)."""
    dept = department or ref.DESTINATIONS.pick(rng)
    return {
        "department_code": dept.iso,
        "municipality_code": ref.pick(rng, dept.municipality_codes()),
        "district_code": None,
        "locality": None,
    }


CONSENT_METHODS: Final = Weighted(
    (("WRITTEN", 70), ("VERBAL_CERTIFIED", 25), ("AUDIO_VIDEO", 5))
)


def consent(
    scopes: list[str] | None,
    *,
    method: str = "WRITTEN",
    given_at: datetime | None = None,
    disclose: bool = True,
) -> Event:
    """A `ConsentRecord`; ``scopes=None`` means consent was not obtained."""
    if scopes is None:
        return {
            "obtained": False,
            "method": "NOT_OBTAINED",
            "scopes": [],
            "disclosure_to_other_institutions": False,
            "given_at": None,
            "withdrawn_at": None,
        }
    return {
        "obtained": True,
        "method": method,
        "scopes": list(dict.fromkeys(scopes)),
        "disclosure_to_other_institutions": disclose,
        "given_at": timestamp(given_at) if given_at else None,
        "withdrawn_at": None,
    }


def ordered(symbols: set[str], order: tuple[str, ...]) -> list[str]:
    """``symbols`` in schema order (set iteration order is not reproducible)."""
    return [s for s in order if s in symbols]
