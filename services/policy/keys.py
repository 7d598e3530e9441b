"""The hub key: from settings, from a file, or a development key made on first run.

This is the one module of the policy package that writes files; everything else is
pure. The key itself is never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Final

from services.policy.errors import KeyMaterialError
from services.policy.settings import PolicySettings
from services.policy.subject import MIN_KEY_BYTES, SubjectKeys

DEV_KEY_PATH: Final = Path("keys") / "hub.key"
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
log = logging.getLogger(__name__)


def load_hub_key(settings: PolicySettings) -> bytes:
    """The hub key from ``PUENTE_HUB_KEY``, ``PUENTE_HUB_KEY_FILE`` or the dev key."""
    if settings.hub_key is not None:
        return parse_key(settings.hub_key.get_secret_value(), "PUENTE_HUB_KEY")
    if settings.hub_key_file is not None:
        return parse_key(_read(settings.hub_key_file), str(settings.hub_key_file))
    return development_key(settings.hub.state_dir)


def subject_keys(settings: PolicySettings | None = None) -> SubjectKeys:
    """`SubjectKeys` with the configured hub key."""
    return SubjectKeys(load_hub_key(settings or PolicySettings()))


def parse_key(text: str, origin: str) -> bytes:
    """Decode a key written as hex or base64; ``origin`` names it in errors."""
    text = text.strip()
    if _HEX.fullmatch(text):
        key = bytes.fromhex(text)
    else:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise KeyMaterialError(
                f"{origin}: the hub key is neither hex nor base64"
            ) from e
    if len(key) < MIN_KEY_BYTES:
        raise KeyMaterialError(
            f"{origin}: the hub key has {len(key)} bytes; "
            f"at least {MIN_KEY_BYTES} are needed"
        )
    return key


def development_key(state_dir: Path) -> bytes:
    """The development key under ``state_dir``, generated (mode 0600) if absent."""
    path = state_dir / DEV_KEY_PATH
    if not path.exists():
        _generate(path)
    return parse_key(_read(path), str(path))


def _generate(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(MIN_KEY_BYTES) + "\n")
        try:
            # link() never replaces: when services start together, the first key wins
            # and every process reads that same one.
            os.link(temporary, path)
            log.warning(
                "generated a development hub key at %s; set PUENTE_HUB_KEY in production",
                path,
            )
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
    except OSError as e:
        raise KeyMaterialError(
            f"cannot create the development hub key {path}: {e.strerror}"
        ) from e


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyMaterialError(f"cannot read the hub key file {path}: {e}") from e
