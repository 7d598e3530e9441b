"""Reference codes and synthetic identities the simulated ministries draw from.

Codes follow the official lists: departments as ISO 3166-2:SV, municipalities
as the 2-digit department code + Hacienda CAT-013 (2024) code (§2.8), border and
reception points by registry id (§2.9). Names, document numbers and phone numbers
are synthetic and built so they cannot belong to a real person: DUIs start with
``99`` (far beyond any issued range), phones use a ``+503 0`` prefix (no Salvadoran
number starts with 0).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class Weighted(Generic[T]):
    """A fixed weighted choice: one ``rng.random()`` per draw (fast, reproducible)."""

    __slots__ = ("_cumulative", "_items", "_total")

    def __init__(self, pairs: Iterable[tuple[T, float]]) -> None:
        items, weights = zip(*pairs, strict=True)
        self._items: tuple[T, ...] = items
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1]

    def pick(self, rng: random.Random) -> T:
        """One item, with probability proportional to its weight."""
        index = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return self._items[min(index, len(self._items) - 1)]

    @property
    def items(self) -> tuple[T, ...]:
        """Every item, in declaration order."""
        return self._items


@dataclass(frozen=True, slots=True)
class Department:
    """A department with the CAT-013 (2024) codes of its new municipalities."""

    iso: str
    number: str
    municipalities: tuple[int, ...]

    def municipality_codes(self) -> tuple[str, ...]:
        """4-character municipality codes, e.g. ``0623`` San Salvador Centro."""
        return MUNICIPALITY_CODES[self.iso]


DEPARTMENTS: Final = (
    Department("SV-AH", "01", (13, 14, 15)),
    Department("SV-SA", "02", (14, 15, 16, 17)),
    Department("SV-SO", "03", (17, 18, 19, 20)),
    Department("SV-CH", "04", (34, 35, 36)),
    Department("SV-LI", "05", (23, 24, 25, 26, 27, 28)),
    Department("SV-SS", "06", (20, 21, 22, 23, 24)),
    Department("SV-CU", "07", (17, 18)),
    Department("SV-PA", "08", (23, 24, 25)),
    Department("SV-CA", "09", (10, 11)),
    Department("SV-SV", "10", (14, 15)),
    Department("SV-US", "11", (24, 25, 26)),
    Department("SV-SM", "12", (21, 22, 23)),
    Department("SV-MO", "13", (27, 28)),
    Department("SV-UN", "14", (19, 20)),
)
DEPARTMENT_BY_ISO: Final = {d.iso: d for d in DEPARTMENTS}
MUNICIPALITY_CODES: Final = {
    d.iso: tuple(f"{d.number}{m:02d}" for m in d.municipalities) for d in DEPARTMENTS
}

# Where returnees say they are going: weighted towards the populous and
# high-emigration departments (IOM publishes returns by department of destination).
DESTINATIONS: Final = Weighted(
    (DEPARTMENT_BY_ISO[iso], w)
    for iso, w in (
        ("SV-SS", 18), ("SV-SM", 11), ("SV-LI", 10), ("SV-SA", 8), ("SV-US", 8),
        ("SV-SO", 6), ("SV-UN", 6), ("SV-AH", 5), ("SV-CH", 5), ("SV-PA", 5),
        ("SV-MO", 4), ("SV-CU", 4), ("SV-CA", 5), ("SV-SV", 5),
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CrossingPoint:
    """An official border point."""

    id: str
    mode: str
    department: str
    neighbours: tuple[str, ...]


BORDER_POINTS: Final = Weighted(
    (
        (CrossingPoint("LB_LAS_CHINAMAS", "LAND", "SV-AH", ("GT",)), 18),
        (CrossingPoint("LB_LA_HACHADURA", "LAND", "SV-AH", ("GT",)), 11),
        (CrossingPoint("LB_SAN_CRISTOBAL", "LAND", "SV-SA", ("GT",)), 9),
        (CrossingPoint("LB_ANGUIATU", "LAND", "SV-SA", ("GT",)), 6),
        (CrossingPoint("LB_EL_POY", "LAND", "SV-CH", ("HN",)), 9),
        (CrossingPoint("LB_EL_AMATILLO", "LAND", "SV-UN", ("HN",)), 14),
        (CrossingPoint("LB_PERQUIN", "LAND", "SV-MO", ("HN",)), 2),
        (CrossingPoint("LB_PASAMONO", "LAND", "SV-MO", ("HN",)), 1),
        (CrossingPoint("AIR_SAL", "AIR", "SV-PA", ()), 27),
        (CrossingPoint("SEA_ACAJUTLA", "SEA", "SV-SO", ()), 0.6),
        (CrossingPoint("SEA_LA_UNION", "SEA", "SV-UN", ("HN", "NI")), 0.6),
        (CrossingPoint("SEA_MEANGUERA", "SEA", "SV-UN", ("HN", "NI")), 1.0),
    )
)
BORDER_RESIDENT_POINTS: Final = frozenset({"LB_PERQUIN", "LB_PASAMONO"})
CA4: Final = ("GT", "HN", "NI")
AIR_COUNTERPARTS: Final = Weighted(
    (("US", 48), ("MX", 8), ("GT", 6), ("PA", 8), ("CR", 6), ("CO", 5), ("ES", 4),
     ("HN", 3), ("NI", 2), ("CA", 3), ("DO", 2), ("PE", 2), ("CU", 1), ("VE", 2))
)  # fmt: skip
# Extra-regional nationalities seen at the border, with whether they need a visa.
EXTRA_REGIONAL: Final = Weighted(
    (("US", 30), ("MX", 15), ("ES", 5), ("CO", 6), ("CR", 4), ("PA", 3), ("CA", 3),
     ("CU", 6), ("VE", 6), ("HT", 4), ("EC", 5), ("IN", 3), ("CN", 3), ("DO", 2))
)  # fmt: skip
VISA_REQUIRED: Final = frozenset({"CU", "VE", "HT", "EC", "IN", "CN", "DO"})

GIVEN_NAMES_MALE: Final = (
    "José", "Juan", "Carlos", "Luis", "Mario", "Jorge", "Miguel", "Francisco",
    "Óscar", "Roberto", "Wilfredo", "Nelson", "Edwin", "Kevin", "Jonathan", "Brayan",
    "Ángel", "Samuel", "Josué", "David", "Ernesto", "Rafael", "Manuel", "Douglas",
)  # fmt: skip
GIVEN_NAMES_FEMALE: Final = (
    "María", "Ana", "Rosa", "Carmen", "Sandra", "Claudia", "Gloria", "Marta",
    "Yesenia", "Karla", "Daniela", "Fátima", "Andrea", "Jennifer", "Katherine",
    "Alejandra", "Sofía", "Valeria", "Gabriela", "Roxana", "Beatriz", "Elena",
)  # fmt: skip
FAMILY_NAMES: Final = (
    "Hernández", "García", "Martínez", "López", "Rodríguez", "González", "Pérez",
    "Ramírez", "Flores", "Rivera", "Cruz", "Romero", "Mejía", "Ayala", "Díaz",
    "Portillo", "Alvarado", "Guevara", "Chávez", "Argueta", "Sorto", "Orellana",
    "Menjívar", "Quintanilla", "Escobar", "Castillo", "Reyes", "Aguilar",
)  # fmt: skip

# ISCO-08 unit groups common among returnees' declared trades.
OCCUPATIONS: Final = Weighted(
    (("9313", 14), ("7112", 8), ("7115", 6), ("9211", 10), ("6111", 6), ("8322", 7),
     ("5120", 7), ("9412", 6), ("7231", 5), ("7411", 4), ("9112", 7), ("5223", 6),
     ("7126", 4), ("8332", 4), ("9333", 6))
)  # fmt: skip

SYNTHETIC_DUI_PREFIX: Final = "99"
SYNTHETIC_PHONE_PREFIX: Final = "+5030"
_DUI_WEIGHTS: Final = (9, 8, 7, 6, 5, 4, 3, 2)


def dui_check_digit(number: str) -> int:
    """The DUI verification digit of 8 digits (weights 9..2, modulus 10)."""
    total = sum(int(d) * w for d, w in zip(number, _DUI_WEIGHTS, strict=True))
    return (10 - total % 10) % 10


def _digits(rng: random.Random, count: int) -> str:
    return f"{int(rng.random() * 10**count):0{count}d}"


def synthetic_dui(rng: random.Random) -> str:
    """A well-formed ``########-#`` DUI that no real person holds (``99`` prefix)."""
    number = f"{SYNTHETIC_DUI_PREFIX}{_digits(rng, 6)}"
    return f"{number}-{dui_check_digit(number)}"


def synthetic_phone(rng: random.Random) -> str:
    """An E.164 number in El Salvador's format that cannot be dialled (``+503 0``)."""
    return f"{SYNTHETIC_PHONE_PREFIX}{_digits(rng, 7)}"


def synthetic_passport(rng: random.Random, country: str) -> str:
    """A passport-like number marked synthetic by its ``ZZ`` series."""
    return f"ZZ{country}{_digits(rng, 7)}"


def pick(rng: random.Random, items: Sequence[T]) -> T:
    """A uniform choice (one ``rng.random()`` call, like `Weighted.pick`)."""
    return items[int(rng.random() * len(items))]
