"""A relay's refusal notice becomes a rejection to its publisher, never a delivery."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.contracts import codec, headers
from services.contracts.catalog import Catalog
from services.router.dedupe import DedupeStore
from services.router.metrics import RouterMetrics
from services.router.pipeline import Accepted, Inbound, Pipeline, Rejected
from services.router.routing import BatchRouter
from tests.unit.router.standins import NOW, record

TOPIC = "hub.in.dgme.return_arrival"
EVENT_ID = "9b1f7c52-3a61-4d0e-9f55-6f3d2c1a0b7e"


def notice_headers(
    code: str = "too_large", size: str = "40123", limit: str | None = "8192"
) -> list[tuple[str, bytes | None]]:
    found: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", EVENT_ID.encode()),
        ("ce_source", b"dgme"),
        ("ce_type", b"return_arrival"),
        (headers.REFUSED, code.encode()),
        (headers.REFUSED_BYTES, size.encode()),
    ]
    if limit is not None:
        found.append((headers.REFUSED_LIMIT, limit.encode()))
    return found


def notice(
    value: bytes | None = None, found: list[tuple[str, bytes | None]] | None = None
) -> Inbound:
    return Inbound(
        TOPIC, 2, 17, b"key", value, 1_700_000_000_000, found or notice_headers()
    )


def rejected(pipeline: Pipeline, inbound: Inbound) -> Rejected:
    result = pipeline.inspect(inbound, NOW)
    assert isinstance(result, Rejected)
    return result


def test_a_notice_is_rejected_as_too_large_with_its_event_id_size_and_limit(
    pipeline: Pipeline,
) -> None:
    result = rejected(pipeline, notice())
    assert (result.source, result.event_type) == ("dgme", "return_arrival")
    assert result.reason == "too_large"
    assert result.event_id == EVENT_ID
    assert result.message == (
        "the broker refused the event as too large (40123 bytes > 8192)"
    )


def test_a_notice_with_an_empty_value_is_rejected_as_one_without_a_value(
    pipeline: Pipeline,
) -> None:
    assert rejected(pipeline, notice(b"")).reason == "too_large"


def test_a_notice_without_a_limit_names_the_size_alone(pipeline: Pipeline) -> None:
    result = rejected(pipeline, notice(found=notice_headers(limit=None)))
    assert result.message == "the broker refused the event as too large (40123 bytes)"


def test_a_notice_whose_size_is_not_a_number_names_no_size(pipeline: Pipeline) -> None:
    result = rejected(pipeline, notice(found=notice_headers(size="big", limit=None)))
    assert result.message == "the broker refused the event as too large"


def test_a_notice_with_a_code_the_schema_lacks_is_rejected_as_other(
    pipeline: Pipeline,
) -> None:
    # The code is a metric label and an enum symbol: anything else is bounded.
    result = rejected(pipeline, notice(found=notice_headers(code="x" * 500)))
    assert result.reason == "other"
    assert "x" * 10 not in result.message


def test_a_notice_with_an_overlong_event_id_names_no_event(pipeline: Pipeline) -> None:
    found = [(k, b"e" * 200 if k == "ce_id" else v) for k, v in notice_headers()]
    assert rejected(pipeline, notice(found=found)).event_id is None


def test_the_rejection_of_a_notice_goes_to_its_publisher_without_an_original_value(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    output = pipeline.reject(rejected(pipeline, notice()), NOW)
    datum = codec.decode_as(catalog, output.value, catalog.get("rejection"))
    assert output.kind == "rejection"
    assert output.topic == "hub.rejected.dgme"
    assert output.key == EVENT_ID.encode()
    assert datum["reason"] == "too_large"
    assert datum["event_id"] == EVENT_ID
    assert datum["event_type"] == "return_arrival"
    assert (datum["original_topic"], datum["original_offset"]) == (TOPIC, 17)
    assert datum["original_value"] is None


def test_a_record_with_a_value_is_judged_by_its_value_whatever_its_headers(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    valid = record(catalog, TOPIC)
    valid.headers = notice_headers()
    assert isinstance(pipeline.inspect(valid, NOW), Accepted)


def test_a_record_without_a_value_or_a_refusal_header_is_still_undecodable(
    pipeline: Pipeline,
) -> None:
    plain = notice(found=[("ce_id", EVENT_ID.encode())])
    result = rejected(pipeline, plain)
    assert result.reason == "undecodable"
    assert result.event_id is None


async def test_a_routed_notice_gives_one_rejection_and_no_delivery_or_audit_entry(
    pipeline: Pipeline, catalog: Catalog, tmp_path: Path
) -> None:
    store = DedupeStore(tmp_path / "dedupe.sqlite")
    registry = CollectorRegistry()
    router = BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=cast(AIOKafkaProducer, object()),  # no sender runs: outputs stay
        metrics=RouterMetrics(registry),
        institutions={"dgme", "conapina", "minsal"},
        group="test",
    )
    valid = record(catalog, TOPIC, event_id=str(uuid.uuid4()))
    consumed: list[Any] = [
        ConsumerRecord(TOPIC, 0, 0, 0, 0, b"key", None, None, 0, 0, notice_headers()),
        ConsumerRecord(
            TOPIC, 0, 1, 0, 0, None, valid.value, None, 0, len(valid.value or b""), []
        ),
    ]
    try:
        await router.route(consumed)
        outputs = router._outbox.get_nowait().outputs
    finally:
        store.close()

    mine = [o for o in outputs if o.event_id == EVENT_ID or o.key == EVENT_ID.encode()]
    assert [o.kind for o in mine] == ["rejection"]
    assert any(o.kind == "delivery" for o in outputs), "the valid event was not routed"
    # Not remembered as routed: the publisher may send the event again, smaller.
    assert router.committer.in_flight([EVENT_ID]) == {}
