"""The hub keys: every configured version, from settings, a file, or the dev key file.

A key ring holds one or more versions of the hub key (``k1``, ``k2``, ...). The
newest version computes new subject keys (``kN:``) and re-keyed ones (``rN:``);
older versions are kept so that a data-subject request can still find a person in
ledger entries made before a rotation. Written forms, one entry per line or
separated by commas::

    k1:<hex or base64>
    k2:<hex or base64>

A lone entry without a version (the form of earlier releases) is version 1.

This is the one module of the policy package that writes files (the development
key file, mode 0600 in a 0700 directory); everything else is pure. Key material is
never logged and never part of an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.keys.environment import allow_development_key
from services.policy.errors import KeyMaterialError
from services.policy.settings import PolicySettings
from services.policy.subject import KEY_VERSION, MIN_KEY_BYTES, SubjectKeys

DEV_KEY_PATH: Final = Path("keys") / "hub.key"
HUB_KEY_SETTINGS: Final = "PUENTE_HUB_KEYS, PUENTE_HUB_KEY or PUENTE_HUB_KEY_FILE"
PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700
_SHARED: Final = stat.S_IRWXG | stat.S_IRWXO
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_VERSIONED: Final = re.compile(r"k([1-9][0-9]{0,5}):(.*)")
_SEPARATORS: Final = re.compile(r"[,\n]")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HubKeys:
    """Every configured version of the hub key, and where they came from.

    ``origin`` names the source (a setting or a file path), never the key.
    """

    versions: Mapping[int, bytes]
    origin: str
    development: bool = False

    def __repr__(self) -> str:
        return f"HubKeys(versions={sorted(self.versions)}, origin={self.origin!r})"

    @property
    def newest(self) -> int:
        """The version that computes new subject keys."""
        return max(self.versions)

    def current(self) -> SubjectKeys:
        """`SubjectKeys` of the newest version (what the router uses)."""
        return SubjectKeys(self.versions[self.newest], self.newest)

    def every_version(self) -> list[SubjectKeys]:
        """`SubjectKeys` of every version, newest first."""
        return [SubjectKeys(self.versions[v], v) for v in sorted(self.versions)[::-1]]


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


def load_hub_keys(settings: PolicySettings) -> HubKeys:
    """Every version of the hub key from the settings, or the development key file.

    In production (``PUENTE_ENV=production``) the development key file is never
    read nor made: without an explicit key this raises `ExplicitKeyRequiredError`.
    """
    explicit = _explicit(settings)
    if explicit is not None:
        return explicit
    allow_development_key("hub key", HUB_KEY_SETTINGS, settings.hub.env)
    return development_keys(settings.hub.state_dir)


def load_hub_key(settings: PolicySettings) -> bytes:
    """The newest hub key (see `load_hub_keys`)."""
    keys = load_hub_keys(settings)
    return keys.versions[keys.newest]


def subject_keys(settings: PolicySettings | None = None) -> SubjectKeys:
    """`SubjectKeys` with the newest configured hub key."""
    return load_hub_keys(settings or PolicySettings()).current()


def fingerprint(key: bytes) -> str:
    """A short public name of a key: tells versions apart without revealing them."""
    return hashlib.sha256(b"puente hub key fingerprint:" + key).hexdigest()[:16]


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


def parse_hub_keys(text: str, origin: str) -> dict[int, bytes]:
    """Every version written in ``text`` (``kN:<key>`` entries, or one bare key).

    Entries are separated by commas or newlines; blank lines and lines starting
    with ``#`` are ignored. Errors name the entry by position, never its text.
    """
    versions: dict[int, bytes] = {}
    for number, entry in enumerate(_entries(text), start=1):
        where = f"{origin}, entry {number}"
        matched = _VERSIONED.fullmatch(entry)
        if matched is None and ":" in entry:
            raise KeyMaterialError(
                f"{where}: write a versioned key as k<version>:<hex>, e.g. k2:..."
            )
        version = int(matched.group(1)) if matched else KEY_VERSION
        if version in versions:
            raise KeyMaterialError(f"{where}: version k{version} is given twice")
        versions[version] = parse_key(matched.group(2) if matched else entry, where)
    if not versions:
        raise KeyMaterialError(f"{origin}: no hub key in it")
    return versions


def development_keys(state_dir: Path) -> HubKeys:
    """The development key file under ``state_dir``, generated (0600) if absent."""
    path = state_dir / DEV_KEY_PATH
    if not path.exists():
        _generate(path)
    return HubKeys(parse_hub_keys(_read(path), str(path)), str(path), development=True)


def rotate(settings: PolicySettings) -> Rotation:
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


def _explicit(settings: PolicySettings) -> HubKeys | None:
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


def _entries(text: str) -> Iterator[str]:
    for raw in _SEPARATORS.split(text):
        entry = raw.strip()
        if entry and not entry.startswith("#"):
            yield entry


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
