"""The witness file: signed ledger heads appended outside the ledger, as JSON lines.

The ledger can be cut back by whoever can write its file: entries, checkpoints
and all. A witness is a second, append-only record of what the ledger held, kept
where that person cannot write (another volume, another host's mount, a file with
the append-only attribute): after every batch and every checkpoint the audit
service appends the signed head, and `verify` compares the ledger with the newest
head it finds there. Each line is one JSON object::

    {"kind": "head" | "checkpoint" | "rotation", "ledger_id": "<uuid>", "seq": N,
     "head": "<hex>", "time": "<RFC 3339>", "key_id": "<hex>",
     "public_key": "<base64 raw>", "signature": "<base64>"}

(a ``rotation`` line has ``next_key_id`` and ``next_public_key`` instead of
``head``). The file is created mode 0600 and written with ``O_APPEND`` and fsync.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from services.audit.checkpoints import Checkpoint
from services.audit.rotation import Rotation
from services.contracts.errors import PuenteError

Kind = Literal["head", "checkpoint"]
_FILE_MODE: Final = 0o600


class WitnessError(PuenteError):
    """The witness file cannot be written or read."""


@dataclass(frozen=True, slots=True)
class WitnessContents:
    """What a witness file holds: signed heads, key rotations, unreadable lines."""

    heads: list[tuple[Checkpoint, Kind]] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # line numbers


def head_line(checkpoint: Checkpoint, kind: Kind) -> str:
    """The JSON line of a signed head."""
    return json.dumps(
        {
            "kind": kind,
            "ledger_id": checkpoint.ledger_id,
            "seq": checkpoint.seq,
            "head": checkpoint.head.hex(),
            "time": checkpoint.time,
            "key_id": checkpoint.key_id,
            "public_key": _b64(checkpoint.public_key),
            "signature": _b64(checkpoint.signature),
        },
        sort_keys=True,
    )


def rotation_line(rotation: Rotation) -> str:
    """The JSON line of a key rotation."""
    return json.dumps(
        {
            "kind": "rotation",
            "ledger_id": rotation.ledger_id,
            "seq": rotation.seq,
            "time": rotation.time,
            "key_id": rotation.key_id,
            "public_key": _b64(rotation.public_key),
            "next_key_id": rotation.next_key_id,
            "next_public_key": _b64(rotation.next_public_key),
            "signature": _b64(rotation.signature),
        },
        sort_keys=True,
    )


def append(path: Path, line: str) -> None:
    """Append one line to the witness at ``path`` (created 0600), durably."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
    except OSError as e:
        raise WitnessError(f"cannot open witness file {path}: {e.strerror}") from e
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    except OSError as e:
        raise WitnessError(f"cannot write witness file {path}: {e.strerror}") from e
    finally:
        os.close(fd)


def read(path: Path) -> WitnessContents:
    """Every signed head and rotation in the witness file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise WitnessError(f"no witness file at {path}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise WitnessError(f"cannot read witness file {path}: {e}") from e
    contents = WitnessContents()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            _parse(json.loads(line), contents)
        except (ValueError, KeyError, TypeError, binascii.Error):
            contents.unreadable.append(number)
    return contents


def _parse(item: Any, contents: WitnessContents) -> None:
    common = (str(item["ledger_id"]), int(item["seq"]))
    if item["kind"] == "rotation":
        contents.rotations.append(
            Rotation(
                *common,
                str(item["time"]),
                str(item["key_id"]),
                _unb64(item["public_key"]),
                str(item["next_key_id"]),
                _unb64(item["next_public_key"]),
                _unb64(item["signature"]),
            )
        )
        return
    kind: Kind = "checkpoint" if item["kind"] == "checkpoint" else "head"
    checkpoint = Checkpoint(
        *common,
        bytes.fromhex(item["head"]),
        str(item["time"]),
        str(item["key_id"]),
        _unb64(item["public_key"]),
        _unb64(item["signature"]),
    )
    contents.heads.append((checkpoint, kind))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    return base64.b64decode(str(text), validate=True)
