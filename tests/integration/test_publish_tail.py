from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest

from services.contracts.catalog import Catalog
from services.runtime.settings import KafkaSettings
from tests.samples import minimal
from tests.support.kafka import collect, create_inbound, header, kafka_env

pytestmark = pytest.mark.integration


def puente(
    kafka: KafkaSettings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **kafka_env(kafka)}
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def strip_logical_types(schema: Any) -> Any:
    # avro-python's canonical form keeps {"type": "string"} for logical types, against
    # the spec's [PRIMITIVES] rule; fastavro and Java follow the spec.
    if isinstance(schema, dict):
        if "logicalType" in schema and schema.get("type") in ("string", "int", "long"):
            return schema["type"]
        return {k: strip_logical_types(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


async def record_of(kafka: KafkaSettings, topic: str, event_id: str) -> Any:
    found = await collect(
        kafka, [topic], lambda r: header(r, "ce_id") == event_id, expected=1
    )
    return found[0]


async def test_published_events_tail_back_as_the_same_natural_json(
    kafka: KafkaSettings, catalog: Catalog, tmp_path: Path
) -> None:
    # One fixed test source: every new hub.in topic would rebalance routers under test.
    source = "ttail"
    topic = f"hub.in.{source}.referral"
    await create_inbound(kafka, {topic: 2})
    events = [
        minimal(catalog.get("referral"), source_institution_id=source) for _ in range(3)
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))

    published = puente(kafka, "publish", "referral", str(path), "--as", source)
    assert published.returncode == 0, published.stderr
    assert published.stdout.split() == [e["envelope"]["event_id"] for e in events]

    tailed = puente(kafka, "tail", topic, "--from-beginning")
    assert tailed.returncode == 0, tailed.stderr
    mine = {e["envelope"]["event_id"] for e in events}
    got = sorted(
        (
            e
            for e in (json.loads(line) for line in tailed.stdout.splitlines())
            if e["envelope"]["event_id"] in mine
        ),
        key=lambda e: e["envelope"]["event_id"],
    )
    assert [e["envelope"]["event_id"] for e in got] == sorted(
        e["envelope"]["event_id"] for e in events
    )
    assert {e["payload"]["referral_id"] for e in got} == {
        e["payload"]["referral_id"] for e in events
    }
    assert all(e["payload"]["lifecycle_event"] == "CREATED" for e in got)


async def test_a_published_value_decodes_with_the_reference_avro_implementation(
    kafka: KafkaSettings, catalog: Catalog
) -> None:
    source = "ttail"
    topic = f"hub.in.{source}.return_arrival"
    await create_inbound(kafka, {topic: 1})
    event = minimal(catalog.get("return_arrival"), source_institution_id=source)
    published = puente(
        kafka, "publish", "return_arrival", "-", "--as", source, stdin=json.dumps(event)
    )
    assert published.returncode == 0, published.stderr

    shown = puente(kafka, "schemas", "show", "return_arrival")
    schema = avro.schema.parse(json.dumps(strip_logical_types(json.loads(shown.stdout))))
    record = await record_of(kafka, topic, event["envelope"]["event_id"])
    value: bytes = record.value
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == schema.fingerprint("CRC-64-AVRO")
    decoded: Any = avro.io.DatumReader(schema).read(
        avro.io.BinaryDecoder(io.BytesIO(value[10:]))
    )
    assert decoded["envelope"]["event_id"] == event["envelope"]["event_id"]
    assert decoded["payload"]["arrival_id"] == event["payload"]["arrival_id"]
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == event["envelope"]["event_id"]
    assert (headers["ce_type"], headers["ce_source"]) == ("return_arrival", source)


def test_publishing_an_invalid_event_names_the_field_and_sends_nothing(
    kafka: KafkaSettings, catalog: Catalog, unique: str
) -> None:
    event = minimal(catalog.get("return_arrival"), source_institution_id="dgme")
    event["payload"]["person_profile"]["sex"] = "F"
    result = puente(
        kafka, "publish", "return_arrival", "-", "--as", "dgme", stdin=json.dumps(event)
    )
    assert result.returncode == 1
    assert "payload.person_profile.sex" in result.stderr


def test_publishing_as_another_institution_than_the_envelope_is_refused(
    kafka: KafkaSettings, catalog: Catalog
) -> None:
    event = minimal(catalog.get("return_arrival"), source_institution_id="dgme")
    result = puente(
        kafka, "publish", "return_arrival", "-", "--as", "minsal", stdin=json.dumps(event)
    )
    assert result.returncode == 1
    assert "publisher's identity" in result.stderr


def test_tailing_a_topic_that_does_not_exist_says_so_in_one_line(
    kafka: KafkaSettings, unique: str
) -> None:
    result = puente(kafka, "tail", f"hub.out.nobody_{unique}.return_arrival")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: topic hub.out.nobody_{unique}.return_arrival does not exist"
    )
