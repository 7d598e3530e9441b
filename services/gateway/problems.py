"""RFC 9457 problem details: every refusal the gateway gives, one constructor each.

Details name field paths and expectations, never submitted values (they may be
personal data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from starlette.responses import Response

from services.contracts.errors import PuenteError, RecordInvalidError

MEDIA_TYPE: Final = "application/problem+json"
_TYPE_PREFIX: Final = "urn:puente:problem:"


class ProblemError(PuenteError):
    """A request the gateway refuses, with the problem document that explains why."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The problem as a JSON object (RFC 9457 members plus extensions)."""
        doc: dict[str, Any] = {
            "type": _TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc

    def response(self, instance: str | None = None) -> Response:
        """An ``application/problem+json`` response."""
        return Response(
            orjson.dumps(self.document(instance)),
            status_code=self.status,
            media_type=MEDIA_TYPE,
            headers=self.headers,
        )


def malformed_json(reason: str) -> ProblemError:
    """The body is not JSON (400)."""
    return ProblemError(
        400, "malformed-json", "Malformed JSON", f"body is not JSON: {reason}"
    )


def bad_request(detail: str, slug: str = "bad-request") -> ProblemError:
    """A query parameter or the request shape is wrong (400)."""
    return ProblemError(400, slug, "Bad request", detail)


def unauthorized(detail: str) -> ProblemError:
    """No bearer token, or one the gateway does not know (401)."""
    return ProblemError(
        401,
        "unauthorized",
        "Missing or invalid credentials",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="puente"'},
    )


def missing_scope(scope: str) -> ProblemError:
    """The credential lacks the scope this operation needs (403)."""
    return ProblemError(
        403,
        "insufficient-scope",
        "Credential scope missing",
        f"this credential lacks the {scope!r} scope; ask for one that has it",
        reason="insufficient_scope",
        scope=scope,
    )


def rate_limited(retry_after: int) -> ProblemError:
    """The institution sent more requests than its rate allows (429)."""
    return ProblemError(
        429,
        "rate-limited",
        "Too many requests",
        f"this institution's request rate is over its limit; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def readers_busy(retry_after: int) -> ProblemError:
    """Every delivery reader stayed busy for the whole wait (503)."""
    return ProblemError(
        503,
        "readers-busy",
        "Deliveries temporarily busy",
        "every delivery reader is in use; retry later",
        headers={"Retry-After": str(retry_after)},
    )


def not_allowed_to_publish(institution: str, event_type: str) -> ProblemError:
    """The caller holds no publish right for this event type (403)."""
    return ProblemError(
        403,
        "not-allowed-to-publish",
        "Publish right missing",
        f"institution {institution} may not publish {event_type} events",
        reason="not_allowed_to_publish",
    )


def source_mismatch(institution: str) -> ProblemError:
    """The envelope names another institution as its source (403)."""
    return ProblemError(
        403,
        "source-mismatch",
        "Source mismatch",
        "envelope.source_institution_id must be the caller's own institution "
        f"({institution})",
        reason="source_mismatch",
        field="envelope.source_institution_id",
    )


def unknown_event_type(known: list[str]) -> ProblemError:
    """The path names no event type of the catalog (404)."""
    return ProblemError(
        404,
        "unknown-event-type",
        "Unknown event type",
        f"no such event type; known: {', '.join(known)}",
        reason="unknown_schema",
    )


def not_found(detail: str) -> ProblemError:
    """No resource at this path (404)."""
    return ProblemError(404, "not-found", "Not found", detail)


def method_not_allowed(detail: str, allow: str = "") -> ProblemError:
    """The path exists but not with this method (405); ``Allow`` names the methods."""
    return ProblemError(
        405,
        "method-not-allowed",
        "Method not allowed",
        f"{detail}; allowed: {allow}" if allow else detail,
        headers={"Allow": allow} if allow else None,
    )


def conflict(event_id: str) -> ProblemError:
    """The event id was accepted before with different content (409)."""
    return ProblemError(
        409,
        "conflicting-duplicate",
        "Conflicting duplicate",
        f"event {event_id} was already accepted with different content; "
        "send a correction as a new event with supersedes_event_id",
        reason="conflicting_duplicate",
        event_id=event_id,
    )


def too_large(limit: int) -> ProblemError:
    """The body exceeds the configured limit (413)."""
    return ProblemError(
        413,
        "body-too-large",
        "Body too large",
        f"request body exceeds {limit} bytes",
        reason="too_large",
        limit=limit,
    )


def event_too_large(size: int, limit: int) -> ProblemError:
    """One event encodes to more bytes than the router or the broker accepts (413)."""
    return ProblemError(
        413,
        "event-too-large",
        "Event too large",
        f"the event encodes to {size} bytes; the hub accepts at most {limit} per event",
        reason="too_large",
        limit=limit,
        size=size,
    )


def unsupported_media_type(got: str) -> ProblemError:
    """The body is declared as something other than JSON (415)."""
    return ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"send application/json, not {got[:64]}",
    )


def invalid(error: RecordInvalidError) -> ProblemError:
    """The event does not match its schema (422); names the path and expectation."""
    path = error.path or "<record>"
    detail = f"{path}: expected {error.expected}"
    extra: dict[str, Any] = {"field": path, "expected": error.expected}
    if error.got is not None:
        detail += f", got {error.got}"
        extra["got"] = error.got
    return ProblemError(
        422, "schema-violation", "Schema violation", detail, reason="invalid", **extra
    )


def too_many_events(count: int, limit: int) -> ProblemError:
    """A batch holds more events than allowed (413: the request is too large)."""
    return ProblemError(
        413,
        "batch-too-large",
        "Batch too large",
        f"batch holds {count} events; at most {limit} per request",
        reason="too_large",
        limit=limit,
    )


def outbox_full(retry_after: int) -> ProblemError:
    """The outbox holds its limit of unsent events; the broker is unreachable (503)."""
    return ProblemError(
        503,
        "outbox-full",
        "Temporarily unable to accept events",
        "the hub cannot reach its broker and the gateway's outbox is full; retry later",
        headers={"Retry-After": str(retry_after)},
    )


def validation_error(location: str, message: str) -> ProblemError:
    """A path or query parameter fails validation (400)."""
    return ProblemError(
        400,
        "invalid-parameter",
        "Invalid parameter",
        f"{location}: {message}",
        field=location,
        expected=message,
    )
