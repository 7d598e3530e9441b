"""Simulated ministries: realistic natural-JSON events, deterministic per seed (pure).

Every function takes a `random.Random` and the current time and returns events as
natural JSON (docs/contracts.md) that `codec_for(catalog.get(event_type)).to_datum`
accepts:
timestamps RFC 3339 with ``Z``, dates ``YYYY-MM-DD``, uuids as strings, enum
symbols, optional values null. Each envelope has an ``event_id`` drawn from the
rng, the publisher as ``source_institution_id``, ``occurred_at <= recorded_at <=
published_at <= now``, purposes, a legal basis and no ``subject_key``. The same rng
state and ``now`` always give the same events.

People are synthetic: names from a short list, DUIs in the ``99`` series, phones
that cannot be dialled (see `services.sim.reference`).
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Final

from services.sim import people as pp
from services.sim import reference as ref
from services.sim import returns as rt
from services.sim.borders import border_crossing
from services.sim.displacement import REGIMES, Hazard, Regime, displacement, new_hazard
from services.sim.people import Event, SimulationError
from services.sim.reference import Weighted
from services.sim.referrals import (
    ENDINGS,
    PATHWAY_BY_NAME,
    RESPONSE_WINDOW,
    follow_ups,
    referral_lifecycle,
)

__all__ = [
    "ENDINGS",
    "PATHWAY_BY_NAME",
    "REGIMES",
    "RESPONSE_WINDOW",
    "Event",
    "Hazard",
    "Regime",
    "SimulationError",
    "border_crossing",
    "child_return",
    "displacement",
    "follow_ups",
    "land_return",
    "new_hazard",
    "referral_lifecycle",
    "return_flight",
]

CHARTER_SIZE: Final = (100, 135)
BUS_SIZE: Final = (18, 45)
REMOVAL: Final = Weighted((("REMOVAL_DEPORTATION", 1),))
BUS_RETURNS: Final = Weighted(
    (("REMOVAL_DEPORTATION", 90), ("ASSISTED_VOLUNTARY_RETURN", 10))
)
LAND_RETURNS: Final = Weighted(
    (("SPONTANEOUS_RETURN", 55), ("ASSISTED_VOLUNTARY_RETURN", 30),
     ("REMOVAL_DEPORTATION", 15))
)  # fmt: skip
COMMERCIAL_RETURNS: Final = Weighted(
    (("REMOVAL_DEPORTATION", 70), ("ASSISTED_VOLUNTARY_RETURN", 30))
)
RETURN_LAND_POSTS: Final = Weighted(
    (("LB_LA_HACHADURA", 35), ("LB_LAS_CHINAMAS", 25), ("LB_SAN_CRISTOBAL", 10),
     ("LB_ANGUIATU", 8), ("LB_EL_AMATILLO", 15), ("LB_EL_POY", 7))
)  # fmt: skip


def return_flight(
    rng: random.Random, now: datetime, *, passengers: int | None = None
) -> list[Event]:
    """One federal charter received at GAMI: 100-135 people, one ``correlation_id``.

    Mostly adult men returned from the US (a few flights come from Mexico), some
    women and families, a few children travelling alone. ``passengers`` fixes the
    size (e.g. a small example flight).
    """
    now = pp.check_now(now)
    size = passengers if passengers is not None else rng.randint(*CHARTER_SIZE)
    if size < 1:
        raise SimulationError(f"a flight needs at least one passenger, not {size}")
    country = "US" if rng.random() < 0.95 else "MX"
    reception = _reception(
        rng,
        now,
        size,
        point=rt.GAMI,
        mode="AIR",
        conveyance="FEDERAL_CHARTER_FLIGHT",
        country=country,
        episode=f"F{rng.randrange(1000):03d}",
        return_types=REMOVAL,
    )
    group = rt.travellers(rng, now.date(), size, rt.CHARTER_FROM_US)
    return rt.receive(rng, reception, group)


def land_return(rng: random.Random, now: datetime) -> list[Event]:
    """One land return: a bus from Mexico received at GAMI, or people at a land post.

    Buses (18-45 people, returned from Mexico) carry more families and children
    than charters and more victims of crime in transit; individual returns cross at
    the Guatemalan or Honduran posts, from Mexico or Guatemala.
    """
    now = pp.check_now(now)
    if rng.random() < 0.7:
        size = rng.randint(*BUS_SIZE)
        reception = _reception(
            rng,
            now,
            size,
            point=rt.GAMI,
            mode="LAND",
            conveyance="GROUND_CONVOY_BUS",
            country="MX",
            episode=f"B{rng.randrange(1000):03d}",
            return_types=BUS_RETURNS,
            victim_boost=2.0,
        )
        return rt.receive(
            rng, reception, rt.travellers(rng, now.date(), size, rt.BUS_FROM_MX)
        )
    size = 1 if rng.random() < 0.75 else rng.randint(2, 4)
    point = RETURN_LAND_POSTS.pick(rng)
    reception = _reception(
        rng,
        now,
        size,
        point=point,
        mode="LAND",
        conveyance="INDIVIDUAL_LAND",
        country="MX" if rng.random() < 0.6 else "GT",
        episode=f"L{rng.randrange(1000):03d}",
        return_types=LAND_RETURNS,
        unit=f"dgme-{point.lower()}",
        time_abroad=rt.TIME_ABROAD_TRANSIT,
        victim_boost=2.0,
    )
    group = rt.travellers(rng, now.date(), size, rt.INDIVIDUAL_LAND)
    if size > 1 and all(t.accompaniment == "ADULT_ALONE" for t in group):
        # A group crossing together is a family, not strangers.
        key = pp.token(rng, "grp")
        group = [rt.Traveller(t.person, "ADULT_WITH_FAMILY", key) for t in group]
    return rt.receive(rng, reception, group)


def child_return(
    rng: random.Random,
    now: datetime,
    *,
    accompaniment: str = "CHILD_UNACCOMPANIED",
    mode: str = "AIR",
) -> Event:
    """One child travelling without parents, received at GAMI by air or by bus."""
    now = pp.check_now(now)
    if accompaniment not in ("CHILD_UNACCOMPANIED", "CHILD_SEPARATED"):
        raise SimulationError(f"{accompaniment!r} is not a lone child's accompaniment")
    by_air = mode == "AIR"
    reception = _reception(
        rng,
        now,
        1,
        point=rt.GAMI,
        mode="AIR" if by_air else "LAND",
        conveyance="COMMERCIAL_FLIGHT" if by_air else "GROUND_CONVOY_BUS",
        country="US" if by_air else "MX",
        episode=f"{'C' if by_air else 'B'}{rng.randrange(1000):03d}",
        return_types=COMMERCIAL_RETURNS if by_air else BUS_RETURNS,
    )
    age = rng.randint(12, 17) if rng.random() < 0.8 else rng.randint(6, 11)
    sex = "MALE" if rng.random() < 0.65 else "FEMALE"
    child = pp.new_person(rng, now.date(), sex=sex, age=age)
    key = pp.token(rng, "grp") if accompaniment == "CHILD_SEPARATED" else None
    return rt.receive(rng, reception, [rt.Traveller(child, accompaniment, key)])[0]


def _reception(
    rng: random.Random,
    now: datetime,
    size: int,
    *,
    point: str,
    mode: str,
    conveyance: str,
    country: str,
    episode: str,
    return_types: Weighted[str],
    unit: str = "dgme-gami",
    time_abroad: Weighted[str] | None = None,
    victim_boost: float = 1.0,
) -> rt.Reception:
    # Arrival early enough that everyone is interviewed and published by `now`.
    arrived = now - rt.processing_time(size) - pp.seconds(rng, 60, 1800)
    abroad = time_abroad or (
        rt.TIME_ABROAD_US if country == "US" else rt.TIME_ABROAD_TRANSIT
    )
    return rt.Reception(
        correlation_id=pp.new_uuid(rng),
        point=point,
        unit=unit,
        mode=mode,
        conveyance=conveyance,
        country=country,
        episode=episode,
        return_types=return_types,
        time_abroad=abroad,
        arrived=arrived,
        victim_boost=victim_boost,
    )


def departments() -> tuple[str, ...]:
    """ISO 3166-2 codes of the 14 departments destinations are drawn from."""
    return tuple(d.iso for d in ref.DEPARTMENTS)
