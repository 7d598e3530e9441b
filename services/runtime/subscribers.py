"""What the hub's FastStream batch subscribers share: a quiet logger, raw records."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka.annotations import KafkaMessage


async def skip_bodies(msg: KafkaMessage) -> None:
    """A decoder that decodes nothing: handlers read the raw aiokafka records.

    FastStream would otherwise copy every record's value into a list first.
    """
    del msg


def quiet_logger(service: str) -> logging.Logger:
    """The logger for a service's FastStream broker: warnings and errors only.

    FastStream logs every batch and each partition assignment at INFO, and warns at
    every start that it will not create topics (the services create them).
    """
    logger = logging.getLogger(f"puente.{service}.faststream")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoTopicCreationNotice) for f in logger.filters):
        logger.addFilter(_NoTopicCreationNotice())
    return logger


class _NoTopicCreationNotice(logging.Filter):
    """Drops FastStream's notice that it will not create topics: the services do."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one notice."""
        return not record.getMessage().startswith("Auto create topics is disabled")


async def tolerate_headers(
    records: Any, original: Callable[[Any], Awaitable[Any]]
) -> Any:
    """A parser that lets records with non-UTF-8 header values through.

    FastStream's batch parser decodes every header value as UTF-8; one record with a
    binary value (anyone may write one) failed its whole batch on every retry and
    stopped the service. The hub's handlers read bodies, never headers, so such a
    value is blanked in the copy FastStream sees.
    """
    if isinstance(records, tuple):
        return await original(tuple(_readable(r) for r in records))
    return await original(_readable(records))


def _readable(record: Any) -> Any:
    headers = record.headers
    if all(_utf8(value) for _, value in headers):
        return record
    safe = tuple((key, value if _utf8(value) else b"") for key, value in headers)
    return dataclasses.replace(record, headers=safe)


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
