"""Errors of the indicators service."""

from __future__ import annotations

from services.contracts.errors import ConfigurationError, PuenteError


class IndicatorsError(PuenteError):
    """Root of the indicators service's errors."""


class CatalogueError(IndicatorsError, ConfigurationError):
    """The indicator catalogue is missing or wrong; the message says where."""


class UnknownIndicatorError(IndicatorsError):
    """No indicator with that id is in the catalogue."""


class QueryError(IndicatorsError):
    """A table request names a breakdown, period or range the indicator cannot give."""


class NotAllowedError(IndicatorsError):
    """The institution holds no aggregate grant that lets it read this indicator."""


class StoreError(IndicatorsError):
    """The indicators database cannot be opened, read or written."""

    retriable = True
