"""
The one error type the service layer raises for expected trouble.

It carries an HTTP status, a stable machine-readable code and a message a
person can read.  Services raise it without knowing about HTTP requests; the
web layer turns it into the JSON error shape in exactly one place
(``denoisecast.web.resource``).  Anything that is not a ``DenoiseCastError``
is a bug and becomes a generic 500 with nothing leaked.
"""

from __future__ import annotations

from collections.abc import Mapping


class DenoiseCastError(Exception):
    """
    An expected failure with a status, a code and a message.

    @ivar headers: extra response headers, e.g. C{Retry-After} on a 429.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}

    def __repr__(self) -> str:
        return f"DenoiseCastError({self.status}, {self.code!r}, {self.message!r})"


def bad_request(message: str, code: str = "bad_request") -> DenoiseCastError:
    return DenoiseCastError(400, code, message)


def unauthenticated(message: str = "You need to log in.") -> DenoiseCastError:
    return DenoiseCastError(401, "unauthenticated", message)


def forbidden(code: str, message: str) -> DenoiseCastError:
    return DenoiseCastError(403, code, message)


def not_found(code: str, message: str) -> DenoiseCastError:
    return DenoiseCastError(404, code, message)


def conflict(code: str, message: str) -> DenoiseCastError:
    return DenoiseCastError(409, code, message)
