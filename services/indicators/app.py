"""The indicators service: count deliveries, serve protected tables, export gauges.

The service is a recipient like any institution: the access policy delivers it
(``hub.out.hub_indicators.<event_type>``) a pseudonymised view of each event
holding only the fields the catalogue's indicators read. It consumes with the
hub's shared batch loop: each batch is counted in one SQLite transaction, then its
offsets are committed; a batch read again adds nothing (event ids are kept).

Its operations port (9104) serves ``/health``, ``/metrics`` and, for the gateway,
``/v1/indicators/{id}``: tables that have passed disclosure control, for a named
reader whose aggregate grant allows the breakdown asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Final

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue
from services.indicators.counting import (
    LOCAL,
    closed_through,
    covering,
    period_bounds,
)
from services.indicators.errors import (
    IndicatorsError,
    NotAllowedError,
    QueryError,
    StoreError,
    UnknownIndicatorError,
)
from services.indicators.handlers import read_batch
from services.indicators.metrics import IndicatorCollector, ProcessMetrics, local_today
from services.indicators.settings import IndicatorsSettings, load_catalogue_for
from services.indicators.store import BatchResult, Store
from services.indicators.tables import Cache, as_hxl_csv, as_json, publish
from services.policy import Policy
from services.runtime import topic_admin
from services.runtime.consume import (
    BatchLoop,
    Consumer,
    LoopMetrics,
    Offsets,
    SeekBack,
    Subscription,
    next_offsets,
)
from services.runtime.ops import OpsServer, ops_app

log = logging.getLogger(__name__)
CLIENT_ID: Final = "puente-indicators"
HXL_CSV: Final = "text/csv"
DEFAULT_DAYS: Final = 90


class Counting(SeekBack):
    """The batch work: decode, count in one transaction, hand back the offsets."""

    def __init__(self, service: IndicatorsService) -> None:
        self.service = service

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        """Count ``records``; the offsets after them, to commit now."""
        del consumer
        await self.service.apply(records)
        return next_offsets(records)


class IndicatorsService:
    """The indicators process: consume, count, serve tables, health and metrics."""

    def __init__(self, settings: IndicatorsSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        loaded: tuple[Catalog, Policy, Catalogue] = load_catalogue_for(settings)
        self.catalog, self.policy, self.catalogue = loaded
        self.metrics = ProcessMetrics(registry, settings.group_id)
        self.store: Store | None = None
        self.cache: Cache = {}
        registry.register(
            IndicatorCollector(
                self.catalogue, lambda: self.store, every_seconds=settings.gauge_seconds
            )
        )
        self.loop = BatchLoop(
            "indicators",
            settings.kafka,
            Counting(self),
            registry,
            client_id=CLIENT_ID,
            metrics=LoopMetrics(lag=self.metrics.lag, failures=self.metrics.failures),
        )
        self.topics = self._topics()
        self.subscription = Subscription(
            topics=self.topics,
            group_id=settings.group_id,
            max_records=settings.max_batch,
        )
        app = ops_app("indicators", registry, self.health)
        tables_api(app, self)
        self.ops = OpsServer(app, settings.port, settings.host)
        self._turn = asyncio.Lock()  # one database writer
        self._stopping = asyncio.Event()
        self._release_task: asyncio.Task[None] | None = None
        self._due_since: int | None = None  # when periods were first found due (ms)
        self._running = False
        self.counted = 0

    def _topics(self) -> tuple[str, ...]:
        # Only the event types the policy delivers to the service: the others'
        # topics would never be written.
        delivered = self.policy.receive_rights.get(self.settings.recipient, frozenset())
        return tuple(
            topics.outbound(self.settings.recipient, t) for t in sorted(delivered)
        )

    def health(self) -> dict[str, Any]:
        """Readiness for /health."""
        ok = self._running and self.loop.failures == 0
        return {"ok": ok, "counted": self.counted, "topics": list(self.topics)}

    async def start(self) -> None:
        """Create the delivery topics, open the database, serve, consume."""
        if not self.topics:
            raise IndicatorsError(
                f"the access policy delivers nothing to {self.settings.recipient}; "
                "add its rules to deploy/policy/rules/*.toml"
            )
        partitions = self.settings.topics.outbound_partitions
        await topic_admin.create(
            self.settings.kafka, dict.fromkeys(self.topics, partitions)
        )
        self.store = await asyncio.to_thread(Store.open, self.settings.db_file)
        await self.ops.start()
        await self.loop.start(self.subscription)
        self._running = True
        self._stopping.clear()
        self._release_task = asyncio.create_task(self._releasing())
        log.info(
            "indicators counting %s into %s",
            ", ".join(self.topics),
            self.settings.db_file,
        )

    async def apply(self, records: Sequence[Any]) -> BatchResult:
        """Decode ``records`` and count them in one transaction."""
        decoded = read_batch(self.catalog, records)
        async with self._turn:
            store = self.store
            if store is None:
                raise StoreError("the indicators database is not open (not started)")
            result = await asyncio.to_thread(store.apply, self.catalogue, decoded.records)
        self.counted += result.counted
        self.metrics.counted.inc(result.counted)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.corrections.inc(result.corrections)
        self.metrics.unreadable.inc(decoded.unreadable + result.unreadable)
        return result

    async def table(
        self,
        ident: str,
        reader: str,
        *,
        first: date,
        last: date,
        by: Sequence[str],
        rounding: int | None,
    ) -> Any:
        """The publication of one indicator for ``reader`` (checks its grant)."""
        indicator = self.catalogue.get(ident)
        if reader not in indicator.readers:
            raise NotAllowedError(f"{reader} holds no aggregate grant to read {ident}")
        async with self._turn:
            if self.store is None:
                raise StoreError("the indicators database is not open (not started)")
            counts = await asyncio.to_thread(
                functools.partial(
                    self.store.counts, indicator.id, self.settings.release_after_days,
                    days=covering(first, last, indicator.period),
                )
            )  # fmt: skip
        # Protecting a period takes up to seconds (small-area breakdowns): off the
        # event loop, which keeps the consumer's heartbeats going meanwhile.
        return await asyncio.to_thread(
            functools.partial(
                publish, indicator, counts, first, last, by,
                reader=reader, rounding=rounding, cache=self.cache,
            )
        )  # fmt: skip

    async def warm(self, indicators: Sequence[str]) -> None:
        """Protect the last released period of each of ``indicators`` into the cache.

        The first request for a period would otherwise wait for its protection.
        """
        after = self.settings.release_after_days
        for ident in indicators:
            if self._stopping.is_set():
                return
            indicator = self.catalogue.get(ident)
            async with self._turn:
                if self.store is None:
                    return
                store = self.store
                day = (await asyncio.to_thread(store.released_through)).get(ident)
                if day is None:
                    continue
                counts = await asyncio.to_thread(
                    functools.partial(
                        store.counts, ident, after,
                        days=period_bounds(day, indicator.period),
                    )
                )  # fmt: skip
            await asyncio.to_thread(
                functools.partial(publish, indicator, counts, day, day, cache=self.cache)
            )

    async def release_due(self, now: datetime | None = None) -> list[str]:
        """Release every period due by ``now`` once the topics are read up to then.

        A period is due ``release_after_days`` whole days after it ends. The first
        call that finds periods due notes the moment; they are released once every
        delivery appended before that moment is counted (at once when the service
        is caught up), so a backlog (a restart, a slow spell) never freezes a period
        whose events are still waiting to be read. Returns the indicators released.
        """
        now = now or datetime.now(LOCAL)
        today = now.astimezone(LOCAL).date()
        after = self.settings.release_after_days
        async with self._turn:
            if self.store is None:
                return []
            marks = await asyncio.to_thread(self.store.released_through)
        due = {}
        for indicator in self.catalogue.indicators.values():
            through = closed_through(indicator.period, today, after)
            old = marks.get(indicator.id)
            if old is None or through > old:
                due[indicator.id] = through
        if not due:
            return []
        if self._due_since is None:
            self._due_since = int(now.timestamp() * 1000)
        if not await self.loop.read_through(self._due_since):
            return []
        async with self._turn:
            if self.store is None:
                return []
            done = await asyncio.to_thread(self.store.release, due, now)
        self._due_since = None
        for ident in done:
            log.info("indicator %s released through %s", ident, due[ident])
        await self.warm(done)
        return done

    async def _releasing(self) -> None:
        try:  # the periods released before a restart, ready for their first request
            await self.warm(list(self.catalogue.indicators))
        except IndicatorsError as e:
            log.warning("released periods not protected ahead of requests: %s", e)
        # Then a pause: at start the loop has read nothing yet.
        while not await self._stopped_within(self.settings.release_seconds):
            try:
                await self.release_due()
            except IndicatorsError as e:
                log.warning("periods not released this time: %s", e)

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def stop(self) -> None:
        """Finish the batch in hand, then close everything."""
        self._running = False
        self._stopping.set()
        if self._release_task is not None:
            await self._release_task
            self._release_task = None
        await self.loop.stop()
        await self.ops.stop()  # no scrape or table request reads a closing database
        async with self._turn:
            store, self.store = self.store, None
            if store is not None:
                store.close()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def tables_api(app: FastAPI, service: IndicatorsService) -> None:
    """Add the table routes the gateway forwards to (reader named by the gateway)."""

    @app.get("/v1/indicators")
    def list_indicators(reader: str) -> JSONResponse:
        readable = service.catalogue.readable_by(reader)
        if not readable:
            detail = f"{reader} holds no aggregate grant that reads an indicator"
            return JSONResponse({"detail": detail}, 403)
        return JSONResponse(
            [
                {
                    "id": i.id,
                    "title": i.title,
                    "working_group": i.working_group,
                    "gcm_objective": i.gcm_objective,
                    "period": i.period,
                    "by": list(i.reader_dimensions.get(reader, ())),
                }
                for i in readable
            ]
        )

    @app.get("/v1/indicators/{ident}")
    async def get_table(
        ident: str,
        reader: str,
        *,
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        by: str = "",
        fmt: Annotated[str, Query(alias="format")] = "json",
        rounding: Annotated[int | None, Query(alias="round", ge=2, le=1000)] = None,
    ) -> Response:
        last = end or local_today()
        first = start or date.fromordinal(last.toordinal() - DEFAULT_DAYS)
        dims = [d for d in by.split(",") if d]
        try:
            publication = await service.table(
                ident, reader, first=first, last=last, by=dims, rounding=rounding
            )
        except UnknownIndicatorError as e:
            return JSONResponse({"detail": str(e)}, 404)
        except NotAllowedError as e:
            return JSONResponse({"detail": str(e)}, 403)
        except QueryError as e:
            return JSONResponse({"detail": str(e)}, 400)
        except StoreError as e:
            return JSONResponse({"detail": str(e)}, 503)
        if fmt == "hxl-csv":
            return PlainTextResponse(as_hxl_csv(publication), media_type=HXL_CSV)
        return JSONResponse(as_json(publication))


def build_service(
    settings: IndicatorsSettings, registry: CollectorRegistry
) -> IndicatorsService:
    """The indicators service for ``settings`` with metrics on ``registry``."""
    return IndicatorsService(settings, registry)
