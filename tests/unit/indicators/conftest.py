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


def indicator_block(
    ident: str, dimensions: list[str], filter_text: str | None = None
) -> str:
    """One return_arrival indicator block for a small test catalogue."""
    lines = [
        "[[indicator]]",
        f'id = "{ident}"',
        f'title = "{ident}"',
        f'definition = "{ident}"',
        'working_group = "protection"',
        "gcm_objective = 7",
        'event_type = "return_arrival"',
        f"dimensions = {dimensions!r}".replace("'", '"'),
        'readers = ["io_oim"]',
        f'hxl = "#affected+{ident.replace("_", "")}"',
    ]
    if filter_text is not None:
        lines.insert(7, f"filter = {filter_text!r}".replace("\\'", "'"))
    return "\n".join(lines) + "\n"
