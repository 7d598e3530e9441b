"""Errors of the referral tracker."""

from __future__ import annotations

from services.contracts.errors import ConfigurationError, PuenteError


class ReferralsError(PuenteError):
    """Root of the referral tracker's errors."""


class DeadlinesFileError(ReferralsError, ConfigurationError):
    """The deadlines policy file is missing or wrong; fix it and restart."""


class TrackerStoreError(ReferralsError):
    """The tracker's database cannot be opened, read or written."""

    retriable = True


class NotTrackedError(ReferralsError):
    """No referral with that id is tracked."""
