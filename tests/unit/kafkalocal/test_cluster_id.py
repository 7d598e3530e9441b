"""Cluster ids the storage tool accepts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.kafkalocal import cluster


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 leads to "-" in URL-safe base64: the storage tool read such an id as an
    # option and refused to format.
    drawn: Iterator[uuid.UUID] = iter(
        [uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))]
    )
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    found = cluster._cluster_id()
    assert not found.startswith("-")
    assert found == "EAAAAAAAAAAAAAAAAAAAAA"


def test_cluster_ids_are_kafkas_22_character_form() -> None:
    ids = {cluster._cluster_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
