"""A stream of simulated ministry traffic, deterministic per seed (pure, no I/O).

`Traffic` interleaves what the ministries publish over a working day: a steady flow
of border crossings, charter flights and buses of returnees arriving in bursts,
displacement registrations (disasters in waves, one hazard at a time), referral
lifecycles whose later transitions come in later, and referrals that follow from a
reception or a registration. A configurable share of inputs is bad, each labelled
with the reason the router must reject it for.

Bad inputs are drawn from a random stream of their own, so changing ``bad_share``
leaves the good traffic exactly as it was.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from services.contracts import headers as ce
from services.contracts import topics
from services.contracts.catalog import Catalog
from services.contracts.codec import encode
from services.contracts.natural import codec_for
from services.sim import generate as gen
from services.sim import people as pp
from services.sim.people import Event, SimulationError
from services.sim.reference import Weighted

# What the simulated ministries publish; the access policy must grant exactly this
# for the good traffic to be accepted (receiving institutions answer referrals).
_ANSWER_REFERRALS: Final = (
    "minsal", "conapina", "mtps", "pgr", "isdemu", "rnpn", "mineducyt", "rree_vmdmh",
)  # fmt: skip
PUBLISH_RIGHTS: Final[Mapping[str, frozenset[str]]] = {
    "dgme": frozenset({"return_arrival", "border_crossing", "referral"}),
    "mjsp_dnavmf": frozenset({"displacement_registration", "referral"}),
    "migobdt_dgpc": frozenset({"displacement_registration", "referral"}),
    **{inst: frozenset({"referral"}) for inst in _ANSWER_REFERRALS},
}
# Institutions publishing event types no policy should let them publish.
UNAUTHORISED: Final = (
    ("minsal", "border_crossing"),
    ("mtps", "return_arrival"),
    ("conapina", "displacement_registration"),
    ("rnpn", "border_crossing"),
)
BAD_KINDS: Final = (
    "undecodable",
    "source_mismatch",
    "not_allowed_to_publish",
    "invalid",
    "conflicting_duplicate",
    "referral_party_mismatch",
    "referral_transition_invalid",
)
BAD_MIX: Final = Weighted(
    (("undecodable", 25), ("source_mismatch", 20), ("not_allowed_to_publish", 20),
     ("invalid", 20), ("conflicting_duplicate", 15), ("referral_party_mismatch", 10),
     ("referral_transition_invalid", 10))
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One input for ``hub.in.<source>.<event_type>``: an event, or raw bytes.

    ``expected_reason`` is None for good traffic, else the rejection reason code
    the router must file the input under.
    """

    source: str
    event_type: str
    body: Event | None = None
    raw: bytes | None = None
    expected_reason: str | None = None
    raw_id: str | None = field(default=None, compare=False)

    @property
    def topic(self) -> str:
        """The inbound topic it is published on (the publisher's identity)."""
        return topics.inbound(self.source, self.event_type)

    @property
    def is_bad(self) -> bool:
        """Whether the router must reject it."""
        return self.expected_reason is not None

    @property
    def event_id(self) -> str | None:
        """``envelope.event_id`` of the event, None for raw bytes."""
        return None if self.body is None else str(self.body["envelope"]["event_id"])

    def value(self, catalog: Catalog) -> bytes:
        """The Kafka record value: the event in single-object Avro, or the raw bytes."""
        if self.body is None:
            return self.raw or b""
        entry = catalog.get(self.event_type)
        return encode(entry, codec_for(entry).to_datum(self.body))

    def headers(self) -> ce.KafkaHeaders:
        """CloudEvents headers a ministry's client would set for it."""
        if self.body is None:
            return ce.build(
                ce.CloudEvent(self.raw_id or "", self.source, self.event_type)
            )
        env = self.body["envelope"]
        event = ce.CloudEvent(
            id=env["event_id"],
            source=env["source_institution_id"],
            type=env["event_type"],
            time=env["occurred_at"],
        )
        return ce.build(event)


