"""
How values that JSON has no type for are written, in one place: every HTTP
and WebSocket answer and every bus event writes a datetime the same way.
"""

from __future__ import annotations

from datetime import datetime


def json_default(value: object) -> str:
    """A datetime as ISO 8601 with a Z for UTC; anything else is refused."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
