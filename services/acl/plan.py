"""Kafka ACL bindings derived from the access policy (pure, no I/O).

The topic of an inbound record is its publisher's authenticated identity, so in
production the broker must let each institution write only under ``hub.in.<id>.``
and read only ``hub.out.<id>.`` and ``hub.rejected.<id>``; every service principal
gets exactly the topics and groups it consumes and produces. Everything else is
denied by the broker (``allow.everyone.if.no.acl.found=false``).

The gateway faces the internet, so no credential it holds may read every
institution's deliveries. It has two kinds of principal:

* ``puente-gateway``, the outbox relay: it writes the inbound topics of the
  institutions that may publish, and reads nothing;
* ``puente-gateway-reader.<id>``, one per institution: it reads that institution's
  deliveries and rejections only, to serve its HTTP pulls.

Per-institution readers rather than one delivery-reader principal, because then the
broker, not the gateway's own code, keeps one institution's pull from returning
another's records: a bug in the gateway's token check, cursor or topic choice meets
an authorization error, and a leaked reader credential discloses one institution's
deliveries, revocable on its own. The gateway holds reader credentials only for the
institutions that pull over HTTP; a reader with no SCRAM user cannot log in, so its
bindings grant nothing until ``puente acl apply --users-dir`` creates the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from services.contracts import topics
from services.contracts.errors import ConfigurationError
from services.contracts.ids import check_institution_id, is_hub_service

Permission = Literal["ALLOW", "DENY"]
# Kafka's whole ACL vocabulary, not only what the plan grants: `puente acl apply` reads
# the broker's bindings back into this type to report the ones the plan lacks.
Operation = Literal[
    "ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE",
    "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE",
    "CREATE_TOKENS", "DESCRIBE_TOKENS",
]  # fmt: skip
ResourceType = Literal[
    "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN", "USER"
]  # fmt: skip
PatternType = Literal["LITERAL", "PREFIXED"]

IN_PREFIX: Final = "hub.in."
OUT_PREFIX: Final = "hub.out."
REJECTED_PREFIX: Final = "hub.rejected."
# SCRAM user names of the services; institution ids cannot contain "-", so a service
# principal can never be mistaken for an institution.
_PRINCIPAL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Kafka's authorizer: these operations imply DESCRIBE on the same resource.
_IMPLIES_DESCRIBE: Final = frozenset({"READ", "WRITE", "DELETE", "ALTER"})


class PolicyRights(Protocol):
    """What the ACL plan needs from the policy (``services.policy.Policy`` has it)."""

    @property
    def institutions(self) -> Mapping[str, object]:
        """Institution id -> institution."""

    @property
    def publish_rights(self) -> Mapping[str, frozenset[str]]:
        """Institution id -> event types it may publish."""

    @property
    def receive_rights(self) -> Mapping[str, frozenset[str]]:
        """Institution id -> event types some rule may deliver to it."""


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    """One ACL binding: ``principal`` is allowed or denied ``operation`` on a resource."""

    principal: str
    permission: Permission
    operation: Operation
    resource_type: ResourceType
    pattern_type: PatternType
    name: str
    host: str = "*"

    def line(self) -> str:
        """``User:<p> <ALLOW|DENY> <operation> <resource type> <pattern type> <name>``."""
        return (
            f"{self.principal} {self.permission} {self.operation} "
            f"{self.resource_type} {self.pattern_type} {self.name}"
        )

    def matches(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this binding's resource pattern covers resource ``name``."""
        if resource_type != self.resource_type:
            return False
        if self.pattern_type == "PREFIXED":
            return name.startswith(self.name)
        return self.name in (name, "*")


@dataclass(frozen=True, slots=True)
class ServicePrincipals:
    """The hub's own Kafka principals and the groups and topics they use."""

    router: str = "puente-router"
    gateway: str = "puente-gateway"
    audit: str = "puente-audit"
    router_group: str = "puente-router"
    audit_group: str = "puente-audit"
    audit_topic: str = topics.AUDIT
    checkpoint_topic: str = topics.AUDIT_CHECKPOINTS
    gateway_reader_prefix: str = "puente-gateway-reader."

    def names(self) -> tuple[str, str, str]:
        """The three service user names."""
        return (self.router, self.gateway, self.audit)

    def gateway_reader(self, institution: str) -> str:
        """The user name the gateway reads ``institution``'s deliveries as."""
        return f"{self.gateway_reader_prefix}{institution}"


def user(name: str) -> str:
    """The Kafka principal of SCRAM user ``name``."""
    return f"User:{name}"


def plan(
    policy: PolicyRights, services: ServicePrincipals | None = None
) -> list[Binding]:
    """Every ACL binding the hub needs, sorted; institutions with no rights get none."""
    services = services or ServicePrincipals()
    _check_principals(services, policy.institutions)
    bindings = service_bindings(services)
    for institution in sorted(policy.institutions):
        rights = {
            "publishes": bool(policy.publish_rights.get(institution)),
            "receives": bool(policy.receive_rights.get(institution)),
        }
        bindings.extend(institution_bindings(institution, **rights))
        # The hub's own services publish over Kafka only: a relay that could write
        # their topics could forge the hub's overdue notices or expiries.
        if not is_hub_service(institution):
            bindings.extend(gateway_bindings(services, institution, **rights))
    return sorted(set(bindings))


