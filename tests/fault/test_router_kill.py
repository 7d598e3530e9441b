"""kill -9 the router mid-stream and restart it: every entitled delivery still happens."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.contracts import topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.policy import SubjectKeys, load_policy
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings
from services.sim.traffic import SimEvent, Traffic
from tests.support.kafka import collect, header, kafka_env, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class RouterProcess:
    """``python -m services.router`` as its own process, as an operator runs it."""

    def __init__(self, kafka: KafkaSettings, state_dir: Path, group: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **kafka_env(kafka),
            "PUENTE_STATE_DIR": str(state_dir),
            "PUENTE_ROUTER_GROUP_ID": group,
            "PUENTE_ROUTER_PORT": str(self.port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.router"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def accepted(self) -> float:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("puente_events_accepted_total{")
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def router_process(
    kafka: KafkaSettings, state_dir: Path, unique: str
) -> Iterator[RouterProcess]:
    router = RouterProcess(kafka, state_dir, f"router-kill-{unique}")
    yield router
    router.stop()


def entitled(
    catalog: Catalog, events: list[SimEvent], keys: SubjectKeys
) -> set[tuple[str, str, str]]:
    """(recipient, event_type, ce_id) the policy says must be delivered.

    A pseudonymous view carries the recipient's own event id (the hub key makes it).
    """
    policy = load_policy(HubSettings().policy_dir, catalog)
    wanted = set()
    for event in events:
        datum = codec_for(catalog.get(event.event_type)).to_datum(event.body)
        for decision in policy.decide(event.event_type, datum):
            if decision.delivered:
                ce_id = str(event.event_id)
                if decision.rekeyed:
                    ce_id = keys.recipient_id(decision.recipient, ce_id)
                wanted.add((decision.recipient, event.event_type, ce_id))
    return wanted


async def wait_until(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_a_router_killed_mid_stream_loses_nothing_after_restart(
    kafka: KafkaSettings,
    catalog: Catalog,
    router_process: RouterProcess,
    state_dir: Path,
) -> None:
    policy = load_policy(HubSettings().policy_dir, catalog)
    await runtime_topics.create(
        kafka,
        runtime_topics.plan(
            TopicSettings(), policy.publish_rights, policy.receive_rights
        ),
    )
    events = Traffic(11, lambda: datetime.now(UTC), bad_share=0.0).take(1600)
    first, second = events[:1000], events[1000:]

    def records(
        batch: list[SimEvent],
    ) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]:
        return [(e.topic, (e.event_id or "").encode(), e.value(catalog), e.headers())
                for e in batch]  # fmt: skip

    await produce(kafka, records(first))
    router_process.start()
    await wait_until(lambda: router_process.accepted() >= 200, 60)
    router_process.kill()
    await produce(kafka, records(second))  # arrives while the router is down
    router_process.start()

    keys = subject_keys(HubKeySettings(hub=HubSettings(state_dir=state_dir)))
    wanted = entitled(catalog, events, keys)
    ids = {event_id for _, _, event_id in wanted}
    out_topics = sorted({topics.outbound(r, t) for r, t, _ in wanted})
    got = await collect(
        kafka, out_topics, lambda r: header(r, "ce_id") in ids,
        expected=len(wanted), timeout=120, settle=2,
    )  # fmt: skip
    delivered = {
        (r.topic.split(".")[2], r.topic.split(".")[3], header(r, "ce_id")) for r in got
    }
    missing = wanted - delivered
    assert not missing, f"{len(missing)} of {len(wanted)} deliveries lost"
    duplicates = len(got) - len(delivered)
    print(f"kill -9 router: {len(wanted)} deliveries, none lost, {duplicates} duplicates")
