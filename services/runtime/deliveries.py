"""Decode a batch of delivered records, leaving behind (and logging) unreadable ones.

The router writes every delivery topic, so a record a service cannot read is a hub
fault, not an institution's: it must not stop the service. It is logged with its
position (topic, partition, offset), never its content, and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from services.contracts.errors import ContractError

T = TypeVar("T")


def decode_each(
    records: Iterable[Any],
    decode: Callable[[bytes | None], T],
    log: logging.Logger,
    unreadable: tuple[type[Exception], ...] = (ContractError,),
) -> tuple[list[T], int]:
    """``decode`` each record's value; the readable results and the unreadable count.

    A record whose decoding raises one of ``unreadable`` is skipped and logged on
    ``log`` (the service's own logger, so its operators find it there).
    """
    out: list[T] = []
    skipped = 0
    for record in records:
        try:
            out.append(decode(record.value))
        except unreadable as e:
            skipped += 1
            log.warning(
                "skipping unreadable record %s[%d]@%d: %s",
                record.topic, record.partition, record.offset, type(e).__name__,
            )  # fmt: skip
    return out, skipped
