"""Who may publish what: the access policy behind a small protocol.

The gateway depends only on `PublishRights`; the service loads the hub's policy
(`PolicyRights`), benchmarks and fault tests inject fixed grants (`StaticRights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from services.contracts.catalog import Catalog
from services.contracts.errors import ConfigurationError
from services.policy import Policy, load_policy


class PublishRights(Protocol):
    """The part of the access policy the gateway needs."""

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether ``source`` holds the publish right for ``event_type``."""
        ...

    def known(self, institution: str) -> bool:
        """Whether ``institution`` is a member the policy names."""
        ...


class StaticRights:
    """Rights from a plain mapping: institution -> event types it may publish."""

    def __init__(self, grants: Mapping[str, Iterable[str]]) -> None:
        self._grants = {k: frozenset(v) for k, v in grants.items()}

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether the mapping grants ``event_type`` to ``source``."""
        return event_type in self._grants.get(source, frozenset())

    def known(self, institution: str) -> bool:
        """Whether the mapping names ``institution``."""
        return institution in self._grants


class PolicyRights:
    """The hub's access policy seen as `PublishRights`."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether the policy grants ``source`` the right to publish ``event_type``."""
        return self._policy.may_publish(source, event_type)

    def known(self, institution: str) -> bool:
        """Whether the policy names ``institution``."""
        return self._policy.knows(institution)


def load_rights(policy_dir: Path, catalog: Catalog) -> PolicyRights:
    """The publish rights of the policy in ``policy_dir``.

    Loading the policy also registers its projected schemas in ``catalog``, which the
    delivery endpoint needs to decode what recipients receive.
    """
    try:
        return PolicyRights(load_policy(policy_dir, catalog))
    except ConfigurationError:
        raise
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot load the access policy: {e}") from e
