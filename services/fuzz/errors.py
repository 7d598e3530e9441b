"""The fuzz campaign's errors: one root, messages an operator can act on."""

from __future__ import annotations

from services.contracts.errors import PuenteError


class FuzzError(PuenteError):
    """A fuzz campaign could not run (not: it found a problem; that is a figure)."""


class FuzzSetupError(FuzzError):
    """Something the campaign needs is missing (a tool, a port, a broker)."""


class FuzzStalledError(FuzzError):
    """The service under test stopped answering inputs within the allowed time."""
