"""Run the demo: `up` (same services, same endpoint table) plus the driver and the view.

Sequence: broker (embedded unless configured) -> demo topics -> services -> wait
until the router has joined its consumer group -> publish for ``--duration`` or
until Ctrl-C/SIGTERM -> let the router catch up -> stop everything -> summary.

The demo's router de-duplication memory and audit ledger live under
``<state_dir>/demo/`` and start empty each run: a seed repeats its event ids on
every run (the point of a seed), the embedded broker starts empty each time, and
synthetic disclosures have no place in a real ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.live import Live

from services import hub
from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.demo import view
from services.demo.driver import CLIENT_ID, DemoError, Driver, demo_topics
from services.demo.settings import DemoSettings
from services.demo.tally import (
    Verdict,
    check,
    indicator_counts,
    referral_counts,
    snapshot,
)
from services.runtime import broker
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import port_open
from services.runtime.kafka import admin_config, producer_config
from services.runtime.service import serve, stop_on_signals
from services.runtime.settings import HubSettings, KafkaSettings

STATE_ENV: Final = broker.STATE_ENV


@dataclass(frozen=True, slots=True)
class Options:
    """What the operator asked for."""

    rate: float
    duration: float | None
    seed: int


@dataclass(frozen=True)
class Outcome:
    """The finished demo: what it showed last, the verdict, where the ledger is."""

    board: view.Board
    verdict: Verdict
    ledger: Path | None


def run(options: Options, console: Console) -> Outcome:
    """Run the whole demo; raise `DemoError` if the hub cannot start."""
    with broker.kafka_or_embedded() as (bootstrap, embedded):
        settings = DemoSettings()
        with demo_state(settings.hub.state_dir):
            try:
                return asyncio.run(
                    _run(options, settings, console, bootstrap if embedded else None)
                )
            except SystemExit as e:
                # uvicorn exits the process when it cannot bind; name the cause instead.
                raise DemoError(
                    "a service failed to start: its HTTP endpoint could not listen "
                    "(see the error above)"
                ) from e


async def _run(
    options: Options, settings: DemoSettings, console: Console, embedded: str | None
) -> Outcome:
    # Built inside the loop: services create their Kafka clients as they are built.
    built = [hub.build(spec) for spec in hub.available()]
    check_ports(built)
    demo = Demo(options, settings, built, console)
    await demo.play(embedded)
    return demo.outcome()


def demo_state(state_dir: Path) -> contextlib.AbstractContextManager[Path]:
    """Point the router's dedupe store and the audit ledger at a fresh demo folder."""
    return broker.ephemeral_state(state_dir, "demo")


