"""Fixtures of the indicators tests: the real policy and catalogue, loaded once."""

from __future__ import annotations

import pytest

from services.contracts.catalog import Catalog
from services.policy import Policy, load_policy
from services.runtime.settings import REPO_ROOT

POLICY_DIR = REPO_ROOT / "deploy" / "policy"


@pytest.fixture(scope="session")
def policy(catalog: Catalog) -> Policy:
    """The repository's policy (deploy/policy)."""
    return load_policy(POLICY_DIR, catalog)
