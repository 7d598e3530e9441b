"""Every event the router admits has audit entries the ledger admits (issue: a
delivery without its ledger entry), and a non-UUID event id is refused as invalid."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.intake import to_batch
from services.contracts import admission, codec, topics
from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.contracts.natural import codec_for
from services.policy import Policy, SubjectKeys, load_policy
from services.router.pipeline import Accepted, Inbound, Limits, Pipeline, Rejected
from services.runtime.settings import REPO_ROOT
from tests.strategies import datums

NOW = datetime(2026, 11, 2, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
OCCURRED = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


@pytest.fixture(scope="module")
def pipeline(catalog: Catalog, policy: Policy) -> Pipeline:
    limits = Limits(max_event_bytes=1 << 20, future_skew=timedelta(minutes=5))
    return Pipeline(catalog, policy, SubjectKeys(bytes(32)), limits)


_IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.text(alphabet="0123456789abcdef-{}:urn _+", max_size=40),
    st.text(max_size=40),
)
_TIMES = st.one_of(
    st.integers(NOW_MS - 10**10, NOW_MS),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([admission.MIN_TIMESTAMP_MS - 1, admission.MIN_TIMESTAMP_MS]),
)


def _records(outputs: list[Any]) -> list[Any]:
    return [
        SimpleNamespace(topic=o.topic, partition=0, offset=n, value=o.value)
        for n, o in enumerate(outputs)
    ]


def _overrides(policy: Policy, event_type: str) -> dict[str, st.SearchStrategy[Any]]:
    publishers = sorted(
        s for s, types in policy.publish_rights.items() if event_type in types
    )
    return {
        "envelope.source_institution_id": st.sampled_from(publishers),
        "envelope.event_type": st.just(event_type),
        "envelope.occurred_at": st.just(OCCURRED),
        "envelope.recorded_at": st.just(OCCURRED + timedelta(minutes=5)),
        "payload.receiving_institution_id": st.sampled_from(sorted(policy.institutions)),
        "payload.referring_institution_id": st.sampled_from(publishers),
    }


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_any_event_the_router_admits_has_entries_the_ledger_admits(
    catalog: Catalog, policy: Policy, pipeline: Pipeline, event_type: str
) -> None:
    entry = catalog.get(event_type)

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        datum=datums(entry.schema, _overrides(policy, event_type)),
        event_id=_IDS,
        correlation_id=_IDS,
        occurred_at=_TIMES,
        published_at=_TIMES,
    )
    def check(
        datum: dict[str, Any],
        event_id: str,
        correlation_id: str,
        occurred_at: int,
        published_at: int,
    ) -> None:
        if event_type == "referral":
            referring = datum["payload"]["referring_institution_id"]
            datum["envelope"]["source_institution_id"] = referring
        source = datum["envelope"]["source_institution_id"]
        _, plain = codec.decode(catalog, codec.encode(entry, datum), plain=True)
        plain["envelope"].update(
            event_id=event_id,
            correlation_id=correlation_id,
            occurred_at=occurred_at,
            published_at=published_at,
        )
        value = codec.encode(entry, plain, plain=True)
        inbound = Inbound(topics.inbound(source, event_type), 0, 1, None, value, 0)
        decided = pipeline.inspect(inbound, NOW)
        if isinstance(decided, Rejected):
            return
        assert isinstance(decided, Accepted)
        audits = [o for o in pipeline.deliver(decided, NOW) if o.kind == "audit"]
        batch = to_batch(catalog, _records(audits))
        assert batch.skipped == []
        assert len(batch.entries) == len(audits)

    check()


def test_a_non_uuid_event_id_is_refused_as_invalid_naming_the_field(
    catalog: Catalog, pipeline: Pipeline
) -> None:
    entry = catalog.get("return_arrival")
    _, plain = codec.decode(
        catalog, codec.encode(entry, _sample(catalog, "return_arrival")), plain=True
    )
    plain["envelope"]["event_id"] = "ORDER-4711"
    value = codec.encode(entry, plain, plain=True)
    inbound = Inbound(topics.inbound("dgme", "return_arrival"), 0, 1, None, value, 0)
    decided = pipeline.inspect(inbound, NOW)
    assert isinstance(decided, Rejected)
    assert decided.reason == "invalid"
    assert decided.message == "envelope.event_id: expected a UUID (lowercase, hyphenated)"
    assert "ORDER-4711" not in decided.message


def _sample(catalog: Catalog, event_type: str) -> Any:
    natural = json.loads((REPO_ROOT / "examples" / f"{event_type}.json").read_text())
    return codec_for(catalog.get(event_type)).to_datum(natural)
