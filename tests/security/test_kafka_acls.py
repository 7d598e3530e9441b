"""The access boundary between institutions, enforced by Apache Kafka's authorizer.

`puente acl apply` creates the SCRAM users and ACL bindings of the policy on a real
broker (the compose stack's settings: default deny). Then every principal tries to
write and read every hub topic and to commit offsets for every institution's consumer
group; each attempt the rules below forbid must be refused by the broker, and each
they allow must succeed. Institutions connect over the TLS listener, as their systems
do in production; the hub's services over the internal one.

The rules are written here from the contract, not read from the plan, so a wrong
plan fails the test:

* an institution writes only ``hub.in.<own>.*``, reads only ``hub.out.<own>.*`` and
  ``hub.rejected.<own>``, and commits only for groups ``<own>.*``;
* the gateway relay writes every member's ``hub.in.*`` (none of the hub's own
  services') and reads nothing;
* the gateway's reader of an institution reads only that institution's deliveries
  and rejections, writes nothing and has no group;
* the router reads ``hub.in.*`` and writes ``hub.out.*``, ``hub.rejected.*`` and
  ``hub.audit``; the audit reads ``hub.audit`` and writes ``hub.audit.checkpoints``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from services.acl.admin import KafkaAcls
from services.contracts import topics
from services.contracts.ids import is_hub_service
from services.runtime.kafka import admin_config, consumer_config, producer_config
from tests.security.hub import SERVICES, Hub, puente
from tests.security.probe import (
    GROUP_AUTHORIZATION_FAILED,
    NONE,
    TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    Probe,
)
from tests.support.apache_kafka import STARTUP

pytestmark = [pytest.mark.security, pytest.mark.timeout(300)]

Attempt = tuple[str, str, str]  # principal, "write"/"read"/"commit", topic or group


def may_write(principal: str, topic: str) -> bool:
    kind, owner = topics.parse(topic).kind, topics.parse(topic).institution
    rules = {
        SERVICES.router: kind in ("out", "rejected", "audit"),
        SERVICES.gateway: kind == "in" and not is_hub_service(owner or ""),
        SERVICES.audit: kind == "audit_checkpoints",
    }
    if principal in rules:
        return rules[principal]
    return kind == "in" and owner == principal


def may_read(principal: str, topic: str) -> bool:
    kind, owner = topics.parse(topic).kind, topics.parse(topic).institution
    rules = {
        SERVICES.router: kind == "in",
        SERVICES.gateway: False,
        SERVICES.audit: kind == "audit",
    }
    if principal in rules:
        return rules[principal]
    reader = principal.removeprefix(SERVICES.gateway_reader_prefix)
    # No gateway reader for the hub's own services: they read over Kafka only.
    if reader != principal and is_hub_service(reader):
        return False
    return kind in ("out", "rejected") and owner == reader


def test_apply_creates_every_scram_user_and_binding_of_the_plan(hub: Hub) -> None:
    lines = hub.applied.splitlines()
    assert f"SCRAM users: created {len(hub.passwords)}, updated 0" in lines
    assert lines[-1] == f"created {len(hub.bindings)}, already present 0"
    assert lines[-1 - len(hub.bindings) : -1] == [
        f"created {b.line()}" for b in hub.bindings
    ]
    with KafkaAcls(hub.kafka.settings()) as acls:
        # Other tests of the session may grant more; the plan must all be there.
        assert set(hub.bindings) <= set(acls.describe())
        assert acls.scram_users([*hub.passwords, "nobody"]) == set(hub.passwords)


def test_a_second_apply_creates_nothing(hub: Hub) -> None:
    again = puente(hub.kafka, "acl", "apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"created 0, already present {len(hub.bindings)}\n"
    # Only what other tests of the session granted may be reported, never a planned one.
    for line in again.stderr.splitlines():
        assert line.startswith("warning: not in the plan, remove by hand (README): ")
        assert line.split(": ", 2)[2] not in {b.line() for b in hub.bindings}


@pytest.mark.parametrize("who", ["dgme", "puente-gateway", "puente-router"])
def test_no_principal_but_the_admin_may_change_users_acls_or_topics(
    hub: Hub, who: str
) -> None:
    password = hub.passwords[who]
    users = puente(
        hub.kafka, "acl", "apply", "--users-dir", str(hub.users_dir), user=who,
        password=password,
    )  # fmt: skip
    assert users.returncode == 1
    assert users.stderr == (
        f"error: not authorized: SASL user {who!r} may not call "
        "DescribeUserScramCredentials (it needs DESCRIBE on the cluster); run as the "
        "admin principal\n"
    )
    with KafkaAcls(hub.kafka.settings()) as admin:
        before = set(admin.describe())
    acls = puente(hub.kafka, "acl", "apply", user=who, password=password)
    assert acls.returncode == 1
    assert "may not call DescribeAcls" in acls.stderr
    with KafkaAcls(hub.kafka.settings()) as admin:
        assert set(admin.describe()) == before


async def test_no_principal_but_the_admin_may_create_a_topic(hub: Hub) -> None:
    for who in ("dgme", "puente-router", "puente-gateway"):
        client = AIOKafkaAdminClient(**admin_config(hub.settings(who), "intruder"))
        await client.start()
        try:
            answer = await client.create_topics([NewTopic(f"hub.in.{who}.x", 1, 1)])
        finally:
            await client.close()
        [(topic, code, _)] = answer.topic_errors
        assert (topic, code) == (f"hub.in.{who}.x", TOPIC_AUTHORIZATION_FAILED)
    admin = AIOKafkaAdminClient(**admin_config(hub.kafka.settings(), "admin"))
    await admin.start()
    try:
        assert not {t for t in await admin.list_topics() if t.endswith(".x")}
    finally:
        await admin.close()


async def test_every_principal_writes_and_reads_exactly_the_topics_the_rules_allow(
    hub: Hub,
) -> None:
    principals = sorted(hub.passwords)
    outcomes = await asyncio.gather(*(topic_attempts(hub, p) for p in principals))
    answers = {attempt: code for found in outcomes for attempt, code in found.items()}
    wrong = [
        f"{who} {op} {topic}: broker answered {code}"
        for (who, op, topic), code in sorted(answers.items())
        if code != (NONE if allowed(who, op, topic) else TOPIC_AUTHORIZATION_FAILED)
    ]
    assert wrong == [], "\n".join(wrong[:40])
    counts = Counter(
        (op, "allowed" if code == NONE else "refused")
        for (_, op, _), code in answers.items()
    )
    assert len(answers) == len(principals) * len(hub.topics) * 2
    assert counts[("write", "refused")] > 2000
    assert counts[("read", "refused")] > 2000
    report(hub, "topics", counts)


async def test_consumer_groups_are_each_institutions_own(hub: Hub) -> None:
    """Every institution, those with no stream too, commits for every group."""
    institutions = sorted(hub.policy.institutions)
    groups = [f"{i}.app" for i in institutions] + [SERVICES.router_group, "puente-audit"]
    answers: dict[Attempt, int] = {}
    for institution in institutions:
        # Its own deliveries, or any topic: the group is authorized before the topic.
        topic = next((t for t in hub.topics if may_read(institution, t)), hub.topics[0])
        async with Probe(hub.settings(institution)) as probe:
            for group in groups:
                code = await probe.commit(group, topic)
                answers[(institution, "commit", group)] = code
    wrong = [
        f"{who} commit {group}: broker answered {code}"
        for (who, _, group), code in sorted(answers.items())
        if code != (NONE if may_commit(hub, who, group) else GROUP_AUTHORIZATION_FAILED)
    ]
    assert wrong == [], "\n".join(wrong[:40])
    counts = Counter("allowed" if c == NONE else "refused" for c in answers.values())
    assert counts["allowed"] == len(hub.members)
    report(hub, "groups", counts)


def may_commit(hub: Hub, institution: str, group: str) -> bool:
    return institution in hub.members and group.startswith(f"{institution}.")


async def test_only_the_router_gets_a_transactional_id_and_only_its_own(
    hub: Hub,
) -> None:
    """The router's transactional id is <group>.<instance> (exactly-once routing)."""
    answers: dict[Attempt, int] = {}
    for principal in sorted(hub.passwords):
        async with Probe(hub.settings(principal)) as probe:
            for tid in (f"{SERVICES.router_group}.probe", f"{principal}.probe"):
                answers[(principal, "transact", tid)] = await probe.init_transactions(tid)
    wrong = [
        f"{who} transactional id {tid}: broker answered {code}"
        for (who, _, tid), code in sorted(answers.items())
        if code
        != (
            NONE
            if who == SERVICES.router and tid.startswith(f"{SERVICES.router_group}.")
            else TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        )
    ]
    assert wrong == [], "\n".join(wrong[:40])
    counts = Counter("allowed" if c == NONE else "refused" for c in answers.values())
    assert counts["allowed"] == 1  # the router's own puente-router.probe
    report(hub, "transactions", counts)


