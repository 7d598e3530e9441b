"""The router campaign's inputs: simulated, generated, mutated and repeated records.

One stream, deterministic per seed, mixing four sources:

- ``sim``: what the simulated ministries publish (2 % of it labelled bad);
- ``datum``: random datums of each event schema (`datums.DatumGenerator`), most of
  them on the topic their envelope names, so they reach the policy;
- mutations of valid encodings (`mutate.Mutator`), labelled by kind;
- ``duplicate``: an earlier valid record again, byte for byte.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Final

from services.contracts import codec, topics
from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError
from services.contracts.headers import CloudEvent, build
from services.contracts.ids import EVENT_TYPES
from services.fuzz.datums import DatumGenerator
from services.fuzz.mutate import Mutator, RawInput
from services.sim.traffic import SimEvent, Traffic

# Shares of the stream (out of 100).
MIX: Final = (
    ("sim", 35), ("datum", 25), ("mutation", 34), ("duplicate", 4), ("respelled_id", 2)
)  # fmt: skip
# Topics outside anyone's publish rights that mutations move records to: a source
# without the right, an unknown event type, a source that is no member.
EXTRA_TOPICS: Final = (
    "hub.in.minsal.return_arrival",
    "hub.in.dgme.unknown_type",
    "hub.in.nobody.border_crossing",
)


class InputStream(Iterator[RawInput]):
    """Endless campaign inputs for ``hub.in.*``; the same seed gives the same stream."""

    def __init__(
        self,
        catalog: Catalog,
        publish_rights: Mapping[str, frozenset[str]],
        institutions: Sequence[str],
        *,
        seed: int,
        now_fn: Callable[[], datetime],
        max_event_bytes: int,
        without: frozenset[str] = frozenset(),
    ) -> None:
        # Reproducible campaigns, not secrets: a seeded PRNG is the point.
        self.rng = random.Random(f"puente-fuzz:{seed}")  # noqa: S311
        self.catalog = catalog
        self.traffic = Traffic(seed, now_fn)
        self.recent: deque[RawInput] = deque(maxlen=256)
        publishers = {
            t: sorted(i for i, types in publish_rights.items() if t in types)
            for t in EVENT_TYPES
        }
        self.generators = {
            t: DatumGenerator(
                catalog.get(t).schema,
                self.rng,
                pins=_pins(t, publishers[t], institutions),
            )
            for t in EVENT_TYPES
        }
        self.publishers = publishers
        self.inbound_topics = sorted(
            {topics.inbound(i, t) for t in EVENT_TYPES for i in publishers[t]}
            | set(EXTRA_TOPICS)
        )
        heads = [e.header for n in catalog.names for e in catalog.versions(n)]
        self.mutator = Mutator(
            self.rng, self.inbound_topics, heads, max_event_bytes, without
        )
        self.unencodable = 0
        self._kinds = [k for k, _ in MIX]
        self._weights = [w for _, w in MIX]

    def __iter__(self) -> InputStream:
        return self

    def __next__(self) -> RawInput:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind == "sim" or not self.recent:
            record = self._sim()
        elif kind == "datum":
            record = self._datum()
        elif kind == "respelled_id":
            record = self._respelled(self.rng.choice(self.recent))
        elif kind == "mutation":
            record = self.mutator.mutate(
                self.rng.choice(self.recent), self.rng.choice(self.recent)
            )
        else:
            record = self.rng.choice(self.recent)
            record = RawInput(
                record.topic, record.key, record.value, record.headers, "duplicate"
            )
        return record

    def take(self, count: int) -> list[RawInput]:
        """The next ``count`` inputs."""
        return [next(self) for _ in range(count)]

    def _sim(self) -> RawInput:
        event: SimEvent = next(self.traffic)
        label = "sim" if event.expected_reason is None else "sim_bad"
        record = RawInput(
            event.topic,
            (event.event_id or "").encode() or None,
            event.value(self.catalog),
            event.headers(),
            label,
        )
        if label == "sim":
            self.recent.append(record)
        return record

    def _respelled(self, record: RawInput) -> RawInput:
        """An earlier event again, its event id in another spelling of the same UUID."""
        entry, datum = codec.decode(self.catalog, record.value or b"", plain=True)
        event_id = str(datum["envelope"]["event_id"])
        datum["envelope"]["event_id"] = self.rng.choice(
            (event_id.upper(), event_id.replace("-", ""), f"{{{event_id}}}",
             f"urn:uuid:{event_id}")
        )  # fmt: skip
        value = codec.encode(entry, datum, plain=True)
        return RawInput(record.topic, record.key, value, record.headers, "respelled_id")

    def _datum(self) -> RawInput:
        event_type = self.rng.choice(EVENT_TYPES)
        entry = self.catalog.get(event_type)
        while True:
            datum = self.generators[event_type].draw()
            try:
                value = codec.encode(entry, datum, plain=True)
            except ContractError:
                self.unencodable += 1  # a value Avro cannot carry (NaN in a key, …)
                continue
            break
        envelope = datum["envelope"]
        source = envelope["source_institution_id"]
        if self.rng.random() < 0.8 and self.publishers[event_type]:
            topic = topics.inbound(source, event_type)
        else:
            topic = self.rng.choice(self.inbound_topics)
        headers = build(CloudEvent(str(envelope["event_id"]), source, event_type))
        key = str(envelope["event_id"]).encode()
        return RawInput(topic, key, value, headers, "datum")


def _pins(
    event_type: str, publishers: Sequence[str], institutions: Sequence[str]
) -> dict[str, Sequence[str]]:
    """Values that let a generated datum past the source checks to the policy."""
    pins: dict[str, Sequence[str]] = {
        "envelope.source_institution_id": list(publishers) or list(institutions),
        "envelope.event_type": [event_type],
    }
    if event_type == "referral":
        pins["payload.referring_institution_id"] = list(institutions)
        pins["payload.receiving_institution_id"] = list(institutions)
    return pins
