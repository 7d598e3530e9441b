"""Crash watching: errors logged, and exceptions no task retrieved, during a campaign."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

# Samples of crash messages kept for the report (the count is exact).
_SAMPLES = 5


class CrashWatch(logging.Handler):
    """Counts ERROR records of any logger and unhandled exceptions of the event loop.

    A service under fuzzing that logs an error or leaks an exception has crashed on
    an input, even if it goes on: the campaign counts each one as a crash.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Count one error record."""
        self._note(f"{record.name}: {record.getMessage()}"[:300])

    def loop_exception(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        """The event loop's handler for exceptions nothing retrieved."""
        del loop
        self._note(
            f"event loop: {context.get('message')} {context.get('exception')!r}"[:300]
        )

    def _note(self, text: str) -> None:
        self.count += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(text)

    @contextlib.contextmanager
    def watching(self) -> Iterator[CrashWatch]:
        """Attach to the root logger and the running loop for the block."""
        root = logging.getLogger()
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        root.addHandler(self)
        loop.set_exception_handler(self.loop_exception)
        try:
            yield self
        finally:
            root.removeHandler(self)
            loop.set_exception_handler(previous)