def _good(event: Event) -> SimEvent:
    env = event["envelope"]
    return SimEvent(env["source_institution_id"], env["event_type"], event)


@dataclass(frozen=True, slots=True)
class Mix:
    """Relative weights of what starts when no later step is due.

    A flight or a bus becomes a burst: while it lasts, ``burst_share`` of the
    steps are its passengers and the rest background traffic.
    """

    border_crossing: float = 52.0
    referral: float = 8.0
    displacement_violence: float = 2.5
    disaster_wave: float = 0.25
    land_return: float = 0.9
    return_flight: float = 0.5
    burst_share: float = 0.7

    def idle(self) -> Weighted[str]:
        """What can start when no burst is under way."""
        return Weighted(
            (
                ("border_crossing", self.border_crossing),
                ("referral", self.referral),
                ("displacement_violence", self.displacement_violence),
                ("disaster_wave", self.disaster_wave),
                ("land_return", self.land_return),
                ("return_flight", self.return_flight),
            )
        )

    def busy(self) -> Weighted[str]:
        """What can start between a burst's passengers (no second burst)."""
        return Weighted(
            (
                ("border_crossing", self.border_crossing),
                ("referral", self.referral),
                ("displacement_violence", self.displacement_violence),
                ("disaster_wave", self.disaster_wave),
            )
        )


class Traffic(Iterator[SimEvent]):
    """Endless simulated traffic: ``next(traffic)`` is the next input to publish.

    ``now_fn`` is read whenever an episode starts, so every timestamp is at most
    the clock's value when its event is handed out. The same ``seed`` and the same
    sequence of clock readings give the same inputs.
    """

    def __init__(
        self,
        seed: int,
        now_fn: Callable[[], datetime],
        *,
        bad_share: float = 0.02,
        mix: Mix | None = None,
    ) -> None:
        if not 0.0 <= bad_share <= 1.0:
            raise SimulationError(f"bad_share must be between 0 and 1, not {bad_share}")
        # Reproducible simulation, not secrets: a seeded PRNG is the point.
        self._rng = random.Random(seed)  # noqa: S311
        # A string seed is hashed with SHA-512: stable across processes and runs.
        self._bad_rng = random.Random(f"puente-sim-bad:{seed}")  # noqa: S311
        self._clock = now_fn
        self._bad_share = bad_share
        mix = mix or Mix()
        self._burst_share = mix.burst_share
        self._idle = mix.idle()
        self._busy = mix.busy()
        self._step = 0
        self._ticket = itertools.count()
        self._burst: deque[Event] = deque()
        self._later: list[tuple[int, int, Event]] = []
        self._recent: deque[SimEvent] = deque(maxlen=64)

    def __iter__(self) -> Traffic:
        return self

    def __next__(self) -> SimEvent:
        if self._bad_share and self._bad_rng.random() < self._bad_share:
            return self._bad()
        # Only good inputs advance the schedule: bad ones never shift the good stream.
        self._step += 1
        event = self._next_good()
        if event["envelope"]["event_type"] in (
            "return_arrival",
            "displacement_registration",
        ):
            for lifecycle in gen.follow_ups(self._rng, self._now(), event):
                self._schedule(lifecycle, first_gap=(2, 30))
        sim = _good(event)
        self._recent.append(sim)
        return sim

    def take(self, count: int) -> list[SimEvent]:
        """The next ``count`` inputs."""
        return [next(self) for _ in range(count)]

    def _now(self) -> datetime:
        return pp.check_now(self._clock())

    def _next_good(self) -> Event:
        if self._later and self._later[0][0] <= self._step:
            return heapq.heappop(self._later)[2]
        if self._burst and self._rng.random() < self._burst_share:
            return self._burst.popleft()
        kind = (self._busy if self._burst else self._idle).pick(self._rng)
        return self._start(kind)

    def _start(self, kind: str) -> Event:
        rng, now = self._rng, self._now()
        if kind == "border_crossing":
            return gen.border_crossing(rng, now)
        if kind == "displacement_violence":
            return gen.displacement(rng, now, "VIOLENCE_DL539")
        if kind == "referral":
            events = gen.referral_lifecycle(rng, now)
            self._schedule(events[1:], first_gap=(5, 60))
            return events[0]
        if kind == "disaster_wave":
            hazard = gen.new_hazard(rng, now)
            wave = [
                gen.displacement(rng, now, "DISASTER_CIVIL_PROTECTION", hazard=hazard)
                for _ in range(rng.randint(4, 20))
            ]
            self._schedule(wave[1:], first_gap=(1, 10), gap=(1, 10))
            return wave[0]
        group = gen.return_flight(rng, now) if kind == "return_flight" else []
        group = group or gen.land_return(rng, now)
        self._burst.extend(group[1:])
        return group[0]

    def _schedule(
        self,
        events: list[Event],
        *,
        first_gap: tuple[int, int],
        gap: tuple[int, int] = (5, 80),
    ) -> None:
        """Hand ``events`` out later, in order, a few steps apart."""
        due = self._step + self._rng.randint(*first_gap)
        for event in events:
            heapq.heappush(self._later, (due, next(self._ticket), event))
            due += self._rng.randint(*gap)

    def _bad(self) -> SimEvent:
        kind = BAD_MIX.pick(self._bad_rng)
        if kind == "conflicting_duplicate" and not self._recent:
            kind = "invalid"
        return _BAD_BUILDERS[kind](self._bad_rng, self._now(), self._recent)


