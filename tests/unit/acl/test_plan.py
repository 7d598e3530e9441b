"""The ACL plan: every institution gets its own prefixes, nobody another's."""

from __future__ import annotations

import itertools

import pytest

from services.acl import Binding, ServicePrincipals, permits, plan
from services.acl.plan import Operation, service_bindings
from services.contracts import topics
from services.contracts.errors import ConfigurationError, InvalidIdError
from services.contracts.ids import check_institution_id, is_hub_service
from services.policy import Policy
from tests.unit.acl.conftest import StandIn

TOPIC_OPERATIONS: tuple[Operation, ...] = (
    "READ",
    "WRITE",
    "DESCRIBE",
    "CREATE",
    "DELETE",
)


def owner(topic: str) -> str | None:
    return topics.parse(topic).institution


def test_every_institution_may_touch_only_its_own_topics(
    policy: Policy, bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    checked = 0
    for institution in policy.institutions:
        me = f"User:{institution}"
        for topic in hub_topics:
            if owner(topic) == institution:
                continue
            for operation in TOPIC_OPERATIONS:
                assert not permits(bindings, me, operation, "TOPIC", topic), (
                    f"{institution} may {operation} {topic}"
                )
                checked += 1
    assert checked > 1000


def test_a_publisher_writes_its_inbound_topics_and_reads_its_rejections_only(
    policy: Policy, bindings: list[Binding]
) -> None:
    for source, event_types in policy.publish_rights.items():
        me = f"User:{source}"
        for event_type in event_types:
            inbound = topics.inbound(source, event_type)
            assert permits(bindings, me, "WRITE", "TOPIC", inbound)
            assert not permits(bindings, me, "READ", "TOPIC", inbound)
        assert permits(bindings, me, "READ", "TOPIC", topics.rejected(source))
        assert not permits(bindings, me, "WRITE", "TOPIC", topics.rejected(source))


def test_a_recipient_reads_its_deliveries_and_cannot_write_them(
    policy: Policy, bindings: list[Binding]
) -> None:
    for recipient, event_types in policy.receive_rights.items():
        me = f"User:{recipient}"
        for event_type in event_types:
            outbound = topics.outbound(recipient, event_type)
            assert permits(bindings, me, "READ", "TOPIC", outbound)
            assert not permits(bindings, me, "WRITE", "TOPIC", outbound)


def test_nobody_but_the_hub_touches_the_audit_topics(
    policy: Policy, bindings: list[Binding]
) -> None:
    for institution in policy.institutions:
        for topic in (topics.AUDIT, topics.AUDIT_CHECKPOINTS):
            for operation in TOPIC_OPERATIONS:
                assert not permits(
                    bindings, f"User:{institution}", operation, "TOPIC", topic
                )


def test_prefixes_end_with_a_dot_so_rree_gets_nothing_of_rree_vmdmh(
    bindings: list[Binding],
) -> None:
    rree = "User:rree"
    assert permits(bindings, rree, "READ", "TOPIC", "hub.out.rree.referral")
    assert not permits(bindings, rree, "READ", "TOPIC", "hub.out.rree_vmdmh.referral")
    assert not permits(bindings, rree, "WRITE", "TOPIC", "hub.in.rree_vmdmh.referral")
    assert not permits(bindings, rree, "READ", "TOPIC", "hub.rejected.rree_vmdmh")
    assert permits(bindings, rree, "READ", "GROUP", "rree.case-system")
    assert not permits(bindings, rree, "READ", "GROUP", "rree_vmdmh.case-system")
    assert not permits(bindings, rree, "READ", "GROUP", "rree")


def test_consumer_groups_are_each_institutions_own_prefix(
    policy: Policy, bindings: list[Binding]
) -> None:
    members = sorted(set(policy.publish_rights) | set(policy.receive_rights))
    for me, other in itertools.permutations(members, 2):
        assert permits(bindings, f"User:{me}", "READ", "GROUP", f"{me}.app")
        assert not permits(bindings, f"User:{me}", "READ", "GROUP", f"{other}.app")
        assert not permits(bindings, f"User:{me}", "READ", "GROUP", "puente-router")


def test_an_institution_with_no_rights_gets_no_binding_at_all(
    policy: Policy, bindings: list[Binding]
) -> None:
    silent = [
        i
        for i in policy.institutions
        if i not in policy.publish_rights and i not in policy.receive_rights
    ]
    assert silent, "the policy has members with no stream (e.g. ace)"
    principals = {b.principal for b in bindings}
    for institution in silent:
        assert f"User:{institution}" not in principals


def test_the_router_reads_every_inbound_topic_and_writes_every_output(
    bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    router = "User:puente-router"
    for topic in hub_topics:
        kind = topics.parse(topic).kind
        assert permits(bindings, router, "READ", "TOPIC", topic) == (kind == "in"), topic
        writes = kind in ("out", "rejected", "audit")
        assert permits(bindings, router, "WRITE", "TOPIC", topic) == writes, topic
        # Its start-up check lists every hub topic; listing needs DESCRIBE.
        assert permits(bindings, router, "DESCRIBE", "TOPIC", topic), topic
    assert permits(bindings, router, "READ", "GROUP", "puente-router")
    assert not permits(bindings, router, "READ", "GROUP", "puente-audit")


def test_the_gateway_relay_writes_members_inbound_topics_and_reads_nothing(
    bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    gateway = "User:puente-gateway"
    for topic in hub_topics:
        kind, source = topics.parse(topic).kind, owner(topic) or ""
        member_inbound = kind == "in" and not is_hub_service(source)
        assert permits(bindings, gateway, "WRITE", "TOPIC", topic) == member_inbound, (
            topic
        )
        assert not permits(bindings, gateway, "READ", "TOPIC", topic), topic
    assert not any(b.resource_type == "GROUP" for b in bindings if b.principal == gateway)


def test_no_gateway_credential_reads_more_than_one_institutions_deliveries(
    policy: Policy, bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    readers = {b.principal for b in bindings if b.operation == "READ"}
    for principal in readers - {"User:puente-router", "User:puente-audit"}:
        owners = {
            owner(t)
            for t in hub_topics
            if topics.parse(t).kind in ("out", "rejected")
            and permits(bindings, principal, "READ", "TOPIC", t)
        }
        assert len(owners) <= 1, f"{principal} reads deliveries of {owners}"


def test_each_institutions_gateway_reader_reads_its_deliveries_and_rejections_only(
    policy: Policy, bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    services = ServicePrincipals()
    checked = 0
    for institution in policy.institutions:
        reader = f"User:{services.gateway_reader(institution)}"
        # The hub's own services read over Kafka only: no gateway reader for them.
        mine = not is_hub_service(institution) and (
            institution in policy.receive_rights or institution in policy.publish_rights
        )
        for topic in hub_topics:
            parsed = topics.parse(topic)
            allowed = (
                mine
                and parsed.institution == institution
                and parsed.kind
                in (
                    "out",
                    "rejected",
                )
            )
            assert permits(bindings, reader, "READ", "TOPIC", topic) == allowed, (
                f"{reader} {topic}"
            )
            assert not permits(bindings, reader, "WRITE", "TOPIC", topic)
            checked += 1
        assert not permits(bindings, reader, "READ", "GROUP", f"{institution}.app")
    assert checked > 1000


def test_a_gateway_reader_principal_can_never_be_an_institution() -> None:
    reader = ServicePrincipals().gateway_reader("dgme")
    assert reader == "puente-gateway-reader.dgme"
    with pytest.raises(InvalidIdError):
        check_institution_id(reader)


def test_only_the_router_may_use_transactional_ids_and_only_its_own(
    policy: Policy, bindings: list[Binding]
) -> None:
    """Its id is <group>.<instance> (RouterSettings.transactional_id)."""
    router = "User:puente-router"
    assert permits(
        bindings, router, "WRITE", "TRANSACTIONAL_ID", "puente-router.host-9101"
    )
    assert permits(bindings, router, "DESCRIBE", "TRANSACTIONAL_ID", "puente-router.a")
    assert not permits(bindings, router, "WRITE", "TRANSACTIONAL_ID", "puente-routerx.a")
    assert not permits(bindings, router, "WRITE", "TRANSACTIONAL_ID", "dgme.app")
    others = {b.principal for b in bindings} - {router}
    for principal in others:
        for tid in ("puente-router.host-9101", f"{principal[5:]}.app", "x"):
            assert not permits(bindings, principal, "DESCRIBE", "TRANSACTIONAL_ID", tid)


def test_the_audit_reads_the_audit_topic_and_writes_only_checkpoints(
    bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    audit = "User:puente-audit"
    for topic in hub_topics:
        kind = topics.parse(topic).kind
        assert permits(bindings, audit, "READ", "TOPIC", topic) == (kind == "audit"), (
            topic
        )
        writes = kind == "audit_checkpoints"
        assert permits(bindings, audit, "WRITE", "TOPIC", topic) == writes, topic
    assert permits(bindings, audit, "READ", "GROUP", "puente-audit")


def test_no_principal_may_create_topics_or_act_on_the_cluster(
    bindings: list[Binding],
) -> None:
    assert {b.permission for b in bindings} == {"ALLOW"}
    assert {b.operation for b in bindings} <= {"READ", "WRITE", "DESCRIBE"}
    assert {b.resource_type for b in bindings} <= {"TOPIC", "GROUP", "TRANSACTIONAL_ID"}
    for principal in {b.principal for b in bindings}:
        assert not permits(bindings, principal, "CREATE", "TOPIC", "hub.in.dgme.referral")
        assert not permits(bindings, principal, "ALTER", "CLUSTER", "kafka-cluster")


def test_a_stand_in_policy_gets_bindings_for_exactly_its_rights() -> None:
    stand_in = StandIn(
        institutions={"alpha": object(), "beta": object(), "gamma": object()},
        publish_rights={"alpha": frozenset({"referral"})},
        receive_rights={"beta": frozenset({"referral"})},
    )
    got = {b.line() for b in plan(stand_in)}
    assert got - {b.line() for b in service_bindings(ServicePrincipals())} == {
        "User:puente-gateway ALLOW WRITE TOPIC PREFIXED hub.in.alpha.",
        "User:puente-gateway-reader.alpha ALLOW READ TOPIC LITERAL hub.rejected.alpha",
        "User:puente-gateway-reader.beta ALLOW READ TOPIC PREFIXED hub.out.beta.",
        "User:alpha ALLOW WRITE TOPIC PREFIXED hub.in.alpha.",
        "User:alpha ALLOW READ TOPIC LITERAL hub.rejected.alpha",
        "User:alpha ALLOW READ GROUP PREFIXED alpha.",
        "User:beta ALLOW READ TOPIC PREFIXED hub.out.beta.",
        "User:beta ALLOW READ GROUP PREFIXED beta.",
    }


def test_the_plan_is_sorted_and_free_of_duplicates(bindings: list[Binding]) -> None:
    assert bindings == sorted(set(bindings))


def test_custom_service_principals_and_groups_are_used() -> None:
    services = ServicePrincipals(
        router="r", gateway="g", audit="a", router_group="rg", audit_group="ag"
    )
    got = plan(StandIn(institutions={}), services)
    assert {b.principal for b in got} == {"User:r", "User:a"}
    assert permits(got, "User:r", "READ", "GROUP", "rg")
    assert permits(got, "User:a", "READ", "GROUP", "ag")
    assert not permits(got, "User:r", "READ", "GROUP", "puente-router")


@pytest.mark.parametrize(
    ("services", "message"),
    [
        (ServicePrincipals(router="dgme"), "also an institution id"),
        (ServicePrincipals(router="same", gateway="same"), "must differ"),
        (ServicePrincipals(audit="bad name"), "must be letters"),
        (ServicePrincipals(gateway=""), "must be letters"),
        (ServicePrincipals(gateway_reader_prefix="bad name."), "must be letters"),
        (ServicePrincipals(gateway_reader_prefix=""), "also an institution id"),
    ],
)
def test_service_principals_that_would_blur_identities_are_refused(
    services: ServicePrincipals, message: str
) -> None:
    stand_in = StandIn(
        institutions={"dgme": object()}, publish_rights={"dgme": frozenset({"referral"})}
    )
    with pytest.raises(ConfigurationError, match=message):
        plan(stand_in, services)


def test_a_malformed_institution_id_is_refused_before_it_becomes_a_prefix() -> None:
    stand_in = StandIn(
        institutions={"dgme.": object()},
        publish_rights={"dgme.": frozenset({"referral"})},
    )
    with pytest.raises(InvalidIdError):
        plan(stand_in)


@pytest.mark.parametrize(
    ("granted", "wanted", "expected"),
    [
        ("READ", "DESCRIBE", True),
        ("WRITE", "DESCRIBE", True),
        ("ALL", "CREATE", True),
        ("ALTER_CONFIGS", "DESCRIBE_CONFIGS", True),
        ("READ", "WRITE", False),
        ("DESCRIBE", "READ", False),
        ("CREATE", "DESCRIBE", False),
    ],
)
def test_permits_follows_kafkas_implied_operations(
    granted: Operation, wanted: Operation, expected: bool
) -> None:
    acl = [Binding("User:x", "ALLOW", granted, "TOPIC", "LITERAL", "t")]
    assert permits(acl, "User:x", wanted, "TOPIC", "t") is expected


def test_a_matching_deny_wins_over_any_allow() -> None:
    acl = [
        Binding("User:x", "ALLOW", "ALL", "TOPIC", "PREFIXED", "hub."),
        Binding("User:*", "DENY", "READ", "TOPIC", "LITERAL", "hub.audit"),
    ]
    assert permits(acl, "User:x", "READ", "TOPIC", "hub.out.x.referral")
    assert not permits(acl, "User:x", "READ", "TOPIC", "hub.audit")
    assert not permits(acl, "User:y", "READ", "TOPIC", "hub.out.x.referral")
    assert not permits(acl, "User:x", "READ", "GROUP", "hub.x")


def test_each_service_can_see_every_topic_it_checks_for_at_start_up(
    bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    """Services create missing topics at start; a topic they cannot DESCRIBE looks
    missing, and creating it is refused, so the service would not start."""
    checked = {
        "User:puente-router": set(hub_topics),  # RouterService.start: the whole plan
        "User:puente-audit": {topics.AUDIT, topics.AUDIT_CHECKPOINTS},
        # The relay creates the inbound topics of the members it relays for.
        "User:puente-gateway": {
            t
            for t in hub_topics
            if t.startswith("hub.in.") and not is_hub_service(owner(t) or "")
        },
    }
    for principal, wanted in checked.items():
        for topic in wanted:
            assert permits(bindings, principal, "DESCRIBE", "TOPIC", topic), (
                f"{principal} cannot see {topic}"
            )


def test_no_gateway_principal_may_write_the_hubs_own_services_topics(
    bindings: list[Binding], hub_topics: dict[str, int]
) -> None:
    hub_inbound = [t for t in hub_topics if t.startswith("hub.in.hub_referrals.")]
    assert hub_inbound, "the policy lets the tracker publish"
    writers = {
        b.principal
        for t in hub_inbound
        for b in bindings
        if permits(bindings, b.principal, "WRITE", "TOPIC", t)
    }
    assert writers == {"User:hub_referrals"}
