"""Request handling: authenticate, read, validate, append to the outbox, answer.

Nothing here logs request content; problem details name field paths, never values.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter as TallyCounter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiokafka import ConsumerRecord
from starlette.requests import Request
from starlette.responses import Response

from services.contracts import codec, schema_ids, topics
from services.contracts import headers as ce_headers
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import (
    ContractError,
    RecordInvalidError,
    UnknownFingerprintError,
)
from services.contracts.natural import codec_for, format_timestamp
from services.gateway import problems
from services.gateway.deliveries import (
    CursorError,
    Page,
    PullNotEnabledError,
    ReaderBusyError,
    Readers,
    ReaderUnavailableError,
    decode_cursor,
    encode_cursor,
    record_headers,
)
from services.gateway.ingest import Limits, prepare
from services.gateway.metrics import GatewayMetrics
from services.gateway.outbox import Entry, Outbox, OutboxError, OutboxFullError, Outcome
from services.gateway.preparing import Preparer, Refusal, entry_of
from services.gateway.problems import ProblemError
from services.gateway.ratelimit import RateLimiter
from services.gateway.rights import PublishRights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import Principal, Scope, TokenRefusedError, TokenStore

log = logging.getLogger(__name__)

JSON: Final = "application/json"
_STATUS: Final = {Outcome.ACCEPTED: 202, Outcome.DUPLICATE: 200}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON)


class Gateway:
    """Everything a request needs: catalog, rights, credentials, outbox, reader."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        catalog: Catalog,
        rights: PublishRights,
        tokens: TokenStore,
        outbox: Outbox,
        reader: Readers,
        metrics: GatewayMetrics,
        preparer: Preparer,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.rights = rights
        self.tokens = tokens
        self.outbox = outbox
        self.reader = reader
        self.metrics = metrics
        self.preparer = preparer
        self.event_types = preparer.types
        self.limits: Limits | None = preparer.limits
        self.rate = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self._rejection = catalog.get("rejection")

    async def start(self) -> None:
        """Open the outbox and start the batch workers."""
        await self.outbox.start()
        self.preparer.start()

    async def stop(self) -> None:
        """Close the outbox, committing what is queued (the app may start it again)."""
        await asyncio.to_thread(self.preparer.stop)
        await self.outbox.stop()
        await self.reader.close()

    # --- authentication and request reading ---

    def authenticate(self, token: str | None, scope: Scope) -> str:
        """The caller's institution, if its token may act now.

        401 when the token is missing, unknown, revoked or expired; 403 when it lacks
        ``scope``; 429 when its institution is over its request rate.
        """
        principal = self.principal(token)
        if scope not in principal.scopes:
            raise problems.missing_scope(scope.value)
        wait = self.rate.take(principal.institution)
        if wait > 0:
            raise problems.rate_limited(RateLimiter.retry_after(wait))
        return principal.institution

    def principal(self, token: str | None) -> Principal:
        """Who a token speaks for; a 401 problem when it is missing, dead or expired."""
        if not token:
            raise problems.unauthorized("send Authorization: Bearer <token>")
        try:
            return self.tokens.check(token)
        except TokenRefusedError as e:
            raise problems.unauthorized(str(e)) from e

    def entry_for(self, event_type: str) -> SchemaEntry:
        """The latest schema of an event type; a 404 problem for anything else."""
        return entry_of(self.event_types, event_type)

    async def read_body(self, request: Request) -> bytes:
        """The request body: 415 or 413 problems for what may not be read."""
        media = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if media != JSON and not media.endswith("+json"):
            raise problems.unsupported_media_type(media)
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise problems.too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise problems.too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: Request) -> Any:
        """The parsed JSON body: 415, 413 or 400 problems for what is not."""
        body = await self.read_body(request)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise problems.malformed_json(f"{e.msg} at byte {e.pos}") from e

    # --- ingest ---

    async def publish(self, caller: str, event_type: str, request: Request) -> Response:
        """``POST /v1/events/{event_type}``: one event, answered once it is durable."""
        entry = self.entry_for(event_type)
        if not self.rights.may_publish(caller, event_type):
            raise problems.not_allowed_to_publish(caller, event_type)
        body = await self.read_json(request)
        try:
            prepared = prepare(entry, caller, body, self.limits)
        except RecordInvalidError as e:
            raise problems.invalid(e) from e
        (result,) = await self._append([prepared])
        if result.outcome is Outcome.CONFLICT:
            raise problems.conflict(result.event_id)
        document = {
            "event_id": result.event_id,
            "status": "accepted",
            "accepted_at": _rfc3339(result.accepted_at),
        }
        status = _STATUS[result.outcome]
        return json_response(document, status, {"Location": f"/v1/events/{event_type}"})

    async def publish_batch(self, caller: str, request: Request) -> Response:
        """``POST /v1/events:batch``: up to ``batch_max`` events, one result each."""
        body = await self.read_body(request)
        allowed = frozenset(
            t for t in self.event_types if self.rights.may_publish(caller, t)
        )
        limit = self.settings.batch_max
        outcomes = await self.preparer.prepare(caller, allowed, body, limit)
        if isinstance(outcomes, Refusal):
            raise _refusal_problem(outcomes, limit)
        results: list[dict[str, Any]] = [{} for _ in outcomes]
        ready: list[tuple[int, Entry]] = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Entry):
                ready.append((index, outcome))
            else:
                results[index] = outcome
        stored = await self._append([entry for _, entry in ready]) if ready else []
        for (index, _), result in zip(ready, stored, strict=True):
            results[index] = _item_result(index, result)
        return json_response(_summary(results))

    async def _append(self, entries: list[Entry]) -> list[Any]:
        try:
            results = await self.outbox.append(entries)
        except OutboxFullError as e:
            raise problems.outbox_full(self.settings.retry_after_s) from e
        except OutboxError as e:
            log.exception("outbox write failed")
            raise ProblemError(
                503,
                "outbox-unavailable",
                "Temporarily unable to accept events",
                "the gateway cannot store events right now; retry later",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from e
        accepted = TallyCounter(
            (entry.source, entry.event_type)
            for entry, result in zip(entries, results, strict=True)
            if result.outcome is Outcome.ACCEPTED
        )
        for labels, count in accepted.items():
            self.metrics.accepted.labels(*labels).inc(count)
        return results

    # --- pull delivery ---

    async def deliveries(
        self, caller: str, event_type: str, cursor: str | None, limit: int
    ) -> Response:
        """``GET /v1/deliveries/{event_type}``: the caller's deliveries, decoded."""
        self.entry_for(event_type)
        page = await self._page(topics.outbound(caller, event_type), cursor, limit)
        items = [self._delivery(r) for r in page.records]
        return json_response(
            {"items": items, "count": len(items), "cursor": encode_cursor(page.cursor)}
        )

    async def rejections(
        self, caller: str, cursor: str | None, limit: int, *, include_original: bool
    ) -> Response:
        """``GET /v1/rejections``: the caller's rejected events with reasons."""
        page = await self._page(topics.rejected(caller), cursor, limit)
        items = [
            self._rejected(r, include_original=include_original) for r in page.records
        ]
        return json_response(
            {"items": items, "count": len(items), "cursor": encode_cursor(page.cursor)}
        )

    async def _page(self, topic: str, cursor: str | None, limit: int) -> Page:
        try:
            position = decode_cursor(cursor)
        except CursorError as e:
            raise problems.bad_request(str(e), "invalid-cursor") from e
        try:
            return await self.reader.read(topic, position, limit)
        except ReaderBusyError as e:
            raise problems.readers_busy(self.settings.retry_after_s) from e
        except PullNotEnabledError as e:
            raise ProblemError(
                403, "pull-not-enabled", "HTTP pull not enabled", str(e)
            ) from e
        except ReaderUnavailableError as e:
            raise ProblemError(
                503,
                "broker-unavailable",
                "Deliveries temporarily unavailable",
                "the hub cannot reach its broker; retry later",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from e

    def schema(self, fingerprint: str) -> Response:
        """``GET /v1/schemas/{fingerprint}``: the writer schema a record names.

        Any fingerprint form `schema_ids.find` reads: the ``ce_dataschema`` URN, the
        wire-order hex of fastavro, Java's long, the Apache avro library's value.
        """
        try:
            entry = schema_ids.find(self.catalog, fingerprint)
        except schema_ids.FingerprintFormatError as e:
            raise problems.bad_request(str(e), "invalid-fingerprint") from e
        except UnknownFingerprintError as e:
            raise problems.not_found("no schema of the hub has this fingerprint") from e
        return json_response(
            entry.schema,
            headers={
                "Link": f'<{ce_headers.schema_urn(entry.fingerprint_hex)}>; rel="self"'
            },
        )

    def _delivery(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
        # The terms of the disclosure, never the rule that decided it: a rule's
        # condition may read a field the recipient's view withholds.
        headers = record_headers(record)
        item: dict[str, Any] = {
            "partition": record.partition,
            "offset": record.offset,
            "event_id": headers.get("ce_id"),
            "event_type": headers.get("ce_type"),
            "view": headers.get(ce_headers.VIEW),
            "purpose": headers.get(ce_headers.PURPOSE),
            "legal_basis": headers.get(ce_headers.LEGAL_BASIS),
            "policy_version": headers.get(ce_headers.POLICY_VERSION),
            "dataschema": headers.get(ce_headers.DATASCHEMA),
        }
        try:
            entry, datum = codec.decode(self.catalog, record.value or b"")
            item["schema"] = {
                "name": entry.name,
                "version": entry.version,
                "fingerprint": entry.fingerprint_hex,
            }
            item["event"] = codec_for(entry).to_natural(datum)
        except ContractError as e:
            item["error"] = {"reason": e.reason, "message": str(e)}
        return item

    def _rejected(
        self, record: ConsumerRecord[bytes, bytes], *, include_original: bool
    ) -> dict[str, Any]:
        base = {"partition": record.partition, "offset": record.offset}
        try:
            datum = codec.decode_as(self.catalog, record.value or b"", self._rejection)
        except ContractError as e:
            return {**base, "error": {"reason": e.reason, "message": str(e)}}
        natural = codec_for(self._rejection).to_natural(datum)
        if not include_original:
            natural.pop("original_value", None)
        return {**base, **natural}


@functools.lru_cache(maxsize=64)
def _rfc3339(epoch: float) -> str:
    # Cached: every event of one group commit shares its acceptance time.
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


def _refusal_problem(refusal: Refusal, limit: int) -> ProblemError:
    if refusal.kind == "malformed_json":
        return problems.malformed_json(refusal.detail)
    if refusal.kind == "too_many":
        return problems.too_many_events(refusal.count, limit)
    return problems.invalid(RecordInvalidError("events", 'an object {"events": [...]}'))


def _item_result(index: int, result: Any) -> dict[str, Any]:
    if result.outcome is Outcome.CONFLICT:
        return {"index": index, **problems.conflict(result.event_id).document()}
    return {
        "index": index,
        "status": _STATUS[result.outcome],
        "event_id": result.event_id,
        "accepted_at": _rfc3339(result.accepted_at),
    }


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [r["status"] for r in results]
    return {
        "accepted": statuses.count(202),
        "duplicates": statuses.count(200),
        "refused": sum(s >= 400 for s in statuses),
        "results": results,
    }
