"""Who may publish what: the access policy behind a small protocol.

The gateway depends only on `PublishRights`; tests inject a fake, the service loads
the hub's policy. Without a loadable policy nobody may publish (default deny).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from services.contracts.catalog import Catalog
from services.contracts.errors import ConfigurationError

log = logging.getLogger(__name__)


class PublishRights(Protocol):
    """The part of the access policy the gateway needs."""

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether ``source`` holds the publish right for ``event_type``."""
        ...

    def known(self, institution: str) -> bool:
        """Whether ``institution`` is a member the policy names."""
        ...


class DenyAll:
    """Rights when no policy could be loaded: nobody publishes."""

    def may_publish(self, source: str, event_type: str) -> bool:
        """Always False."""
        return False

    def known(self, institution: str) -> bool:
        """Always False."""
        return False


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
    """Adapts the hub's `Policy` (services.policy) to `PublishRights`."""

    def __init__(self, policy: Any) -> None:
        self._policy = policy
        self._members = _member_ids(policy.institutions)

    def may_publish(self, source: str, event_type: str) -> bool:
        """Delegates to ``policy.may_publish``."""
        return bool(self._policy.may_publish(source, event_type))

    def known(self, institution: str) -> bool:
        """Whether the policy names ``institution``."""
        return institution in self._members


def _member_ids(institutions: Any) -> frozenset[str]:
    # The policy may hold ids, a mapping keyed by id, or objects with an ``id``.
    if isinstance(institutions, Mapping):
        return frozenset(str(k) for k in institutions)
    return frozenset(i if isinstance(i, str) else str(i.id) for i in institutions)


def load_rights(policy_dir: Path, catalog: Catalog) -> PublishRights:
    """The policy's rights; `DenyAll` (with a warning) if no policy module exists yet.

    Loading the policy also registers its projected schemas in ``catalog``, which the
    delivery endpoint needs to decode what recipients receive.
    """
    try:
        module = importlib.import_module("services.policy")
    except ImportError:
        log.warning("services.policy is not available: every publish is refused")
        return DenyAll()
    loader: Callable[[Path, Catalog], Any] | None = getattr(module, "load_policy", None)
    if loader is None:
        log.warning("services.policy has no load_policy: every publish is refused")
        return DenyAll()
    try:
        return PolicyRights(loader(policy_dir, catalog))
    except ConfigurationError:
        raise
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot load the access policy: {e}") from e
