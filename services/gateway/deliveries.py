"""Pull reads of a caller's topics (deliveries, rejections) with an opaque cursor.

The cursor is ``<partition>-<next offset>`` pairs joined by ``.`` (``0-12.1-40``): a
form a regular expression states, so the OpenAPI document says exactly which
cursors the gateway reads. Reads go through a
bounded pool of consumers without a group, shared by every request: a burst of GETs
opens at most ``size`` connections to the broker instead of one each, and a GET
that finds every consumer busy waits briefly, then is refused as busy (503). A read
is ``assign`` + ``seek``, ``getmany`` until every partition is read up to its
``highwater()`` or the page is full; afterwards the consumer's partitions are
paused so it fetches nothing while idle, and one that failed is closed rather than
reused.
(``end_offsets`` and ``offsets_for_times`` are wrong on the embedded broker.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from services.contracts.errors import ContractError, PuenteError
from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings

_MAX_CURSOR: Final = 4096
# Offsets of up to 18 digits stay below 2**63; partitions up to 9 digits.
_PAIR: Final = r"[0-9]{1,9}-[0-9]{1,18}"
CURSOR_PATTERN: Final = rf"^({_PAIR}(\.{_PAIR})*)?$"
_CURSOR: Final = re.compile(rf"(?:{_PAIR})(?:\.{_PAIR})*")
# The Kafka principal that reads one institution's deliveries (services/acl/plan.py).
READER_PREFIX: Final = "puente-gateway-reader."
_POLL_S: Final = 0.1
# A consumer that does not stop in this time is abandoned (its broker is gone).
_STOP_S: Final = 5.0
Cursor = dict[int, int]


class CursorError(ContractError):
    """A cursor the gateway did not issue (or that was altered)."""


class ReaderUnavailableError(PuenteError):
    """The broker cannot be reached to read deliveries (retriable)."""

    retriable = True


class ReaderBusyError(ReaderUnavailableError):
    """Every consumer of the pool stayed busy for the whole wait (retriable)."""


@dataclass(frozen=True, slots=True)
class Page:
    """Records read from one topic and the cursor that continues after them."""

    records: list[ConsumerRecord[bytes, bytes]]
    cursor: Cursor


def encode_cursor(cursor: Mapping[int, int]) -> str:
    """The text form of a cursor: ``<partition>-<offset>`` pairs joined by ``.``."""
    return ".".join(f"{p}-{o}" for p, o in sorted(cursor.items()))


def decode_cursor(text: str | None) -> Cursor:
    """Parse a cursor (empty or None: from the beginning); raise `CursorError`."""
    if not text:
        return {}
    if len(text) > _MAX_CURSOR:
        raise CursorError("cursor is too long")
    if not _CURSOR.fullmatch(text):
        raise CursorError("cursor is not one this gateway issued")
    cursor: Cursor = {}
    for pair in text.split("."):
        partition, _, offset = pair.partition("-")
        cursor[int(partition)] = int(offset)
    return cursor


class PullNotEnabledError(PuenteError):
    """No Kafka reader credential is configured for this institution's deliveries."""

    retriable = False


