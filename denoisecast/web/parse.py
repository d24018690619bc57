"""
Reading input: the only way request bodies and query strings get into
handlers.  Every helper raises a 400 L{DenoiseCastError} that names the
problem; nothing malformed ever reaches the service layer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from denoisecast.errors import DenoiseCastError, bad_request


@dataclass(frozen=True)
class Field:
    """
    One expected member of a JSON object body.
    """

    kind: type
    required: bool = True
    max_length: int = 1024


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


class NotJsonText(ValueError):
    """
    Bytes that are not a JSON text a person could have written: not UTF-8,
    not JSON, too deeply nested, or holding a string that is not Unicode.
    """


def load_json_text(raw: bytes) -> Any:
    """
    The JSON value in C{raw}, refusing what Python's parser lets through
    but no text is made of.

    JSON's C{\\uXXXX} escapes can spell a lone UTF-16 surrogate
    (C{"\\ud800"}); C{json.loads} returns it as a str that no encoder
    accepts, so it would fail far away (hashing a password, writing SQL)
    as a 500.  Checking here, once, covers every field of every body and
    WebSocket message, keys included.

    @raise NotJsonText: with a message fit for the client.
    """
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotJsonText("not valid JSON") from None
    try:
        # Re-encoding is the whole check: only lone surrogates fail it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotJsonText("a string holds a lone UTF-16 surrogate, which is not Unicode text") from None
    except RecursionError:
        raise NotJsonText("not valid JSON") from None
    return value


def parse_json_object(request: IRequest, fields: dict[str, Field]) -> dict[str, Any]:
    """
    The request body as a JSON object holding exactly C{fields}.

    Unknown members, missing required ones, wrong types and over-long
    strings are each a 400 with their own code.
    """
    content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise DenoiseCastError(
            415, "unsupported_media_type", "Send the body as application/json."
        )
    raw = request.content.read() if request.content is not None else b""
    try:
        body = load_json_text(raw)
    except NotJsonText as problem:
        raise bad_request(f"The body is not valid JSON: {problem}.", "malformed_json") from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.", "malformed_json")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r}.", "unknown_field")
    for name, field in fields.items():
        if name not in body:
            if field.required:
                raise bad_request(f"Missing field {name!r}.", "missing_field")
            continue
        value = body[name]
        # bool is an int in Python but not in JSON.
        if not isinstance(value, field.kind) or (field.kind is int and isinstance(value, bool)):
            raise bad_request(
                f"Field {name!r} must be a {field.kind.__name__}.", "invalid_field"
            )
        if isinstance(value, str) and len(value) > field.max_length:
            raise bad_request(
                f"Field {name!r} is longer than {field.max_length} characters.",
                "invalid_field",
            )
    return body


def query_string(
    request: IRequest, name: str, default: str | None = None, max_length: int = 256
) -> str | None:
    values = request.args.get(name.encode(), [])
    if not values:
        return default
    if len(values) > 1:
        raise bad_request(f"Give {name!r} once.", "invalid_query")
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"{name!r} is not UTF-8.", "invalid_query") from None
    if len(value) > max_length:
        raise bad_request(f"{name!r} is longer than {max_length} characters.", "invalid_query")
    return value


_DIGITS = re.compile(r"[0-9]{1,9}\Z")


def query_int(request: IRequest, name: str, default: int, low: int, high: int) -> int:
    value = query_string(request, name)
    if value is None:
        return default
    if not _DIGITS.match(value) or not low <= int(value) <= high:
        raise bad_request(f"{name!r} must be a whole number from {low} to {high}.", "invalid_query")
    return int(value)
