"""The demo's driver: deterministic per seed, keyed like a ministry, paced, counted."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.contracts import topics
from services.contracts.catalog import Catalog
from services.contracts.codec import decode
from services.contracts.natural import codec_for
from services.demo.driver import DemoError, Driver, as_published_now, demo_topics, due
from services.runtime.settings import TopicSettings
from services.sim.traffic import UNAUTHORISED, Traffic

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


def stepping_clock(step_ms: int) -> Callable[[], datetime]:
    ticks = itertools.count()
    return lambda: NOW + timedelta(milliseconds=step_ms * next(ticks))


def sequence(catalog: Catalog, seed: int, clock: Callable[[], datetime]) -> list[Any]:
    driver = Driver(catalog, seed, 50, now_fn=clock)
    return [(o.topic, o.event_id) for o in driver.take(400)]


def test_two_drivers_with_the_same_seed_send_the_same_records_in_the_same_order(
    catalog: Catalog,
) -> None:
    # Different clocks on purpose: the clock stamps times, the seed decides the rest.
    first = sequence(catalog, 3, lambda: NOW)
    second = sequence(catalog, 3, stepping_clock(137))
    assert first == second
    assert len({event_id for _, event_id in first}) > 390  # ids, not blanks


def test_another_seed_sends_another_sequence(catalog: Catalog) -> None:
    assert sequence(catalog, 3, lambda: NOW) != sequence(catalog, 4, lambda: NOW)


def test_the_first_records_mix_event_types_and_include_bad_inputs(
    catalog: Catalog,
) -> None:
    sent = Driver(catalog, 7, 50, now_fn=lambda: NOW).take(1000)
    assert {o.event_type for o in sent} == {
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    }
    assert any(o.expected_reason for o in sent)
    assert all(o.topic == topics.inbound(o.source, o.event_type) for o in sent)


def test_a_good_event_is_recorded_and_published_at_the_moment_it_is_sent(
    catalog: Catalog,
) -> None:
    sim = next(s for s in Traffic(5, lambda: NOW).take(50) if s.body and not s.is_bad)
    moment = NOW + timedelta(minutes=3)
    sent = as_published_now(sim, moment)
    assert sent.body is not None
    assert sim.body is not None
    envelope = sent.body["envelope"]
    assert (
        envelope["recorded_at"] == envelope["published_at"] == "2026-11-22T15:33:00.000Z"
    )
    assert envelope["occurred_at"] == sim.body["envelope"]["occurred_at"]
    assert sent.body["payload"] == sim.body["payload"]
    # The simulator's own copy is untouched: it resends it for conflicting duplicates.
    assert sim.body["envelope"]["recorded_at"] != envelope["recorded_at"]
    entry, datum = decode(catalog, sent.value(catalog))
    assert codec_for(entry).to_natural(datum)["envelope"]["recorded_at"] == (
        "2026-11-22T15:33:00.000Z"
    )


def test_bad_inputs_are_sent_exactly_as_the_simulator_built_them(
    catalog: Catalog,
) -> None:
    bad = [s for s in Traffic(5, lambda: NOW, bad_share=0.5).take(200) if s.is_bad]
    assert bad
    for sim in bad:
        assert as_published_now(sim, NOW + timedelta(days=1)) is sim


def test_referrals_are_keyed_by_referral_id_and_other_events_by_event_id(
    catalog: Catalog,
) -> None:
    sent = Driver(catalog, 7, 50, now_fn=lambda: NOW, bad_share=0.0).take(300)
    referrals = [o for o in sent if o.event_type == "referral"]
    others = [o for o in sent if o.event_type != "referral"]
    assert referrals
    assert others
    for o in others:
        assert o.key == o.event_id.encode()
    for o in referrals:
        _, datum = decode(catalog, o.value)
        assert o.key == str(datum["payload"]["referral_id"]).encode()


def test_the_demo_creates_the_topics_of_unauthorised_publishers_too() -> None:
    wanted = demo_topics(TopicSettings(inbound_partitions=3))
    for source, event_type in UNAUTHORISED:
        assert wanted[topics.inbound(source, event_type)] == 3
    assert wanted[topics.inbound("dgme", "return_arrival")] == 3
    assert topics.rejected("minsal") in wanted


@pytest.mark.parametrize(
    ("elapsed", "rate", "expected"),
    [(0.0, 50, 0), (0.019, 50, 0), (0.02, 50, 1), (1.0, 50, 50), (2.5, 0.5, 1)],
)
def test_a_steady_rate_has_sent_whole_events_only(
    elapsed: float, rate: float, expected: int
) -> None:
    assert due(elapsed, rate) == expected


def test_a_rate_of_zero_is_refused(catalog: Catalog) -> None:
    with pytest.raises(DemoError, match="rate"):
        Driver(catalog, 1, 0)


class FakeProducer:
    """Acknowledges every send at once, remembering what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[Any]
    ) -> asyncio.Future[None]:
        del headers
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_run_with_a_duration_publishes_rate_times_duration_and_counts_them(
    catalog: Catalog,
) -> None:
    driver = Driver(catalog, 7, 200, bad_share=0.2, tick=0.05)
    producer = FakeProducer()
    await driver.run(producer, asyncio.Event(), 0.5)
    assert len(producer.sent) == 100
    published = driver.published
    assert published.total == 100
    assert published.good_total + sum(published.bad.values()) == 100
    assert sum(published.by_source.values()) == 100
    assert published.bad  # a 20 % share shows in 100 inputs
    expected = Counter(
        o.expected_reason
        for o in Driver(catalog, 7, 200, bad_share=0.2).take(100)
        if o.expected_reason
    )
    assert published.bad == expected


async def test_a_run_stops_when_asked(catalog: Catalog) -> None:
    driver = Driver(catalog, 7, 100, tick=0.02)
    stop = asyncio.Event()
    producer = FakeProducer()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    await asyncio.wait_for(driver.run(producer, stop, None), 5)
    assert 5 <= len(producer.sent) <= 40
