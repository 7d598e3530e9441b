"""The ``puente`` command (typer + rich): one module per command group.

Product commands are always there. Tooling commands (demo, simulator, benchmarks,
fuzzing, a local Apache Kafka) are registered only when their code and libraries are
installed; the production image leaves them out, and there each answers with one line
naming the extra that brings it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import typer

from services.audit import cli as audit_cli
from services.cli import acl, keys, policy, pubsub, run, schemas
from services.gateway.cli import app as gateway_cli
from services.indicators import cli as indicators_cli
from services.referrals import cli as referrals_cli
from services.runtime.cli import PuenteGroup

app = typer.Typer(
    name="puente",
    cls=PuenteGroup,
    help="Puente: the MCNMH event hub. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(schemas.app, name="schemas")
app.add_typer(policy.app, name="policy")
app.add_typer(gateway_cli, name="gateway")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(referrals_cli.app, name="referrals")
app.add_typer(indicators_cli.app, name="indicators")
app.add_typer(acl.app, name="acl")
app.add_typer(keys.app, name="keys")
app.command("subject-key")(keys.subject_key)
app.command()(pubsub.publish)
app.command()(pubsub.tail)
app.command()(run.run)
app.command()(run.up)


# Imported inside: the production image has no tooling packages to import.
def _demo(root: typer.Typer) -> None:
    from services.demo.cli import demo  # noqa: PLC0415

    root.command("demo")(demo)


def _sim(root: typer.Typer) -> None:
    from services.sim.cli import app as sim  # noqa: PLC0415

    root.add_typer(sim, name="sim")


def _bench(root: typer.Typer) -> None:
    from services.cli.bench import app as bench  # noqa: PLC0415
    from services.gateway.bench import bench_command  # noqa: PLC0415
    from services.indicators.bench import bench_command as indicators_bench  # noqa: PLC0415

    bench.command("gateway")(bench_command)
    bench.command("indicators")(indicators_bench)
    root.add_typer(bench, name="bench")


def _fuzz(root: typer.Typer) -> None:
    from services.fuzz.cli import fuzz  # noqa: PLC0415

    root.command("fuzz")(fuzz)


def _kafka(root: typer.Typer) -> None:
    from services.kafkalocal import cli as kafka  # noqa: PLC0415

    root.add_typer(kafka.app, name="kafka")


# command name -> (the extra that installs it, how to register it)
TOOLING: Final[dict[str, tuple[str, Callable[[typer.Typer], None]]]] = {
    "demo": ("demo", _demo),
    "sim": ("demo", _sim),
    "bench": ("bench", _bench),
    "fuzz": ("fuzz", _fuzz),
    "kafka": ("dev", _kafka),
}


def missing_tooling(name: str, extra: str, cause: ModuleNotFoundError) -> None:
    """Register ``name`` as a command that explains, in one line, why it is absent."""

    @app.command(
        name,
        help=f"(not installed: needs the [{extra}] extra)",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def absent() -> None:
        typer.echo(
            f"error: `puente {name}` is tooling, not part of this installation "
            f"(no module {cause.name}); install it from the repository with "
            f"pip install 'puente[{extra}]'",
            err=True,
        )
        raise typer.Exit(1)


def register_tooling() -> None:
    """Add every tooling command whose code and libraries are importable."""
    for name, (extra, register) in TOOLING.items():
        try:
            register(app)
        except ModuleNotFoundError as e:
            missing_tooling(name, extra, e)


register_tooling()


def main() -> None:
    """Entry point of the console script."""
    app()