def _fresh(rng: random.Random, now: datetime) -> Event:
    roll = rng.random()
    if roll < 0.5:
        return gen.border_crossing(rng, now)
    if roll < 0.75:
        return gen.referral_lifecycle(rng, now)[0]
    if roll < 0.9:
        return gen.land_return(rng, now)[0]
    return gen.displacement(rng, now, "VIOLENCE_DL539")


def _undecodable(rng: random.Random, now: datetime, _recent: deque[SimEvent]) -> SimEvent:
    event = _fresh(rng, now)
    env = event["envelope"]
    roll = rng.random()
    if roll < 0.4:
        # A client that sent its JSON instead of Avro.
        raw = json.dumps(event, ensure_ascii=False).encode()
    elif roll < 0.7:
        raw = bytes([rng.randrange(0xC3)]) + rng.randbytes(rng.randint(0, 200))
    else:
        raw = b"\xc3\x01" + rng.randbytes(rng.randint(0, 7))
    return SimEvent(
        env["source_institution_id"],
        env["event_type"],
        raw=raw,
        expected_reason="undecodable",
        raw_id=pp.new_uuid(rng),
    )


def _source_mismatch(
    rng: random.Random, now: datetime, _recent: deque[SimEvent]
) -> SimEvent:
    if rng.random() < 0.6:
        event = gen.referral_lifecycle(rng, now)[0]
    else:
        regime = gen.REGIMES[int(rng.random() * 2)]
        event = gen.displacement(rng, now, regime)
    env = event["envelope"]
    kind = env["event_type"]
    # Another institution that may publish this type, so only the source is wrong.
    others = sorted(s for s, t in PUBLISH_RIGHTS.items() if kind in t)
    others.remove(env["source_institution_id"])
    topic_source = others[int(rng.random() * len(others))]
    return SimEvent(topic_source, kind, event, expected_reason="source_mismatch")


