"""Bindings as kafka-python ACLs, and the broker's answers as an operator reads them."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from services.acl.admin import (
    AclAdminError,
    Failure,
    KafkaAcls,
    _KafkaLog,
    from_acl,
    summarize,
    to_acl,
)
from services.acl.kafka_python import admin as kafka_admin
from services.acl.kafka_python import errors as kafka_errors
from services.acl.plan import Binding
from services.runtime.settings import KafkaSettings

KINDS = [
    Binding("User:rree", "ALLOW", "WRITE", "TOPIC", "PREFIXED", "hub.in.rree."),
    Binding("User:rree", "ALLOW", "READ", "TOPIC", "PREFIXED", "hub.out.rree."),
    Binding("User:rree", "ALLOW", "READ", "TOPIC", "LITERAL", "hub.rejected.rree"),
    Binding("User:puente-router", "ALLOW", "WRITE", "TOPIC", "LITERAL", "hub.audit"),
    Binding("User:rree", "ALLOW", "READ", "GROUP", "PREFIXED", "rree."),
    Binding("User:puente-audit", "ALLOW", "READ", "GROUP", "LITERAL", "puente-audit"),
    Binding("User:puente-router", "ALLOW", "DESCRIBE", "TOPIC", "LITERAL", "hub.audit"),
    Binding("User:admin", "ALLOW", "ALTER", "CLUSTER", "LITERAL", "kafka-cluster"),
    Binding("User:x", "ALLOW", "WRITE", "TRANSACTIONAL_ID", "PREFIXED", "x."),
    Binding("User:x", "DENY", "IDEMPOTENT_WRITE", "CLUSTER", "LITERAL", "kafka-cluster"),
    Binding("User:x", "ALLOW", "READ", "TOPIC", "LITERAL", "t", host="10.0.0.7"),
]


def kinds_of(bindings: list[Binding]) -> set[tuple[str, str, str, str]]:
    return {
        (b.permission, b.operation, b.resource_type, b.pattern_type) for b in bindings
    }


def test_the_examples_cover_every_kind_of_binding_the_plan_produces(
    bindings: list[Binding],
) -> None:
    assert kinds_of(bindings) <= kinds_of(KINDS)


@pytest.mark.parametrize("binding", KINDS, ids=Binding.line)
def test_a_binding_becomes_the_kafka_python_acl_saying_the_same(
    binding: Binding,
) -> None:
    acl = to_acl(binding)
    assert isinstance(acl, kafka_admin.ACL)
    assert acl.principal == binding.principal
    assert acl.host == binding.host
    assert acl.operation is kafka_admin.ACLOperation[binding.operation]
    assert acl.permission_type is kafka_admin.ACLPermissionType[binding.permission]
    pattern = acl.resource_pattern
    assert isinstance(pattern, kafka_admin.ResourcePattern)
    assert pattern.resource_type is kafka_admin.ResourceType[binding.resource_type]
    assert pattern.resource_name == binding.name
    assert (
        pattern.pattern_type is kafka_admin.ACLResourcePatternType[binding.pattern_type]
    )
    assert from_acl(acl) == binding


def test_the_kafka_enums_are_the_ones_meant() -> None:
    acl = to_acl(KINDS[0])
    assert acl.operation == kafka_admin.ACLOperation.WRITE
    assert acl.permission_type == kafka_admin.ACLPermissionType.ALLOW
    assert acl.resource_pattern.resource_type == kafka_admin.ResourceType.TOPIC
    assert (
        acl.resource_pattern.pattern_type == kafka_admin.ACLResourcePatternType.PREFIXED
    )


def test_every_planned_binding_survives_the_round_trip(bindings: list[Binding]) -> None:
    assert [from_acl(to_acl(b)) for b in bindings] == bindings


def test_a_filter_value_is_no_binding() -> None:
    wildcard = kafka_admin.ACLFilter(
        principal="User:x",
        host="*",
        operation=kafka_admin.ACLOperation.ANY,
        permission_type=kafka_admin.ACLPermissionType.ALLOW,
        resource_pattern=kafka_admin.ResourcePattern(kafka_admin.ResourceType.TOPIC, "t"),
    )
    with pytest.raises(ValueError, match="ANY"):
        from_acl(wildcard)


class FakeClient:
    """What KafkaAcls calls on kafka-python's KafkaAdminClient."""

    def __init__(
        self, *, listed: list[Any] | None = None, raises: Exception | None = None
    ) -> None:
        self.listed = listed or []
        self.raises = raises
        self.failing: dict[str, Any] = {}
        self.sent: list[Any] = []

    def describe_acls(self, acl_filter: Any) -> tuple[list[Any], Any]:
        if self.raises:
            raise self.raises
        assert acl_filter.operation == kafka_admin.ACLOperation.ANY
        assert acl_filter.resource_pattern.resource_type == kafka_admin.ResourceType.ANY
        return self.listed, None

    def create_acls(self, acls: list[Any]) -> dict[str, list[Any]]:
        if self.raises:
            raise self.raises
        self.sent.extend(acls)
        return {
            "succeeded": [a for a in acls if a.principal not in self.failing],
            "failed": [
                self.failing[a.principal] for a in acls if a.principal in self.failing
            ],
        }

    def describe_user_scram_credentials(self, users: list[str]) -> dict[str, Any]:
        if self.raises:
            raise self.raises
        assert users == sorted(users)
        sha512 = kafka_admin.ScramMechanism.SCRAM_SHA_512
        sha256 = kafka_admin.ScramMechanism.SCRAM_SHA_256
        return {
            "dgme": {"error": None, "credential_infos": [{"mechanism": sha512}]},
            "old": {"error": None, "credential_infos": [{"mechanism": sha256}]},
            "gone": {"error": "not found", "credential_infos": []},
        }

    def alter_user_scram_credentials(self, alterations: list[Any]) -> dict[str, Any]:
        if self.raises:
            raise self.raises
        self.sent.extend(alterations)
        return {a.user: self.failing.get(a.user) for a in alterations}

    def close(self) -> None:
        pass


