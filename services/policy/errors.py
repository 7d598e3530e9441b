"""Errors of the access policy: every one names the file, rule and field at fault."""

from __future__ import annotations

from services.contracts.errors import ConfigurationError, PuenteError


class PolicyError(ConfigurationError):
    """The policy files are unreadable or break a rule of the policy format.

    The message names the file, the rule id and the field path at fault, so that
    ``puente policy check`` output can be acted on without reading the code.
    """


class KeyMaterialError(ConfigurationError):
    """The hub key is missing, unreadable or malformed."""


class ConditionError(PuenteError):
    """A rule condition could not be evaluated on one record (that rule withholds)."""
