"""Fixtures of the fuzz unit tests: the repository's catalog, policy and inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.contracts.catalog import Catalog
from services.fuzz.inputs import InputStream
from services.policy import Policy, load_policy
from services.runtime.settings import HubSettings

MAX_EVENT_BYTES = 512 * 1024
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(HubSettings().policy_dir, catalog)


def stream(catalog: Catalog, policy: Policy, seed: int, **options: object) -> InputStream:
    return InputStream(
        catalog,
        policy.publish_rights,
        sorted(policy.institutions),
        seed=seed,
        now_fn=lambda: NOW,
        max_event_bytes=MAX_EVENT_BYTES,
        **options,  # type: ignore[arg-type]
    )
