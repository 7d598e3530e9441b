"""The hub's Kafka as production sets it up: topics, SCRAM users and ACL bindings.

One per test session, on the session's Apache Kafka broker, made with the operator's
own commands (`puente acl topics --create`, `puente acl apply --users-dir`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.acl import Binding, ServicePrincipals, plan
from services.contracts.catalog import Catalog
from services.kafkalocal import LocalKafka
from services.policy import Policy, load_policy
from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import REPO_ROOT, KafkaSettings, TopicSettings

SERVICES = ServicePrincipals()


@dataclass(frozen=True)
class Hub:
    """The broker after `puente acl topics --create` and `puente acl apply`."""

    kafka: LocalKafka
    policy: Policy
    bindings: list[Binding]
    members: list[str]  # institutions with a publish or receive right
    passwords: dict[str, str]
    topics: list[str]
    users_dir: Path
    applied: str

    def settings(self, principal: str) -> KafkaSettings:
        """Institutions over SASL_SSL (the external listener), services over SASL."""
        password = self.passwords[principal]
        if principal in self.policy.institutions:
            return self.kafka.tls_settings(principal, password)
        return self.kafka.settings(principal, password)


def puente(
    kafka: LocalKafka, *args: str, user: str = "admin", password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A `puente` command as an operator runs it (as the admin unless ``user``)."""
    env = {
        **os.environ,
        "PUENTE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "PUENTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "PUENTE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "PUENTE_KAFKA_SASL_USERNAME": user,
        "PUENTE_KAFKA_SASL_PASSWORD": password or kafka.admin_password,
    }
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def hub(
    apache_kafka: LocalKafka, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> Hub:
    policy = load_policy(REPO_ROOT / "deploy" / "policy", catalog)
    members = sorted(set(policy.publish_rights) | set(policy.receive_rights))
    # Every institution gets a user, those with no stream too: with no binding, the
    # broker must refuse them everything.
    users = [
        *SERVICES.names(),
        *policy.institutions,
        *(SERVICES.gateway_reader(m) for m in members),
    ]
    passwords = {user: secrets.token_hex(16) for user in users}
    folder = tmp_path_factory.mktemp("kafka-users")
    for user, password in passwords.items():
        (folder / user).write_text(password + "\n", encoding="utf-8")
    created = puente(apache_kafka, "acl", "topics", "--create")
    assert created.returncode == 0, created.stderr
    applied = puente(apache_kafka, "acl", "apply", "--users-dir", str(folder))
    assert applied.returncode == 0, applied.stderr
    wanted = runtime_topics.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    return Hub(
        kafka=apache_kafka,
        policy=policy,
        bindings=plan(policy),
        members=members,
        passwords=passwords,
        topics=sorted(wanted),
        users_dir=folder,
        applied=applied.stdout,
    )
