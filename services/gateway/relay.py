"""The outbox relay: unsent rows, in order, to ``hub.in.<source>.<event_type>``.

Each round reads the oldest unsent rows and sends them as whole record batches,
every partition at once and each partition's batches one after another; a row is
marked sent only once its batch was acknowledged and its topic still exists. A
failed partition is sent again from its first unsent row with exponential backoff,
so a broker error can publish a row twice (at-least-once; the router dedupes by
``event_id``) but never loses one or puts a later row of a partition ahead of it.
Where the broker grants producer ids the producer is idempotent, so the retries of
one producer add no copy (a leader change mid-round); a new producer may still.

A row the broker can never take is not retried: one larger than the producer's
request size (possible only for rows stored before the gateway checked sizes) is
refused before sending, and one the broker answers with a too-large error is
refused after it, each counted in ``puente_relay_refused``. Otherwise it would be
retried forever and hold back every row behind it. Its publisher got 202, so it is
told: in the row's place, on the same topic and key, the relay sends a refusal notice
(no value, the row's CloudEvents headers and ``puente_refused``,
``puente_refused_bytes``, ``puente_refused_limit``), which the router answers on
``hub.rejected.<source>`` with reason ``too_large``. The row counts as reported only
once the notice is acknowledged; until then it stays due like any unsent row (a
broker outage delays it, and the rows behind it, as it delays every row). A notice
the broker refuses as well (a topic taking less than its headers) is given up and
stays counted in ``puente_relay_refusals_unreported``. A row the broker takes but the
router refuses is sent: the router answers it there too.

The producer is aiokafka's, not FastStream's: measured on the embedded broker with
1.5 KB records, aiokafka sent 15-16k records/s, FastStream's ``publish`` 12k/s and
with ``KafkaPrometheusMiddleware`` 8.6-11k/s (and it adds a ``correlation_id``
header outside the CloudEvents contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from services.contracts import headers
from services.contracts.errors import PuenteError
from services.contracts.headers import KafkaHeaders
from services.gateway.ingest import Limits
from services.gateway.metrics import GatewayMetrics
from services.gateway.outbox import Outbox, Pending, Refusal
from services.gateway.readback import ReadBack
from services.runtime import batches, topic_admin
from services.runtime.kafka import probe_idempotence, producer_config
from services.runtime.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

_IDLE_WAIT_S: Final = 0.5
# A round whose acks took longer than this may have spanned a broker restart.
_SUSPECT_ROUND_S: Final = 0.25
_PRUNE_EVERY_S: Final = 60.0
# What the broker answers for a record it will never accept.
_TOO_LARGE: Final = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
TOO_LARGE: Final = "too_large"
_NOT_ON_NOTICES: Final = headers.REFUSAL_HEADERS | {"content-type", headers.DATASCHEMA}


class RelayError(PuenteError):
    """The relay could not hand rows to the broker (retried with backoff)."""

    retriable = True


class TopicsLostError(RelayError):
    """Topics of a round were gone after its acks: the broker restarted empty."""


_FAILURES: Final = (
    KafkaError,
    OSError,
    TimeoutError,
    topic_admin.TopicBootstrapError,
    RelayError,
)


class Relay:
    """One task that drains the outbox into Kafka."""

    def __init__(
        self,
        outbox: Outbox,
        kafka: KafkaSettings,
        topic_settings: TopicSettings,
        metrics: GatewayMetrics,
        *,
        batch: int = 500,
        backoff_max_s: float = 5.0,
        retention_s: float = 72 * 3600,
        limits: Limits | None = None,
    ) -> None:
        self._outbox = outbox
        self._limits = limits
        self._kafka = kafka
        self._topic_settings = topic_settings
        self._metrics = metrics
        self._batch = batch
        self._backoff_max = backoff_max_s
        self._retention = retention_s
        self._producer: AIOKafkaProducer | None = None
        self._known: batches.Partitions | None = None
        self._checker = ReadBack(kafka)
        self._ready_topics: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self.connected = False
        metrics.relay_unreported.set_function(lambda: outbox.unreported_count)

    async def start(self) -> None:
        """Start relaying in the background (the broker may still be down)."""
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop relaying; unsent rows stay in the outbox for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_producer()
        await self._checker.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._relay_forever()
            except Exception:
                # Broker errors are retried inside; anything else is a bug, and the
                # relay must outlive it: events keep waiting durably in the outbox.
                log.exception("relay failed unexpectedly; restarting it")
                self._metrics.relay_errors.inc()
                await self._close_producer()
                await asyncio.sleep(self._backoff_max)

    async def _relay_forever(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_FAILURES),
            wait=wait_exponential_jitter(multiplier=0.1, max=self._backoff_max),
            before_sleep=self._on_failure,
            reraise=True,
        )
        while True:
            async for attempt in retrying:
                with attempt:
                    sent = await self._round()
            if not sent:
                await self._idle()

    async def _round(self) -> int:
        """Send one round of unsent rows; return how many left the queue."""
        rows = await self._outbox.unsent(self._batch)
        if not rows:
            return 0
        rows = await self._oversized_refused(rows)
        producer = await self._ensure_producer()
        await self._ensure_topics(r.topic for r in rows)
        groups = await batches.by_partition(rows, self._partitions(producer))
        started = time.monotonic()
        results = await asyncio.gather(
            *(self._send_in_order(producer, tp, group) for tp, group in groups.items()),
            return_exceptions=True,
        )
        acked = {
            where: result
            for where, result in zip(groups, results, strict=True)
            if not isinstance(result, BaseException)
        }
        abandoned = [row.seq for sent in acked.values() for row in sent.abandoned]
        if abandoned:
            await self._give_up(abandoned)
        slow = time.monotonic() - started > _SUSPECT_ROUND_S
        stored = await self._confirm(producer, acked, read_back=slow)
        delivered = [row for group in stored for row in group.delivered()]
        sent = [r.seq for r in delivered if r.refusal is None]
        if sent:
            await self._outbox.mark_sent(sent)
            self._metrics.relay_published.inc(len(sent))
        reported = [r.seq for r in delivered if r.refusal is not None]
        if reported:
            await self._outbox.mark_reported(reported)
            self._metrics.relay_reported.inc(len(reported))
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        if len(stored) < sum(s.first is not None for s in acked.values()):
            raise TopicsLostError("acknowledged writes were not found on the broker")
        self.connected = True
        return len(delivered) + len(abandoned)

    async def _oversized_refused(self, rows: list[Pending]) -> list[Pending]:
        """``rows``, those larger than the producer may send marked refused."""
        if self._limits is None:
            return rows
        limit = self._limits.record_bytes
        oversized = {
            r.seq: Refusal(TOO_LARGE, _record_size(r), limit)
            for r in rows
            if r.refusal is None and _record_size(r) > limit
        }
        if not oversized:
            return rows
        await self._refuse(oversized)
        return [
            dataclasses.replace(r, refusal=oversized[r.seq]) if r.seq in oversized else r
            for r in rows
        ]

    async def _refuse(self, refusals: dict[int, Refusal]) -> None:
        """Note refused rows; their notices go out in their place from now on."""
        new = await self._outbox.mark_refused(refusals)
        self._metrics.relay_refused.labels(TOO_LARGE).inc(new)
        # Seqs and sizes only: the event's content or ids never reach the log.
        log.error(
            "refused %d outbox events the broker cannot take (too large; seq %s); "
            "refusal notices go in their place, for the router to tell their publishers",
            len(refusals),
            ", ".join(f"{s} ({r.size} bytes)" for s, r in list(refusals.items())[:10]),
        )

    async def _give_up(self, seqs: list[int]) -> None:
        await self._outbox.give_up(seqs)
        log.error(
            "the broker refused the refusal notices of %d outbox events (seq %s): "
            "their publishers are not told; the topic takes less than a notice's "
            "headers",
            len(seqs),
            ", ".join(str(s) for s in seqs[:10]),
        )

    async def _send_in_order(
        self, producer: AIOKafkaProducer, where: tuple[str, int], rows: list[Pending]
    ) -> _Sent:
        """Send ``rows`` to one partition.

        Returns where its first stored row landed and the rows the broker refused
        as too large.
        """
        # One record batch at a time: a batch is stored whole or not at all, so a
        # failure leaves no later row of the partition ahead of an earlier one.
        topic, partition = where
        sent = _Sent(rows)
        for batch, members in _packed(producer, rows):
            try:
                metadata = await self._acked(
                    await producer.send_batch(batch, topic, partition=partition)
                )
            except _TOO_LARGE:
                if len(members) == 1:
                    await self._too_large(producer, where, members[0], sent)
                    continue
                # Find the record the broker refuses: the others one at a time.
                for row in members:
                    await self._send_alone(producer, where, row, sent)
                continue
            sent.stored(members[0], metadata.offset)
        return sent

    async def _too_large(
        self,
        producer: AIOKafkaProducer,
        where: tuple[str, int],
        row: Pending,
        sent: _Sent,
    ) -> None:
        """``row`` was refused as too large: send its notice in its place.

        The refusal is noted first, so a notice that fails to go out (broker down)
        is sent again, not the row. A refused notice is given up: there is nothing
        smaller to send.
        """
        if row.refusal is not None:
            sent.abandoned.append(row)
            return
        refusal = Refusal(TOO_LARGE, _record_size(row))
        await self._refuse({row.seq: refusal})
        notice = dataclasses.replace(row, refusal=refusal)
        sent.replace(notice)
        await self._send_alone(producer, where, notice, sent)

    async def _send_alone(
        self,
        producer: AIOKafkaProducer,
        where: tuple[str, int],
        row: Pending,
        sent: _Sent,
    ) -> None:
        batch = producer.create_batch()
        _append(batch, row)
        try:
            metadata = await self._acked(
                await producer.send_batch(batch, where[0], partition=where[1])
            )
        except _TOO_LARGE:
            await self._too_large(producer, where, row, sent)
            return
        sent.stored(row, metadata.offset)

    async def _acked(self, delivery: asyncio.Future[Any]) -> Any:
        """The broker's acknowledgement of a batch, waited for at most a request timeout.

        An idempotent producer never gives a batch up (it retries until the broker
        takes it), so without a bound a round would wait out a whole outage unseen:
        no relay error counted, ``connected`` still true. The batch stays with the
        producer (shielded); the round fails and is retried with backoff.
        """
        timeout = self._kafka.request_timeout_ms / 1000
        try:
            return await asyncio.wait_for(asyncio.shield(delivery), timeout)
        except TimeoutError as e:
            # Its outcome no longer matters here (the rows are sent again).
            delivery.add_done_callback(_outcome_seen)
            raise RelayError(f"no acknowledgement within {timeout:.0f} s") from e

    async def _confirm(
        self,
        producer: AIOKafkaProducer,
        acked: dict[tuple[str, int], _Sent],
        *,
        read_back: bool,
    ) -> list[_Sent]:
        """The acknowledged groups that are really on the broker.

        The embedded broker, restarted empty, acknowledges writes to topics it no
        longer has and drops them (Kafka refuses them). So a group counts only if
        its topic exists after the acks (one metadata request per round); and after
        a slow round (a broker restart may have happened under it) only if its
        first row reads back at the offset it was acknowledged at.
        """
        delivered = {w: s for w, s in acked.items() if s.first is not None}
        if not delivered:
            return []
        existing = (await producer.client.fetch_all_metadata()).topics()
        present = {w: s for w, s in delivered.items() if w[0] in existing}
        if read_back and present:
            found = await self._checker.ids_at({w: s.offset for w, s in present.items()})
            present = {
                w: s
                for w, s in present.items()
                if s.first is not None
                and found.get(w) == headers.event_id_of(s.first.headers)
            }
        return list(present.values())

    async def _idle(self) -> None:
        self._outbox.appended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.appended.wait(), _IDLE_WAIT_S)
        if time.monotonic() - self._last_prune > _PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            pruned = await self._outbox.prune(self._retention)
            if pruned:
                log.info("pruned %d relayed events past the dedupe window", pruned)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Asked here, not inside producer_config, so the gateway's event loop never
            # waits on the question (an unreachable broker: plain, asked again later).
            granted = await probe_idempotence(self._kafka)
            kafka = self._kafka.model_copy(
                update={"idempotence": "on" if granted else "off"}
            )
            producer = AIOKafkaProducer(**producer_config(kafka, "puente-gateway"))
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _ensure_topics(self, names: Iterable[str]) -> None:
        # The embedded broker forgets topics on restart and auto-creation gives the
        # wrong partition count, so create inbound topics explicitly before sending.
        missing = set(names) - self._ready_topics
        if missing:
            n = self._topic_settings.inbound_partitions
            await topic_admin.create(
                self._kafka,
                dict.fromkeys(sorted(missing), n),
                self._topic_settings.replication_factor,
            )
            self._ready_topics |= missing

    def _partitions(self, producer: AIOKafkaProducer) -> batches.Partitions:
        if self._known is None:
            self._known = batches.Partitions(producer)
        return self._known

    async def _close_producer(self) -> None:
        self._known = None
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(producer.stop(), 10)

    async def _on_failure(self, state: RetryCallState) -> None:
        self.connected = False
        self._metrics.relay_errors.inc()
        self._ready_topics.clear()
        if self._known is not None:
            self._known.forget()
        error: Any = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "relay attempt %d failed (%s); retrying in %.1fs; %d events waiting",
            state.attempt_number,
            type(error).__name__,
            delay,
            self._outbox.unsent_count,
        )
        if state.attempt_number % 5 == 0:
            await self._close_producer()


class _Sent:
    """What sending one partition's rows did.

    Where its first stored row landed, which rows went out as refusal notices, and
    which notices the broker refused as well.
    """

    def __init__(self, rows: list[Pending]) -> None:
        self.rows = list(rows)
        self.first: Pending | None = None
        self.offset = -1
        self.abandoned: list[Pending] = []

    def stored(self, row: Pending, offset: int) -> None:
        """Note a stored batch whose first row is ``row``."""
        if self.first is None:
            self.first, self.offset = row, offset

    def replace(self, notice: Pending) -> None:
        """The row of ``notice``'s seq goes out as that notice."""
        self.rows = [notice if r.seq == notice.seq else r for r in self.rows]

    def delivered(self) -> list[Pending]:
        """The rows stored (as themselves or as notices), less abandoned notices."""
        abandoned = {r.seq for r in self.abandoned}
        return [r for r in self.rows if r.seq not in abandoned]


