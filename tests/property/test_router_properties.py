"""Properties of the router's pipeline with the real policy, for all four event types.

The router writes a delivery from parts (a fresh envelope; the publisher's payload
bytes, or one payload encoding shared by the deliveries of an event): its bytes
must equal encoding the whole projected record, and decode to it by fingerprint.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.contracts import codec, segments, topics
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.ids import EVENT_TYPES
from services.policy import Policy, SubjectKeys, load_policy
from services.router.pipeline import Accepted, Inbound, Limits, Pipeline
from services.runtime.settings import REPO_ROOT
from tests.samples import authored_referral
from tests.strategies import datums, routing

HUB_KEY = bytes(range(64, 96))
NOW = datetime(2100, 1, 2, tzinfo=UTC)
OCCURRED = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


def _overrides(policy: Policy, event_type: str) -> dict[str, st.SearchStrategy[Any]]:
    return routing(policy.publish_rights, list(policy.institutions), event_type, OCCURRED)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_deliveries_written_from_parts_equal_the_whole_projected_record(
    policy: Policy, catalog: Catalog, event_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = catalog.get(event_type)
    keys = SubjectKeys(HUB_KEY)
    limits = Limits(max_event_bytes=1 << 20, future_skew=timedelta(days=1))
    pipeline = Pipeline(catalog, policy, keys, limits)
    # As the router does at start; afterwards no record may wait for a reader or
    # writer to be generated.
    pipeline.warm(policy.schemas())
    monkeypatch.setattr(segments, "split", _not_warmed)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(datums(entry.schema, _overrides(policy, event_type)))
    def check(datum: dict[str, Any]) -> None:
        if event_type == "referral":
            authored_referral(datum, _referral_publishers(pipeline))
        source = datum["envelope"]["source_institution_id"]
        value = codec.encode(entry, datum)
        inbound = Inbound(topics.inbound(source, event_type), 0, 1, None, value, 0)
        accepted = pipeline.inspect(inbound, NOW)
        assume(isinstance(accepted, Accepted))
        assert isinstance(accepted, Accepted)
        outputs = pipeline.deliver(accepted, NOW)
        deliveries = {str(o.recipient): o for o in outputs if o.kind == "delivery"}
        decided = policy.decide(event_type, accepted.datum, entry.version)
        delivered = [d for d in decided if d.delivered]
        assert sorted(deliveries) == sorted(d.recipient for d in delivered)
        hub_key = accepted.datum["envelope"]["subject_key"]
        for decision in delivered:
            shown = hub_key
            if decision.rekeyed and hub_key is not None:
                shown = keys.rekey(decision.recipient, hub_key)
            projection = decision.projection
            whole = projection.apply(
                accepted.datum, shown, partial(keys.recipient_id, decision.recipient)
            )
            expected = codec.encode(projection.entry, whole, plain=True)
            assert deliveries[decision.recipient].value == expected, decision.rule_id
            writer, back = codec.decode(catalog, expected, plain=True)
            assert writer.fingerprint == projection.entry.fingerprint
            assert back == whole

    check()


def _not_warmed(entry: SchemaEntry) -> segments.Segments:
    raise AssertionError(f"{entry.name} v{entry.version} was not warmed")


def _referral_publishers(pipeline: Pipeline) -> set[str]:
    rights = cast(Policy, pipeline.policy).publish_rights
    return {source for source, types in rights.items() if "referral" in types}
