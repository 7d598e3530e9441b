"""The example consumers decode real deliveries with only the files the hub exports.

A router delivers a return arrival to conapina; ``puente schemas export`` writes
conapina's schemas into an empty folder; each example in ``examples/consumers``
(Python with fastavro; Python with the Apache ``avro`` library, which fingerprints
schemas with logical types differently; Java with Apache Avro and kafka-clients)
runs as its own process against the broker and must print that delivery decoded,
naming the schema file ``ce_dataschema`` names. The Java example's jars are fetched
with Maven into a cache outside the repository (as the Kafka jars are); a machine
without a JDK or Maven fails that test with one line saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.cli import app as cli
from services.contracts import headers, topics
from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime import pubsub, topic_admin
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect, header

pytestmark = pytest.mark.integration
CONSUMERS = REPO_ROOT / "examples" / "consumers"
JAVA = CONSUMERS / "java"
COPY_GOAL = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
RECIPIENT = "conapina"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def delivered(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A return arrival delivered to conapina (FULL view); its event id."""
    settings = RouterSettings(
        group_id=f"router-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        hub=HubSettings(state_dir=tmp_path_factory.mktemp("consumers-router")),
        kafka=session_kafka,
    )
    inbound = topics.inbound("dgme", "return_arrival")
    outbound = topics.outbound(RECIPIENT, "return_arrival")
    await topic_admin.create(session_kafka, {inbound: 1, outbound: 1})
    router = build_service(settings, CollectorRegistry())
    await router.start()
    try:
        event = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
        event_id = str(uuid.uuid4())
        event["envelope"]["event_id"] = event_id
        prepared = pubsub.prepare(router.catalog, "return_arrival", "dgme", event)
        await pubsub.send_all(session_kafka, [prepared])
        found = await collect(
            session_kafka,
            [outbound],
            lambda r: header(r, "ce_id") == event_id,
            expected=1,
            timeout=60,
        )
        assert found, "the router delivered nothing to conapina"
        yield event_id
    finally:
        await router.stop()


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """The ``KAFKA_*`` variables the examples read."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": str(kafka.bootstrap_servers),
        "KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
    }
    if kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password:
        env["KAFKA_SASL_MECHANISM"] = kafka.sasl_mechanism
        env["KAFKA_SASL_USERNAME"] = kafka.sasl_username
        env["KAFKA_SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_cafile:
        env["KAFKA_SSL_CAFILE"] = str(kafka.ssl_cafile)
    return env


def java_command() -> list[str]:
    """``java -cp <jars> Consumer.java``: the jars fetched with Maven on first use."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None or mvn is None:
        pytest.fail(
            "the Java consumer example needs a JDK (17+) and Maven: "
            "apt-get install openjdk-17-jdk-headless maven",
            pytrace=False,
        )
    pom = JAVA / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    folder = Path.home() / ".cache" / "puente" / "consumer-example-java" / digest
    if not (folder / "complete").is_file():
        done = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                COPY_GOAL,
                f"-DoutputDirectory={folder / 'lib'}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"Maven could not fetch the example's jars: {done.stdout[-500:]}")
        (folder / "complete").write_text("ok\n")
    return [java, "-cp", f"{folder / 'lib'}/*", str(JAVA / "Consumer.java")]


async def run_example(
    script: str, schemas: Path, kafka: KafkaSettings
) -> tuple[list[dict[str, Any]], str]:
    """The JSON lines an example prints for conapina's topic, and its stderr."""
    java = script == "java"
    command = await asyncio.to_thread(java_command) if java else [sys.executable, script]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--schemas",
        str(schemas),
        "--topic",
        topics.outbound(RECIPIENT, "return_arrival"),
        "--idle-ms",
        "4000",
        cwd=CONSUMERS,
        env={"PATH": "/usr/bin:/bin", **kafka_env(kafka)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    lines = [json.loads(text) for text in out.decode().splitlines() if text]
    return lines, err.decode()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", ["fastavro_consumer.py", "avro_consumer.py", "java"])
async def test_an_example_consumer_decodes_a_delivery_with_only_the_exported_files(
    delivered: str, session_kafka: KafkaSettings, tmp_path: Path, script: str
) -> None:
    exported = CliRunner().invoke(
        cli, ["schemas", "export", "--recipient", RECIPIENT, "--out", str(tmp_path)]
    )
    assert exported.exit_code == 0, exported.output
    index = json.loads((tmp_path / "index.json").read_text())

    lines, errors = await run_example(script, tmp_path, session_kafka)

    mine = [line for line in lines if line["ce_id"] == delivered]
    assert len(mine) == 1, errors[-2000:]
    (line,) = mine
    assert str(line["event"]["envelope"]["event_id"]) == delivered
    assert line["event"]["envelope"]["event_type"] == "return_arrival"
    fingerprint = line["ce_dataschema"].removeprefix(headers.SCHEMA_URN_PREFIX)
    assert index[fingerprint] == line["schema_file"]
