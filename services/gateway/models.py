"""Pydantic models built from the Avro catalog, for the OpenAPI document only.

Requests are validated by the same natural-JSON conversion the CLI uses
(`services.contracts.natural`); these models describe that form so ``/docs`` shows
every field, its doc, its enum symbols and its sensitivity class.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from services.contracts.catalog import SchemaEntry
from services.contracts.schema_json import PRIMITIVES, full_name

_INT32: Final = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
_INT64: Final = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
_BASE64: Final = Annotated[str, Field(json_schema_extra={"format": "byte"})]
_TYPES: Final[dict[tuple[str, str | None], Any]] = {
    ("null", None): None,
    ("boolean", None): bool,
    ("int", None): _INT32,
    ("long", None): _INT64,
    ("float", None): float,
    ("double", None): float,
    ("string", None): str,
    ("bytes", None): _BASE64,
    ("string", "uuid"): uuid.UUID,
    ("int", "date"): date,
    ("long", "timestamp-millis"): AwareDatetime,
}
REF_TEMPLATE: Final = "#/components/schemas/{model}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelBuilder:
    """Turns self-contained Avro schemas into pydantic models, one per named type."""

    def __init__(self) -> None:
        self._named: dict[str, Any] = {}

    def model(self, entry: SchemaEntry) -> type[BaseModel]:
        """The model of one catalog entry (its top-level record)."""
        built = self._type(entry.schema, None)
        if not (isinstance(built, type) and issubclass(built, BaseModel)):
            raise TypeError(f"{entry.name} is not a record schema")
        return built

    def _type(self, schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _TYPES[(schema, None)]
            return self._named[full_name(schema, namespace)]
        if isinstance(schema, list):
            others = [self._type(b, namespace) for b in schema if b != "null"]
            union = others[0] if len(others) == 1 else Any
            return union | None if "null" in schema else union
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "enum":
            return self._enum(schema, namespace)
        if kind == "array":
            return list[self._type(schema["items"], namespace)]  # type: ignore[misc]
        if kind == "map":
            return dict[str, self._type(schema["values"], namespace)]  # type: ignore[misc]
        if isinstance(kind, str) and kind in PRIMITIVES:
            key = (kind, schema.get("logicalType"))
            return _TYPES.get(key, _TYPES[(kind, None)])
        return self._type(kind, namespace)

    def _enum(self, schema: dict[str, Any], namespace: str | None) -> Any:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        if name not in self._named:
            symbols = {s: s for s in schema["symbols"]}
            built = enum.Enum(schema["name"], symbols, type=str)  # type: ignore[misc]
            built.__doc__ = schema.get("doc") or f"Symbols of {schema['name']}"
            self._named[name] = built
        return self._named[name]

    def _record(self, schema: dict[str, Any], namespace: str | None) -> Any:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        if name in self._named:
            return self._named[name]
        own = name.rpartition(".")[0] or None
        fields: dict[str, Any] = {}
        for field in schema["fields"]:
            annotation = self._type(field["type"], own)
            fields[field["name"]] = (annotation, _field_info(field))
        model = create_model(
            schema["name"], __base__=_Strict, __doc__=schema.get("doc"), **fields
        )
        self._named[name] = model
        return model


def _field_info(field: dict[str, Any]) -> Any:
    sensitivity = field.get("sensitivity", "UNCLASSIFIED")
    doc = field.get("doc", "")
    description = f"{doc} [sensitivity: {sensitivity}]".strip()
    extra = {"x-sensitivity": sensitivity}
    if "default" in field:
        return Field(
            default=field["default"], description=description, json_schema_extra=extra
        )
    return Field(description=description, json_schema_extra=extra)


def event_models(entries: Iterable[SchemaEntry]) -> dict[str, type[BaseModel]]:
    """Event type id -> model of its latest schema."""
    builder = ModelBuilder()
    return {entry.name: builder.model(entry) for entry in entries}


def component_schemas(
    models: Iterable[type[BaseModel]],
    mode: Literal["validation", "serialization"] = "validation",
) -> dict[str, Any]:
    """JSON Schema definitions of ``models`` for ``components.schemas``."""
    _, top = models_json_schema([(m, mode) for m in models], ref_template=REF_TEMPLATE)
    return dict(top.get("$defs", {}))


class SchemaRef(BaseModel):
    """The Avro schema a delivery was written with."""

    name: str
    version: int
    fingerprint: str


class DeliveryError(BaseModel):
    """Why a delivery could not be decoded (reported in place of its event)."""

    reason: str
    message: str


class DeliveryItem(BaseModel):
    """One delivery: the projected event and the terms it was disclosed under.

    It names the view, purpose, legal basis and policy version of the disclosure,
    never the rule that decided it: a rule's condition may read a field the view
    withholds.
    """

    partition: int
    offset: int
    event_id: str | None = Field(description="The event id as this recipient sees it")
    event_type: str | None
    view: str | None = Field(description="The view the event was projected to")
    purpose: str | None = Field(description="The purpose of the disclosure")
    legal_basis: str | None = Field(description="The legal basis of the disclosure")
    policy_version: str | None = Field(description="The access policy that decided")
    dataschema: str | None = Field(
        default=None,
        description="urn:puente:schema:<fingerprint> of the writer schema "
        "(GET /v1/schemas/{fingerprint} serves it)",
    )
    schema_: SchemaRef | None = Field(default=None, alias="schema")
    event: dict[str, Any] | None = Field(
        default=None, description="The projected event as natural JSON"
    )
    error: DeliveryError | None = None


class DeliveryPage(BaseModel):
    """A page of deliveries and the cursor that continues after it."""

    items: list[DeliveryItem]
    count: int
    cursor: str


class Receipt(BaseModel):
    """The gateway holds the event durably; the relay sends it to the hub."""

    event_id: str = Field(description="The event's envelope.event_id")
    status: Literal["accepted"]
    accepted_at: AwareDatetime = Field(description="When the outbox first stored it")


class BatchResult(BaseModel):
    """One event of a batch: a receipt (status 200 or 202) or a problem document."""

    model_config = ConfigDict(extra="allow")

    index: int = Field(ge=0, description="The event's position in the batch")
    status: int = Field(description="202 accepted, 200 duplicate, else a problem")
    event_id: str | None = None
    accepted_at: AwareDatetime | None = None
    type: str | None = Field(default=None, description="The problem's type URN")
    title: str | None = None
    detail: str | None = None


class BatchSummary(BaseModel):
    """Counts and one result per event, in the batch's order."""

    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    refused: int = Field(ge=0)
    results: list[BatchResult]


