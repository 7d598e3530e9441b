"""Reading the referral tracker's overdue notices back from the recipients' topics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.contracts import codec, topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings


async def notices_delivered(
    kafka: KafkaSettings,
    catalog: Catalog,
    recipient: str,
    referral_ids: Collection[str],
    enough: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = 90.0,
    linger: float = 2.0,
) -> list[dict[str, Any]]:
    """The natural payloads of ``recipient``'s referral_overdue deliveries.

    Only those about one of ``referral_ids`` (as the recipient received them); read
    until ``enough`` accepts them, then ``linger`` seconds more, so a duplicate sent
    later would be counted too.
    """
    wanted = set(referral_ids)
    consumer = AIOKafkaConsumer(
        topics.outbound(recipient, "referral_overdue"),
        **consumer_config(kafka, None, f"notices-{uuid.uuid4().hex[:6]}"),
    )
    found: list[dict[str, Any]] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        settled: float | None = None
        while settled is None or time.monotonic() < settled:
            assert time.monotonic() < deadline, (
                f"{recipient} got {len(found)} notices, not enough"
            )
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                payloads = (_payload(catalog, r.value) for r in records)
                found.extend(p for p in payloads if p["referral_id"] in wanted)
            if settled is None and enough(found):
                settled = time.monotonic() + linger
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return found


def _payload(catalog: Catalog, value: bytes | None) -> dict[str, Any]:
    entry, datum = codec.decode(catalog, value or b"")
    natural: dict[str, Any] = codec_for(entry).to_natural(datum)
    return dict(natural["payload"])
