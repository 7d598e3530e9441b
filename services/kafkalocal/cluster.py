"""A local Apache Kafka: format KRaft storage, start the node JVMs, stop them.

Everything a run needs lives under one state folder::

    cluster.json        cluster id, admin password, ports (kept: a restart reuses data)
    admin.env           PUENTE_KAFKA_* of the admin principal (``set -a; . admin.env``)
    admin.properties    the same for Kafka's Java tools (--command-config)
    connection.json     bootstrap addresses, CA file, process ids of the running nodes
    tls/                ca.pem and server.pem, made anew at every start
    node-<id>/          server.properties, log4j2.properties, broker.log, data/
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from services.kafkalocal import config, tls
from services.kafkalocal.artifacts import Artifacts, resolve
from services.kafkalocal.errors import BrokerStartError, LocalKafkaError
from services.runtime.settings import KafkaSettings

ADMIN: Final = "admin"
MECHANISM: Final = "SCRAM-SHA-512"
DEFAULT_PORT_BASE: Final = 29092
_READY: Final = "Kafka Server started"
_MAIN: Final = "kafka.Kafka"
_PR_SET_PDEATHSIG: Final = 1
_LOG4J: Final = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
# Every refused request, with principal, operation and resource (INFO: denials only).
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
"""
# kafka-run-class.sh's defaults, with a small heap for a 2-core development machine.
_JVM_OPTIONS: Final = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The admin super-user's SCRAM credentials and the cluster id of a state folder."""

    cluster_id: str
    admin_password: str
    brokers: int
    ports: tuple[int, ...]


