from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry

from services.runtime.embedded import free_port
from services.runtime.ops import OpsServer, OpsServerError, ops_app


async def test_a_taken_port_is_a_clear_error_not_an_exit() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = OpsServer(
            ops_app("test", CollectorRegistry(), lambda: {"ok": True}), port
        )
        with pytest.raises(OpsServerError, match=str(port)):
            await server.start()
        await server.stop()
