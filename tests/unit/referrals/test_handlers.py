"""Reading the tracker's deliveries: lifecycle fields; anything else is skipped."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.contracts import codec
from services.contracts.natural import codec_for
from services.policy import load_policy
from services.referrals.app import tracker_catalog
from services.referrals.handlers import read_batch
from services.referrals.settings import TRACKER_ID, ReferralsSettings
from services.runtime.settings import REPO_ROOT


@dataclass(frozen=True)
class Record:
    """What the handler reads of a consumer record."""

    value: bytes
    topic: str = "hub.out.hub_referrals.referral"
    partition: int = 0
    offset: int = 0


def delivered() -> bytes:
    """The example referral as the policy projects it for the tracker."""
    catalog = tracker_catalog(ReferralsSettings())
    policy = load_policy(ReferralsSettings().hub.policy_dir, catalog)
    natural = json.loads((REPO_ROOT / "examples" / "referral.json").read_text())
    datum = codec_for(catalog.get("referral")).to_datum(natural)
    [decision] = [
        d for d in policy.decide("referral", datum) if d.recipient == TRACKER_ID
    ]
    assert decision.projection is not None
    projected = decision.projection.apply(datum, None)
    assert "subject_identity" not in projected["payload"]
    return codec.encode(decision.projection.entry, projected)


def test_a_delivery_reads_as_its_lifecycle_fields() -> None:
    decoded = read_batch(tracker_catalog(ReferralsSettings()), [Record(delivered())])
    assert decoded.unreadable == 0
    [transition] = decoded.transitions
    assert transition.referral_id == "d77241c2-551a-4d15-8660-ea6db39a0e0b"
    assert (transition.source, transition.referring, transition.receiving) == (
        "dgme",
        "dgme",
        "conapina",
    )
    assert (transition.lifecycle_event, transition.status) == ("CREATED", "SENT")
    assert transition.is_minor
    assert transition.urgency == "PRIORITY_72H"


def test_a_record_that_is_not_a_referral_delivery_is_skipped_not_fatal() -> None:
    catalog = tracker_catalog(ReferralsSettings())
    decoded = read_batch(
        catalog, [Record(b"garbage", offset=1), Record(delivered(), offset=2)]
    )
    assert decoded.unreadable == 1
    assert len(decoded.transitions) == 1