class Readers:
    """Delivery readers, one bounded pool per institution, each under its own principal.

    In production each institution's deliveries are read with the Kafka principal
    ``puente-gateway-reader.<id>``, which the ACLs let read only ``hub.out.<id>.*``
    and ``hub.rejected.<id>``: the broker, not this code alone, keeps one
    institution's pull from returning another's records, and a leaked credential
    exposes one institution. The password of each is the file
    ``<passwords_dir>/puente-gateway-reader.<id>``. Without ``passwords_dir`` (the
    embedded broker, development) one pool reads with the gateway's own settings.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        passwords_dir: Path | None = None,
        **pool: Any,
    ) -> None:
        self._kafka = kafka
        self._dir = passwords_dir
        self._pool = pool
        self._readers: dict[str, TopicReader] = {}

    async def read(self, topic: str, cursor: Cursor, limit: int) -> Page:
        """Up to ``limit`` records of ``topic`` (its institution's reader reads it)."""
        return await self._reader_for(topic.split(".")[2]).read(topic, cursor, limit)

    async def close(self) -> None:
        """Stop every pool's idle consumers."""
        for reader in self._readers.values():
            await reader.close()

    def _reader_for(self, institution: str) -> TopicReader:
        key = institution if self._dir is not None else ""
        reader = self._readers.get(key)
        if reader is None:
            kafka = self._kafka if self._dir is None else self._credential(institution)
            reader = self._readers[key] = TopicReader(kafka, **self._pool)
        return reader

    def _credential(self, institution: str) -> KafkaSettings:
        principal = f"{READER_PREFIX}{institution}"
        path = (self._dir or Path()) / principal
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise PullNotEnabledError(
                f"HTTP pull is not enabled for {institution}: no reader credential"
            ) from e
        return self._kafka.model_copy(
            update={"sasl_username": principal, "sasl_password": SecretStr(password)}
        )


class TopicReader:
    """Reads pages of one topic at a time through a bounded pool of consumers."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        wait_ms: int = 1000,
        size: int = 4,
        acquire_wait_ms: int = 2000,
    ) -> None:
        self._kafka = kafka
        self._wait_s = wait_ms / 1000
        self._acquire_wait_s = acquire_wait_ms / 1000
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AIOKafkaConsumer] = []
        self.started = 0  # consumers started so far (each is one broker connection)
        self._open = 0

    @property
    def open_consumers(self) -> int:
        """Consumers started and not yet closed."""
        return self._open

    async def read(self, topic: str, cursor: Cursor, limit: int) -> Page:
        """Up to ``limit`` records of ``topic`` after ``cursor``."""
        await self._acquire()
        try:
            consumer = self._idle.pop() if self._idle else None
            try:
                consumer = consumer or await self._start_consumer()
                page = await self._read(consumer, topic, cursor, limit)
            except BaseException as e:
                if consumer is not None:
                    await self._close(consumer)
                if isinstance(e, KafkaError):
                    raise ReaderUnavailableError(
                        f"cannot read {topic}: {type(e).__name__}"
                    ) from e
                raise
            # Paused, it fetches nothing while idle; the next read's assign replaces
            # the assignment. (unsubscribe would ask the broker for every topic's
            # metadata, which the embedded broker after a restart never answers.)
            consumer.pause(*consumer.assignment())
            self._idle.append(consumer)
            return page
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Stop the idle consumers (busy ones are stopped when their read ends)."""
        idle, self._idle = self._idle, []
        for consumer in idle:
            await self._close(consumer)

    async def _acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(self._acquire_wait_s):
                await self._slots.acquire()
        except TimeoutError as e:
            raise ReaderBusyError(
                f"all {self.size} delivery readers stayed busy; retry later"
            ) from e

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **consumer_config(self._kafka, None, "puente-gateway-reader")
        )
        self._open += 1
        try:
            await consumer.start()
        except BaseException:
            await self._close(consumer)
            raise
        self.started += 1
        return consumer

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        self._open -= 1
        # Let the consumer's internal task run once: stopping it before its first
        # step makes aiokafka re-raise that task's cancellation.
        await asyncio.sleep(0)
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), _STOP_S)

    async def _read(
        self, consumer: AIOKafkaConsumer, topic: str, cursor: Cursor, limit: int
    ) -> Page:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            # A pooled consumer's metadata covers what it was started with and the
            # topics it read since: ask the broker (the topic may be new).
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            return Page([], dict(cursor))
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        beginning = await consumer.beginning_offsets(tps)
        start = {
            tp.partition: max(cursor.get(tp.partition, 0), beginning[tp]) for tp in tps
        }
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        records = await self._collect(consumer, tps, limit)
        after = dict(start)
        for record in records:
            after[record.partition] = record.offset + 1
        return Page(records, after)

    async def _collect(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], limit: int
    ) -> list[ConsumerRecord[bytes, bytes]]:
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + self._wait_s
        while len(records) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # getmany waits its whole timeout when nothing is new, so poll in short
            # steps and stop as soon as every partition is read to its highwater.
            step = min(remaining, _POLL_S)
            got = await consumer.getmany(
                *tps, timeout_ms=int(step * 1000), max_records=limit - len(records)
            )
            for tp in tps:
                records.extend(got.get(tp, ()))
            if await _caught_up(consumer, tps):
                break
        return records


async def _caught_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def record_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    """A record's headers as text (first value of each key wins)."""
    out: dict[str, str] = {}
    for key, raw in record.headers or ():
        out.setdefault(key, (raw or b"").decode("utf-8", "replace"))
    return out
