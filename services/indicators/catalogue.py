"""The indicator catalogue (``deploy/policy/indicators.toml``): load and check.

Every name is checked when the catalogue loads, against the schemas (event types,
field paths in every schema version, filter expressions), the institutions
(working groups, readers) and the aggregate grants (a reader must hold a grant for
the indicator's event type; a ``restricted`` breakdown needs every field it reads
in the reader's grant ``by``) and across indicators: no two indicators of one
event type may be linked tables that give away each other's hidden cells (see
`services.indicators.linkage`). A mistake is reported with the indicator or
dimension it is in, so an operator can fix the file.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.indicators.errors import CatalogueError, UnknownIndicatorError
from services.indicators.linkage import check_links
from services.policy import Policy
from services.policy.conditions import (
    Condition,
    ConditionSyntaxError,
    compile_condition,
)
from services.policy.errors import ConditionError
from services.policy.files import read_policy_files
from services.policy.loader import tree_of
from services.policy.policy import field_value

CATALOGUE_FILE: Final = "indicators.toml"
Period = Literal["day", "week", "month"]
# A table crosses at most two dimensions (see disclosure.py), and an indicator
# offers a bounded set, so the suppression problem of one period stays small.
MAX_DIMENSIONS: Final = 5
DERIVED: Final = frozenset({"time_to_acknowledgement"})
_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
_HXL: Final = re.compile(r"#[a-z][a-z0-9_]*(\+[a-z][a-z0-9_]*)*")
GCM_OBJECTIVES: Final = range(1, 24)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Defaults(_Spec):
    threshold: int = Field(default=5, ge=1, le=1000)
    period: Period = "month"


class _DimensionSpec(_Spec):
    label: str
    hxl: str
    fields: dict[str, str]
    map: dict[str, str] = {}
    missing: str = "UNKNOWN"
    codes: dict[str, str] = {}
    derived: str | None = None
    determines: dict[str, list[str]] = {}


class _IndicatorSpec(_Spec):
    id: str
    title: str
    definition: str
    working_group: str
    gcm_objective: int
    event_type: str
    filter: str | None = None
    dimensions: list[str]
    restricted: list[str] = []
    period: Period | None = None
    threshold: int | None = Field(default=None, ge=1, le=1000)
    readers: list[str]
    hxl: str


class _CatalogueSpec(_Spec):
    defaults: _Defaults = _Defaults()
    dimensions: dict[str, _DimensionSpec]
    indicator: list[_IndicatorSpec]


@dataclass(frozen=True, slots=True)
class Dimension:
    """One way to break counts down: the field it reads per event type, grouped."""

    id: str
    label: str
    hxl: str
    fields: Mapping[str, str]
    groups: Mapping[str, str] = field(default_factory=dict)
    missing: str = "UNKNOWN"
    codes: Mapping[str, str] = field(default_factory=dict)
    derived: str | None = None
    # event type -> fields the dimension's value gives away (see linkage.py)
    determines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def value(self, event_type: str, datum: Mapping[str, Any]) -> str:
        """The dimension's value for one delivered record (a derived one: missing)."""
        raw = field_value(datum, self.fields[event_type])
        if raw is None or self.derived is not None:
            return self.missing
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if self.groups:
            return self.groups.get(text, "other")
        return text

    def code(self, value: str) -> str:
        """The value as written in the HXL CSV."""
        return self.codes.get(value, value)


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator of the catalogue, checked."""

    id: str
    title: str
    definition: str
    working_group: str
    gcm_objective: int
    event_type: str
    filter_text: str | None
    filter: Condition | None
    dimensions: tuple[Dimension, ...]  # open ones first, then restricted ones
    period: Period
    threshold: int
    readers: tuple[str, ...]
    hxl: str
    # reader -> the dimensions its grant lets it break this indicator down by
    reader_dimensions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def dimension_ids(self) -> tuple[str, ...]:
        """The ids of the dimensions, in catalogue order."""
        return tuple(d.id for d in self.dimensions)

    def dimension(self, ident: str) -> Dimension:
        """The dimension ``ident`` of this indicator."""
        for d in self.dimensions:
            if d.id == ident:
                return d
        raise KeyError(ident)

    def selects(self, datum: Mapping[str, Any]) -> bool:
        """Whether the record counts for this indicator (its filter holds)."""
        if self.filter is None:
            return True
        try:
            return self.filter.matches(datum)
        except ConditionError:
            return False  # a record the filter cannot read is not counted

    def key(
        self, datum: Mapping[str, Any], derived: Mapping[str, str] | None = None
    ) -> tuple[str, ...]:
        """The record's cell: one value per dimension, in catalogue order."""
        values = []
        for d in self.dimensions:
            if d.derived is not None and derived is not None:
                values.append(derived.get(d.derived, d.missing))
            else:
                values.append(d.value(self.event_type, datum))
        return tuple(values)

    def fields_read(self) -> frozenset[str]:
        """Every field path the indicator reads (filter and dimensions)."""
        paths = {d.fields[self.event_type] for d in self.dimensions}
        if any(d.derived == "time_to_acknowledgement" for d in self.dimensions):
            paths.add("payload.referral_id")  # links an answer to its referral
        if self.filter is not None:
            paths.update(self.filter.fields)
        return frozenset(paths)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every indicator, by id, in file order."""

    indicators: Mapping[str, Indicator]
    dimensions: Mapping[str, Dimension]
    path: Path | None = None

    def get(self, ident: str) -> Indicator:
        """The indicator ``ident``; `UnknownIndicatorError` names the known ones."""
        try:
            return self.indicators[ident]
        except KeyError:
            known = ", ".join(self.indicators)
            raise UnknownIndicatorError(
                f"no indicator {ident!r} in the catalogue; known: {known}"
            ) from None

    def for_event_type(self, event_type: str) -> list[Indicator]:
        """The indicators that count ``event_type``."""
        return [i for i in self.indicators.values() if i.event_type == event_type]

    def readable_by(self, recipient: str) -> list[Indicator]:
        """The indicators ``recipient`` may read."""
        return [i for i in self.indicators.values() if recipient in i.readers]

    def fields_read(self, event_type: str) -> frozenset[str]:
        """Every field the indicators read of ``event_type`` records."""
        out: set[str] = set()
        for indicator in self.for_event_type(event_type):
            out |= indicator.fields_read()
        return frozenset(out)


def identifier(datum: Mapping[str, Any], path: str) -> str | None:
    """An id field as text (decoders give a UUID or a string), None where absent."""
    value = field_value(datum, path)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value if isinstance(value, str) else None


def load_catalogue(
    policy_dir: Path, catalog: Catalog, policy: Policy, path: Path | None = None
) -> Catalogue:
    """Read ``indicators.toml`` (or ``path``) and check it; raises `CatalogueError`."""
    path = path or policy_dir / CATALOGUE_FILE
    spec = _read(path)
    groups = read_policy_files(policy_dir).institutions.working_groups
    checker = _Checker(catalog, policy, frozenset(groups))
    dimensions = {k: checker.dimension(k, v) for k, v in spec.dimensions.items()}
    indicators: dict[str, Indicator] = {}
    populations: dict[tuple[str, str | None], str] = {}
    for item in spec.indicator:
        if item.id in indicators:
            raise CatalogueError(f"{CATALOGUE_FILE}: indicator {item.id!r} twice")
        # Two indicators of the same events would be tables linked through them,
        # each suppressed on its own: one could give away what the other hides.
        same = populations.setdefault((item.event_type, item.filter), item.id)
        if same != item.id:
            raise CatalogueError(
                f"{CATALOGUE_FILE}: indicators {same!r} and {item.id!r} count the same "
                "events (event type and filter); give one of them all the breakdowns"
            )
        indicators[item.id] = checker.indicator(item, dimensions, spec.defaults)
    if not indicators:
        raise CatalogueError(f"{CATALOGUE_FILE}: names no indicator")
    check_links(list(indicators.values()), list(dimensions.values()))
    return Catalogue(indicators, dimensions, path)


def _read(path: Path) -> _CatalogueSpec:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CatalogueError(f"indicator catalogue {path} does not exist") from e
    except OSError as e:
        raise CatalogueError(f"cannot read indicator catalogue {path}: {e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CatalogueError(f"{path.name}: not valid TOML: {e}") from e
    try:
        return _CatalogueSpec.model_validate(raw)
    except ValidationError as e:
        raise CatalogueError(f"{path.name}: {_describe(raw, e)}") from e


def _describe(raw: Mapping[str, Any], error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "indicator" and isinstance(loc[1], int):
        entries = raw.get("indicator") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        ident = entry.get("id") if isinstance(entry, dict) else None
        where = f"indicator {ident!r}" if ident else f"indicator #{loc[1] + 1}"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "dimensions":
        where = f"dimension {loc[1]!r}"
        loc = loc[2:]
    key = ".".join(str(p) for p in loc)
    if first["type"] == "missing":
        message = f"has no {key}"
    elif first["type"] == "extra_forbidden":
        message = f"unknown key {key!r}"
    else:
        message = f"{key}: {first['msg']}" if key else str(first["msg"])
    return f"{where} {message}".strip() if where else message


class _Checker:
    """Checks dimensions and indicators against the schemas and the policy."""

    def __init__(self, catalog: Catalog, policy: Policy, groups: frozenset[str]) -> None:
        self.catalog = catalog
        self.policy = policy
        self.groups = groups

    def _field(self, where: str, event_type: str, path: str) -> None:
        if event_type not in EVENT_TYPES:
            raise CatalogueError(
                f"{where}: unknown event type {event_type!r}; "
                f"known: {', '.join(EVENT_TYPES)}"
            )
        for entry in self.catalog.versions(event_type):
            tree = tree_of(entry)
            if tree.get(path) is None:
                raise CatalogueError(
                    f"{where}: {path} is not a field of {event_type} "
                    f"v{entry.version} ({tree.suggest(path)})"
                )

    def dimension(self, ident: str, spec: _DimensionSpec) -> Dimension:
        where = f"{CATALOGUE_FILE}: dimension {ident!r}"
        if not _ID.fullmatch(ident):
            raise CatalogueError(f"{where}: ids are lowercase [a-z][a-z0-9_]*")
        if not _HXL.fullmatch(spec.hxl):
            raise CatalogueError(f"{where}: {spec.hxl!r} is not an HXL hashtag")
        if not spec.fields:
            raise CatalogueError(f"{where}: reads no field (fields is empty)")
        if spec.derived is not None and spec.derived not in DERIVED:
            raise CatalogueError(
                f"{where}: derived {spec.derived!r} is not one of {', '.join(DERIVED)}"
            )
        for event_type, path in spec.fields.items():
            self._field(where, event_type, path)
        self._determines(where, spec)
        return Dimension(
            id=ident,
            label=spec.label,
            hxl=spec.hxl,
            fields=dict(spec.fields),
            groups=dict(spec.map),
            missing=spec.missing,
            codes=dict(spec.codes),
            derived=spec.derived,
            determines={k: tuple(v) for k, v in spec.determines.items()},
        )

    def _determines(self, where: str, spec: _DimensionSpec) -> None:
        for event_type, paths in spec.determines.items():
            if event_type not in spec.fields:
                raise CatalogueError(
                    f"{where}: determines names {event_type}, for which the dimension "
                    "reads no field (add it to fields or remove it from determines)"
                )
            for path in paths:
                self._field(f"{where}: determines", event_type, path)

    def indicator(
        self,
        spec: _IndicatorSpec,
        dimensions: Mapping[str, Dimension],
        defaults: _Defaults,
    ) -> Indicator:
        where = f"{CATALOGUE_FILE}: indicator {spec.id!r}"
        if not _ID.fullmatch(spec.id):
            raise CatalogueError(f"{where}: ids are lowercase [a-z][a-z0-9_]*")
        if spec.event_type not in EVENT_TYPES:
            raise CatalogueError(
                f"{where}: unknown event type {spec.event_type!r}; "
                f"known: {', '.join(EVENT_TYPES)}"
            )
        if spec.working_group not in self.groups:
            raise CatalogueError(
                f"{where}: unknown working group {spec.working_group!r}; "
                f"known: {', '.join(sorted(self.groups))}"
            )
        if spec.gcm_objective not in GCM_OBJECTIVES:
            raise CatalogueError(
                f"{where}: gcm_objective {spec.gcm_objective} is not 1 to 23"
            )
        if not _HXL.fullmatch(spec.hxl):
            raise CatalogueError(f"{where}: {spec.hxl!r} is not an HXL hashtag")
        chosen = self._dimensions(where, spec, dimensions)
        readers = self._readers(where, spec, chosen)
        return Indicator(
            id=spec.id,
            title=spec.title,
            definition=spec.definition,
            working_group=spec.working_group,
            gcm_objective=spec.gcm_objective,
            event_type=spec.event_type,
            filter_text=spec.filter,
            filter=self._filter(where, spec),
            dimensions=chosen,
            period=spec.period or defaults.period,
            threshold=spec.threshold or defaults.threshold,
            readers=tuple(readers),
            hxl=spec.hxl,
            reader_dimensions=readers,
        )

    def _dimensions(
        self, where: str, spec: _IndicatorSpec, known: Mapping[str, Dimension]
    ) -> tuple[Dimension, ...]:
        listed = [*spec.dimensions, *spec.restricted]
        if len(listed) > MAX_DIMENSIONS:
            raise CatalogueError(
                f"{where}: {len(listed)} dimensions; at most {MAX_DIMENSIONS}"
            )
        if len(set(listed)) != len(listed):
            raise CatalogueError(f"{where}: a dimension is listed twice")
        chosen = []
        for ident in listed:
            dim = known.get(ident)
            if dim is None:
                raise CatalogueError(
                    f"{where}: unknown dimension {ident!r}; known: {', '.join(known)}"
                )
            if spec.event_type not in dim.fields:
                raise CatalogueError(
                    f"{where}: dimension {ident!r} reads no field of {spec.event_type}"
                )
            chosen.append(dim)
        tags = [d.hxl for d in chosen]
        if len(set(tags)) != len(tags) or spec.hxl in tags:
            raise CatalogueError(f"{where}: two columns would share an HXL hashtag")
        return tuple(chosen)

    def _readers(
        self, where: str, spec: _IndicatorSpec, chosen: tuple[Dimension, ...]
    ) -> dict[str, tuple[str, ...]]:
        if not spec.readers:
            raise CatalogueError(f"{where}: names no reader")
        out: dict[str, tuple[str, ...]] = {}
        for reader in spec.readers:
            if reader in out:
                raise CatalogueError(f"{where}: reader {reader!r} twice")
            grants = [
                g
                for g in self.policy.aggregates
                if g.recipient == reader and spec.event_type in g.event_types
            ]
            if not grants:
                raise CatalogueError(
                    f"{where}: reader {reader!r} holds no aggregate grant for "
                    f"{spec.event_type} in aggregates.toml"
                )
            by = {path for g in grants for path in g.by}
            out[reader] = tuple(
                d.id
                for d in chosen
                if d.id in spec.dimensions or d.fields[spec.event_type] in by
            )
        return out

    def _filter(self, where: str, spec: _IndicatorSpec) -> Condition | None:
        if spec.filter is None:
            return None
        condition = None
        for entry in self.catalog.versions(spec.event_type):
            try:
                condition = compile_condition(
                    spec.filter, tree_of(entry), frozenset(self.policy.institutions)
                )
            except ConditionSyntaxError as e:
                raise CatalogueError(f"{where}: filter: {e}") from e
        return condition
