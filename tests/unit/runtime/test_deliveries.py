"""Decoding a delivered batch with unreadable records left behind."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from services.contracts.errors import ContractError
from services.runtime.deliveries import decode_each

log = logging.getLogger("tests.deliveries")


@dataclass
class _Record:
    value: bytes | None
    topic: str = "hub.out.x.referral"
    partition: int = 0
    offset: int = 0


def _decode(value: bytes | None) -> str:
    if value == b"bad":
        raise ContractError("not an event")
    return (value or b"").decode()


def test_an_unreadable_record_is_counted_and_logged_by_position_not_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [_Record(b"a"), _Record(b"bad", offset=7), _Record(b"c", offset=8)]
    with caplog.at_level(logging.WARNING, logger="tests.deliveries"):
        decoded, unreadable = decode_each(records, _decode, log)
    assert (decoded, unreadable) == (["a", "c"], 1)
    assert "hub.out.x.referral[0]@7: ContractError" in caplog.text
    assert "bad" not in caplog.text.replace("unreadable", "")


def test_an_error_the_service_does_not_name_as_unreadable_propagates() -> None:
    def broken(value: bytes | None) -> str:
        raise KeyError(value)

    with pytest.raises(KeyError):
        decode_each([_Record(b"a")], broken, log)
