"""Builds the gateway from its settings: the FastAPI app and the running service."""

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.contracts import schema_ids
from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway import openapi_document, problems
from services.gateway.deliveries import CURSOR_PATTERN, Readers
from services.gateway.handlers import Gateway, json_response
from services.gateway.indicators_api import indicator_routes
from services.gateway.ingest import Limits
from services.gateway.metrics import GatewayMetrics
from services.gateway.models import REF_TEMPLATE
from services.gateway.outbox import Outbox
from services.gateway.preparing import Preparer
from services.gateway.problems import ProblemError
from services.gateway.referrals_api import referral_routes
from services.gateway.relay import Relay
from services.gateway.rights import PublishRights, load_rights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import Scope as TokenScope
from services.gateway.tokens import TokenStore
from services.runtime.ops import OpsServer

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="pte_<institution>_<64 hex digits>")


def build_gateway(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: PublishRights,
    catalog: Catalog | None = None,
) -> Gateway:
    """The gateway's parts (not yet started)."""
    catalog = catalog or Catalog.load(settings.hub.schemas_dir)
    metrics = GatewayMetrics(registry)
    outbox = Outbox(
        settings.outbox_file(),
        limit=settings.outbox_limit,
        commit_wait_s=settings.group_commit_ms / 1000,
        group_max=settings.group_commit_max,
    )
    metrics.watch_outbox(lambda: outbox.unsent_count, outbox.oldest_unsent_age)
    reader = Readers(
        settings.kafka,
        settings.reader_credentials_dir,
        wait_ms=settings.deliveries_wait_ms,
        size=settings.deliveries_consumers,
        acquire_wait_ms=settings.deliveries_pool_wait_ms,
    )
    limits = Limits(settings.max_event_bytes(), settings.max_record_bytes())
    return Gateway(
        settings=settings,
        catalog=catalog,
        rights=rights,
        tokens=TokenStore(
            settings.tokens_file(), default_expiry_days=settings.token_expiry_days
        ),
        outbox=outbox,
        reader=reader,
        metrics=metrics,
        preparer=Preparer(
            catalog, settings.hub.schemas_dir, settings.prepare_workers, limits
        ),
    )


def build_app(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: PublishRights,
    *,
    catalog: Catalog | None = None,
    gateway: Gateway | None = None,
) -> FastAPI:
    """The public HTTP API. Without ``gateway`` it builds one and its lifespan runs it.

    It serves neither metrics nor documentation: those are on the admin app
    (``app.state.admin``, see `build_admin_app`), which listens on its own port.
    """
    owned = gateway is None
    gw = gateway or build_gateway(settings, registry, rights, catalog)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owned:
            await gw.start()
        try:
            yield
        finally:
            if owned:
                await gw.stop()

    app = FastAPI(
        title="Puente gateway",
        version="1",
        summary="HTTP ingest and pull delivery for institutions without a Kafka client",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gw
    _routes(app, gw)
    indicator_routes(app, gw)
    referral_routes(app, gw)
    _errors(app)
    app.openapi = _openapi(app, gw)  # type: ignore[method-assign]
    app.add_middleware(RequestMetrics, gateway=gw)
    app.state.admin = build_admin_app(app, gw)
    return app


def build_admin_app(public: FastAPI, gw: Gateway) -> FastAPI:
    """``/metrics``, ``/docs``, ``/openapi.json`` (of the public API) and ``/health``.

    Served on the admin port (loopback by default): metrics describe every
    institution's traffic and the documents describe the deployment, which only
    operators need.
    """
    admin = FastAPI(
        title="Puente gateway admin", docs_url=None, redoc_url=None, openapi_url=None
    )

    @admin.get("/openapi.json", include_in_schema=False)
    async def get_openapi_document() -> Response:
        return json_response(public.openapi())

    @admin.get("/docs", include_in_schema=False)
    async def get_docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=public.title)

    @admin.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        return Response(
            generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @admin.get("/health", include_in_schema=False)
    async def get_health() -> Response:
        return _health(gw)

    return admin


def _caller(gw: Gateway, scope: TokenScope) -> Callable[..., Awaitable[str]]:
    # async: FastAPI runs plain ``def`` dependencies in a thread pool, which costs
    # more than the hash and compare this does.
    async def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        return gw.authenticate(credentials.credentials if credentials else None, scope)

    return caller


def _health(gw: Gateway) -> Response:
    return json_response(
        {
            "service": "gateway",
            "ok": True,
            "outbox_depth": gw.outbox.unsent_count,
            "outbox_oldest_unsent_seconds": round(gw.outbox.oldest_unsent_age(), 3),
        }
    )


def _routes(app: FastAPI, gw: Gateway) -> None:
    Caller = Annotated[str, Depends(_caller(gw, TokenScope.PUBLISH))]  # noqa: N806 - a type alias
    Reader = Annotated[str, Depends(_caller(gw, TokenScope.READ))]  # noqa: N806 - a type alias
    limit_max = gw.settings.deliveries_max
    Cursor = Annotated[  # noqa: N806 - a type alias
        str | None, Query(max_length=4096, pattern=CURSOR_PATTERN)
    ]

    for event_type in sorted(gw.event_types):
        _event_route(app, gw, event_type, Caller)

    @app.post("/v1/events/{event_type}", include_in_schema=False)
    async def post_unknown(event_type: str, caller: Caller, request: Request) -> Response:
        return await gw.publish(caller, event_type, request)

    @app.post(
        "/v1/events:batch",
        tags=["events"],
        summary="Publish up to batch_max events; one result per event",
        openapi_extra={"requestBody": _batch_body(gw)},
    )
    async def post_batch(caller: Caller, request: Request) -> Response:
        return await gw.publish_batch(caller, request)

    @app.get("/v1/deliveries/{event_type}", tags=["deliveries"])
    async def get_deliveries(
        event_type: str,
        caller: Reader,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 100,
    ) -> Response:
        """The caller's deliveries of one event type, as natural JSON, with a cursor."""
        return await gw.deliveries(caller, event_type, cursor, limit)

    @app.get("/v1/rejections", tags=["deliveries"])
    async def get_rejections(
        caller: Reader,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 100,
        include_original: bool = False,
    ) -> Response:
        """The caller's rejected events with reason codes (original bytes on request)."""
        return await gw.rejections(
            caller, cursor, limit, include_original=include_original
        )

    @app.get("/v1/schemas/{fingerprint}", tags=["schemas"])
    async def get_schema(
        fingerprint: Annotated[str, Path(max_length=64, pattern=schema_ids.PATTERN)],
        caller: Reader,
    ) -> Response:
        """The Avro writer schema a record's ``ce_dataschema`` (or fingerprint) names."""
        del caller  # authenticated: schemas are for the hub's members
        return gw.schema(fingerprint)

    @app.get("/health", tags=["operations"])
    async def get_health() -> Response:
        """Liveness and outbox state."""
        return _health(gw)


def _event_route(app: FastAPI, gw: Gateway, event_type: str, caller_type: Any) -> None:
    async def post_event(caller: caller_type, request: Request) -> Response:
        return await gw.publish(caller, event_type, request)

    app.post(
        f"/v1/events/{event_type}",
        tags=["events"],
        summary=f"Publish one {event_type} event",
        description=(
            "Answered 202 once the event is durable in the gateway's outbox; the same "
            "event again answers 200 with the original result, the same event_id with "
            "other content 409."
        ),
        name=f"post_{event_type}",
        openapi_extra={"requestBody": _event_body(gw, event_type)},
    )(post_event)


def _event_body(gw: Gateway, event_type: str) -> dict[str, Any]:
    entry = gw.event_types[event_type]
    ref = {"$ref": REF_TEMPLATE.format(model=entry.schema["name"])}
    # A valid event (required fields only, neutral values, no personal data): tools
    # that send the documented example see it accepted.
    example = minimal_event(entry)
    return {
        "required": True,
        "content": {"application/json": {"schema": ref, "example": example}},
    }


def _batch_body(gw: Gateway) -> dict[str, Any]:
    # Items are any JSON: the gateway judges each on its own and answers 200 with a
    # result per item, so a malformed item is not a malformed request. The limit
    # on their number is a 413, not a schema violation, hence no maxItems.
    names = ", ".join(e.schema["name"] for _, e in sorted(gw.event_types.items()))
    limit = gw.settings.batch_max
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "description": (
                    f"At most {limit} events (more is a 413). Each is an event of "
                    f"one of the component schemas {names}, of a type the caller "
                    "may publish; one that is not is refused in its own result."
                ),
                "items": {},
            }
        },
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _openapi(app: FastAPI, gw: Gateway) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            app.openapi_schema = openapi_document.complete(document, gw.event_types)
        return app.openapi_schema

    return openapi


