"""What the hub's FastStream batch subscribers share: a quiet logger, raw records."""

from __future__ import annotations

import logging

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