@dataclass(slots=True)
class LocalKafka:
    """One or three KRaft nodes on loopback, with the compose stack's settings.

    ``port_base`` 0 picks free ports (tests); otherwise node ``i`` (0-based) listens on
    ``port_base + 3i`` (SASL_PLAINTEXT), ``+1`` (controller) and ``+2`` (SASL_SSL).
    ``bound`` nodes receive SIGTERM when the process that started them dies.
    """

    state_dir: Path
    brokers: int = 1
    port_base: int = DEFAULT_PORT_BASE
    heap: str = "512m"
    startup_timeout: float = 120.0
    bound: bool = True
    artifacts: Artifacts | None = None
    nodes: list[config.Node] = field(default_factory=list, init=False)
    credentials: Credentials | None = field(default=None, init=False)
    tls_files: tls.TlsFiles | None = field(default=None, init=False)
    _processes: list[subprocess.Popen[bytes]] = field(
        default_factory=list, init=False, repr=False
    )

    @property
    def bootstrap(self) -> str:
        """The SASL_PLAINTEXT bootstrap list (SCRAM-SHA-512)."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def tls_bootstrap(self) -> str:
        """The SASL_SSL bootstrap list (SCRAM-SHA-512, the run's CA)."""
        return ",".join(n.tls_bootstrap for n in self.nodes)

    @property
    def admin_password(self) -> str:
        """The admin super-user's password."""
        if self.credentials is None:
            raise LocalKafkaError("the local Kafka has not been started")
        return self.credentials.admin_password

    @property
    def pids(self) -> list[int]:
        """Process ids of the running node JVMs."""
        return [p.pid for p in self._processes if p.poll() is None]

    def settings(
        self, username: str = ADMIN, password: str | None = None
    ) -> KafkaSettings:
        """Client settings for SCRAM user ``username`` on the SASL_PLAINTEXT listener."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=MECHANISM,
            sasl_username=username,
            sasl_password=password if password is not None else self.admin_password,
        )

    def tls_settings(
        self, username: str = ADMIN, password: str | None = None
    ) -> KafkaSettings:
        """Client settings for SCRAM user ``username`` on the SASL_SSL listener."""
        return self.settings(username, password).model_copy(
            update={
                "bootstrap_servers": self.tls_bootstrap,
                "security_protocol": "SASL_SSL",
                "ssl_cafile": self.tls_files.ca if self.tls_files else None,
            }
        )

    def start(self) -> Self:
        """Resolve the jars, format storage, start every node, wait until all serve."""
        if self.brokers not in (1, 3):
            raise LocalKafkaError(f"--brokers must be 1 or 3, not {self.brokers}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_running(self.state_dir)
        artifacts = self.artifacts or resolve()
        self.artifacts = artifacts
        self.credentials = _credentials(self.state_dir, self.brokers, self.port_base)
        self.nodes = _nodes(self.state_dir, self.credentials.ports)
        self.tls_files = tls.generate(self.state_dir / "tls")
        for node in self.nodes:
            self._write_node_files(node, self.credentials, self.tls_files)
        self._format(artifacts, self.credentials)
        try:
            for node in self.nodes:
                self._processes.append(self._spawn(artifacts, node))
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self._write_connection_files(self.credentials, self.tls_files)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node (a controlled shutdown), SIGKILL those still up after it."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self._processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._processes.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "connection.json").unlink()

    def kill(self, index: int) -> int:
        """SIGKILL node ``index`` (0-based), as a crash would; its process id."""
        process = self._processes[index]
        process.kill()
        process.wait(timeout=10)
        return process.pid

    def running(self, index: int) -> bool:
        """Whether node ``index`` (0-based) was started and has not exited."""
        return index < len(self._processes) and self._processes[index].poll() is None

    def restart(self, index: int) -> None:
        """Start node ``index`` again on its data (after `kill`); wait until it serves."""
        if self.artifacts is None or self._processes[index].poll() is None:
            raise LocalKafkaError(f"node {index + 1} is not stopped")
        self._processes[index] = self._spawn(self.artifacts, self.nodes[index])
        self._wait_until_ready([index])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_node_files(
        self, node: config.Node, credentials: Credentials, tls_files: tls.TlsFiles
    ) -> None:
        folder = _node_dir(self.state_dir, node.node_id)
        node.data_dir.mkdir(parents=True, exist_ok=True)
        text = config.render(
            node,
            self.nodes,
            admin_password=credentials.admin_password,
            keystore=tls_files.keystore,
        )
        _private(folder / "server.properties", text)
        (folder / "log4j2.properties").write_text(_LOG4J, encoding="utf-8")

    def _format(self, artifacts: Artifacts, credentials: Credentials) -> None:
        """Format every node's storage (once; a formatted one is kept), in parallel."""
        scram = f"{MECHANISM}=[name={ADMIN},password={credentials.admin_password}]"
        running = []
        for node in self.nodes:
            folder = _node_dir(self.state_dir, node.node_id)
            command = [
                *self._java(artifacts, folder, "256m"),
                "kafka.tools.StorageTool", "format", "--ignore-formatted",
                "--cluster-id", credentials.cluster_id,
                "--config", str(folder / "server.properties"),
                "--add-scram", scram,
            ]  # fmt: skip
            running.append(
                subprocess.Popen(  # noqa: S603 - the JDK, fixed main class, no shell
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        # Every one is waited for before any failure is reported: none is left running.
        outputs = [process.communicate(timeout=180)[0] for process in running]
        for process, output in zip(running, outputs, strict=True):
            if process.returncode != 0:
                raise BrokerStartError(
                    "formatting the Kafka storage failed: "
                    f"{_last_line(output.decode('utf-8', 'replace'))}"
                )

    def _spawn(self, artifacts: Artifacts, node: config.Node) -> subprocess.Popen[bytes]:
        folder = _node_dir(self.state_dir, node.node_id)
        # A new log per start: readiness is read from it, and an old "started" line
        # must not count.
        log = (folder / "broker.log").open("wb")
        try:
            return subprocess.Popen(  # noqa: S603 - the JDK, fixed main class, no shell
                [
                    *self._java(artifacts, folder, self.heap),
                    _MAIN,
                    str(folder / "server.properties"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C reaches `puente kafka up`, which then stops
                # the nodes in order, instead of killing them under their clients.
                start_new_session=True,
                preexec_fn=_die_with_parent if self.bound else None,  # noqa: PLW1509
            )
        finally:
            log.close()

    def _java(self, artifacts: Artifacts, folder: Path, heap: str) -> list[str]:
        return [
            str(artifacts.java),
            f"-Xms{min(heap, '256m', key=_megabytes)}",
            f"-Xmx{heap}",
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
            "-cp",
            artifacts.classpath,
        ]

    def _wait_until_ready(self, indexes: list[int] | None = None) -> None:
        deadline = time.monotonic() + self.startup_timeout
        chosen = range(len(self.nodes)) if indexes is None else indexes
        pending = [(self.nodes[i], self._processes[i]) for i in chosen]
        while pending:
            for node, process in list(pending):
                log = _node_dir(self.state_dir, node.node_id) / "broker.log"
                if process.poll() is not None:
                    raise BrokerStartError(
                        f"Kafka node {node.node_id} exited with {process.returncode}: "
                        f"{_failure_line(log)} (log: {log})"
                    )
                if _READY in _read_tail(log):
                    pending.remove((node, process))
            if pending and time.monotonic() > deadline:
                node = pending[0][0]
                raise BrokerStartError(
                    f"Kafka node {node.node_id} was not ready within "
                    f"{self.startup_timeout:.0f} s (log: "
                    f"{_node_dir(self.state_dir, node.node_id) / 'broker.log'})"
                )
            time.sleep(0.1)

    def _write_connection_files(
        self, credentials: Credentials, tls_files: tls.TlsFiles
    ) -> None:
        password = credentials.admin_password
        env = {
            "PUENTE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "PUENTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PUENTE_KAFKA_SASL_MECHANISM": MECHANISM,
            "PUENTE_KAFKA_SASL_USERNAME": ADMIN,
            "PUENTE_KAFKA_SASL_PASSWORD": password,
        }
        _private(
            self.state_dir / "admin.env", "".join(f"{k}={v}\n" for k, v in env.items())
        )
        _private(
            self.state_dir / "admin.properties",
            "security.protocol=SASL_PLAINTEXT\n"
            f"sasl.mechanism={MECHANISM}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="{ADMIN}" password="{password}";\n',
        )
        connection = {
            "bootstrap": self.bootstrap,
            "tls_bootstrap": self.tls_bootstrap,
            "ca": str(tls_files.ca),
            "mechanism": MECHANISM,
            "admin_env": str(self.state_dir / "admin.env"),
            "pids": self.pids,
            "supervisor": os.getpid() if self.bound else None,
            "version": self.artifacts.version if self.artifacts else None,
        }
        _private(self.state_dir / "connection.json", json.dumps(connection, indent=2))


def stop_running(state_dir: Path, timeout: float = 60.0) -> list[int]:
    """Stop the nodes a ``puente kafka up`` started in ``state_dir``; their pids.

    The supervising ``up`` process gets SIGTERM and stops its nodes itself; nodes of a
    detached start get it directly. Only processes that are still Kafka nodes are
    signalled (a process id may have been reused since).
    """
    found = _running(state_dir)
    supervisor = found.get("supervisor")
    targets = [p for p in found.get("pids", []) if _is_kafka_node(p)]
    if isinstance(supervisor, int) and _alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in targets) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in targets:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "connection.json").unlink()
    return targets


def _refuse_if_running(state_dir: Path) -> None:
    alive = [p for p in _running(state_dir).get("pids", []) if _is_kafka_node(p)]
    if alive:
        raise LocalKafkaError(
            f"a local Kafka of {state_dir} is running (pids "
            f"{', '.join(map(str, alive))}); stop it with `puente kafka down`"
        )


def _running(state_dir: Path) -> dict[str, Any]:
    try:
        found = json.loads((state_dir / "connection.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _credentials(state_dir: Path, brokers: int, port_base: int) -> Credentials:
    """The state folder's cluster id, admin password and ports; made on first use."""
    path = state_dir / "cluster.json"
    if path.is_file():
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept["brokers"] != brokers:
            raise LocalKafkaError(
                f"{state_dir} holds a {kept['brokers']}-node cluster, not {brokers}: "
                "use another --state-dir, or --fresh to start over"
            )
        ports = tuple(kept["ports"]) if port_base == kept["port_base"] else None
    else:
        kept = {
            "cluster_id": _cluster_id(),
            "admin_password": secrets.token_hex(24),
            "brokers": brokers,
        }
        ports = None
    if ports is None or any(not _free(p) for p in ports):
        ports = _ports(brokers, port_base)
    kept.update({"ports": list(ports), "port_base": port_base})
    _private(path, json.dumps(kept, indent=2))
    return Credentials(kept["cluster_id"], kept["admin_password"], brokers, ports)


def _ports(brokers: int, port_base: int) -> tuple[int, ...]:
    if port_base == 0:
        return tuple(_free_port() for _ in range(3 * brokers))
    ports = tuple(range(port_base, port_base + 3 * brokers))
    busy = [p for p in ports if not _free(p)]
    if busy:
        raise LocalKafkaError(
            f"port {busy[0]} is in use (another Kafka?): stop it, or choose --port-base"
        )
    return ports


def _nodes(state_dir: Path, ports: Sequence[int]) -> list[config.Node]:
    return [
        config.Node(
            node_id=i + 1,
            internal_port=ports[3 * i],
            controller_port=ports[3 * i + 1],
            external_port=ports[3 * i + 2],
            data_dir=_node_dir(state_dir, i + 1) / "data",
        )
        for i in range(len(ports) // 3)
    ]


def _node_dir(state_dir: Path, node_id: int) -> Path:
    folder = state_dir / f"node-{node_id}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.

    Never one that starts with "-": the storage tool would read it as an option (one
    start in 64 failed so). Kafka's own Uuid.randomUuid draws again the same way.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((config.HOST, 0))
        return int(s.getsockname()[1])


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((config.HOST, port))
        except OSError:
            return False
        return True


def _megabytes(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return int(float(size[:-1]) * units[size[-1].lower()])


def _die_with_parent() -> None:
    # Linux: the node gets SIGTERM when the process that started it dies, even by
    # SIGKILL, so a killed test run or CLI leaves no broker behind.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _read_tail(path: Path, size: int = 65536) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _failure_line(log: Path) -> str:
    lines = _read_tail(log).splitlines()
    for line in reversed(lines):
        if " ERROR " in line or "Exception" in line:
            return line.strip()[:400]
    return _last_line("\n".join(lines))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else "no output"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_kafka_node(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _MAIN.encode() in cmdline.split(b"\0")