def _errors(app: FastAPI) -> None:
    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return exc.response(request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return problems.method_not_allowed(str(exc.detail), allow).response(
                request.url.path
            )
        if exc.status_code == 404:
            return problems.not_found("no such resource").response(request.url.path)
        return ProblemError(
            exc.status_code, "http-error", "HTTP error", str(exc.detail)
        ).response(request.url.path)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problems.validation_error(
            where, str(first.get("msg", "invalid"))
        ).response(request.url.path)

    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation)


class RequestMetrics:
    """Counts requests by route template and status (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.counter = gateway.metrics.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and count its response status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.counter.labels(template, str(status)).inc()


class GatewayService:
    """The gateway as one service of the hub process: API, outbox, relay."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: CollectorRegistry,
        rights: PublishRights | None = None,
    ) -> None:
        self.settings = settings
        catalog = Catalog.load(settings.hub.schemas_dir)
        if rights is None:
            rights = load_rights(settings.hub.policy_dir, catalog)
        self.gateway = build_gateway(settings, registry, rights, catalog)
        self.app = build_app(settings, registry, rights, gateway=self.gateway)
        self.relay = Relay(
            self.gateway.outbox,
            settings.kafka,
            settings.topics,
            self.gateway.metrics,
            batch=settings.relay_batch,
            backoff_max_s=settings.relay_backoff_max_s,
            retention_s=settings.dedupe_retention_hours * 3600,
            limits=self.gateway.limits,
        )
        self.server = OpsServer(self.app, settings.port, settings.host)
        self.admin = OpsServer(
            self.app.state.admin, settings.admin_port, settings.admin_host
        )

    async def start(self) -> None:
        """Open the outbox, start the relay, then listen on both ports."""
        await self.gateway.start()
        await self.relay.start()
        await self.admin.start()
        await self.server.start()
        log.info(
            "gateway listening on %s:%d (admin: metrics and docs on %s:%d)",
            self.settings.host,
            self.settings.port,
            self.settings.admin_host,
            self.settings.admin_port,
        )

    async def stop(self) -> None:
        """Stop listening, stop the relay, close the outbox."""
        await _quietly(self.server.stop)
        await _quietly(self.admin.stop)
        await _quietly(self.relay.stop)
        await self.gateway.stop()
        self.gateway.tokens.close()


def build_service(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: PublishRights | None = None,
) -> GatewayService:
    """The gateway service for ``puente up`` / ``puente run gateway`` (not started)."""
    return GatewayService(settings, registry, rights)


async def _quietly(step: Callable[[], Awaitable[None]]) -> None:
    try:
        await step()
    except Exception:
        log.exception("error while stopping the gateway")
