"""Where the hub keys come from: settings, a key file, or the development key file.

This module reads the settings and key files and writes the development key file
(mode 0600 in a 0700 directory); parsing the written form is the pure
`services.policy.hub_keys`. Key material is never logged and never part of an
error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.policy.errors import KeyMaterialError
from services.policy.hub_keys import HubKeys, parse_hub_keys
from services.policy.subject import KEY_VERSION, MIN_KEY_BYTES, SubjectKeys
from services.runtime.environment import allow_development_key
from services.runtime.settings import HubSettings

DEV_KEY_PATH: Final = Path("keys") / "hub.key"
HUB_KEY_SETTINGS: Final = "PUENTE_HUB_KEYS, PUENTE_HUB_KEY or PUENTE_HUB_KEY_FILE"
PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700
_SHARED: Final = stat.S_IRWXG | stat.S_IRWXO
log = logging.getLogger(__name__)


class HubKeySettings(BaseSettings):
    """Where the hub keys come from (set exactly one, or none in development).

    ``PUENTE_HUB_KEYS``: every version, ``k1:<hex>,k2:<hex>`` (commas or newlines).
    ``PUENTE_HUB_KEY``: one key, hex or base64 of at least 32 bytes (version 1), or
    the versioned form. ``PUENTE_HUB_KEY_FILE``: a file holding either form, one
    ``kN:<hex>`` per line. The newest version computes new subject keys; older
    ones are kept for data-subject requests. With none set and ``PUENTE_ENV`` not
    ``production``, a development key file is generated on first run under
    ``<PUENTE_STATE_DIR>/keys/hub.key``.
    """

    model_config = SettingsConfigDict(env_prefix="PUENTE_", extra="ignore")

    hub_keys: SecretStr | None = None
    hub_key: SecretStr | None = None
    hub_key_file: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)


@dataclass(frozen=True, slots=True)
class Rotation:
    """A new hub key version: written to ``written``, or to be added by hand.

    ``line`` is secret (``kN:<hex>``); show it only when ``written`` is None.
    """

    version: int
    line: str
    written: Path | None

    def __repr__(self) -> str:
        return f"Rotation(version={self.version}, written={self.written})"


def load_hub_keys(settings: HubKeySettings) -> HubKeys:
    """Every version of the hub key from the settings, or the development key file.

    In production (``PUENTE_ENV=production``) the development key file is never
    read nor made: without an explicit key this raises `ExplicitKeyRequiredError`.
    """
    explicit = _explicit(settings)
    if explicit is not None:
        return explicit
    allow_development_key("hub key", HUB_KEY_SETTINGS, settings.hub.env)
    return development_keys(settings.hub.state_dir)


def load_hub_key(settings: HubKeySettings) -> bytes:
    """The newest hub key (see `load_hub_keys`)."""
    keys = load_hub_keys(settings)
    return keys.versions[keys.newest]


def subject_keys(settings: HubKeySettings | None = None) -> SubjectKeys:
    """`SubjectKeys` with the newest configured hub key."""
    return load_hub_keys(settings or HubKeySettings()).current()


def development_keys(state_dir: Path) -> HubKeys:
    """The development key file under ``state_dir``, generated (0600) if absent."""
    path = state_dir / DEV_KEY_PATH
    if not path.exists():
        _generate(path)
    return HubKeys(parse_hub_keys(_read(path), str(path)), str(path), development=True)


def rotate(settings: HubKeySettings) -> Rotation:
    """Add the next hub key version; never remove one.

    Without explicit keys (development) the new version is appended to the
    development key file. Explicit keys come from the operator's secrets, which
    the hub does not write: the returned line is for the operator to add.
    """
    line_key = secrets.token_hex(MIN_KEY_BYTES)
    explicit = _explicit(settings)
    if explicit is not None:
        version = explicit.newest + 1
        return Rotation(version, f"k{version}:{line_key}", None)
    allow_development_key("hub key", HUB_KEY_SETTINGS, settings.hub.env)
    path = settings.hub.state_dir / DEV_KEY_PATH
    if not path.exists():
        _generate(path)
    with _locked(path) as fd:
        text = _read_fd(fd, path)
        version = max(parse_hub_keys(text, str(path))) + 1
        line = f"k{version}:{line_key}"
        _append(fd, path, ("" if text.endswith("\n") else "\n") + line + "\n")
    return Rotation(version, line, path)


def private_dirs(path: Path) -> None:
    """Create ``path`` and every missing parent with mode 0700.

    ``Path.mkdir(parents=True)`` gives the parents it makes the default mode (0755
    under the usual umask); a state directory holding keys must not be listable
    by other users.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process was faster
            directory.mkdir(mode=PRIVATE_DIR)


def _explicit(settings: HubKeySettings) -> HubKeys | None:
    given = [
        (name, value)
        for name, value in (
            ("PUENTE_HUB_KEYS", settings.hub_keys),
            ("PUENTE_HUB_KEY", settings.hub_key),
            ("PUENTE_HUB_KEY_FILE", settings.hub_key_file),
        )
        if value is not None
    ]
    if len(given) > 1:
        names = ", ".join(name for name, _ in given)
        raise KeyMaterialError(f"{names} are all set: set exactly one of them")
    if not given:
        return None
    name, value = given[0]
    if isinstance(value, Path):
        return HubKeys(parse_hub_keys(_read(value), str(value)), str(value))
    return HubKeys(parse_hub_keys(value.get_secret_value(), name), name)


def _generate(path: Path) -> None:
    try:
        private_dirs(path.parent)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"k{KEY_VERSION}:{secrets.token_hex(MIN_KEY_BYTES)}\n")
        try:
            # link() never replaces: when services start together, the first key wins
            # and every process reads that same one.
            os.link(temporary, path)
            log.warning("generated a development hub key file at %s", path)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
    except OSError as e:
        raise KeyMaterialError(
            f"cannot create the development hub key {path}: {e.strerror}"
        ) from e


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    # Two rotations at once must not both append the same next version.
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except OSError as e:
        raise KeyMaterialError(f"cannot open the hub key file {path}: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _read_fd(fd: int, path: Path) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyMaterialError(f"cannot read the hub key file {path}: {e}") from e


def _append(fd: int, path: Path, text: str) -> None:
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
        os.fchmod(fd, PRIVATE_FILE)  # a file loosened by hand is private again
    except OSError as e:
        raise KeyMaterialError(f"cannot write the hub key file {path}: {e}") from e


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii")
        mode = stat.S_IMODE(path.stat().st_mode)
    except (OSError, UnicodeDecodeError) as e:
        raise KeyMaterialError(f"cannot read the hub key file {path}: {e}") from e
    if mode & _SHARED:
        # A warning, not a refusal: some secret stores mount files 0644 in a
        # container only the service runs in.
        log.warning(
            "the hub key file %s is readable by other users (mode %04o); "
            "make it 0600 or 0400",
            path,
            mode,
        )
    return text
