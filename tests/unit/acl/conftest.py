"""Fixtures of the ACL tests: the real policy, its plan, and a small stand-in policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from services.acl import Binding, plan
from services.contracts.catalog import Catalog
from services.policy import Policy, load_policy
from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import REPO_ROOT, TopicSettings


@dataclass
class StandIn:
    """The three attributes the ACL plan reads from a policy."""

    institutions: Mapping[str, object]
    publish_rights: Mapping[str, frozenset[str]] = field(default_factory=dict)
    receive_rights: Mapping[str, frozenset[str]] = field(default_factory=dict)


@pytest.fixture(scope="session")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


@pytest.fixture(scope="session")
def bindings(policy: Policy) -> list[Binding]:
    return plan(policy)


@pytest.fixture(scope="session")
def hub_topics(policy: Policy) -> dict[str, int]:
    """Every topic the real policy needs (what the init job creates)."""
    return runtime_topics.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
