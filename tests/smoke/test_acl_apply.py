"""`puente acl apply` against the embedded broker, which has no ACLs (Tansu 0.6).

Tansu advertises DescribeAcls and CreateAcls, answers DescribeAcls with no bindings,
and answers CreateAcls without a result per binding, which kafka-python cannot decode
(the request then times out). Apply must say in one line that the broker does not
support ACLs, without kafka-python's tracebacks.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.acl import plan
from services.contracts.catalog import Catalog
from services.policy import load_policy
from services.runtime.settings import REPO_ROOT, KafkaSettings

pytestmark = pytest.mark.smoke


def apply(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PUENTE_KAFKA_BOOTSTRAP_SERVERS": str(kafka.bootstrap_servers),
        # The unreadable CreateAcls answer is only given up on at the request timeout.
        "PUENTE_KAFKA_REQUEST_TIMEOUT_MS": "1000",
    }
    return subprocess.run(
        [sys.executable, "-m", "services", "acl", "apply", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_apply_says_in_one_line_that_the_embedded_broker_has_no_acls(
    kafka: KafkaSettings,
) -> None:
    result = apply(kafka)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: the broker at {kafka.bootstrap_servers} does not support ACLs: its "
        "answer to CreateAcls is not a valid CreateAcls response (the embedded broker, "
        "Tansu, has no ACLs); use Apache Kafka with an authorizer\n"
    )


def test_a_dry_run_only_reads_and_the_embedded_broker_lists_no_acls(
    kafka: KafkaSettings, catalog: Catalog
) -> None:
    planned = plan(load_policy(REPO_ROOT / "deploy" / "policy", catalog))
    result = apply(kafka, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == (
        f"would create {len(planned)}, already present 0 (dry run: nothing created)"
    )
