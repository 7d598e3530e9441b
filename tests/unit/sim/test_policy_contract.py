"""The simulated traffic against the repository's access policy (deploy/policy)."""

from __future__ import annotations

from collections import Counter

import pytest

from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.policy import Policy, load_policy
from services.runtime.settings import REPO_ROOT
from services.sim.traffic import PUBLISH_RIGHTS, UNAUTHORISED, Traffic
from tests.unit.sim.conftest import NOW


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    """The policy the hub runs with."""
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


def test_the_policy_lets_every_simulated_publisher_publish_what_it_sends(
    policy: Policy,
) -> None:
    for source, event_types in PUBLISH_RIGHTS.items():
        for event_type in event_types:
            assert policy.may_publish(source, event_type), (source, event_type)


def test_the_policy_refuses_the_publishers_the_simulator_sends_as_unauthorised(
    policy: Policy,
) -> None:
    for source, event_type in UNAUTHORISED:
        assert not policy.may_publish(source, event_type), (source, event_type)


def test_good_traffic_fits_every_rule_and_reaches_many_recipients(
    policy: Policy, catalog: Catalog
) -> None:
    delivered: Counter[tuple[str, str]] = Counter()
    for sim in Traffic(3, lambda: NOW, bad_share=0.0).take(3000):
        datum = codec_for(catalog.get(sim.event_type)).to_datum(sim.body)
        for decision in policy.decide(sim.event_type, datum):
            assert decision.withheld_reason not in (
                "condition_error",
                "unknown_recipient",
            )
            if decision.delivered:
                delivered[(sim.event_type, decision.recipient)] += 1
    assert {t for t, _ in delivered} == {
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    }
    for recipient in ("conapina", "minsal", "mtps", "rnpn", "isdemu", "rree_vmdmh"):
        assert any(r == recipient for _, r in delivered), recipient
