"""What ``puente acl apply`` has to do: planned bindings vs the broker's (pure, no I/O).

Apply only ever adds: a binding on the broker that the plan no longer has is reported
as *stale*, for an operator to remove by hand (docs/production.md), because a
removal takes a right away from a running institution or service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.acl.plan import Binding, ServicePrincipals, user

# Every hub service's SCRAM user is named puente-<service> unless renamed, and every
# hub topic starts with "hub.".
SERVICE_PREFIX = "User:puente-"
HUB_TOPIC_PREFIX = "hub."


@dataclass(frozen=True, slots=True)
class HubScope:
    """Whose bindings on the broker belong to the hub, so that apply may judge them.

    ``principals`` are the services', the policy's institutions' and the gateway's
    reader of each institution. A principal with
    any binding on a hub topic belongs too: that catches an institution that has left
    the policy, whose bindings are exactly the ones an operator must remove.
    """

    principals: frozenset[str]

    @classmethod
    def of(cls, services: ServicePrincipals, institutions: Iterable[str]) -> HubScope:
        """The scope of these service principals and institution ids."""
        institutions = list(institutions)
        readers = [services.gateway_reader(i) for i in institutions]
        names = [*services.names(), *institutions, *readers]
        return cls(frozenset(user(n) for n in names))

    def owners(self, existing: Iterable[Binding]) -> frozenset[str]:
        """The principals among ``existing``'s whose bindings the hub manages."""
        found = set(self.principals)
        for b in existing:
            if b.principal.startswith(SERVICE_PREFIX) or _on_hub_topic(b):
                found.add(b.principal)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Diff:
    """Planned bindings split by whether the broker has them, and the broker's extras.

    ``missing``: planned, not on the broker (apply creates them). ``present``: planned
    and on the broker. ``stale``: on the broker for a hub principal, not planned.
    """

    missing: tuple[Binding, ...]
    present: tuple[Binding, ...]
    stale: tuple[Binding, ...]


def diff(
    planned: Iterable[Binding], existing: Iterable[Binding], scope: HubScope
) -> Diff:
    """Compare the plan with the broker's bindings; each part sorted, no duplicates.

    Bindings are equal when every field is, the host included: a planned ``*`` binding
    is missing even if the broker grants the same to one host (which is then stale).
    """
    wanted = set(planned)
    have = set(existing)
    owners = scope.owners(have)
    return Diff(
        missing=tuple(sorted(wanted - have)),
        present=tuple(sorted(wanted & have)),
        stale=tuple(sorted(b for b in have - wanted if b.principal in owners)),
    )


def describe(binding: Binding) -> str:
    """The binding as ``puente acl plan`` prints it, with its host unless it is ``*``."""
    line = binding.line()
    return line if binding.host == "*" else f"{line} host {binding.host}"


def _on_hub_topic(binding: Binding) -> bool:
    # A prefix pattern shorter than "hub." (e.g. "hu") covers hub topics too.
    if binding.resource_type != "TOPIC":
        return False
    if binding.pattern_type == "PREFIXED":
        return binding.name.startswith(HUB_TOPIC_PREFIX) or HUB_TOPIC_PREFIX.startswith(
            binding.name
        )
    return binding.name == "*" or binding.name.startswith(HUB_TOPIC_PREFIX)
