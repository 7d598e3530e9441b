"""The gateway's publish rights come from the hub's access policy, loaded directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.contracts.catalog import Catalog
from services.contracts.errors import ConfigurationError
from services.gateway.rights import PolicyRights, load_rights
from services.runtime.settings import HubSettings


def test_the_policy_grants_a_ministry_the_event_types_it_publishes() -> None:
    hub = HubSettings()
    rights = load_rights(hub.policy_dir, Catalog.load(hub.schemas_dir))
    assert isinstance(rights, PolicyRights)
    assert rights.may_publish("dgme", "return_arrival")
    assert not rights.may_publish("dgme", "no_such_event")
    assert rights.known("dgme")
    assert not rights.known("not_a_member")


def test_a_missing_policy_is_a_configuration_error_not_a_silent_deny(
    tmp_path: Path,
) -> None:
    catalog = Catalog.load(HubSettings().schemas_dir)
    with pytest.raises(ConfigurationError):
        load_rights(tmp_path / "nowhere", catalog)
