"""The router campaign: the real router service on an embedded broker, fed junk.

The campaign runs in rounds, each on a fresh embedded broker (it keeps every record
in memory and slows as they pile up) with a fresh router (`build_service`, as in
production). A round produces its inputs (`inputs.InputStream`) to ``hub.in.*``,
waits until the router handed every one over, then reads everything the router
wrote and accounts for each input:

- rejected: a record in ``hub.rejected.<source>`` names its position and a reason;
- routed: the ledger would admit audit entries for its ``event_id`` (the first of
  a group of identical inputs; the others are duplicates), or no rule matched it;
- anything else is *unanswered*.

Every ``hub.out.*`` record must match an admissible audit entry by recipient and
event: a pseudonymous delivery's ``ce_id`` is the recipient's own id for the event
(`SubjectKeys.recipient_id`), so the match goes through the entry's event id.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.audit.chain import Prepared
from services.audit.intake import to_batch
from services.contracts import codec, topics
from services.contracts.errors import ContractError
from services.fuzz.errors import FuzzStalledError
from services.fuzz.inputs import EXTRA_TOPICS, InputStream
from services.fuzz.mutate import RawInput
from services.fuzz.watch import CrashWatch
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings

# (done, total) after each step; the CLI draws a progress bar from it.
Progress = Callable[[int, int], None]
Step = Callable[[int], None]
Position = tuple[str, int, int]
# Views whose deliveries carry the hub's own event id (the others a per-recipient one).
_RELAXED_VIEWS: Final = frozenset({"FULL", "IDENT"})
_PRODUCE_CHUNK = 1000
# Seconds without progress after which the router counts as stalled.
STALL_SECONDS = 90.0
_SAMPLES = 5


@dataclass
class RouterFigures:
    """What the router campaign measured (counts over every round)."""

    inputs: int = 0
    # Inputs the broker would not take (never reached the router; owe no answer).
    unsent: int = 0
    made: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    routed_events: int = 0
    no_rule_events: int = 0
    duplicates: int = 0
    deliveries: int = 0
    audit_entries: int = 0
    ledger_refused: int = 0
    unaudited_deliveries: int = 0
    entries_without_delivery: int = 0
    unanswered: int = 0
    # Events routed again because their id came in another spelling of one UUID.
    respelled_routed: int = 0
    crashes: int = 0
    stalled_rounds: int = 0
    samples: list[str] = field(default_factory=list)
    rounds: int = 0
    elapsed: float = 0.0

    @property
    def answered(self) -> int:
        """Inputs that ended with a reason: rejected, routed, duplicate or no rule."""
        return (
            sum(self.rejected.values())
            + self.routed_events
            + self.no_rule_events
            + self.duplicates
        )

    @property
    def throughput(self) -> float:
        """Inputs per second over the whole campaign (generation and checks included)."""
        return self.inputs / self.elapsed if self.elapsed else 0.0

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return (
            self.crashes == 0
            and self.unanswered == 0
            and self.unaudited_deliveries == 0
            and self.ledger_refused == 0
            and self.respelled_routed == 0
            and self.answered + self.unsent == self.inputs
        )

    def note(self, text: str) -> None:
        """Keep a sample of what broke (no personal data: positions and reasons).

        Up to five of each kind (the text before its first colon), so a flood of
        one finding does not hide another.
        """
        kind = text.partition(":")[0]
        if sum(s.partition(":")[0] == kind for s in self.samples) < _SAMPLES:
            self.samples.append(text)


async def run(
    total: int,
    *,
    seed: int,
    round_size: int = 10_000,
    without: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> RouterFigures:
    """Feed ``total`` inputs to fresh routers, ``round_size`` per round.

    A round whose router stops handing inputs over counts as a crash; its inputs
    count as unanswered, and the next round starts on a fresh broker and router.
    """
    figures = RouterFigures()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="puente-fuzz-") as tmp:
        stream: InputStream | None = None
        done = 0
        while done < total:
            size = min(round_size, total - done)
            state = Path(tmp) / f"round-{figures.rounds}"
            async with _Round(state, stall_seconds) as rnd:
                stream = stream or rnd.stream(seed, without)
                inputs = stream.take(size)
                await rnd.feed(inputs, figures, _stepper(progress, done, total))
            done += size
            figures.rounds += 1
    figures.elapsed = time.perf_counter() - started
    return figures


def _stepper(progress: Progress | None, base: int, total: int) -> Step:
    """A round's progress (inputs of the round handed over) as campaign progress."""

    def step(done: int) -> None:
        if progress is not None:
            progress(base + done, total)

    return step


