"""What apply creates and what it reports: the plan against the broker's bindings."""

from __future__ import annotations

from services.acl.diff import HubScope, describe, diff
from services.acl.plan import Binding, Operation, PatternType, ServicePrincipals, plan
from services.policy import Policy

SCOPE = HubScope.of(ServicePrincipals(), ["rree", "rnpn"])


def topic(
    principal: str, operation: Operation, pattern: PatternType, name: str
) -> Binding:
    return Binding(f"User:{principal}", "ALLOW", operation, "TOPIC", pattern, name)


WRITE_IN = topic("rree", "WRITE", "PREFIXED", "hub.in.rree.")
READ_OUT = topic("rree", "READ", "PREFIXED", "hub.out.rree.")
ROUTER = topic("puente-router", "READ", "PREFIXED", "hub.in.")


def test_missing_present_and_stale_are_told_apart() -> None:
    gone = topic("rnpn", "READ", "PREFIXED", "hub.out.rnpn.")
    change = diff([WRITE_IN, READ_OUT, ROUTER], [READ_OUT, gone], SCOPE)
    assert change.missing == (ROUTER, WRITE_IN)
    assert change.present == (READ_OUT,)
    assert change.stale == (gone,)


def test_nothing_to_do_when_the_broker_has_the_plan(policy: Policy) -> None:
    planned = plan(policy)
    scope = HubScope.of(ServicePrincipals(), policy.institutions)
    change = diff(planned, reversed(planned), scope)
    assert change.missing == ()
    assert change.stale == ()
    assert list(change.present) == planned


def test_an_empty_broker_misses_the_whole_plan(policy: Policy) -> None:
    planned = plan(policy)
    change = diff(planned, [], HubScope.of(ServicePrincipals(), policy.institutions))
    assert list(change.missing) == planned
    assert change.present == change.stale == ()


def test_bindings_of_principals_outside_the_hub_are_none_of_its_business() -> None:
    other = [
        topic("billing", "READ", "LITERAL", "invoices"),
        Binding("User:billing", "ALLOW", "READ", "GROUP", "PREFIXED", "billing."),
    ]
    assert diff([WRITE_IN], [WRITE_IN, *other], SCOPE).stale == ()


def test_every_service_principal_is_the_hubs_even_renamed_or_extra() -> None:
    renamed = HubScope.of(ServicePrincipals(router="hub-router-2"), [])
    old_router = Binding("User:puente-router", "ALLOW", "READ", "GROUP", "LITERAL", "g")
    new_router = Binding("User:hub-router-2", "ALLOW", "READ", "GROUP", "LITERAL", "x")
    extra = Binding("User:puente-relay", "ALLOW", "ALL", "GROUP", "LITERAL", "*")
    change = diff([], [old_router, new_router, extra], renamed)
    assert change.stale == (new_router, extra, old_router)


def test_an_institution_that_left_the_policy_is_reported_by_its_hub_bindings() -> None:
    # cancilleria is no longer in the policy; its group binding names no hub topic,
    # but its topic bindings make it a hub principal, so both are reported.
    left = [
        topic("cancilleria", "READ", "PREFIXED", "hub.out.cancilleria."),
        Binding("User:cancilleria", "ALLOW", "READ", "GROUP", "PREFIXED", "cancilleria."),
    ]
    assert set(diff([], left, SCOPE).stale) == set(left)


def test_wide_patterns_over_hub_topics_are_reported_whoever_holds_them() -> None:
    wide = [
        topic("*", "READ", "LITERAL", "*"),
        topic("ops", "WRITE", "PREFIXED", "hu"),
        topic("ops2", "READ", "LITERAL", "hub.audit"),
    ]
    assert set(diff([], wide, SCOPE).stale) == set(wide)


def test_a_deny_or_a_host_bound_copy_is_not_the_planned_binding() -> None:
    deny = Binding("User:rree", "DENY", "WRITE", "TOPIC", "PREFIXED", "hub.in.rree.")
    one_host = Binding(
        "User:rree",
        "ALLOW",
        "WRITE",
        "TOPIC",
        "PREFIXED",
        "hub.in.rree.",
        host="10.1.2.3",
    )
    change = diff([WRITE_IN], [deny, one_host], SCOPE)
    assert change.missing == (WRITE_IN,)
    assert set(change.stale) == {deny, one_host}


def test_duplicates_count_once() -> None:
    change = diff([WRITE_IN, WRITE_IN], [WRITE_IN, WRITE_IN], SCOPE)
    assert change.present == (WRITE_IN,)


def test_a_binding_reads_as_in_the_plan_and_names_a_host_other_than_any() -> None:
    assert describe(WRITE_IN) == "User:rree ALLOW WRITE TOPIC PREFIXED hub.in.rree."
    bound = Binding(
        "User:rree", "ALLOW", "READ", "GROUP", "LITERAL", "g", host="10.1.2.3"
    )
    assert describe(bound) == "User:rree ALLOW READ GROUP LITERAL g host 10.1.2.3"