class Demo:
    """One demo run over built services."""

    def __init__(
        self,
        options: Options,
        settings: DemoSettings,
        built: list[hub.Built],
        console: Console,
    ) -> None:
        self.options = options
        self.settings = settings
        self.built = built
        self.console = console
        self.router = _named(built, "router")
        self.audit = next((b for b in built if b.spec.name == "audit"), None)
        self.referrals = next((b for b in built if b.spec.name == "referrals"), None)
        self.indicators = next((b for b in built if b.spec.name == "indicators"), None)
        if self.referrals is not None:
            tracker = self.referrals.settings
            tracker.check_seconds = settings.referral_check_seconds
        catalog = Catalog.load(settings.hub.schemas_dir)
        self.driver = Driver(
            catalog,
            options.seed,
            options.rate,
            bad_share=settings.bad_share,
            tick=settings.tick_seconds,
        )
        self.board = view.Board(
            options.rate, options.seed, options.duration, self.driver.published
        )
        self._started = False
        self._clock_start: float | None = None
        self._clock_end: float | None = None

    async def play(self, embedded: str | None) -> None:
        """Start the services, run the session, stop them; clear errors on failure."""
        stop = asyncio.Event()
        stop_on_signals(stop)

        async def on_started() -> None:
            self._started = True
            self.console.print(hub.endpoints_table(self.built, embedded))
            try:
                await self._session(stop)
            finally:
                stop.set()

        await runtime_topics.create(
            self.settings.kafka, demo_topics(self.settings.topics)
        )
        try:
            await serve([b.service for b in self.built], stop, on_started)
        except (PuenteError, KafkaError, OSError) as e:
            if not self._started:
                raise DemoError(f"a service failed to start: {e}") from e
            if isinstance(e, PuenteError):
                raise
            raise DemoError(f"the demo stopped: {e}") from e
        finally:
            self._refresh()

    def outcome(self) -> Outcome:
        """The verdict on the final counts."""
        ledger = self.audit.settings.ledger_file if self.audit else None
        return Outcome(
            self.board, check(self.board.published, self.board.snapshot), ledger
        )

    async def _session(self, stop: asyncio.Event) -> None:
        async with _Screen(self.console, self.board, self.settings, self._refresh):
            self.board.phase = "waiting for the router to join its group"
            ready = await wait_for_router(
                self.router, self.settings.kafka, stop, self.settings.ready_seconds
            )
            if stop.is_set():
                return
            if not ready:
                self.board.phase = "publishing (router not joined yet)"
            else:
                self.board.phase = "publishing"
            self._clock_start = asyncio.get_running_loop().time()
            await self._publish(stop)
            self._clock_end = asyncio.get_running_loop().time()
            self.board.phase = "catching up"
            await self._drain()
            self.board.phase = "stopping"

    async def _publish(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(**producer_config(self.settings.kafka, CLIENT_ID))
        try:
            await producer.start()
            await self.driver.run(producer, stop, self.options.duration)
        except KafkaError as e:
            raise DemoError(f"cannot publish simulated inputs: {e}") from e
        finally:
            await producer.stop()

    async def _drain(self) -> None:
        """Wait until the router has handled every input, stalls, or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        last, last_change = -1, loop.time()
        while loop.time() < deadline:
            self._refresh()
            handled = self.board.snapshot.handled
            if handled >= self.board.published.total:
                return
            if handled != last:
                last, last_change = handled, loop.time()
            elif loop.time() - last_change > self.settings.stall_seconds:
                return
            await asyncio.sleep(0.1)

    def _refresh(self) -> None:
        self.board.snapshot = snapshot(self.router.registry)
        if self._clock_start is not None:
            end = self._clock_end or asyncio.get_running_loop().time()
            elapsed = end - self._clock_start
            duration = self.options.duration
            self.board.elapsed = elapsed if duration is None else min(elapsed, duration)
        if self.audit is not None:
            entries = self.audit.registry.get_sample_value("puente_audit_ledger_entries")
            self.board.ledger_entries = None if entries is None else round(entries)
        if self.referrals is not None:
            counts = referral_counts(self.referrals.registry, self.board.snapshot)
            self.board.referrals = counts
        if self.indicators is not None:
            self.board.indicators = indicator_counts(self.indicators.registry)


class _Screen:
    """The live view on a terminal, else a progress line every few seconds."""

    def __init__(
        self,
        console: Console,
        board: view.Board,
        settings: DemoSettings,
        refresh: Callable[[], None],
    ) -> None:
        self.console = console
        self.board = board
        self.settings = settings
        self.refresh = refresh
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    async def __aenter__(self) -> _Screen:
        if self.console.is_terminal:
            self._live = Live(
                view.live(self.board),
                console=self.console,
                auto_refresh=False,
                transient=True,
            )
            self._live.start()
        self._task = asyncio.create_task(self._loop(), name="demo-view")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.stop()
        else:
            self.refresh()
            self.console.print(view.progress_line(self.board), soft_wrap=True)

    async def _loop(self) -> None:
        if self._live is not None:
            period = 1.0 / self.settings.refresh_per_second
        else:
            period = self.settings.progress_seconds
        while True:
            await asyncio.sleep(period)
            self.refresh()
            if self._live is not None:
                self._live.update(view.live(self.board), refresh=True)
            else:
                self.console.print(view.progress_line(self.board), soft_wrap=True)


async def wait_for_router(
    router: hub.Built, kafka: KafkaSettings, stop: asyncio.Event, within: float
) -> bool:
    """Wait until the router is healthy and its consumer group is stable.

    Inputs sent earlier are not lost (the router reads from the earliest offset),
    but they would wait for the first group join and skew the latency shown.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    admin = AIOKafkaAdminClient(**admin_config(kafka, CLIENT_ID))
    try:
        await admin.start()
        while not stop.is_set() and loop.time() < deadline:
            healthy = bool(router.service.health().get("ok"))
            if healthy and await _group_stable(admin, router.settings.group_id):
                return True
            await asyncio.sleep(0.2)
    except KafkaError:
        return False  # the driver will report an unreachable broker clearly
    finally:
        await admin.close()
    return False


async def _group_stable(admin: AIOKafkaAdminClient, group: str) -> bool:
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError:
        return False
    for response in responses:
        # DescribeGroups: (error_code, group_id, state, protocol_type, protocol,
        # members, ...) in every version.
        for described in response.groups:
            if described[1] == group and described[2] == "Stable" and described[5]:
                return True
    return False


def check_ports(built: list[hub.Built]) -> None:
    """Fail early, naming the setting, when a service's port is taken."""
    for item in built:
        host = getattr(item.settings, "host", "127.0.0.1")
        if port_open(item.settings.port, host):
            name = item.spec.name.upper()
            raise DemoError(
                f"the {item.spec.name} cannot listen on {host}:{item.settings.port}: the "
                f"port is in use (another `puente up` or demo?); set PUENTE_{name}_PORT"
            )


def _named(built: list[hub.Built], name: str) -> hub.Built:
    for item in built:
        if item.spec.name == name:
            return item
    raise DemoError(f"the {name} is not part of this checkout; the demo needs it")


def log_level() -> str:
    """WARNING unless PUENTE_LOG_LEVEL says otherwise: the view is the demo's output."""
    settings = HubSettings()
    return settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
