"""Topic names: the topic of an inbound record is the publisher's identity.

Names only (build and parse); `runtime.topic_admin` creates the topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from services.contracts.errors import InvalidTopicError
from services.contracts.ids import check_event_type, check_institution_id

AUDIT: Final = "hub.audit"
AUDIT_CHECKPOINTS: Final = "hub.audit.checkpoints"
IN_PATTERN: Final = r"hub\.in\.[a-z][a-z0-9_]*\.[a-z_]+"

TopicKind = Literal["in", "out", "rejected", "audit", "audit_checkpoints"]
_SPLIT: Final = re.compile(r"hub\.(in|out)\.([a-z][a-z0-9_]*)\.([a-z_]+)")
_REJECTED: Final = re.compile(r"hub\.rejected\.([a-z][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class TopicRef:
    """A parsed hub topic name."""

    kind: TopicKind
    institution: str | None = None
    event_type: str | None = None


def inbound(source: str, event_type: str) -> str:
    """``hub.in.<source>.<event_type>``: written by that source only."""
    return f"hub.in.{check_institution_id(source)}.{check_event_type(event_type)}"


def outbound(recipient: str, event_type: str) -> str:
    """``hub.out.<recipient>.<event_type>``: read by that recipient only."""
    return f"hub.out.{check_institution_id(recipient)}.{check_event_type(event_type)}"


def rejected(source: str) -> str:
    """``hub.rejected.<source>``: rejections sent back to the publisher."""
    return f"hub.rejected.{check_institution_id(source)}"


def parse(topic: str) -> TopicRef:
    """Split a hub topic name into its kind, institution and event type."""
    if topic == AUDIT:
        return TopicRef("audit")
    if topic == AUDIT_CHECKPOINTS:
        return TopicRef("audit_checkpoints")
    if match := _SPLIT.fullmatch(topic):
        kind: Literal["in", "out"] = "in" if match[1] == "in" else "out"
        return TopicRef(kind, match[2], check_event_type(match[3]))
    if match := _REJECTED.fullmatch(topic):
        return TopicRef("rejected", match[1])
    raise InvalidTopicError(f"{topic[:200]!r} is not a hub topic name")
