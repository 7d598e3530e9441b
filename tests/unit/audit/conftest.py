"""Fixtures of the audit unit tests: a signing key and a filled ledger file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.ledger import Ledger
from services.contracts.catalog import Catalog
from tests.unit.audit.support import filled_ledger, many


@pytest.fixture(scope="session")
def key() -> Ed25519PrivateKey:
    """The ledger's signing key."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """Where the test's ledger lives."""
    return tmp_path / "audit" / "ledger.sqlite"


@pytest.fixture
def ledger(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey
) -> Iterator[Ledger]:
    """Ten entries, checkpoints after 4 and 10, closed afterwards."""
    opened = filled_ledger(ledger_path, catalog, many(10), key, checkpoint_at=(4, 10))
    yield opened
    opened.close()