def connected(client: FakeClient, **settings: Any) -> KafkaAcls:
    acls = KafkaAcls(KafkaSettings(bootstrap_servers="kafka.example:9092", **settings))
    acls._client = client
    return acls


def test_describe_reads_every_binding_back() -> None:
    client = FakeClient(listed=[to_acl(b) for b in KINDS])
    assert connected(client).describe() == KINDS


def test_create_sends_every_binding_and_returns_the_refused_ones() -> None:
    client = FakeClient()
    client.failing = {"User:x": kafka_errors.PolicyViolationError}
    failures = connected(client).create(KINDS)
    assert [from_acl(a) for a in client.sent] == KINDS
    assert [f.binding for f in failures] == [b for b in KINDS if b.principal == "User:x"]
    assert {f.error for f in failures} == {"PolicyViolationError"}
    assert not any(f.unauthorized for f in failures)


def test_creating_nothing_asks_the_broker_nothing() -> None:
    client = FakeClient(raises=AssertionError("called"))
    assert connected(client).create([]) == []


def test_a_principal_that_may_not_create_acls_is_told_so() -> None:
    client = FakeClient()
    client.failing = {
        b.principal: kafka_errors.ClusterAuthorizationFailedError for b in KINDS
    }
    acls = connected(client, security_protocol="SASL_SSL", sasl_username="puente-router")
    with pytest.raises(AclAdminError) as caught:
        acls.create(KINDS)
    assert str(caught.value) == (
        "not authorized: SASL user 'puente-router' may not call CreateAcls "
        "(it needs ALTER on the cluster); run as the admin principal"
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            kafka_errors.SecurityDisabledError(
                "No Authorizer is configured on the broker"
            ),
            "the broker at kafka.example:9092 does not support ACLs: it has no "
            "authorizer (SecurityDisabledError on DescribeAcls); set "
            "authorizer.class.name (StandardAuthorizer) on the brokers",
        ),
        (
            kafka_errors.ClusterAuthorizationFailedError("denied"),
            "not authorized: this client may not call DescribeAcls (it needs DESCRIBE "
            "on the cluster); run as the admin principal",
        ),
        (
            kafka_errors.RequestTimedOutError("Request timed out after 30000 ms"),
            "the broker at kafka.example:9092 did not answer DescribeAcls within "
            "30000 ms; run again (apply creates only what is missing)",
        ),
        (
            kafka_errors.KafkaConnectionError("111 ECONNREFUSED"),
            "DescribeAcls failed at kafka.example:9092: "
            "KafkaConnectionError: 111 ECONNREFUSED",
        ),
    ],
)
def test_broker_errors_are_one_line_an_operator_can_act_on(
    error: Exception, message: str
) -> None:
    with pytest.raises(AclAdminError) as caught:
        connected(FakeClient(raises=error)).describe()
    assert str(caught.value) == message


