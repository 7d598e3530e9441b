"""The tracker commits a batch's offsets only after its database transaction.

Its batches go through the hub's shared loop (`services.runtime.consume`), fed here
with a stand-in for the aiokafka consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.referrals.app import ReferralsService
from services.referrals.errors import TrackerStoreError
from services.referrals.settings import ReferralsSettings
from services.referrals.store import Store
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings
from tests.unit.referrals.test_handlers import Record, delivered


@dataclass
class Consumer:
    """What the loop asks of the aiokafka consumer."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {TOPIC}

    def highwater(self, tp: TopicPartition) -> int | None:
        del tp
        return None

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        del partitions
        return True

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture
def service(tmp_path: Path) -> ReferralsService:
    settings = ReferralsSettings(port=free_port(), hub=HubSettings(state_dir=tmp_path))
    built = ReferralsService(settings, CollectorRegistry())
    built.store = Store.open(settings.db_file)
    return built


TOPIC = TopicPartition("hub.out.hub_referrals.referral", 0)


async def test_a_stored_batch_commits_the_offset_after_its_last_record(
    service: ReferralsService,
) -> None:
    consumer = Consumer()
    records = [Record(delivered(), offset=7), Record(b"garbage", offset=8)]
    await service.loop.consume(records, consumer)
    assert consumer.commits == [{TOPIC: 9}]
    assert service.store is not None
    assert service.store.get("d77241c2-551a-4d15-8660-ea6db39a0e0b") is not None


async def test_a_batch_the_database_refuses_is_read_again_and_not_committed(
    service: ReferralsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = Consumer()
    store = service.store
    assert store is not None

    def broken(events: Any) -> Any:
        raise TrackerStoreError("disk full")

    monkeypatch.setattr(store, "apply", broken)
    with pytest.raises(TrackerStoreError):
        await service.loop.consume([Record(delivered(), offset=3)], consumer)
    assert consumer.commits == []
    assert consumer.seeks == [(TOPIC, 3)]
    assert store.get("d77241c2-551a-4d15-8660-ea6db39a0e0b") is None
    assert service.loop.failures == 1
    assert service.health()["ok"] is False