async def test_every_institution_publishes_and_reads_its_own_with_the_hubs_client(
    hub: Hub,
) -> None:
    """aiokafka over TLS, as an institution's system: its deliveries arrive and the
    offsets of its own group commit; another institution's topic is refused."""
    router = AIOKafkaProducer(**producer_config(hub.settings("puente-router"), "t"))
    await router.start()
    try:
        for member in hub.members:
            await exercise(hub, router, member)
    finally:
        await router.stop()


async def exercise(hub: Hub, router: AIOKafkaProducer, member: str) -> None:
    settings = hub.settings(member)
    mine = [t for t in hub.topics if may_read(member, t)]
    marker = f"for {member}".encode()
    for topic in mine:
        await router.send_and_wait(topic, marker)
    producer = AIOKafkaProducer(**producer_config(settings, f"{member}.system"))
    await producer.start()
    try:
        for topic in (t for t in hub.topics if may_write(member, t)):
            await producer.send_and_wait(topic, b"from " + member.encode())
        foreign = next(
            t for t in hub.topics if t.startswith("hub.in.") and not may_write(member, t)
        )
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(foreign, b"spoofed")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**consumer_config(settings, f"{member}.app", "t"))
    await consumer.start()
    try:
        partitions = [TopicPartition(t, 0) for t in mine]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: set[str] = set()
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            seen |= {
                tp.topic for tp, rs in batch.items() if any(r.value == marker for r in rs)
            }
            if seen == set(mine):
                break
        assert seen == set(mine), member
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused_on_both_listeners(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    member = hub.members[0]
    wrong = "x" * 32
    for settings in (
        hub.kafka.settings(member, wrong),
        hub.kafka.tls_settings(member, wrong),
    ):
        caplog.clear()
        producer = AIOKafkaProducer(**producer_config(settings, "intruder"))
        try:
            with pytest.raises(KafkaConnectionError):
                await producer.start()
        finally:
            await producer.stop()
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


def allowed(principal: str, operation: str, topic: str) -> bool:
    return (may_write if operation == "write" else may_read)(principal, topic)


async def topic_attempts(hub: Hub, principal: str) -> dict[Attempt, int]:
    found: dict[Attempt, int] = {}
    async with Probe(hub.settings(principal)) as probe:
        for topic in hub.topics:
            found[(principal, "write", topic)] = await probe.produce(topic)
            found[(principal, "read", topic)] = (await probe.fetch(topic))[0]
    return found


def report(hub: Hub, name: str, counts: Mapping[Any, int]) -> None:
    """Counts of this run, beside the broker's files (and printed with -s)."""
    text = json.dumps(
        {
            "checks": {str(k): v for k, v in sorted(counts.items(), key=str)},
            "startup_seconds": round(STARTUP.get("seconds", 0.0), 1),
        }
    )
    (hub.kafka.state_dir / f"security-{name}.json").write_text(text, encoding="utf-8")
    print(f"security {name}: {text}")
