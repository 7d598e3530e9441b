"""The operations endpoint of a service: ``/health`` and ``/metrics`` on its port.

Served by uvicorn inside the service's own event loop, so health reflects the
service's real state and metrics come from the service's own registry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.contracts.errors import PuenteError

HealthCheck = Callable[[], Mapping[str, Any]]


class OpsServerError(PuenteError):
    """The /health and /metrics endpoint could not listen on its port."""


def ops_app(service: str, registry: CollectorRegistry, health: HealthCheck) -> FastAPI:
    """A FastAPI app with /health (503 until ``health()['ok']``) and /metrics."""
    app = FastAPI(title=f"puente {service}", docs_url=None, redoc_url=None)

    @app.get("/health")
    def get_health() -> JSONResponse:
        state = dict(health())
        return JSONResponse(
            {"service": service, **state}, 200 if state.get("ok") else 503
        )

    @app.get("/metrics")
    def get_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class OpsServer:
    """Runs an ASGI app on ``host:port`` as a task of the current event loop."""

    def __init__(self, app: Any, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        """Start serving; raise `OpsServerError` if the port cannot be bound."""
        self._task = asyncio.create_task(self._serve())
        while not self._server.started:
            if self._task.done():
                raise OpsServerError(
                    f"cannot listen on port {self.port} (already in use? "
                    "set PUENTE_<SERVICE>_PORT)"
                )
            await asyncio.sleep(0.02)

    async def _serve(self) -> None:
        # uvicorn calls sys.exit() when it cannot bind; keep that inside this task.
        with contextlib.suppress(SystemExit):
            await self._server.serve()

    async def stop(self) -> None:
        """Stop serving and wait for the server task to end."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._task
