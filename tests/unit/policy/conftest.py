"""Fixtures of the policy tests: the real policy and a fixed test hub key."""

from __future__ import annotations

import pytest

from services.contracts.catalog import Catalog
from services.policy import Policy, SubjectKeys, load_policy
from services.runtime.settings import REPO_ROOT

TEST_HUB_KEY = bytes(range(32))


@pytest.fixture(scope="session")
def policy(catalog: Catalog) -> Policy:
    """The repository's policy (deploy/policy), loaded once."""
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


@pytest.fixture(scope="session")
def keys() -> SubjectKeys:
    """Subject keys under a fixed test hub key."""
    return SubjectKeys(TEST_HUB_KEY)