def _outcome_seen(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()  # retrieved, so asyncio does not report it as lost


def _record_size(row: Pending) -> int:
    """The bytes of ``row``'s value, key and headers (what the size limits count)."""
    extra = len(row.key or b"") + sum(len(k) + len(v) for k, v in row.headers)
    return len(row.value) + extra


def notice_headers(row: Pending, refusal: Refusal) -> KafkaHeaders:
    """The headers of the refusal notice that stands in for ``row``.

    The row's own CloudEvents headers (its event id, source, type and time), then
    the refusal's. Not its ``content-type`` and ``ce_dataschema``: they describe a
    value the notice does not have. Nor any refusal header the row itself carried.
    """
    kept = [(k, v) for k, v in row.headers if k not in _NOT_ON_NOTICES]
    told = {headers.REFUSED: refusal.reason, headers.REFUSED_BYTES: str(refusal.size)}
    if refusal.limit is not None:
        told[headers.REFUSED_LIMIT] = str(refusal.limit)
    return kept + headers.extensions(told)


def _packed(
    producer: AIOKafkaProducer, rows: list[Pending]
) -> Iterator[tuple[Any, list[Pending]]]:
    """``rows`` packed into as few record batches as their size allows.

    Each batch comes with the rows it holds, so a refused batch can be retried
    record by record.
    """
    batch = producer.create_batch()
    members: list[Pending] = []
    for row in rows:
        if _append(batch, row) is None:  # full: hand it over, go on in a new one
            yield batch, members
            batch, members = producer.create_batch(), []
            _append(batch, row)
        members.append(row)
    yield batch, members


def _append(batch: Any, row: Pending) -> Any:
    if row.refusal is not None:  # its notice: no value, the refusal in the headers
        notice = notice_headers(row, row.refusal)
        return batch.append(key=row.key, value=None, timestamp=None, headers=notice)
    return batch.append(key=row.key, value=row.value, timestamp=None, headers=row.headers)