def _not_allowed(rng: random.Random, now: datetime, _recent: deque[SimEvent]) -> SimEvent:
    source, kind = UNAUTHORISED[int(rng.random() * len(UNAUTHORISED))]
    if kind == "border_crossing":
        event = gen.border_crossing(rng, now)
    elif kind == "return_arrival":
        event = gen.land_return(rng, now)[0]
    else:
        event = gen.displacement(rng, now, "VIOLENCE_DL539")
    event["envelope"]["source_institution_id"] = source
    event["envelope"]["source_unit_id"] = None
    return SimEvent(source, kind, event, expected_reason="not_allowed_to_publish")


def _invalid(rng: random.Random, now: datetime, _recent: deque[SimEvent]) -> SimEvent:
    event = _fresh(rng, now)
    future = now + timedelta(days=rng.uniform(30, 400))
    event["envelope"]["occurred_at"] = pp.timestamp(future)
    return SimEvent(
        event["envelope"]["source_institution_id"],
        event["envelope"]["event_type"],
        event,
        expected_reason="invalid",
    )


def _conflicting(rng: random.Random, now: datetime, recent: deque[SimEvent]) -> SimEvent:
    original = recent[int(rng.random() * len(recent))]
    if original.body is None:
        raise SimulationError("only events with a body can be resent")
    event = copy.deepcopy(original.body)
    _alter(rng, event)
    event["envelope"]["published_at"] = pp.timestamp(now)
    return SimEvent(
        original.source,
        original.event_type,
        event,
        expected_reason="conflicting_duplicate",
    )


def _alter(rng: random.Random, event: Event) -> None:
    """Change the content while keeping the event valid, as a buggy resend would."""
    payload: dict[str, Any] = event["payload"]
    kind = event["envelope"]["event_type"]
    record_id = event["envelope"]["source_record_id"] or "record"
    event["envelope"]["source_record_id"] = f"{record_id}-resent"
    if kind == "return_arrival":
        payload["destination"] = pp.location(rng)
        payload["needs_protection_followup"] = not payload["needs_protection_followup"]
    elif kind == "border_crossing":
        payload["declared_purpose"] = (
            "BUSINESS" if payload["declared_purpose"] != "BUSINESS" else "TOURISM_LEISURE"
        )
    elif kind == "displacement_registration":
        payload["previous_displacements"] += 1
    else:
        payload["referring_worker_key"] = pp.token(rng, "w")


def _forged_sender(
    rng: random.Random, now: datetime, _recent: deque[SimEvent]
) -> SimEvent:
    """The receiving institution publishes a referral naming another as its sender.

    What the hub exists to stop: ``minsal`` publishing "rree_vmdmh refers to
    minsal" would make the ledger record a disclosure rree_vmdmh never made.
    """
    event = gen.referral_lifecycle(rng, now, ending="pending")[0]
    forger = event["payload"]["receiving_institution_id"]
    event["envelope"]["source_institution_id"] = forger
    event["envelope"]["source_unit_id"] = None
    return SimEvent(forger, "referral", event, expected_reason="referral_party_mismatch")


def _impossible_transition(
    rng: random.Random, now: datetime, _recent: deque[SimEvent]
) -> SimEvent:
    """The receiving institution completes a referral without naming its status."""
    event = gen.referral_lifecycle(rng, now, ending="pending")[0]
    receiving = event["payload"]["receiving_institution_id"]
    event["envelope"]["source_institution_id"] = receiving
    event["envelope"]["source_unit_id"] = None
    event["payload"].update(lifecycle_event="COMPLETED", status="DONE")
    return SimEvent(
        receiving, "referral", event, expected_reason="referral_transition_invalid"
    )


_BAD_BUILDERS: Final[
    Mapping[str, Callable[[random.Random, datetime, deque[SimEvent]], SimEvent]]
] = {
    "undecodable": _undecodable,
    "source_mismatch": _source_mismatch,
    "not_allowed_to_publish": _not_allowed,
    "invalid": _invalid,
    "conflicting_duplicate": _conflicting,
    "referral_party_mismatch": _forged_sender,
    "referral_transition_invalid": _impossible_transition,
}
