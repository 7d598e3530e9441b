"""The simulated ministries' events: valid, realistic, reproducible."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.contracts.errors import ConfigurationError
from services.sim import generate as gen
from services.sim import reference as ref
from services.sim.referrals import PLANS
from services.sim.traffic import PUBLISH_RIGHTS
from tests.unit.sim.conftest import Wire

Event = dict[str, Any]
DUI = re.compile(r"99\d{6}-\d")
BORDER_POINT_IDS = {p.id for p in ref.BORDER_POINTS.items}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _every_kind(seed: int, now: datetime) -> list[Event]:
    rng = random.Random(seed)
    events = [
        *gen.return_flight(rng, now),
        *gen.land_return(rng, now),
        gen.child_return(rng, now),
        gen.child_return(rng, now, accompaniment="CHILD_SEPARATED", mode="LAND"),
        gen.border_crossing(rng, now),
        gen.displacement(rng, now, "VIOLENCE_DL539"),
        gen.displacement(rng, now, "DISASTER_CIVIL_PROTECTION"),
        *gen.referral_lifecycle(rng, now),
    ]
    for event in list(events):
        for lifecycle in gen.follow_ups(rng, now, event):
            events.extend(lifecycle)
    return events


def _documents(event: Event) -> Iterator[Event]:
    payload = event["payload"]
    identities = [
        payload.get("person_identity"),
        payload.get("traveller_identity"),
        payload.get("subject_identity"),
        *(m["identity"] for m in payload.get("members", [])),
    ]
    for identity in identities:
        if identity:
            yield from identity["documents"]


@pytest.mark.parametrize("seed", range(12))
def test_every_kind_of_generated_event_converts_and_encodes(
    seed: int, now: datetime, wire: Wire
) -> None:
    events = _every_kind(seed, now)
    for event in events:
        wire(event)
    assert {e["envelope"]["event_type"] for e in events} == {
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    }


def test_many_border_crossings_and_registrations_all_convert(
    now: datetime, wire: Wire
) -> None:
    rng = random.Random(99)
    for _ in range(400):
        wire(gen.border_crossing(rng, now))
    for regime in gen.REGIMES:
        for _ in range(150):
            wire(gen.displacement(rng, now, regime))


@pytest.mark.parametrize("pathway", sorted(gen.PATHWAY_BY_NAME))
def test_every_referral_pathway_and_ending_converts(
    pathway: str, now: datetime, wire: Wire
) -> None:
    rng = random.Random(pathway)
    for ending in PLANS:
        for event in gen.referral_lifecycle(rng, now, pathway=pathway, ending=ending):
            wire(event)


def test_the_same_seed_and_clock_give_identical_events(now: datetime) -> None:
    assert _every_kind(5, now) == _every_kind(5, now)
    assert _every_kind(5, now) != _every_kind(6, now)


@pytest.mark.parametrize("seed", range(6))
def test_envelopes_are_complete_ordered_in_time_and_never_after_now(
    seed: int, now: datetime
) -> None:
    ids = set()
    for event in _every_kind(seed, now):
        env = event["envelope"]
        occurred, recorded, published = (
            _time(env[k]) for k in ("occurred_at", "recorded_at", "published_at")
        )
        assert occurred <= recorded <= published <= now
        assert env["occurred_at"].endswith("Z")
        assert env["subject_key"] is None
        assert env["purposes"]
        assert env["legal_basis"] != "UNKNOWN"
        assert env["event_type"] in PUBLISH_RIGHTS[env["source_institution_id"]]
        ids.add(env["event_id"])
    assert len(ids) == len(_every_kind(seed, now))


def test_a_charter_is_100_to_135_people_on_one_correlation(now: datetime) -> None:
    for seed in range(20):
        flight = gen.return_flight(random.Random(seed), now)
        assert 100 <= len(flight) <= 135
        assert len({e["envelope"]["correlation_id"] for e in flight}) == 1
        payloads = [e["payload"] for e in flight]
        assert {p["conveyance"] for p in payloads} == {"FEDERAL_CHARTER_FLIGHT"}
        assert {p["reception_point_id"] for p in payloads} == {"RC_GAMI_SS"}
        assert {e["envelope"]["source_institution_id"] for e in flight} == {"dgme"}


def test_charters_carry_mostly_adult_men_some_women_families_and_lone_children(
    now: datetime,
) -> None:
    rng = random.Random(2026)
    people = [e["payload"] for _ in range(40) for e in gen.return_flight(rng, now)]
    total = len(people)
    profiles = [p["person_profile"] for p in people]
    men = sum(not p["is_minor"] and p["sex"] == "MALE" for p in profiles)
    women = sum(not p["is_minor"] and p["sex"] == "FEMALE" for p in profiles)
    children = sum(p["is_minor"] for p in profiles)
    accompaniment = Counter(p["accompaniment"] for p in people)
    assert men / total > 0.7
    assert 0.05 < women / total < 0.25
    assert 0.01 <= children / total < 0.2
    assert accompaniment["ADULT_WITH_FAMILY"] > 0
    assert accompaniment["CHILD_UNACCOMPANIED"] + accompaniment["CHILD_SEPARATED"] > 0
    assert 0.03 < sum(p["medical_attention_required"] for p in people) / total < 0.2
    assert sum(bool(p["protection_flags"]) for p in people) / total < 0.15
    consent = [p["consent"] for p in people]
    assert sum(c["obtained"] for c in consent) / total > 0.8
    assert any("EMPLOYMENT_REINTEGRATION" in c["scopes"] for c in consent)
    assert (
        Counter(p["returned_from_country"] for p in people).most_common(1)[0][0] == "US"
    )
    destinations = {p["destination"]["department_code"] for p in people}
    assert destinations == set(gen.departments())
    assert Counter(r for p in people for r in p["migration_reasons"]).most_common(1)[0][
        0
    ] == ("ECONOMIC")


def test_lone_children_are_flagged_and_consent_is_given_by_a_representative(
    now: datetime,
) -> None:
    rng = random.Random(3)
    for _ in range(50):
        payload = gen.child_return(rng, now)["payload"]
        assert payload["person_profile"]["is_minor"]
        assert payload["protection_flags"][0] == "UNACCOMPANIED_CHILD"
        assert payload["needs_protection_followup"]
        assert payload["consent"]["method"] in (
            "GUARDIAN_OR_REPRESENTATIVE",
            "NOT_OBTAINED",
        )


def test_employment_profile_is_present_only_with_employment_consent(
    now: datetime,
) -> None:
    rng = random.Random(8)
    people = [e["payload"] for _ in range(10) for e in gen.return_flight(rng, now)]
    for p in people:
        has_scope = "EMPLOYMENT_REINTEGRATION" in p["consent"]["scopes"]
        assert (p["employment_profile"] is not None) == has_scope


@pytest.mark.parametrize("seed", range(5))
def test_identity_documents_and_phones_are_synthetic(seed: int, now: datetime) -> None:
    events = _every_kind(seed, now)
    documents = [d for e in events for d in _documents(e)]
    duis = [
        d["document_number"] for d in documents if d["document_type"] in ("DUI", "NUI")
    ]
    assert duis
    for number in duis:
        assert DUI.fullmatch(number), number
        assert ref.dui_check_digit(number[:8]) == int(number[-1])
    for d in documents:
        if d["document_type"] not in ("DUI", "NUI"):
            assert d["document_number"].startswith("ZZ")
    phones = [
        e["payload"]["person_identity"]["phone"]
        for e in events
        if e["payload"].get("person_identity")
    ]
    assert all(p is None or p.startswith(ref.SYNTHETIC_PHONE_PREFIX) for p in phones)


def test_land_returns_come_by_bus_from_mexico_or_across_a_land_post(
    now: datetime,
) -> None:
    rng = random.Random(11)
    episodes = [gen.land_return(rng, now) for _ in range(40)]
    conveyances = Counter(ep[0]["payload"]["conveyance"] for ep in episodes)
    assert conveyances["GROUND_CONVOY_BUS"] > 0
    assert conveyances["INDIVIDUAL_LAND"] > 0
    for episode in episodes:
        payload = episode[0]["payload"]
        assert payload["arrival_mode"] == "LAND"
        if payload["conveyance"] == "GROUND_CONVOY_BUS":
            assert 18 <= len(episode) <= 45
            assert payload["returned_from_country"] == "MX"
        else:
            assert payload["reception_point_id"].startswith("LB_")


def test_border_crossings_follow_the_ca4_rules_at_real_points(now: datetime) -> None:
    rng = random.Random(21)
    crossings = [gen.border_crossing(rng, now)["payload"] for _ in range(3000)]
    for c in crossings:
        assert c["border_point_id"] in BORDER_POINT_IDS
        minor = c["traveller_profile"]["is_minor"]
        assert (c["minor_travel"] is not None) == minor
        if c["travel_document_type"] == "CA4_NATIONAL_ID":
            assert c["traveller_profile"]["nationality"] in ref.CA4
            assert not minor
        if c["refusal_reason"] is not None:
            assert c["outcome"] in ("REFUSED", "EXIT_PREVENTED")
        if c["direction"] == "ENTRY" and c["traveller_profile"]["nationality"] == "SV":
            assert c["outcome"] == "ADMITTED"
        if c["labour_mobility_programme"]:
            assert c["border_point_id"] == "AIR_SAL"
    outcomes = Counter(c["outcome"] for c in crossings)
    assert outcomes["REFUSED"] > 0
    assert outcomes["EXIT_PREVENTED"] > 0
    assert 0.3 < sum(c["direction"] == "ENTRY" for c in crossings) / len(crossings) < 0.7
    programmes = Counter(c["labour_mobility_programme"] for c in crossings)
    assert programmes["US_H2A"] > 0
    assert programmes["US_H2B"] > 0
    reasons = Counter(c["refusal_reason"] for c in crossings)
    assert reasons["MINOR_WITHOUT_REQUIRED_AUTHORIZATION"] > 0
    assert sum(c["traveller_profile"]["is_minor"] for c in crossings) > 0


def test_displacement_regimes_have_their_own_publisher_and_fields(now: datetime) -> None:
    rng = random.Random(4)
    for _ in range(200):
        violence = gen.displacement(rng, now, "VIOLENCE_DL539")
        assert violence["envelope"]["source_institution_id"] == "mjsp_dnavmf"
        assert violence["payload"]["hazard_type"] is None
        assert violence["payload"]["hazard_event_id"] is None
        disaster = gen.displacement(rng, now, "DISASTER_CIVIL_PROTECTION")
        assert disaster["envelope"]["source_institution_id"] == "migobdt_dgpc"
        assert disaster["payload"]["hazard_type"] == disaster["payload"]["cause_primary"]
        assert re.fullmatch(
            r"[A-Z]{2}-\d{4}-\d{6}-SLV", disaster["payload"]["hazard_event_id"]
        )
        for event in (violence, disaster):
            payload = event["payload"]
            assert payload["household_size"] == len(payload["members"])
            assert sum(c["count"] for c in payload["composition"]) == len(
                payload["members"]
            )
            assert payload["members"][0]["relationship_to_head"] == "HEAD"


def test_a_hazard_wave_shares_one_hazard_event(now: datetime) -> None:
    rng = random.Random(1)
    hazard = gen.new_hazard(rng, now)
    wave = [
        gen.displacement(rng, now, "DISASTER_CIVIL_PROTECTION", hazard=hazard)
        for _ in range(10)
    ]
    assert {e["payload"]["hazard_event_id"] for e in wave} == {hazard.event_id}
    assert {e["payload"]["origin"]["department_code"] for e in wave} == {
        hazard.department
    }


@pytest.mark.parametrize("ending", sorted(PLANS))
def test_a_referral_lifecycle_keeps_one_id_and_a_valid_status_chain(
    ending: str, now: datetime
) -> None:
    rng = random.Random(ending)
    for name, pathway in gen.PATHWAY_BY_NAME.items():
        events = gen.referral_lifecycle(rng, now, pathway=name, ending=ending)
        assert len(events) == len(PLANS[ending]) + 1
        payloads = [e["payload"] for e in events]
        assert len({p["referral_id"] for p in payloads}) == 1
        assert payloads[0]["lifecycle_event"] == "CREATED"
        assert payloads[0]["status"] == "SENT"
        for before, after in itertools.pairwise(payloads):
            assert after["previous_status"] == before["status"]
        for previous, event in itertools.pairwise(events):
            assert event["envelope"]["causation_id"] == previous["envelope"]["event_id"]
            assert _time(event["envelope"]["occurred_at"]) >= _time(
                previous["envelope"]["published_at"]
            )
        for event in events:
            env, payload = event["envelope"], event["payload"]
            assert env["correlation_id"] == payload["referral_id"]
            by_referrer = payload["lifecycle_event"] in ("CREATED", "REVOKED")
            expected = pathway.referring if by_referrer else pathway.receiving
            assert env["source_institution_id"] == expected
            assert payload["consent_overridden"] == (
                payload["override_reason"] is not None
            )
        due = _time(payloads[0]["response_due_at"])
        if ending == "overdue":
            assert due < now
        if ending == "pending":
            assert due > now


def test_referrals_reach_every_kind_of_outcome(now: datetime) -> None:
    rng = random.Random(12)
    last: Counter[str] = Counter()
    for _ in range(400):
        events = gen.referral_lifecycle(rng, now)
        last[events[-1]["payload"]["status"]] += 1
        overdue = _time(events[-1]["payload"]["response_due_at"]) < now
        last["OVERDUE"] += events[-1]["payload"]["status"] == "SENT" and overdue
    for status in ("SENT", "ACCEPTED", "REJECTED", "IN_SERVICE", "DONE", "REVOKED"):
        assert last[status] > 0, status
    assert last["OVERDUE"] > 0


def test_a_lone_child_at_reception_is_referred_to_conapina(now: datetime) -> None:
    rng = random.Random(31)
    arrival = gen.child_return(rng, now - timedelta(hours=1))
    lifecycles = gen.follow_ups(rng, now, arrival)
    first = [lc[0]["payload"] for lc in lifecycles]
    child = [p for p in first if p["receiving_institution_id"] == "conapina"]
    assert len(child) == 1
    assert child[0]["referring_institution_id"] == "dgme"
    assert child[0]["service_category"] == "CHILD_PROTECTION"
    assert child[0]["subject_identity"] == arrival["payload"]["person_identity"]
    created = _time(lifecycles[0][0]["envelope"]["occurred_at"])
    assert _time(arrival["envelope"]["recorded_at"]) <= created <= now


def test_violence_referrals_never_reveal_where_the_family_lives_now(
    now: datetime,
) -> None:
    rng = random.Random(77)
    seen = 0
    for _ in range(300):
        registration = gen.displacement(rng, now, "VIOLENCE_DL539")
        for lifecycle in gen.follow_ups(rng, now, registration):
            location = lifecycle[0]["payload"]["subject_location"]
            assert location["municipality_code"] is None
            seen += 1
    assert seen > 0


def test_a_naive_clock_or_unknown_choice_is_refused(now: datetime) -> None:
    rng = random.Random(0)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        gen.border_crossing(rng, now.replace(tzinfo=None))
    with pytest.raises(ConfigurationError, match="regime"):
        gen.displacement(rng, now, "FLOOD")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="pathway"):
        gen.referral_lifecycle(rng, now, pathway="dgme->nobody:OTHER")
    with pytest.raises(ConfigurationError, match="ending"):
        gen.referral_lifecycle(rng, now, ending="lost")
    with pytest.raises(ConfigurationError, match="passenger"):
        gen.return_flight(rng, now, passengers=0)
