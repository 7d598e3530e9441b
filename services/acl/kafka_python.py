"""kafka-python's admin client and errors, the only door to that library.

kafka-python ships neither type stubs nor a ``py.typed`` marker, so its modules are
``Any`` to mypy; `services.acl.admin` gives the rest of the hub typed functions.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas at import time with
    # importlib.resources' legacy read_text/open_text, deprecated since Python 3.11:
    # its problem, not one an operator or a test (warnings are errors there) can fix.
    warnings.filterwarnings(
        "ignore", r"\w+ is deprecated\. Use files\(\) instead", DeprecationWarning
    )
    from kafka import admin, errors  # type: ignore[import-untyped]

__all__ = ["admin", "errors"]