def test_an_undecodable_answer_means_the_broker_has_no_acls() -> None:
    acls = connected(FakeClient(raises=kafka_errors.RequestTimedOutError("timed out")))
    acls._log.emit(undecodable())
    with pytest.raises(AclAdminError, match="does not support ACLs: its answer to"):
        acls.create(KINDS)


def test_an_answer_for_fewer_bindings_than_sent_is_an_error() -> None:
    class Short(FakeClient):
        def create_acls(self, acls: list[Any]) -> dict[str, list[Any]]:
            return {"succeeded": acls[:1], "failed": []}

    with pytest.raises(AclAdminError, match="answered CreateAcls for 1 of 11 bindings"):
        connected(Short()).create(KINDS)


def test_the_log_handler_tells_decoding_failures_from_other_exceptions() -> None:
    log = _KafkaLog()
    try:
        raise ValueError("elsewhere")
    except ValueError:
        log.emit(logging.makeLogRecord({"msg": "x", "exc_info": sys.exc_info()}))
    assert not log.unreadable_reply
    log.emit(undecodable())
    assert log.unreadable_reply


def test_the_log_handler_keeps_the_last_connection_failure() -> None:
    log = _KafkaLog()
    refused = kafka_errors.KafkaConnectionError("111 ECONNREFUSED")
    log.emit(logging.makeLogRecord({"msg": "Connection failed: %s", "args": (refused,)}))
    assert log.last_failure is refused


def test_kafka_python_logs_stay_off_the_terminal_while_connected() -> None:
    logger = logging.getLogger("kafka")
    log = _KafkaLog()
    log.attach()
    try:
        assert not logger.propagate
        assert log in logger.handlers
    finally:
        log.detach()
    assert logger.propagate
    assert log not in logger.handlers


def test_failures_are_summed_up_by_reason() -> None:
    refused = [
        Failure(KINDS[0], "PolicyViolationError", "Request parameters do not satisfy"),
        Failure(KINDS[1], "InvalidRequestError", ""),
        Failure(KINDS[2], "PolicyViolationError", "Request parameters do not satisfy"),
    ]
    assert summarize(refused) == (
        "2 PolicyViolationError (Request parameters do not satisfy); "
        "1 InvalidRequestError"
    )


def test_the_reason_of_a_refusal_is_kafkas_description() -> None:
    client = FakeClient()
    client.failing = {"User:rree": kafka_errors.InvalidRequestError}
    failures = connected(client).create(KINDS[:1])
    assert failures[0].description == kafka_errors.InvalidRequestError.description


def undecodable() -> logging.LogRecord:
    """The record kafka-python logs when a response cannot be decoded."""
    source = "def decode():\n    raise IndexError('index out of bounds')\n"
    scope: dict[str, Any] = {}
    exec(compile(source, "<codegen_decode:x>", "exec"), scope)
    try:
        scope["decode"]()
    except IndexError:
        return logging.makeLogRecord(
            {"msg": "Unhandled exception in task", "exc_info": sys.exc_info()}
        )
    raise AssertionError("unreachable")


def test_only_users_with_a_scram_sha_512_credential_count_as_present() -> None:
    assert connected(FakeClient()).scram_users(["old", "gone", "dgme"]) == {"dgme"}


def test_a_principal_that_may_not_list_users_is_told_so() -> None:
    client = FakeClient(raises=kafka_errors.ClusterAuthorizationFailedError())
    with pytest.raises(AclAdminError, match="may not call DescribeUserScramCredentials"):
        connected(client).scram_users(["dgme"])


def test_set_scram_sends_salted_sha_512_credentials_and_returns_refusals() -> None:
    client = FakeClient()
    client.failing = {"rree": "Illegal user name."}
    refused = connected(client).set_scram({"rree": "p" * 20, "dgme": "q" * 20})
    assert refused == {"rree": "Illegal user name."}
    assert [a.user for a in client.sent] == ["dgme", "rree"]
    for upsertion in client.sent:
        assert upsertion.mechanism is kafka_admin.ScramMechanism.SCRAM_SHA_512
        assert upsertion.iterations == 8192
        assert len(upsertion.salted_password) == 64
        assert b"q" * 20 not in upsertion.salted_password


def test_setting_no_users_asks_the_broker_nothing() -> None:
    client = FakeClient(raises=AssertionError("called"))
    assert connected(client).set_scram({}) == {}


def test_a_principal_that_may_not_alter_users_is_told_so() -> None:
    client = FakeClient(raises=kafka_errors.ClusterAuthorizationFailedError())
    with pytest.raises(AclAdminError, match="may not call AlterUserScramCredentials"):
        connected(client).set_scram({"dgme": "p" * 20})
