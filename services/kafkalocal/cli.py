"""``puente kafka up / down``: a local Apache Kafka with the production settings."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from services.kafkalocal.artifacts import resolve
from services.kafkalocal.cluster import DEFAULT_PORT_BASE, LocalKafka, stop_running
from services.kafkalocal.errors import LocalKafkaError
from services.runtime.cli import PuenteGroup
from services.runtime.settings import HubSettings

app = typer.Typer(
    cls=PuenteGroup,
    help="A local Apache Kafka with the compose stack's settings (tests, trials).",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Its data and files [default: PUENTE_STATE_DIR/kafka]"
    ),
]


@app.command()
def up(  # noqa: PLR0917 - one parameter per option
    brokers: Annotated[
        int, typer.Option("--brokers", help="1, or 3 for a replicated cluster")
    ] = 1,
    state_dir: StateDir = None,
    port_base: Annotated[
        int,
        typer.Option(
            "--port-base",
            help="Node i listens on base+3i (SASL), +1 (controller), +2 (SASL_SSL); "
            "0: free ports",
        ),
    ] = DEFAULT_PORT_BASE,
    heap: Annotated[str, typer.Option("--heap", help="JVM heap of each node")] = "512m",
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Return once it serves; stop it with `down`"),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Forget earlier data and credentials")
    ] = False,
) -> None:
    """Start Apache Kafka (KRaft) on loopback; Ctrl-C or `puente kafka down` stops it.

    Fetches the pinned jars with Maven on first use (deploy/kafka/pom.xml), formats the
    storage with an admin super-user, and runs the nodes with
    deploy/kafka/server.properties: SASL/SCRAM, the standard authorizer, deny by default.
    """
    folder = _state_dir(state_dir)
    if fresh:
        _forget(folder)
    began = time.monotonic()
    artifacts = resolve()
    fetched = time.monotonic() - began
    kafka = LocalKafka(
        folder,
        brokers=brokers,
        port_base=port_base,
        heap=heap,
        bound=not detach,
        artifacts=artifacts,
    )
    kafka.start()
    typer.echo(
        f"Apache Kafka {artifacts.version}: {brokers} node(s) ready in "
        f"{time.monotonic() - began:.1f} s (jars {fetched:.1f} s)"
    )
    typer.echo(f"bootstrap      {kafka.bootstrap}  (SASL_PLAINTEXT, SCRAM-SHA-512)")
    ca = kafka.tls_files.ca if kafka.tls_files else "?"
    typer.echo(f"tls bootstrap  {kafka.tls_bootstrap}  (SASL_SSL, CA {ca})")
    typer.echo(f"admin          {folder / 'admin.env'}  (set -a; . that file)")
    typer.echo(f"logs           {folder}/node-*/broker.log")
    if detach:
        typer.echo(f"stop it with: puente kafka down --state-dir {folder}")
        return
    _serve(kafka)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop the local Apache Kafka started from this state folder."""
    folder = _state_dir(state_dir)
    stopped = stop_running(folder)
    typer.echo(
        f"stopped {len(stopped)} node(s)"
        if stopped
        else f"no local Kafka runs in {folder}"
    )


def _serve(kafka: LocalKafka) -> None:
    """Wait for Ctrl-C or SIGTERM, then stop the nodes; a node that dies ends it."""
    stopping: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {
        s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        typer.echo("running; Ctrl-C stops it")
        expected = len(kafka.pids)
        while not stopping and len(kafka.pids) == expected:
            time.sleep(0.5)
    finally:
        died = not stopping
        kafka.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if died:
        raise LocalKafkaError(
            f"a Kafka node exited on its own; see {kafka.state_dir}/node-*/broker.log"
        )
    typer.echo("stopped")


def _state_dir(state_dir: Path | None) -> Path:
    return (state_dir or HubSettings().state_dir / "kafka").resolve()


def _forget(folder: Path) -> None:
    """Remove what an earlier run kept: node data, credentials, certificates."""
    if (folder / "connection.json").exists():
        stop_running(folder)
    for node in folder.glob("node-*"):
        shutil.rmtree(node)
    for name in ("cluster.json", "admin.env", "admin.properties"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "tls", ignore_errors=True)
