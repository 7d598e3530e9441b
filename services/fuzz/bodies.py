"""Mutated JSON request bodies for the gateway, deterministic per seed (pure, no I/O).

Starting from the valid examples (``examples/*.json``, each with a fresh event id),
a body loses fields, gets fields of the wrong type, enlarged strings and arrays,
odd unicode, deep nesting, or stops being JSON at all; some are batches of such
events. Each request is labelled with how it was made.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

_UNICODE: Final = (
    "\u0000", "\u200b", "\ufeff", "\U0001f600", "é", "\u202e", "\ud7ff", "\uffff",
    "\U0001d518\U0001d52b\U0001d526", "ñ" * 50,
)  # fmt: skip
_JUNK: Final[tuple[Any, ...]] = (
    None,
    True,
    0,
    -1,
    2**63,
    1e308,
    "",
    [],
    {},
    [[]],
    {"a": {"b": None}},
)


@dataclass(frozen=True, slots=True)
class BodyRequest:
    """One HTTP request to make: method, path, body bytes, content type, label."""

    method: str
    path: str
    body: bytes | None
    content_type: str | None
    kind: str


@dataclass
class BodyMutator:
    """Draws mutated requests from the valid examples."""

    rng: random.Random
    examples: Mapping[str, Any]  # event type -> a valid natural-JSON event
    max_body_bytes: int

    def draw(self) -> BodyRequest:
        """One request; about one in ten is a batch."""
        kind, how = self.rng.choices(_KINDS, [w for _, _, w in _WEIGHTED])[0]
        event_type = self.rng.choice(sorted(self.examples))
        event = self._fresh(event_type)
        if self.rng.random() < 0.1:
            events = [how(self, self._fresh(self.rng.choice(sorted(self.examples))))
                      for _ in range(self.rng.randint(0, 8))]  # fmt: skip
            return self._post("/v1/events:batch", {"events": events}, f"batch_{kind}")
        path_type = self._path_type(event_type)
        path = f"/v1/events/{path_type}"
        if path_type != event_type:
            kind = f"wrong_path_{kind}"
        if kind.endswith("not_json"):
            return BodyRequest(
                "POST", path, self._not_json(event), "application/json", kind
            )
        if kind.endswith("wrong_content_type"):
            body = json.dumps(event).encode()
            return BodyRequest("POST", path, body, "text/plain", kind)
        return self._post(path, how(self, event), kind)

    def _post(self, path: str, body: Any, kind: str) -> BodyRequest:
        try:
            data = json.dumps(body, ensure_ascii=self.rng.random() < 0.5).encode(
                "utf-8", "surrogatepass"
            )
        except (ValueError, RecursionError):
            data = b"[" * 100_000
        return BodyRequest("POST", path, data, "application/json", kind)

    def _fresh(self, event_type: str) -> Any:
        event = copy.deepcopy(self.examples[event_type])
        event["envelope"]["event_id"] = str(
            uuid.UUID(int=self.rng.getrandbits(128), version=4)
        )
        return event

    def _path_type(self, event_type: str) -> str:
        """Mostly the event's own type; sometimes another, unknown or odd one."""
        if self.rng.random() < 0.9:
            return event_type
        return self.rng.choice(
            (*sorted(self.examples), "unknown", "%00", "..", "a" * 300, "ñ")
        )

    def _not_json(self, event: Any) -> bytes:
        text = json.dumps(event).encode()
        return self.rng.choice(
            (text[: self.rng.randrange(len(text))], b"\xff\xfe" + text, b"", b"null",
             b"[]", b'"x"', text + b",", text.replace(b'"', b"'", 3))
        )  # fmt: skip

    # The mutations of one natural-JSON event.

    def keep(self, event: Any) -> Any:
        """The event as it is (a valid one: 202, or 200 when repeated)."""
        return event

    def remove(self, event: Any) -> Any:
        """One to three fields removed anywhere."""
        for _ in range(self.rng.randint(1, 3)):
            parent, key = self._somewhere(event)
            if parent is not None:
                del parent[key]
        return event

    def retype(self, event: Any) -> Any:
        """One to three values replaced by a value of another JSON type."""
        for _ in range(self.rng.randint(1, 3)):
            parent, key = self._somewhere(event)
            if parent is not None:
                parent[key] = copy.deepcopy(self.rng.choice(_JUNK))
        return event

    def enlarge(self, event: Any) -> Any:
        """A string or array made huge (up to past the body limit)."""
        parent, key = self._somewhere(event)
        if parent is None:
            return event
        # Past the per-event limit often; past the body limit rarely (4 MiB each).
        size = self.rng.choice(
            (1_000, 1_000, 100_000, 600_000) * 5 + (self.max_body_bytes + 1,)
        )
        if self.rng.random() < 0.5:
            parent[key] = "x" * size
        else:
            parent[key] = [parent[key]] * max(1, size // 64)
        return event

    def unicode(self, event: Any) -> Any:
        """Strings replaced by odd unicode (NUL, bidi marks, lone surrogates, emoji)."""
        for _ in range(self.rng.randint(1, 4)):
            parent, key = self._somewhere(event, strings_only=True)
            if parent is not None:
                text = "".join(self.rng.choice(_UNICODE) for _ in range(4))
                if self.rng.random() < 0.2:
                    text += "\ud800"  # a lone surrogate, sent as is
                parent[key] = text
        return event

    def nest(self, event: Any) -> Any:
        """A field holding deeply nested junk, or extra unknown fields."""
        parent, key = self._somewhere(event)
        if parent is None:
            return event
        depth = self.rng.choice((10, 200, 5_000))
        junk: Any = None
        for _ in range(depth):
            junk = [junk] if self.rng.random() < 0.5 else {"k": junk}
        if self.rng.random() < 0.5 or not isinstance(parent, dict):
            parent[key] = junk
        else:
            parent[f"extra_{self.rng.randint(0, 99)}"] = junk
        return event

    def _somewhere(
        self, value: Any, *, strings_only: bool = False
    ) -> tuple[Any | None, Any]:
        """A random (container, key) inside ``value``; (None, None) if there is none."""
        spots: list[tuple[Any, Any]] = []
        _spots(value, spots)
        if strings_only:
            spots = [(p, k) for p, k in spots if isinstance(p[k], str)]
        if not spots:
            return None, None
        return self.rng.choice(spots)


def _spots(value: Any, out: list[tuple[Any, Any]]) -> None:
    if isinstance(value, dict):
        for key in list(value):
            out.append((value, key))
            _spots(value[key], out)
    elif isinstance(value, list):
        for index in range(len(value)):
            out.append((value, index))
            _spots(value[index], out)


_Mutation = Callable[[BodyMutator, Any], Any]
_WEIGHTED: Final[Sequence[tuple[str, _Mutation, int]]] = (
    ("valid", BodyMutator.keep, 15),
    ("removed", BodyMutator.remove, 15),
    ("retyped", BodyMutator.retype, 15),
    ("enlarged", BodyMutator.enlarge, 4),
    ("unicode", BodyMutator.unicode, 15),
    ("nested", BodyMutator.nest, 8),
    ("not_json", BodyMutator.keep, 6),
    ("wrong_content_type", BodyMutator.keep, 4),
)
_KINDS: Final = [(name, how) for name, how, _ in _WEIGHTED]
