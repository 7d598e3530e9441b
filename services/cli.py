"""The ``puente`` command (typer + rich). Sub-commands live next to their service."""

from __future__ import annotations

import typer

from services import cli_bench, cli_pubsub, cli_run
from services.acl import cli as acl_cli
from services.audit import cli as audit_cli
from services.contracts import cli as contracts_cli
from services.demo.cli import demo as demo_command
from services.fuzz.cli import fuzz as fuzz_command
from services.gateway.bench import bench_command as gateway_bench
from services.gateway.cli import app as gateway_cli
from services.kafkalocal import cli as kafka_cli
from services.keys import cli as keys_cli
from services.policy import cli as policy_cli
from services.referrals import cli as referrals_cli
from services.runtime.cli import PuenteGroup
from services.sim import cli as sim_cli

app = typer.Typer(
    name="puente",
    cls=PuenteGroup,
    help="Puente: the MCNMH event hub. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
contracts_cli.app.command("export")(policy_cli.export_command)
app.add_typer(contracts_cli.app, name="schemas")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(sim_cli.app, name="sim")
cli_bench.app.command("gateway")(gateway_bench)
app.add_typer(cli_bench.app, name="bench")
app.add_typer(gateway_cli, name="gateway")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(referrals_cli.app, name="referrals")
app.add_typer(acl_cli.app, name="acl")
app.add_typer(keys_cli.app, name="keys")
app.command("subject-key")(keys_cli.subject_key)
app.add_typer(kafka_cli.app, name="kafka")
app.command("demo")(demo_command)
app.command("fuzz")(fuzz_command)
app.command()(cli_pubsub.publish)
app.command()(cli_pubsub.tail)
app.command()(cli_run.run)
app.command()(cli_run.up)


def main() -> None:
    """Entry point of the console script."""
    app()
