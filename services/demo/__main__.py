"""``python -m services.demo``: the same as ``puente demo``."""

import typer

from services.demo.cli import demo

typer.run(demo)
