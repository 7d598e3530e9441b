"""Reading the policy folder: TOML files into typed specs, and the content hash.

Layout of ``deploy/policy/``::

    institutions.toml           working groups; members: name, groups, publish rights
    aggregates.toml             aggregate-only grants (served by the indicators)
    safeguards.toml             value-based escalation; when consent overrides hold
    rules/<event_type>.toml     disclosure rules of one event type, in order

TOML (stdlib ``tomllib``) rather than YAML: no implicit typing surprises (the ISO
country code ``NO`` stays a string) and it reads as a form a reviewer can sign off.
Every table rejects unknown keys, so a misspelt ``consent_scope`` is an error rather
than a silently ignored safeguard.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.policy.errors import PolicyError

INSTITUTIONS_FILE: Final = "institutions.toml"
AGGREGATES_FILE: Final = "aggregates.toml"
SAFEGUARDS_FILE: Final = "safeguards.toml"
RULES_DIR: Final = "rules"
VERSION_PREFIX: Final = "sha256:"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


M = TypeVar("M", bound=_Spec)


class InstitutionSpec(_Spec):
    """One member as written in ``institutions.toml``."""

    name: str = Field(min_length=1)
    working_groups: list[str] = []
    publishes: list[str] = []
    stream: bool = True
    # Its involvement alone reveals a protection need (GBV, trafficking, violence,
    # crime): PSEUDO views show it as ``masked``.
    sensitive: bool = False
    note: str = ""


class InstitutionsFile(_Spec):
    """``institutions.toml``."""

    working_groups: dict[str, str]
    institutions: dict[str, InstitutionSpec]


class AggregateSpec(_Spec):
    """One ``[[aggregate]]`` entry of ``aggregates.toml``."""

    recipient: str
    event_types: list[str] = Field(min_length=1)
    purpose: str
    legal_basis: str
    by: list[str] = []
    note: str = ""


class AggregatesFile(_Spec):
    """``aggregates.toml``."""

    aggregate: list[AggregateSpec] = []


class GeneraliseSpec(_Spec):
    """``generalise."<path>" = { keep = [...], otherwise = "SYMBOL" }`` of a rule."""

    keep: list[str] = Field(min_length=1)
    otherwise: str


class EscalationSpec(_Spec):
    """One ``[[escalation]]`` of ``safeguards.toml``.

    Values (``when``, per event type) that make a record highly sensitive for every
    rule whose purpose is not among ``purposes``.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    purposes: list[str] = Field(min_length=1)
    when: dict[str, str] = Field(min_length=1)  # event type -> JMESPath condition
    note: str = ""


class OverrideSpec(_Spec):
    """One ``[[override]]`` of ``safeguards.toml``: when a consent override holds."""

    reason: str
    when: dict[str, str] = {}  # event type -> condition; absent: never holds
    note: str = ""


class SafeguardsFile(_Spec):
    """``safeguards.toml``."""

    escalation: list[EscalationSpec] = []
    override: list[OverrideSpec] = []


class RuleSpec(_Spec):
    """One ``[[rule]]`` of ``rules/<event_type>.toml``."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$")
    recipient: str | None = None
    recipient_field: str | None = None
    recipients: list[str] | None = None
    condition: str | None = None
    view: str
    purpose: str
    legal_basis: str
    consent_scopes: list[str] = []
    consent_override: bool = False
    grant: list[str] = []
    remove: list[str] = []
    only: list[str] = []
    generalise: dict[str, GeneraliseSpec] = {}
    owner: bool = False
    note: str = ""
    review_by: date | None = None


class RulesFile(_Spec):
    """``rules/<event_type>.toml``."""

    rule: list[RuleSpec] = []


class PolicyFiles(_Spec):
    """Everything read from the policy folder, not yet checked against the schemas."""

    version: str
    institutions: InstitutionsFile
    aggregates: AggregatesFile
    safeguards: SafeguardsFile
    rules: dict[str, RulesFile]  # event type -> rules, in file order
    rule_files: dict[str, str]  # event type -> file name relative to the folder


def read_policy_files(directory: Path) -> PolicyFiles:
    """Read and type-check every policy file under ``directory``."""
    if not directory.is_dir():
        raise PolicyError(f"policy folder {directory} does not exist")
    institutions = _parse(directory, INSTITUTIONS_FILE, InstitutionsFile)
    aggregates_path = directory / AGGREGATES_FILE
    aggregates = (
        _parse(directory, AGGREGATES_FILE, AggregatesFile)
        if aggregates_path.exists()
        else AggregatesFile()
    )
    safeguards = (
        _parse(directory, SAFEGUARDS_FILE, SafeguardsFile)
        if (directory / SAFEGUARDS_FILE).exists()
        else SafeguardsFile()
    )
    rules: dict[str, RulesFile] = {}
    rule_files: dict[str, str] = {}
    for path in sorted((directory / RULES_DIR).glob("*.toml")):
        name = f"{RULES_DIR}/{path.name}"
        rules[path.stem] = _parse(directory, name, RulesFile)
        rule_files[path.stem] = name
    return PolicyFiles(
        version=policy_version(directory),
        institutions=institutions,
        aggregates=aggregates,
        safeguards=safeguards,
        rules=rules,
        rule_files=rule_files,
    )


def policy_version(directory: Path) -> str:
    """``sha256:`` + 16 hex digits over every ``.toml`` file's path and content."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.toml")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        digest.update(_read_bytes(path))
        digest.update(b"\0")
    return VERSION_PREFIX + digest.hexdigest()[:16]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PolicyError(f"cannot read policy file {path}: {e.strerror}") from e


def _parse(directory: Path, name: str, model: type[M]) -> M:
    path = directory / name
    if not path.exists():
        raise PolicyError(f"{name}: missing from the policy folder {directory}")
    try:
        raw = tomllib.loads(_read_bytes(path).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(f"{name}: not valid TOML: {e}") from e
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise PolicyError(f"{name}: {_describe(raw, e)}") from e


def _describe(raw: dict[str, Any], error: ValidationError) -> str:
    """The first validation problem, naming the rule id or institution it is in."""
    first = error.errors()[0]
    loc = list(first["loc"])
    where = ""
    sections = ("rule", "aggregate", "escalation", "override")
    if len(loc) >= 2 and loc[0] in sections and isinstance(loc[1], int):
        entries = raw.get(str(loc[0])) or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        ident = entry.get("id") if isinstance(entry, dict) else None
        where = f"rule {ident!r}" if ident else f"{loc[0]} #{loc[1] + 1}"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "institutions":
        where = f"institution {loc[1]!r}"
        loc = loc[2:]
    key = ".".join(str(part) for part in loc)
    kind = first["type"]
    if kind == "missing":
        return (
            f"{where} has no {key}".strip() if key else f"{where} is incomplete".strip()
        )
    if kind == "extra_forbidden":
        message = f"unknown key {key!r}"
    else:
        message = f"{key}: {first['msg']}" if key else str(first["msg"])
    return f"{where}: {message}" if where else message
