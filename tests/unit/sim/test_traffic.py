"""The simulated traffic stream: realistic mix, bursts, labelled bad inputs."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from services.contracts import lifecycle
from services.contracts.catalog import Catalog
from services.contracts.codec import decode
from services.contracts.errors import ConfigurationError, DecodeError
from services.contracts.headers import parse
from services.contracts.natural import codec_for
from services.sim.traffic import BAD_KINDS, PUBLISH_RIGHTS, SimEvent, Traffic
from tests.unit.sim.conftest import NOW, Wire


class Clock:
    """A clock that moves 100 ms per reading and remembers its last value."""

    def __init__(self) -> None:
        self.last = NOW

    def __call__(self) -> datetime:
        self.last += timedelta(milliseconds=100)
        return self.last


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _stream(seed: int, count: int, **options: float) -> list[SimEvent]:
    return Traffic(seed, Clock(), **options).take(count)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stream() -> list[SimEvent]:
    """Ten thousand inputs with the default 2 % of bad ones."""
    return _stream(7, 10_000)


def test_generating_ten_thousand_inputs_takes_well_under_two_seconds() -> None:
    started = time.process_time()
    Traffic(11, lambda: NOW).take(10_000)
    assert time.process_time() - started < 2.0


def test_every_good_input_converts_and_encodes(
    stream: list[SimEvent], wire: Wire
) -> None:
    good = [s for s in stream if not s.is_bad]
    for sim in good[:4000]:
        wire(sim.body or {})
    assert {s.event_type for s in good} == {
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    }


def test_the_mix_is_realistic(stream: list[SimEvent]) -> None:
    good = [s for s in stream if not s.is_bad]
    share = {k: v / len(good) for k, v in Counter(s.event_type for s in good).items()}
    assert 0.2 < share["border_crossing"] < 0.6
    assert 0.15 < share["return_arrival"] < 0.55
    assert 0.05 < share["referral"] < 0.4
    assert 0.01 < share["displacement_registration"] < 0.12
    regimes = Counter(
        s.body["payload"]["regime"]
        for s in good
        if s.body and s.event_type == "displacement_registration"
    )
    assert set(regimes) == {"VIOLENCE_DL539", "DISASTER_CIVIL_PROTECTION"}
    children = [
        s.body["payload"]["person_profile"]["is_minor"]
        for s in good
        if s.body and s.event_type == "return_arrival"
    ]
    assert sum(children) / len(children) >= 0.01


def test_flights_arrive_in_bursts(stream: list[SimEvent]) -> None:
    positions: dict[str, list[int]] = defaultdict(list)
    for i, sim in enumerate(stream):
        if sim.body and not sim.is_bad and sim.event_type == "return_arrival":
            payload = sim.body["payload"]
            if payload["conveyance"] == "FEDERAL_CHARTER_FLIGHT":
                positions[sim.body["envelope"]["correlation_id"]].append(i)
    complete = [p for p in positions.values() if p[0] < len(stream) - 400]
    assert len(complete) >= 3
    for flight in complete:
        assert 100 <= len(flight) <= 135
        # Passengers come in a burst, interleaved with a little other traffic.
        assert flight[-1] - flight[0] < 2.5 * len(flight)


def test_every_good_input_is_published_by_an_institution_allowed_to(
    stream: list[SimEvent],
) -> None:
    good = [s for s in stream if not s.is_bad]
    for sim in good:
        assert sim.body is not None
        assert sim.body["envelope"]["source_institution_id"] == sim.source
        assert sim.event_type in PUBLISH_RIGHTS[sim.source]
        assert sim.topic == f"hub.in.{sim.source}.{sim.event_type}"
    assert len({s.event_id for s in good}) == len(good)


def test_no_timestamp_is_later_than_the_clock_when_the_input_is_handed_out() -> None:
    clock = Clock()
    traffic = Traffic(3, clock)
    for _ in range(3000):
        sim = next(traffic)
        if sim.body is None or sim.expected_reason == "invalid":
            continue
        env = sim.body["envelope"]
        assert _time(env["published_at"]) <= clock.last
        assert _time(env["occurred_at"]) <= _time(env["recorded_at"])


def test_referral_transitions_come_in_order_after_creation(
    stream: list[SimEvent],
) -> None:
    last_status: dict[str, str] = {}
    for sim in stream:
        if sim.is_bad or sim.event_type != "referral" or sim.body is None:
            continue
        payload = sim.body["payload"]
        referral = payload["referral_id"]
        assert payload["previous_status"] == last_status.get(referral)
        last_status[referral] = payload["status"]
    assert {"SENT", "ACCEPTED", "REJECTED", "DONE"} <= set(last_status.values())


def test_about_two_percent_of_inputs_are_bad_and_every_kind_occurs(
    stream: list[SimEvent],
) -> None:
    bad = [s for s in stream if s.is_bad]
    assert 0.012 < len(bad) / len(stream) < 0.03
    assert set(Counter(s.expected_reason for s in bad)) == set(BAD_KINDS)


def test_each_bad_input_breaks_exactly_the_rule_its_reason_names(
    catalog: Catalog,
) -> None:
    stream = _stream(5, 4000, bad_share=0.25)
    seen: dict[str, SimEvent] = {}
    for sim in stream:
        if sim.body is not None and not sim.is_bad:
            seen.setdefault(sim.event_id or "", sim)
            continue
        _check_bad(sim, seen, catalog)
    assert set(Counter(s.expected_reason for s in stream if s.is_bad)) == set(BAD_KINDS)


def _check_bad(sim: SimEvent, seen: dict[str, SimEvent], catalog: Catalog) -> None:
    reason = sim.expected_reason
    if reason == "undecodable":
        assert sim.body is None
        assert sim.raw is not None
        with pytest.raises(DecodeError) as caught:
            decode(catalog, sim.raw)
        assert caught.value.reason == "undecodable"
        return
    assert sim.body is not None
    assert sim.raw is None
    env = sim.body["envelope"]
    # Every other bad input is schema-valid: only the hub's own checks catch it.
    codec_for(catalog.get(sim.event_type)).to_datum(sim.body)
    if reason == "source_mismatch":
        assert env["source_institution_id"] != sim.source
        assert sim.event_type in PUBLISH_RIGHTS[sim.source]
        assert sim.event_type in PUBLISH_RIGHTS[env["source_institution_id"]]
    elif reason == "not_allowed_to_publish":
        assert env["source_institution_id"] == sim.source
        assert sim.event_type not in PUBLISH_RIGHTS.get(sim.source, frozenset())
    elif reason == "invalid":
        assert env["source_institution_id"] == sim.source
        assert _time(env["occurred_at"]) > NOW + timedelta(days=29)
    elif reason == "conflicting_duplicate":
        original = seen[env["event_id"]]
        assert original.topic == sim.topic
        assert original.body != sim.body
    elif reason is not None and reason.startswith("referral_"):
        # Published by an institution that may publish referrals, under its own
        # name: only the lifecycle rules the router shares with the tracker catch it.
        assert env["source_institution_id"] == sim.source
        assert "referral" in PUBLISH_RIGHTS[sim.source]
        problem = lifecycle.transition_problem(sim.body["payload"], sim.source)
        assert problem is not None
        assert problem[0] == reason
    else:
        pytest.fail(f"unexpected reason {reason}")


def test_the_good_stream_does_not_depend_on_the_share_of_bad_inputs() -> None:
    # A fixed clock: bad inputs read the clock too, which would move a stepping one.
    clean = Traffic(9, lambda: NOW, bad_share=0.0).take(1500)
    noisy = [s for s in Traffic(9, lambda: NOW, bad_share=0.1).take(1700) if not s.is_bad]
    assert not any(s.is_bad for s in clean)
    assert noisy[: len(clean)] == clean[: len(noisy)]


def test_the_same_seed_and_clock_readings_give_the_same_stream() -> None:
    assert _stream(4, 2000) == _stream(4, 2000)
    assert _stream(4, 200) != _stream(5, 200)


def test_values_and_headers_are_what_a_ministry_client_would_send(
    stream: list[SimEvent], catalog: Catalog
) -> None:
    for sim in stream[:500] + [s for s in stream if s.is_bad]:
        value = sim.value(catalog)
        headers = parse(sim.headers())
        assert headers.type == sim.event_type
        if sim.body is None:
            assert value == sim.raw
            assert headers.id == sim.raw_id
            continue
        _, datum = decode(catalog, value)
        assert str(datum["envelope"]["event_id"]) == sim.event_id == headers.id


def test_a_share_of_bad_inputs_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="bad_share"):
        Traffic(1, lambda: NOW, bad_share=1.5)
