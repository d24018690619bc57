"""
The building blocks of the OpenAPI document (web/openapi.py): each route
module describes its own paths with them, beside its handlers, so a route
and its documentation change together.
"""

from __future__ import annotations

from typing import Any

from denoisecast.handlers.accounts import USERNAME_PATTERN
from denoisecast.protocols.messages import USERNAME_MAX

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error(description: str) -> dict[str, Any]:
    return ok(description, ref("Error"))


COMMON_ERRORS = {
    "400": error("Malformed input: bad JSON, wrong types, missing or unknown fields."),
    "401": error("Not logged in."),
    "403": error("CSRF token or Origin check failed, or not allowed."),
    "413": error("Body too large."),
    "503": error("storage_full: the database's disk is full; retry after Retry-After seconds."),
}
PUBLIC_ERRORS = {k: v for k, v in COMMON_ERRORS.items() if k != "401"}
#: The username rule as a JSON Schema pattern (accounts.USERNAME_PATTERN, anchored at both ends).
USERNAME_SCHEMA_PATTERN = "^" + USERNAME_PATTERN.pattern.removesuffix(r"\Z") + "$"
USERNAME_PARAM = {
    "name": "username",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": USERNAME_MAX},
}


DATE_TIME = {"type": "string", "format": "date-time"}


def closed_object(**properties: Any) -> dict[str, Any]:
    """
    A JSON object with exactly these members, all required.
    """
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def user_with(**extra: Any) -> dict[str, Any]:
    """
    A user as the API shows one, with the members a listing adds.
    """
    return closed_object(username={"type": "string"}, created_at=DATE_TIME, **extra)

#: A recording's id in a path (the admin routes use it too).
RECORDING_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
