"""``puente publish`` and ``puente tail``: talk to hub topics from a terminal."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.progress import Progress

from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError, RecordInvalidError
from services.contracts.ids import check_institution_id
from services.runtime import pubsub
from services.runtime.settings import HubSettings, KafkaSettings

err = Console(stderr=True, highlight=False)
# Exit status of a publish that ended before every acknowledgement arrived.
PUBLISH_INCOMPLETE: Final = 3
# Exit status of a tail that ended before the end of its topic.
TAIL_INCOMPLETE: Final = 3


def load_json(source: str) -> list[Any]:
    """Events from a file path or ``-`` (stdin): one object or an array of them."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except OSError as e:
        raise typer.BadParameter(f"cannot read {source}: {e.strerror}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise typer.BadParameter(f"{source} is not valid JSON: {e}") from e
    events = data if isinstance(data, list) else [data]
    if not events:
        raise typer.BadParameter(f"{source} holds an empty array: nothing to publish")
    return events


def kafka_settings() -> KafkaSettings:
    """Kafka settings; these commands need a running cluster."""
    settings = KafkaSettings()
    if not settings.bootstrap_servers:
        err.print(
            "error: set PUENTE_KAFKA_BOOTSTRAP_SERVERS "
            "(e.g. the address `puente up` prints)"
        )
        raise typer.Exit(2)
    return settings


def publish(
    event_type: Annotated[
        str, typer.Argument(help="return_arrival, border_crossing, ...")
    ],
    file: Annotated[
        str, typer.Argument(help="Natural-JSON file (object or array); - for stdin")
    ],
    as_: Annotated[
        str, typer.Option("--as", help="Publishing institution id, e.g. dgme")
    ],
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.1,
            help="Give up when the broker answers nothing for this long "
            "(to connect, then for each next acknowledgement)",
        ),
    ] = pubsub.PUBLISH_TIMEOUT_S,
) -> None:
    """Validate natural-JSON events; publish to hub.in.<institution>.<event_type>.

    Prints the id of each event the broker acknowledged. Exits 3 when the broker
    stops answering for --timeout seconds: the message says how many events were
    acknowledged; publishing them all again is safe (the hub de-duplicates by
    event id).
    """
    source = check_institution_id(as_)
    catalog = Catalog.load(HubSettings().schemas_dir)
    events = load_json(file)
    prepared = []
    for index, event in enumerate(events):
        try:
            prepared.append(pubsub.prepare(catalog, event_type, source, event))
        except RecordInvalidError as e:
            err.print(f"error: event {index}: {e}")
            raise typer.Exit(1) from e
    kafka = kafka_settings()
    quiet_kafka_client()
    try:
        with Progress(console=err, transient=True, disable=len(prepared) < 200) as bar:
            task = bar.add_task("publishing", total=len(prepared))
            asyncio.run(
                pubsub.send_all(
                    kafka,
                    prepared,
                    lambda n: bar.update(task, completed=n),
                    wait_s=timeout,
                )
            )
    except pubsub.PublishIncompleteError as e:
        for stored in e.acknowledged:
            typer.echo(stored.event_id)
        err.print(f"error: {e}", soft_wrap=True, markup=False)
        raise typer.Exit(PUBLISH_INCOMPLETE) from e
    for event in prepared:
        typer.echo(event.event_id)
    err.print(f"published {len(prepared)} event(s) to {prepared[0].topic}")


def quiet_kafka_client() -> None:
    """Keep aiokafka's retry messages off the terminal.

    It logs every failed reconnect at ERROR, many lines a second while a broker is
    away; the command says what happened in one line instead.
    """
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def tail(  # noqa: PLR0917 - one parameter per option
    topic: Annotated[
        str, typer.Argument(help="Hub topic, e.g. hub.out.conapina.return_arrival")
    ],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new records")
    ] = False,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning", help="Print every record, not only the last ones"
        ),
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", help="Last records per partition")
    ] = 10,
    meta: Annotated[
        bool, typer.Option("--meta", help="Wrap each value with topic, offset, headers")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.1,
            help="Without --follow: give up when the broker answers nothing for this "
            "long before the end of the topic (exit 3)",
        ),
    ] = pubsub.READ_TIMEOUT_S,
) -> None:
    """Decode records by fingerprint and print them as natural JSON, one per line.

    Without --follow: exits 1 when the broker cannot be reached (nothing was read),
    and 3 when it stops answering for --timeout seconds before the end of the topic
    (the records printed are not all of it). With --follow it waits for the broker
    as long as it takes, saying once on stderr that it waits and once that the
    broker answers again.
    """
    kafka = kafka_settings()
    catalog = catalog_with_projections()
    quiet_kafka_client()
    try:
        asyncio.run(
            _tail(
                kafka,
                catalog,
                topic,
                None if from_beginning else lines,
                follow=follow,
                meta=meta,
                wait_s=timeout,
            )
        )
    except pubsub.ReadIncompleteError as e:
        err.print(f"error: {e}", soft_wrap=True, markup=False)
        raise typer.Exit(TAIL_INCOMPLETE) from e


async def _tail(
    kafka: KafkaSettings,
    catalog: Catalog,
    topic: str,
    last: int | None,
    *,
    follow: bool,
    meta: bool,
    wait_s: float,
) -> None:
    records = pubsub.read(
        kafka, catalog, topic, last=last, follow=follow, wait_s=wait_s, notify=say
    )
    async for record in records:
        if record.error is not None:
            err.print(
                f"{record.topic}[{record.partition}]@{record.offset}: {record.error}"
            )
            continue
        if meta:
            line = {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "schema": record.schema,
                "headers": record.headers,
                "value": record.value,
            }
            typer.echo(json.dumps(line, ensure_ascii=False))
        else:
            typer.echo(json.dumps(record.value, ensure_ascii=False))


def say(line: str) -> None:
    """One line on stderr about the command itself (stdout holds the records alone)."""
    err.print(line, soft_wrap=True, markup=False)


def catalog_with_projections() -> Catalog:
    """The catalog plus the projected schemas of the policy, so deliveries decode too."""
    hub = HubSettings()
    catalog = Catalog.load(hub.schemas_dir)
    try:
        from services.policy import load_policy  # noqa: PLC0415 - optional until the policy exists
    except ImportError:
        return catalog
    try:
        load_policy(hub.policy_dir, catalog)
    except PuenteError as e:
        err.print(f"warning: policy not loaded ({e}); deliveries may not decode")
    return catalog