class RejectionItem(BaseModel):
    """One of the caller's events the router refused, with the reason it gave.

    ``original_value`` (the refused bytes, base64) only with ``include_original``.
    """

    partition: int
    offset: int
    rejection_id: str | None = None
    reason: str | None = Field(default=None, description="Machine-readable reason")
    message: str | None = Field(default=None, description="Field path and expectation")
    source_institution_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    received_at: AwareDatetime | None = None
    rejected_at: AwareDatetime | None = None
    original_value: str | None = Field(default=None, json_schema_extra={"format": "byte"})
    error: DeliveryError | None = Field(
        default=None, description="Why the rejection itself could not be decoded"
    )


class RejectionPage(BaseModel):
    """A page of rejections and the cursor that continues after it."""

    items: list[RejectionItem]
    count: int
    cursor: str


class Health(BaseModel):
    """Liveness and the outbox's state."""

    service: Literal["gateway"]
    ok: bool
    outbox_depth: int = Field(ge=0, description="Events stored and not yet relayed")
    outbox_oldest_unsent_seconds: float = Field(ge=0)


class Problem(BaseModel):
    """An RFC 9457 problem document; extension members vary by ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:puente:problem:<slug>")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = Field(default=None, description="The request path")


class SchemaDocument(BaseModel):
    """An Avro schema as JSON (self-contained: named types defined at first use)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="record")
    name: str
    namespace: str | None = None
    fields: list[dict[str, Any]]


ReferralStatus = Literal[
    "SENT", "ACCEPTED", "REJECTED", "IN_SERVICE", "DONE", "REVOKED", "EXPIRED"
]  # fmt: skip


class OverdueMark(BaseModel):
    """The deadline an open referral has missed and how far it has escalated."""

    deadline: str = Field(description="The missed deadline, e.g. ACKNOWLEDGE")
    escalation_level: int = Field(ge=0)
    due_at: str | None


class ReferralSummary(BaseModel):
    """A referral as its parties see it: no person's data, only the referral's state."""

    referral_id: str
    role: Literal["sent", "received"] = Field(description="The caller's side")
    referring_institution_id: str
    receiving_institution_id: str
    status: ReferralStatus
    urgency: str | None
    service_group: str | None
    created_at: str | None
    received_at: str | None
    updated_at: str | None
    acknowledged_at: str | None
    service_started_at: str | None
    closed_at: str | None
    overdue: OverdueMark | None = Field(description="Set while an open one is late")


class ReferralPage(BaseModel):
    """The caller's referrals, newest first."""

    referrals: list[ReferralSummary]


class ReferralStep(BaseModel):
    """One applied transition of a referral."""

    at: str
    institution: str
    lifecycle_event: str
    status: ReferralStatus
    previous_status: ReferralStatus | None


class ReferralDetail(ReferralSummary):
    """One referral with its history of applied transitions."""

    history: list[ReferralStep]


class IndicatorSummary(BaseModel):
    """An indicator the caller's aggregate grants let it read."""

    id: str
    title: str
    working_group: str
    gcm_objective: int
    period: str
    by: list[str] = Field(description="The dimensions the caller may break it down by")


class DisclosureControl(BaseModel):
    """How the published counts were protected, and how many cells were withheld."""

    model_config = ConfigDict(extra="allow")

    threshold: int
    primary: str
    complementary: str
    rounding: int | None
    zero: str
    suppressed_primary: int = Field(ge=0)
    suppressed_complementary: int = Field(ge=0)


class IndicatorCell(BaseModel):
    """One cell: a value per dimension of ``by``, its count, and why it is withheld."""

    model_config = ConfigDict(extra="allow")

    count: int | None = Field(description="Null when suppressed")
    suppressed: str | None = None


class IndicatorPeriod(BaseModel):
    """The cells of one whole period."""

    model_config = ConfigDict(populate_by_name=True)

    period: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    provisional: bool
    cells: list[IndicatorCell]


class IndicatorPending(BaseModel):
    """A period of the range not released yet (its tables are not published)."""

    model_config = ConfigDict(populate_by_name=True)

    period: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    release_on: str = Field(description="The first day it may be released")


class IndicatorTable(BaseModel):
    """An indicator's protected tables over a range of whole, released periods."""

    indicator: str
    title: str
    definition: str
    working_group: str
    gcm_objective: int
    event_type: str
    period: str
    by: list[str]
    disclosure_control: DisclosureControl
    released_through: str | None = Field(
        description="The last day released: later periods are listed under pending"
    )
    pending: list[IndicatorPending]
    tables: list[IndicatorPeriod]
