"""``puente keys list / rotate`` and ``puente subject-key`` (data-subject requests)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Final

import typer

from services.cli.oversight import authorise, record_request
from services.contracts.errors import PuenteError
from services.policy.hub_keys import HubKeys, fingerprint
from services.policy.subject import SubjectKeys
from services.runtime.hub_key_store import (
    HUB_KEY_SETTINGS,
    HubKeySettings,
    load_hub_keys,
    rotate,
)

app = typer.Typer(
    help="Hub key versions: list them, add the next one (rotation never removes one).",
    no_args_is_help=True,
)
log = logging.getLogger(__name__)
# Any event type whose subject the router keys from one PersonIdentity will do: the
# key depends on the documents only (the same person has the same key everywhere).
_PERSON_EVENT: Final = "return_arrival"
_PROBE_COUNTRY: Final = "ZZ"


@app.command("list")
def list_versions() -> None:
    """Every configured hub key version with a fingerprint (never the key)."""
    keys = load_hub_keys(HubKeySettings())
    typer.echo(f"hub keys from {keys.origin}")
    for version in sorted(keys.versions, reverse=True):
        current = "  current: computes new subject keys" if version == keys.newest else ""
        typer.echo(
            f"k{version}  fingerprint {fingerprint(keys.versions[version])}{current}"
        )


@app.command("rotate")
def rotate_command() -> None:
    """Add the next hub key version; every older version is kept.

    In development the version is appended to the development key file. With
    explicit keys (production) the new ``kN:<hex>`` line is printed on stdout for
    the operator to add to the secret; the hub never writes secrets it was given.
    """
    settings = HubKeySettings()
    rotation = rotate(settings)
    if rotation.written is not None:
        typer.echo(
            f"added hub key version k{rotation.version} to {rotation.written}; "
            f"restart the router to compute new subject keys with it"
        )
        return
    typer.echo(
        f"new hub key version k{rotation.version} (secret; printed on stdout only). "
        f"Append the line to the hub keys ({HUB_KEY_SETTINGS}) after the versions "
        "there now, keep every older line, then restart the router.",
        err=True,
    )
    typer.echo(rotation.line)


Document = Annotated[
    list[str],
    typer.Option(
        "--document",
        metavar="TYPE:NUMBER",
        help="An identity document of the person, e.g. DUI:01234567-8 (repeatable)",
    ),
]
Country = Annotated[
    str | None,
    typer.Option("--country", metavar="XX", help="Issuing country (ISO 3166-1 alpha-2)"),
]
Credential = Annotated[
    str | None,
    typer.Option(
        "--oversight-credential",
        envvar="PUENTE_OVERSIGHT_CREDENTIAL",
        metavar="TOKEN",
        help="An audit credential of role oversight (or env PUENTE_OVERSIGHT_CREDENTIAL)",
        show_envvar=False,
    ),
]
Attest = Annotated[
    bool,
    typer.Option(
        "--operator-attests-oversight",
        help="Outside production only, instead of a credential: act for oversight",
    ),
]


def subject_key(
    document: Document,
    country: Country = None,
    oversight_credential: Credential = None,
    operator_attests_oversight: Attest = False,
) -> None:
    """A person's subject key under every hub key version (data-subject requests).

    Prints one line per document and version, newest version first, each computed
    exactly as the router computes it; search the ledger for every one
    (``puente audit subject-report KEY``) to cover disclosures before rotations.
    Restricted to the oversight role.
    """
    documents = [_split(text) for text in document]
    who = authorise(oversight_credential, attested=operator_attests_oversight)
    keys = load_hub_keys(HubKeySettings())
    answers = [
        _every_version(keys, type_, number, country) for type_, number in documents
    ]
    for answer in answers:
        # Logged before it is shown: a request that cannot be logged is not answered.
        record_request(who, answer[0].key)  # newest first
    # Who asked, never for whom: the document is personal data.
    log.info("subject keys computed for a data-subject request by %s", who)
    for (type_, number), answer in zip(documents, answers, strict=True):
        for computed in answer:
            typer.echo(
                f"{computed.key}  {computed.basis}  hub key version k{computed.version}"
            )
        if country is None and _needs_country(keys.current(), type_, number):
            typer.echo(
                f"note: {type_} keys include the issuing country; without --country "
                "these match only records that carry none",
                err=True,
            )
    typer.echo(
        "search the ledger with each key: puente audit subject-report KEY", err=True
    )


class DocumentError(PuenteError):
    """A ``--document`` value the hub cannot turn into a subject key."""


@dataclass(frozen=True, slots=True)
class _Computed:
    key: str
    basis: str
    version: int


def _every_version(
    keys: HubKeys, type_: str, number: str, country: str | None
) -> list[_Computed]:
    """The document's subject key under every version, newest first."""
    return [
        _Computed(*_key_of(version, type_, number, country), version.version)
        for version in keys.every_version()
    ]


def _split(text: str) -> tuple[str, str]:
    type_, sep, number = text.partition(":")
    if not sep or not type_.strip() or not number.strip():
        raise DocumentError("--document takes TYPE:NUMBER, e.g. DUI:01234567-8")
    return type_.strip().upper(), number


def _key_of(
    keys: SubjectKeys, type_: str, number: str, country: str | None
) -> tuple[str, str]:
    key, basis = keys.subject_key(_PERSON_EVENT, _person_record(type_, number, country))
    if key is None:
        raise DocumentError(
            f"{type_}: no subject key; the hub keys on identity documents (DUI, NUI, "
            "PASSPORT_SV, PASSPORT_FOREIGN, ...; see `puente schemas show "
            "return_arrival`) whose number has letters or digits"
        )
    return key, basis


def _needs_country(keys: SubjectKeys, type_: str, number: str) -> bool:
    without = keys.subject_key(_PERSON_EVENT, _person_record(type_, number, None))
    probed = keys.subject_key(
        _PERSON_EVENT, _person_record(type_, number, _PROBE_COUNTRY)
    )
    return without != probed


def _person_record(type_: str, number: str, country: str | None) -> dict[str, object]:
    """The part of a record the router reads a person's documents from.

    The router's own code (`SubjectKeys.subject_key`) chooses and normalises the
    document, so this key is the one the router computed for this person.
    """
    document = {
        "document_type": type_,
        "document_number": number,
        "issuing_country": country,
    }
    return {"payload": {"person_identity": {"documents": [document]}}}