def institution_bindings(
    institution: str, *, publishes: bool, receives: bool
) -> list[Binding]:
    """An institution's own prefixes: write its inbound, read its outbound and rejected.

    The trailing dot of each prefix keeps ``rree`` from matching ``rree_vmdmh``'s
    topics and groups. Consumer groups must be named ``<id>.<anything>``.
    """
    who = user(check_institution_id(institution))
    found: list[Binding] = []
    if publishes:
        found.append(
            _allow(who, "WRITE", "TOPIC", "PREFIXED", f"{IN_PREFIX}{institution}.")
        )
        found.append(
            _allow(who, "READ", "TOPIC", "LITERAL", topics.rejected(institution))
        )
    if receives:
        found.append(
            _allow(who, "READ", "TOPIC", "PREFIXED", f"{OUT_PREFIX}{institution}.")
        )
    if publishes or receives:
        found.append(_allow(who, "READ", "GROUP", "PREFIXED", f"{institution}."))
    return found


def gateway_bindings(
    services: ServicePrincipals, institution: str, *, publishes: bool, receives: bool
) -> list[Binding]:
    """The gateway's rights for one institution (module docstring: why split).

    The relay writes the institution's inbound topics because it publishes on behalf
    of its HTTP callers (it checks each caller's publish right before accepting an
    event). The institution's reader reads its deliveries and rejections without a
    consumer group (the gateway keeps each caller's cursor itself).
    """
    relay = user(services.gateway)
    reader = user(services.gateway_reader(check_institution_id(institution)))
    found: list[Binding] = []
    if publishes:
        found.append(
            _allow(relay, "WRITE", "TOPIC", "PREFIXED", f"{IN_PREFIX}{institution}.")
        )
        found.append(
            _allow(reader, "READ", "TOPIC", "LITERAL", topics.rejected(institution))
        )
    if receives:
        found.append(
            _allow(reader, "READ", "TOPIC", "PREFIXED", f"{OUT_PREFIX}{institution}.")
        )
    return found


def service_bindings(services: ServicePrincipals) -> list[Binding]:
    """What the router and the audit consume and produce, and nothing more.

    The router's transactions (consume, deliver, audit and commit its input offsets
    at once) need WRITE on its transactional ids, ``<router group>.<instance>``;
    idempotent producers need nothing beyond WRITE on their topics (Kafka 3+).
    The gateway's bindings depend on the institutions (`gateway_bindings`). Topics
    are created by the init job's admin principal, so no service may create. At
    start-up the router checks that every hub topic exists, the audit checkpoints
    included, so it may see (DESCRIBE) that one without reading or writing it.
    """
    router, audit = user(services.router), user(services.audit)
    return [
        _allow(router, "READ", "TOPIC", "PREFIXED", IN_PREFIX),
        _allow(router, "WRITE", "TOPIC", "PREFIXED", OUT_PREFIX),
        _allow(router, "WRITE", "TOPIC", "PREFIXED", REJECTED_PREFIX),
        _allow(router, "WRITE", "TOPIC", "LITERAL", services.audit_topic),
        _allow(router, "DESCRIBE", "TOPIC", "LITERAL", services.checkpoint_topic),
        _allow(router, "READ", "GROUP", "LITERAL", services.router_group),
        # Exactly-once routing: each router's transactional id is <group>.<instance>.
        _allow(
            router, "WRITE", "TRANSACTIONAL_ID", "PREFIXED", f"{services.router_group}."
        ),
        _allow(audit, "READ", "TOPIC", "LITERAL", services.audit_topic),
        _allow(audit, "WRITE", "TOPIC", "LITERAL", services.checkpoint_topic),
        _allow(audit, "READ", "GROUP", "LITERAL", services.audit_group),
    ]


def permits(
    bindings: Iterable[Binding],
    principal: str,
    operation: Operation,
    resource_type: ResourceType,
    name: str,
) -> bool:
    """Whether Kafka's StandardAuthorizer would allow this, given only ``bindings``.

    Default deny; a matching DENY wins; ALL covers every operation; READ, WRITE,
    DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
    """
    allowed = False
    for binding in bindings:
        if binding.principal not in (principal, "User:*"):
            continue
        if not binding.matches(resource_type, name):
            continue
        if not _covers(binding.operation, operation):
            continue
        if binding.permission == "DENY":
            return False
        allowed = True
    return allowed


def _covers(granted: Operation, wanted: Operation) -> bool:
    if granted in ("ALL", wanted):
        return True
    if wanted == "DESCRIBE":
        return granted in _IMPLIES_DESCRIBE
    return wanted == "DESCRIBE_CONFIGS" and granted == "ALTER_CONFIGS"


def _allow(
    principal: str,
    operation: Operation,
    resource_type: ResourceType,
    pattern_type: PatternType,
    name: str,
) -> Binding:
    return Binding(principal, "ALLOW", operation, resource_type, pattern_type, name)


def _check_principals(services: ServicePrincipals, institutions: Iterable[str]) -> None:
    names = services.names()
    institutions = list(institutions)
    readers = [services.gateway_reader(i) for i in institutions]
    for name in (*names, services.gateway_reader("x")):
        if not _PRINCIPAL.fullmatch(name):
            raise ConfigurationError(
                f"service principal {name[:64]!r} must be letters, digits, '.', '_' "
                "or '-' (at most 128)"
            )
    if len(set(names)) != len(names):
        raise ConfigurationError(
            f"the router, gateway and audit principals must differ: {', '.join(names)}"
        )
    clash = sorted((set(names) | set(readers)) & set(institutions))
    if clash:
        raise ConfigurationError(
            f"service principal {clash[0]!r} is also an institution id; "
            "it would get that institution's rights"
        )