class _Round:
    """One embedded broker and one router for a share of the campaign."""

    def __init__(self, state: Path, stall_seconds: float) -> None:
        self.state = state
        self.stall_seconds = stall_seconds
        self.broker = EmbeddedBroker()
        self.service: RouterService | None = None

    async def __aenter__(self) -> _Round:
        self.broker.start()
        kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers)
        settings = RouterSettings(
            group_id=f"fuzz-{uuid.uuid4().hex[:8]}",
            port=free_port(),
            hub=HubSettings(state_dir=self.state),
            kafka=kafka,
        )
        # Topics outside every right exist up front, so the router's pattern sees
        # them from its first metadata fetch.
        extra = dict.fromkeys(EXTRA_TOPICS, TopicSettings().inbound_partitions)
        await runtime_topics.create(kafka, extra)
        self.service = build_service(settings, CollectorRegistry())
        await self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.service is not None:
                await self.service.stop()
        finally:
            self.broker.stop()

    @property
    def router(self) -> RouterService:
        """The running router."""
        assert self.service is not None
        return self.service

    @property
    def kafka(self) -> KafkaSettings:
        """The round's broker."""
        return self.router.settings.kafka

    def stream(self, seed: int, without: frozenset[str]) -> InputStream:
        """The campaign's input stream (made once, with the first round's router)."""
        policy = self.router.policy
        return InputStream(
            self.router.catalog,
            policy.publish_rights,
            sorted(policy.institutions),
            seed=seed,
            now_fn=lambda: datetime.now(UTC),
            max_event_bytes=self.router.settings.max_event_bytes,
            without=without,
        )

    async def feed(
        self, inputs: list[RawInput], figures: RouterFigures, progress: Step
    ) -> None:
        """Produce ``inputs``, wait for the router, read its outputs, account.

        Errors logged while the router works on them are crashes (its start-up,
        which may probe the broker for transactions, is not watched).
        """
        watch = CrashWatch()
        with watch.watching():
            try:
                positions = await self._produce(inputs, figures)
                await self._wait_routed(len(inputs), progress)
            except FuzzStalledError as e:
                figures.inputs += len(inputs)
                figures.made.update(r.kind for r in inputs)
                figures.unanswered += len(inputs)
                figures.crashes += 1
                figures.stalled_rounds += 1
                figures.note(f"stall: {e}")
                progress(len(inputs))  # the round is over, answered or not
            else:
                outputs = await self._collect()
                _account(self.router, inputs, positions, outputs, figures)
        figures.crashes += watch.count
        for sample in watch.samples:
            figures.note(f"crash: {sample}")
        if not self.router.health()["ok"]:
            figures.crashes += 1
            figures.note("crash: the router stopped running")

    async def _produce(
        self, inputs: Sequence[RawInput], figures: RouterFigures
    ) -> list[Position | None]:
        """Each input's position; None for one the broker would not take.

        The embedded broker now and then answers a produce with a retriable error
        (NotLeaderForPartition) that outlives the client's own retries; such an
        input is sent again a few times, then counted as unsent (it never reached
        the router, so it owes no answer).
        """
        producer = AIOKafkaProducer(**producer_config(self.kafka, "fuzz-ministries"))
        await producer.start()
        positions: list[Position | None] = []
        try:
            for at in range(0, len(inputs), _PRODUCE_CHUNK):
                chunk = inputs[at : at + _PRODUCE_CHUNK]
                pending = [
                    await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                    for r in chunk
                ]
                done = await asyncio.gather(*pending, return_exceptions=True)
                for record, meta in zip(chunk, done, strict=True):
                    if isinstance(meta, BaseException):
                        positions.append(await _resend(producer, record, figures))
                    else:
                        positions.append((meta.topic, meta.partition, meta.offset))
        finally:
            await producer.stop()
        return positions

    async def _wait_routed(self, count: int, progress: Step) -> None:
        stats = self.router.router.stats
        last, moved = -1, time.monotonic()
        while stats.records < count:
            if stats.records != last:
                last, moved = stats.records, time.monotonic()
                progress(min(last, count))
            elif time.monotonic() - moved > self.stall_seconds:
                raise FuzzStalledError(
                    f"the router handed over {stats.records} of {count} inputs and "
                    f"made no progress for {self.stall_seconds:.0f}s"
                )
            await asyncio.sleep(0.2)
        progress(count)
        async with asyncio.timeout(self.stall_seconds):
            await self.router.router.committer.drain()

    async def _collect(self) -> _Outputs:
        """Everything the router wrote this round (it wrote ``stats.outputs``)."""
        wanted = self.router.router.stats.outputs
        consumer = AIOKafkaConsumer(**consumer_config(self.kafka, None, "fuzz-reader"))
        await consumer.start()
        outputs = _Outputs(self.router)
        try:
            names = [
                t
                for t in sorted(await consumer.topics())
                if t.startswith(("hub.out.", "hub.rejected.")) or t == topics.AUDIT
            ]
            partitions = [
                TopicPartition(t, p)
                for t in names
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            quiet_since = time.monotonic()
            while outputs.count < wanted or time.monotonic() - quiet_since < 1.0:
                batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                if batch:
                    quiet_since = time.monotonic()
                    outputs.add([r for rs in batch.values() for r in rs])
                elif time.monotonic() - quiet_since > self.stall_seconds:
                    break
        finally:
            await consumer.stop()
        return outputs


async def _resend(
    producer: AIOKafkaProducer, record: RawInput, figures: RouterFigures
) -> Position | None:
    """Send one refused input again, up to five times; None if the broker never does."""
    error: BaseException | None = None
    for attempt in range(5):
        await asyncio.sleep(0.2 * (attempt + 1))
        try:
            meta = await (
                await producer.send(
                    record.topic, record.value, key=record.key, headers=record.headers
                )
            )
        except KafkaError as e:
            error = e
        else:
            return (meta.topic, meta.partition, meta.offset)
    figures.unsent += 1
    figures.note(f"unsent: the broker refused an input for {record.topic}: {error}")
    return None


class _Outputs:
    """What the router wrote, reduced to what the accounting needs."""

    def __init__(self, router: RouterService) -> None:
        self.catalog = router.catalog
        self.count = 0
        self.rejected_at: dict[Position, str] = {}
        # event_id -> (recipient, decision, view) of each admissible audit entry.
        self.entries: defaultdict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self.audit_records = 0
        self.refused = 0
        self.deliveries: list[tuple[str, str | None]] = []
        # The ledger's (canonical) event id -> the spellings the inputs used.
        self.spellings: defaultdict[str, set[str]] = defaultdict(set)

    def add(self, records: list[Any]) -> None:
        """Sort one fetched batch of output records."""
        self.count += len(records)
        audit = [r for r in records if r.topic == topics.AUDIT]
        for record in records:
            if record.topic.startswith("hub.out."):
                self.deliveries.append((record.topic.split(".")[2], _ce_id(record)))
            elif record.topic.startswith("hub.rejected."):
                _, datum = codec.decode(self.catalog, record.value, plain=True)
                where = (
                    datum["original_topic"],
                    datum["original_partition"],
                    datum["original_offset"],
                )
                self.rejected_at[where] = datum["reason"]
        batch = to_batch(self.catalog, audit)
        self.audit_records += len(audit)
        self.refused += len(batch.skipped)
        for entry in batch.entries:
            self._entry(entry)

    def _entry(self, entry: Prepared) -> None:
        # The columns the ledger indexes: what "who received event X" finds.
        columns = entry.columns
        self.entries[columns.event_id].append(
            (columns.recipient, columns.decision, columns.view)
        )


def _canonical(event_id: str) -> str:
    """The event id as the ledger stores it (the text itself if it is no UUID)."""
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return event_id


def _ce_id(record: Any) -> str | None:
    for key, value in record.headers:
        if key == "ce_id":
            return bytes(value or b"").decode(errors="replace")
    return None


def _account(
    router: RouterService,
    inputs: Sequence[RawInput],
    positions: Sequence[Position | None],
    outputs: _Outputs,
    figures: RouterFigures,
) -> None:
    """Add one round's inputs and outputs to the figures."""
    figures.inputs += len(inputs)
    figures.audit_entries += outputs.audit_records
    figures.ledger_refused += outputs.refused
    groups: defaultdict[str, list[tuple[bytes, Any, Any, Position]]] = defaultdict(list)
    for record, where in zip(inputs, positions, strict=True):
        figures.made[record.kind] += 1
        if where is None:
            continue  # never reached the router (counted as unsent)
        reason = outputs.rejected_at.get(where)
        if reason is not None:
            figures.rejected[reason] += 1
            continue
        try:
            entry, datum = codec.decode(router.catalog, record.value or b"", plain=True)
            event_id = str(datum["envelope"]["event_id"])
        except (ContractError, KeyError, TypeError) as e:
            figures.unanswered += 1
            figures.note(f"unanswered: {record.kind} at {where}, undecodable ({e})")
            continue
        digest = hashlib.sha256(record.value or b"").digest()
        groups[_canonical(event_id)].append((digest, entry, datum, where))
        outputs.spellings[_canonical(event_id)].add(event_id)
    for event_id, members in groups.items():
        _account_group(router, event_id, members, outputs, figures)
    _match_deliveries(router, outputs, figures)


def _account_group(
    router: RouterService,
    event_id: str,
    members: list[tuple[bytes, Any, Any, Position]],
    outputs: _Outputs,
    figures: RouterFigures,
) -> None:
    """Inputs that share an event id and were not rejected: one routing, duplicates."""
    spelled = {str(datum["envelope"]["event_id"]) for _, _, datum, _ in members}
    if len(spelled) > 1:
        # The ledger reads one UUID; the router de-duplicated by its spelling.
        figures.respelled_routed += len(spelled) - 1
        figures.note(
            f"respelled: one event id routed in {len(spelled)} spellings"
            f" at {members[0][3]}"
        )
    if len({digest for digest, *_ in members}) > len(spelled):
        figures.unanswered += len(members)
        figures.note(
            f"unanswered: {len(members)} different inputs share one event id and none "
            f"was rejected (first at {members[0][3]})"
        )
        return
    _, entry, datum, where = members[0]
    if event_id in outputs.entries:
        figures.routed_events += 1
    elif not router.policy.decide(entry.name, datum, entry.version):
        figures.no_rule_events += 1
    else:
        figures.unanswered += len(members)
        figures.note(f"unanswered: accepted at {where} but no audit entry {event_id!r}")
        return
    figures.duplicates += len(members) - 1


def _match_deliveries(
    router: RouterService, outputs: _Outputs, figures: RouterFigures
) -> None:
    """Every delivery against the admissible audit entries, by recipient and event."""
    keys = router.router.pipeline.keys
    expected: set[tuple[str, str]] = set()
    for event_id, entries in outputs.entries.items():
        for recipient, decision, view in entries:
            if decision != "delivered":
                continue
            # The delivery carries the id as published (or derived from it).
            for spelling in outputs.spellings.get(event_id) or {event_id}:
                own = (
                    spelling
                    if view in _RELAXED_VIEWS
                    else keys.recipient_id(recipient, spelling)
                )
                expected.add((recipient, own))
    seen: set[tuple[str, str]] = set()
    for recipient, ce_id in outputs.deliveries:
        figures.deliveries += 1
        if ce_id is None or (recipient, ce_id) not in expected:
            figures.unaudited_deliveries += 1
            figures.note(f"delivery to {recipient} without an audit entry")
        else:
            seen.add((recipient, ce_id))
    figures.entries_without_delivery += len(expected - seen)
