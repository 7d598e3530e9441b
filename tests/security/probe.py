"""Raw Kafka requests sent as one SCRAM principal: the broker's own answer to each.

Clients such as aiokafka stop before the broker when metadata already says a topic is
not authorized, or log and retry; a probe sends the Produce, Fetch, OffsetCommit and
InitProducerId requests themselves and returns the error code the broker put in its
answer, so a test sees the authorizer's decision on the request an attacker would send.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Final, Self

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from services.runtime.kafka import bootstrap, security
from services.runtime.settings import KafkaSettings

NONE: Final = 0
TOPIC_AUTHORIZATION_FAILED: Final = 29
GROUP_AUTHORIZATION_FAILED: Final = 30
TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Final = 53
GROUP: Final = 0
TRANSACTION: Final = 1
# The group coordinator is still loading __consumer_offsets: ask again.
_COORDINATOR_BUSY: Final = frozenset({14, 15, 16})
_MAX_BYTES: Final = 1 << 20


class Probe:
    """An authenticated connection of one principal to a single-node cluster."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._client = AIOKafkaClient(
            bootstrap_servers=bootstrap(settings),
            client_id=f"probe-{settings.sasl_username}",
            request_timeout_ms=10_000,
            **security(settings),
        )
        self._node = -1

    async def __aenter__(self) -> Self:
        await self._client.bootstrap()
        self._node = next(iter(self._client.cluster.brokers())).nodeId
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()

    async def produce(self, topic: str, value: bytes = b"probe") -> int:
        """Write one record to partition 0 (acks=all); the broker's error code."""
        batch = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, _MAX_BYTES)
        batch.append(0, None, None, value, [])
        request = ProduceRequest(None, -1, 10_000, [(topic, [(0, bytes(batch.build()))])])
        answer = await self._client.send(self._node, request)
        return int(_only(answer.topics, topic)[1])

    async def fetch(self, topic: str) -> tuple[int, int]:
        """Read partition 0 from offset 0; the error code and the high watermark."""
        request = FetchRequest(0, 1, _MAX_BYTES, 0, [(topic, [(0, 0, _MAX_BYTES)])])
        answer = await self._client.send(self._node, request)
        partition = _only(answer.topics, topic)
        return int(partition[1]), int(partition[2])

    async def find_coordinator(self, key: str, kind: int = GROUP) -> int:
        """Ask for the coordinator of a group or transactional id (needs DESCRIBE on
        it); the error code."""
        answer = await self._client.send(self._node, FindCoordinatorRequest(key, kind))
        return int(answer.error_code)

    async def init_transactions(
        self, transactional_id: str, timeout: float = 20.0
    ) -> int:
        """Get a producer id for ``transactional_id`` (needs WRITE on it); the error."""
        request = InitProducerIdRequest(transactional_id, 10_000)
        deadline = time.monotonic() + timeout
        while True:
            error = await self.find_coordinator(transactional_id, TRANSACTION)
            if error == NONE:
                answer = await self._client.send(self._node, request)
                error = int(answer.error_code)
            if error not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                return error
            await asyncio.sleep(0.2)

    async def commit(self, group: str, topic: str, timeout: float = 20.0) -> int:
        """Commit offset 0 of ``topic`` for ``group`` (no membership); the error code.

        The coordinator is looked up first, as a client does: that lookup creates the
        offsets topic on a new cluster, and a refused one is the broker's answer too.
        """
        request = OffsetCommitRequest(group, -1, "", -1, [(topic, [(0, 0, "")])])
        deadline = time.monotonic() + timeout
        while True:
            error = await self.find_coordinator(group)
            if error == NONE:
                answer = await self._client.send(self._node, request)
                error = int(_only(answer.topics, topic)[1])
            if error not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                return error
            await asyncio.sleep(0.2)


def _only(topics: Any, topic: str) -> Any:
    [(name, [partition])] = topics
    assert name == topic
    return partition
