"""``puente bench gateway``: accepted events/s and latency of the HTTP ingest path.

The gateway runs as its own process (as in production, client and server do not
share an interpreter) with its durable outbox and its relay to a fresh embedded
broker (or ``PUENTE_KAFKA_BOOTSTRAP_SERVERS``). The client (aiohttp: httpx's pool
could not drive more than ~300 requests/s here) sends pre-encoded minimal events
over keep-alive connections and times every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import aiohttp
import orjson
import typer
from rich.console import Console
from rich.table import Table

from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.contracts.ids import EVENT_TYPES
from services.contracts.samples import minimal_event
from services.gateway.tokens import TokenStore
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.settings import HubSettings

SOURCE: Final = "dgme"
EVENT_TYPE: Final = "return_arrival"
WARMUP: Final = 200


class BenchError(PuenteError):
    """The gateway under test did not start or answer."""


@dataclass(frozen=True, slots=True)
class Phase:
    """Figures of one benchmark phase."""

    name: str
    events: int
    seconds: float
    latencies_ms: list[float]
    failures: int

    @property
    def rate(self) -> float:
        """Accepted events per second."""
        return (self.events - self.failures) / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        """Request latency percentile in ms."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1]


@dataclass(frozen=True, slots=True)
class Load:
    """What to send."""

    singles: list[bytes]
    batches: list[bytes]
    batch_size: int
    concurrency: int
    batch_concurrency: int


def make_load(
    catalog: Catalog, *, events: int, concurrency: int, batches: int, batch_size: int
) -> Load:
    """Pre-encode every request body so the client spends no time building them."""
    entry = catalog.get(EVENT_TYPE)
    singles = [orjson.dumps(minimal_event(entry, SOURCE)) for _ in range(events + WARMUP)]
    batched = [
        orjson.dumps(
            {"events": [minimal_event(entry, SOURCE) for _ in range(batch_size)]}
        )
        for _ in range(batches)
    ]
    return Load(singles, batched, batch_size, concurrency, max(1, min(4, concurrency)))


async def _drive(
    client: aiohttp.ClientSession, path: str, bodies: list[bytes], concurrency: int
) -> tuple[float, list[float], int]:
    work: Iterator[bytes] = iter(bodies)
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for body in work:
            start = time.perf_counter()
            async with client.post(path, data=body) as response:
                text = await response.read()
            latencies.append((time.perf_counter() - start) * 1000)
            failures += _failed(response.status, text)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, failures


def _failed(status: int, body: bytes) -> int:
    if status == 202:
        return 0
    if status == 200 and body.startswith(b'{"accepted"'):
        return int(orjson.loads(body)["refused"])
    return 1


async def _wait_ready(
    client: aiohttp.ClientSession, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"gateway exited with {process.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with client.get("/health") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise BenchError("gateway did not become ready within 30 s")


async def _drain(client: aiohttp.ClientSession, limit_s: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        async with client.get("/health") as response:
            if orjson.loads(await response.read())["outbox_depth"] == 0:
                break
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


async def run_bench(load: Load, console: Console | None = None) -> list[Phase]:
    """Run both phases against a fresh gateway and print events/s, p50 and p99."""
    console = console or Console()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("PUENTE_KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        port = free_port()
        token = _token(state)
        process = _start_gateway(state, port, bootstrap)
        stack.callback(_stop, process)
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
            connector=aiohttp.TCPConnector(
                limit=load.concurrency + load.batch_concurrency
            ),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as client:
            await _wait_ready(client, process)
            phases = await _measure(client, load, console)
    _print(console, phases)
    return phases


async def _measure(
    client: aiohttp.ClientSession, load: Load, console: Console
) -> list[Phase]:
    path = f"/v1/events/{EVENT_TYPE}"
    await _drive(client, path, load.singles[:WARMUP], load.concurrency)
    singles = load.singles[WARMUP:]
    console.print(
        f"single-event POSTs: {len(singles)} events, {load.concurrency} clients"
    )
    seconds, lat, failed = await _drive(client, path, singles, load.concurrency)
    single = Phase("single", len(singles), seconds, lat, failed)
    drain_single = await _drain(client)
    console.print(
        f"batch POSTs: {len(load.batches)} x {load.batch_size} events, "
        f"{load.batch_concurrency} clients"
    )
    seconds, lat, failed = await _drive(
        client, "/v1/events:batch", load.batches, load.batch_concurrency
    )
    batch = Phase("batch", len(load.batches) * load.batch_size, seconds, lat, failed)
    drain_batch = await _drain(client)
    console.print(
        f"relay emptied the outbox {drain_single:.2f} s after the single phase and "
        f"{drain_batch:.2f} s after the batch phase"
    )
    return [single, batch]


def _token(state: Path) -> str:
    store = TokenStore(state / "gateway" / "tokens.sqlite")
    _, token = store.create(SOURCE)
    store.close()
    return token


def _start_gateway(state: Path, port: int, bootstrap: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PUENTE_STATE_DIR": str(state),
        "PUENTE_GATEWAY_PORT": str(port),
        "PUENTE_GATEWAY_ADMIN_PORT": str(free_port()),
        # One client stands for every institution here: measure the gateway, not
        # the per-institution rate limit.
        "PUENTE_GATEWAY_RATE_LIMIT_PER_S": "0",
        "PUENTE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PUENTE_LOG_LEVEL": "WARNING",
    }
    grants = f"{SOURCE}={','.join(EVENT_TYPES)}"
    return subprocess.Popen(  # noqa: S603 - this interpreter, fixed module
        [sys.executable, "-m", "services.gateway.testserver", grants], env=env
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _print(console: Console, phases: list[Phase]) -> None:
    table = Table("phase", "events", "seconds", "events/s", "p50 ms", "p99 ms", "refused")
    for p in phases:
        table.add_row(
            p.name,
            str(p.events),
            f"{p.seconds:.2f}",
            f"{p.rate:,.0f}",
            f"{p.percentile(50):.1f}",
            f"{p.percentile(99):.1f}",
            str(p.failures),
        )
    console.print(table)


def bench_command(
    events: Annotated[int, typer.Option(help="Single-event POSTs")] = 5000,
    concurrency: Annotated[
        int, typer.Option(help="Concurrent single-event clients")
    ] = 32,
    batches: Annotated[int, typer.Option(help="Batch POSTs")] = 40,
    batch_size: Annotated[int, typer.Option(help="Events per batch")] = 500,
) -> None:
    """Benchmark the gateway: single-event and batch POSTs into the durable outbox."""
    catalog = Catalog.load(HubSettings().schemas_dir)
    load = make_load(
        catalog,
        events=events,
        concurrency=concurrency,
        batches=batches,
        batch_size=batch_size,
    )
    try:
        phases = asyncio.run(run_bench(load))
    except PuenteError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    if any(p.failures for p in phases):
        raise typer.Exit(1)
