"""What a verifier trusts: pinned keys from configuration, heads outside the ledger.

Keys stored in the ledger are never trusted: whoever can rewrite the ledger can
store a key of their own. The pinned keys are, in order of precedence, the
``--public-key`` files given to the CLI, ``PUENTE_AUDIT_VERIFY_KEY`` /
``PUENTE_AUDIT_VERIFY_KEY_FILE``, else the public half of the configured signing
key (the service's own key, also configuration) and of the previous one, if set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.audit.keys import (
    SigningKeyError,
    key_id,
    parse_private_key,
    parse_public_key,
    raw_public,
    read_key_file,
)
from services.audit.rotation import Rotation
from services.audit.settings import AuditSettings
from services.audit.verify import Anchor
from services.audit.witness import read

WITNESS: str = "witness file"


class NoVerifyKeyError(SigningKeyError):
    """No public key is configured to verify the ledger's signatures with."""


def pinned_keys(settings: AuditSettings, files: Sequence[Path] = ()) -> dict[str, bytes]:
    """key_id -> raw public key of every pinned key (see the module docstring)."""
    raws = [parse_public_key(read_key_file(p)) for p in files]
    if not raws and settings.verify_key is not None:
        raws.append(parse_public_key(settings.verify_key.encode()))
    if not raws and settings.verify_key_file is not None:
        raws.append(parse_public_key(read_key_file(settings.verify_key_file)))
    if not raws and (own := _signing_public(settings)) is not None:
        raws.append(own)
        # The key before a rotation signed the checkpoints before it.
        if (previous := settings.previous_signing_key_file) is not None:
            raws.append(raw_public(parse_private_key(read_key_file(previous))))
    if not raws:
        raise NoVerifyKeyError(
            "no public key to verify the ledger with: set PUENTE_AUDIT_VERIFY_KEY_FILE "
            "or pass --public-key (keys stored in the ledger are not trusted)"
        )
    return {key_id(raw): raw for raw in raws}


def _signing_public(settings: AuditSettings) -> bytes | None:
    if settings.signing_key is not None:
        data = settings.signing_key.get_secret_value().encode()
        return raw_public(parse_private_key(data))
    path = settings.signing_key_file
    if path is None and settings.development_key_file.is_file():
        path = settings.development_key_file
    if path is None:
        return None
    return raw_public(parse_private_key(read_key_file(path)))


def witness_anchors(path: Path) -> tuple[list[Anchor], list[Rotation], list[int]]:
    """The witness file's signed heads, rotations and unreadable line numbers."""
    contents = read(path)
    anchors = [
        Anchor(head, WITNESS, kind == "checkpoint") for head, kind in contents.heads
    ]
    return anchors, contents.rotations, contents.unreadable
