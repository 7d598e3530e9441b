"""Create every hub topic explicitly, with its final partition count.

The names come from `contracts.topics`; this module plans which topics the policy
needs and creates them through the Kafka admin client.

The embedded broker cannot add partitions later, and auto-created topics get the
wrong count, so services never rely on auto-creation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from services.contracts import topics
from services.contracts.errors import PuenteError
from services.runtime.kafka import admin_config
from services.runtime.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

Rights = Mapping[str, Iterable[str]]
# Signed checkpoints anchor the audit ledger from outside: kept without time limit.
CONFIGS: Final[Mapping[str, Mapping[str, str]]] = {
    topics.AUDIT_CHECKPOINTS: {"retention.ms": "-1"}
}


class TopicBootstrapError(PuenteError):
    """Topics could not be created; the broker may be unreachable (retriable)."""

    retriable = True


class TopicCreationRefusedError(TopicBootstrapError):
    """The broker answered a topic creation with an error (no CREATE right, say)."""


def plan(settings: TopicSettings, publish: Rights, receive: Rights) -> dict[str, int]:
    """Topic name -> partitions for the given publish and receive rights."""
    wanted = {topics.AUDIT: settings.audit_partitions, topics.AUDIT_CHECKPOINTS: 1}
    for source, event_types in publish.items():
        wanted[topics.rejected(source)] = settings.rejected_partitions
        for event_type in event_types:
            wanted[topics.inbound(source, event_type)] = settings.inbound_partitions
    for recipient, event_types in receive.items():
        for event_type in event_types:
            wanted[topics.outbound(recipient, event_type)] = settings.outbound_partitions
    return dict(sorted(wanted.items()))


async def create(
    kafka: KafkaSettings,
    wanted: Mapping[str, int],
    replication: int = 1,
    configs: Mapping[str, Mapping[str, str]] = CONFIGS,
) -> list[str]:
    """Create the topics of ``wanted`` that do not exist yet; return their names.

    ``configs``: topic configuration by topic name (default: `CONFIGS`).
    """
    admin = AIOKafkaAdminClient(**admin_config(kafka, "puente-bootstrap"))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication,
                topic_configs=dict(configs.get(name, {})),
            )
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            await _create_each(admin, missing)
        return [t.name for t in missing]
    except KafkaError as e:
        raise TopicBootstrapError(
            f"cannot create topics on {kafka.bootstrap_servers}: {e}"
        ) from e
    finally:
        await admin.close()


async def _create_each(admin: AIOKafkaAdminClient, missing: list[NewTopic]) -> None:
    # Batches of 50 keep each CreateTopics request small on a 2-core machine.
    for start in range(0, len(missing), 50):
        batch = missing[start : start + 50]
        try:
            await admin.create_topics(batch)
        except TopicAlreadyExistsError:
            log.info("some topics appeared concurrently; continuing")
    log.info("created %d topics", len(missing))


async def create_topic(
    kafka: KafkaSettings, name: str, partitions: int, replication: int = 1
) -> bool:
    """Create topic ``name`` unless it exists; whether this call created it.

    Unlike `create`, the broker's answer is checked: `TopicCreationRefusedError` names
    its refusal (a principal without CREATE, as production services are), and
    `TopicBootstrapError` an unreachable broker.
    """
    admin = AIOKafkaAdminClient(**admin_config(kafka, "puente-topic-admin"))
    try:
        await admin.start()
        if name in await admin.list_topics():
            return False
        topic = NewTopic(name, num_partitions=partitions, replication_factor=replication)
        answer = await admin.create_topics([topic])
    except KafkaError as e:
        raise TopicBootstrapError(
            f"cannot create topic {name} on {kafka.bootstrap_servers}: {type(e).__name__}"
        ) from e
    finally:
        await admin.close()
    for _, code, *_ in answer.topic_errors:
        if code == TopicAlreadyExistsError.errno:  # created meanwhile by someone else
            return False
        if code:
            refusal = for_code(code).__name__
            raise TopicCreationRefusedError(
                f"the broker refused to create topic {name}: {refusal}"
            )
    log.info("created topic %s", name)
    return True
