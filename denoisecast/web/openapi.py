"""
The OpenAPI 3 description of the JSON API, served at /api/openapi.json.

It is written by hand, next to the routes it describes; a test walks the
route table and this document both ways and validates real responses
against the schemas, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from denoisecast import __version__
from denoisecast.accounts import USERNAME_PATTERN
from denoisecast.friends import SEARCH_PAGE_MAX
from denoisecast.passwords import PASSWORD_MAX, PASSWORD_MIN
from denoisecast.protocols.messages import MAX_SDP, SIGNALS, USERNAME_MAX
from denoisecast.recordings.library import PAGE_MAX
from denoisecast.web.resource import ApiCall, Response, Route
from denoisecast.web.routes.friends import PAGE_DEFAULT as SEARCH_PAGE_DEFAULT
from denoisecast.web.routes.friends import SEARCH_QUERY_MAX
from denoisecast.web.routes.recordings import CURSOR_MAX, PAGE_DEFAULT

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


def credentials() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "pattern": USERNAME_SCHEMA_PATTERN},
            "password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
        },
    }


SCHEMAS: dict[str, Any] = {
    "StreamStatus": {
        "type": "object",
        "required": ["user", "live", "live_since", "denoise", "atten_lim_db", "listeners"],
        "additionalProperties": False,
        "properties": {
            "user": {"type": "string"},
            "live": {"type": "boolean"},
            "live_since": {"type": ["string", "null"], "format": "date-time"},
            "denoise": {"type": ["boolean", "null"]},
            "atten_lim_db": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
            "listeners": {"type": "integer", "minimum": 0},
        },
    },
    "Offer": closed_object(sdp={"type": "string", "maxLength": MAX_SDP, "description": "A WebRTC offer (SDP) that sends audio."}),
    "ListenOffer": {
        "type": "object",
        "required": ["sdp"],
        "additionalProperties": False,
        "properties": {
            "sdp": {"type": "string", "maxLength": MAX_SDP, "description": "A WebRTC offer (SDP) that receives audio."},
            "signal": {"enum": list(SIGNALS), "default": "denoised"},
        },
    },
    "PublishAnswer": closed_object(sdp={"type": "string"}, stream={"$ref": "#/components/schemas/StreamStatus"}),
    "ListenAnswer": closed_object(
        sdp={"type": "string"},
        signal={"enum": list(SIGNALS)},
        stream={"$ref": "#/components/schemas/StreamStatus"},
    ),
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "User": user_with(),
    "UserEnvelope": {
        "type": "object",
        "required": ["user"],
        "additionalProperties": False,
        "properties": {"user": ref("User")},
    },
    "SearchResult": {
        "type": "object",
        "required": ["users", "next"],
        "additionalProperties": False,
        "properties": {
            "users": {
                "type": "array",
                "items": user_with(
                    relationship={"type": "string", "enum": ["none", "friend", "incoming", "outgoing"]}
                ),
            },
            "next": {"type": ["string", "null"]},
        },
    },
    "FriendList": closed_object(friends={"type": "array", "items": user_with(since=DATE_TIME)}),
    "RequestList": closed_object(
        incoming={"type": "array", "items": user_with(sent_at=DATE_TIME)},
        outgoing={"type": "array", "items": user_with(sent_at=DATE_TIME)},
    ),
    "FriendStatus": {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["requested", "friends"]}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "version"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "database": {"type": "string"},
            "disk": {
                "type": "string",
                "enum": ["ok", "low", "full", "error"],
                "description": (
                    "The recordings disk: under the free-space floor (low), a write failed for "
                    "lack of room (full) or otherwise (error); new recordings are refused until ok."
                ),
            },
            "disk_free_bytes": {"type": "integer"},
            "version": {"type": "string"},
        },
    },
    "Recording": {
        "type": "object",
        "required": [
            "id", "owner", "started_at", "ended_at", "duration_seconds", "denoised_bytes",
            "raw_bytes", "model", "status", "denoise", "timeline",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "started_at": {"type": "string", "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": "number"},
            "denoised_bytes": {"type": "integer"},
            "raw_bytes": {"type": "integer"},
            "model": {"type": "string"},
            "status": {"type": "string", "enum": ["recording", "complete", "interrupted", "stopped_early"]},
            "denoise": {"type": "boolean", "description": "Whether denoise was on when the broadcast began."},
            "timeline": {
                "type": "array",
                "description": "Denoise settings over time, seconds from the start.",
                "items": {
                    "type": "object",
                    "required": ["t", "denoise", "atten_lim_db"],
                    "additionalProperties": False,
                    "properties": {
                        "t": {"type": "number"},
                        "denoise": {"type": "boolean"},
                        "atten_lim_db": {"type": "number"},
                    },
                },
            },
        },
    },
    "CsrfToken": {
        "type": "object",
        "required": ["csrf_token"],
        "additionalProperties": False,
        "properties": {"csrf_token": {"type": "string"}},
    },
}

PATHS: dict[str, Any] = {
    "/api/openapi.json": {
        "get": {
            "summary": "This document.",
            "security": [],
            "responses": {"200": ok("The OpenAPI document.", {"type": "object"})},
        }
    },
    "/api/health": {
        "get": {
            "summary": "Whether the server, its database and its recordings disk work, and its version.",
            "security": [],
            "responses": {
                "200": ok("Serving; status is degraded when the recordings disk is not ok.", ref("Health")),
                "503": ok("The database is unreachable.", ref("Health")),
            },
        }
    },
    "/api/csrf": {
        "get": {
            "summary": "The CSRF token to repeat in the X-CSRF-Token header; also set as the dc_csrf cookie.",
            "security": [],
            "responses": {"200": ok("The token.", ref("CsrfToken"))},
        }
    },
    "/api/auth/register": {
        "post": {
            "summary": "Create an account and log in.",
            "security": [],
            "requestBody": body(credentials()),
            "responses": {
                "201": ok("Registered; the dc_session cookie is set.", ref("UserEnvelope")),
                "409": error("The username is taken."),
                "429": error("Too many registrations from this address; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
                **PUBLIC_ERRORS,
                "400": error(
                    "Malformed input, an invalid username, or a refused password: shorter "
                    "than 8 characters (weak_password), the username itself, or one of the "
                    "commonest passwords (common_password)."
                ),
            },
        }
    },
    "/api/auth/login": {
        "post": {
            "summary": "Log in; the same error for unknown users and wrong passwords.",
            "security": [],
            "requestBody": body(credentials()),
            "responses": {
                "200": ok("Logged in; the dc_session cookie is set.", ref("UserEnvelope")),
                "401": error("Wrong username or password."),
                "429": error("Too many failed logins; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
                **PUBLIC_ERRORS,
            },
        }
    },
    "/api/auth/logout": {
        "post": {
            "summary": "End this session; its WebSockets close with code 4001.",
            "responses": {"204": ok("Logged out."), **COMMON_ERRORS},
        }
    },
    "/api/auth/password": {
        "post": {
            "summary": (
                "Change the password; ends every session and opens a new one for this client. "
                "The WebSockets of the other sessions close with code 4001."
            ),
            "requestBody": body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["current_password", "new_password"],
                    "properties": {
                        "current_password": {"type": "string"},
                        "new_password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
                    },
                }
            ),
            "responses": {
                "204": ok("Changed."),
                **COMMON_ERRORS,
                "400": error(
                    "Malformed input, or a refused new password (weak_password, common_password)."
                ),
                "403": error("The current password is wrong (wrong_password), or CSRF/Origin failed."),
                "429": error("Too many wrong current passwords; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
            },
        }
    },
    "/api/me": {
        "get": {
            "summary": "The logged-in user.",
            "responses": {"200": ok("The user.", ref("UserEnvelope")), **COMMON_ERRORS},
        }
    },
    "/api/users": {
        "get": {
            "summary": "Search users by case-insensitive name prefix; never includes yourself.",
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": SEARCH_QUERY_MAX}},
                {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": SEARCH_QUERY_MAX}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": SEARCH_PAGE_MAX, "default": SEARCH_PAGE_DEFAULT},
                },
            ],
            "responses": {"200": ok("One page of users.", ref("SearchResult")), **COMMON_ERRORS},
        }
    },
    "/api/friends": {
        "get": {
            "summary": "Your friends.",
            "responses": {"200": ok("Friends.", ref("FriendList")), **COMMON_ERRORS},
        }
    },
    "/api/friends/{username}": {
        "delete": {
            "summary": "Unfriend someone.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("No longer friends."),
                "404": error("No such user, or not friends."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/friends/requests": {
        "get": {
            "summary": "Incoming and outgoing friend requests.",
            "responses": {"200": ok("Requests.", ref("RequestList")), **COMMON_ERRORS},
        },
        "post": {
            "summary": "Ask someone to be friends; if they already asked you, you become friends.",
            "requestBody": body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["username"],
                    "properties": {"username": {"type": "string"}},
                }
            ),
            "responses": {
                "201": ok("Requested.", ref("FriendStatus")),
                "200": ok("They had asked you: now friends.", ref("FriendStatus")),
                "404": error("No such user."),
                "409": error("Already friends, or already requested."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/friends/requests/{username}": {
        "delete": {
            "summary": "Cancel your request to someone.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Cancelled."),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/friends/requests/{username}/accept": {
        "post": {
            "summary": "Accept someone's request.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "200": ok("Now friends.", ref("FriendStatus")),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/streams/{username}": {
        "get": {
            "summary": "Whether a user (yourself or a friend) is live, since when, with which denoise setting and how many listeners.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "200": ok("The stream's status.", ref("StreamStatus")),
                **COMMON_ERRORS,
            },
        },
        "post": {
            "summary": "Go live without the WebSocket: send a WebRTC offer with your microphone, get the server's answer (docs/live.md).",
            "parameters": [USERNAME_PARAM],
            "requestBody": body(ref("Offer")),
            "responses": {
                "201": ok("Live; apply the answer.", ref("PublishAnswer")),
                "409": error("You are already live."),
                **COMMON_ERRORS,
            },
        },
        "delete": {
            "summary": "Stop your own live stream (listeners are told).",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Stopped."),
                "404": error("You are not live."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/streams/{username}/listen": {
        "post": {
            "summary": "Listen to a friend's live stream without the WebSocket: send a WebRTC offer that receives audio, get the answer.",
            "parameters": [USERNAME_PARAM],
            "requestBody": body(ref("ListenOffer")),
            "responses": {
                "201": ok("Listening; apply the answer.", ref("ListenAnswer")),
                "404": error("Not live."),
                **COMMON_ERRORS,
            },
        },
        "delete": {
            "summary": "Stop listening.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Stopped listening."),
                "404": error("You are not listening to them."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/friends/requests/{username}/reject": {
        "post": {
            "summary": "Reject someone's request.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Rejected."),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
}

RECORDING_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
NO_RECORDING = error("No such recording, or not the owner's or a friend's: the same answer either way.")

PATHS.update(
    {
        "/api/recordings": {
            "get": {
                "summary": "Your and your friends' recordings, newest first.",
                "parameters": [
                    {"name": "owner", "in": "query", "schema": {"type": "string", "maxLength": USERNAME_MAX}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": CURSOR_MAX}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
                    },
                ],
                "responses": {
                    "200": ok(
                        "One page.",
                        {
                            "type": "object",
                            "required": ["recordings", "next"],
                            "additionalProperties": False,
                            "properties": {
                                "recordings": {"type": "array", "items": ref("Recording")},
                                "next": {"type": ["string", "null"]},
                            },
                        },
                    ),
                    **COMMON_ERRORS,
                },
            }
        },
        "/api/recordings/{id}": {
            "get": {
                "summary": "One recording's details.",
                "parameters": [RECORDING_ID],
                "responses": {
                    "200": ok(
                        "The recording.",
                        {
                            "type": "object",
                            "required": ["recording"],
                            "additionalProperties": False,
                            "properties": {"recording": ref("Recording")},
                        },
                    ),
                    "404": NO_RECORDING,
                    **COMMON_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete your recording: its row and both files.",
                "parameters": [RECORDING_ID],
                "responses": {"204": ok("Deleted."), "404": NO_RECORDING, **COMMON_ERRORS},
            },
        },
        "/api/recordings/{id}/audio": {
            "get": {
                "summary": "A track as Ogg/Opus, with HTTP Range and If-Range for seeking.",
                "description": (
                    "Up to 16 byte ranges; overlapping or nearly adjacent ranges are merged "
                    "(RFC 9110), so no byte is sent twice."
                ),
                "parameters": [
                    RECORDING_ID,
                    {
                        "name": "track",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["denoised", "raw"], "default": "denoised"},
                    },
                    {
                        "name": "download",
                        "in": "query",
                        "description": "Present (any value): Content-Disposition is attachment instead of inline.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The whole file, with Content-Disposition naming it "
                        "<owner>-<YYYY-MM-DD-HHMM>-<track>.ogg.",
                        "content": {"audio/ogg": {}},
                    },
                    "206": {"description": "The requested range(s).", "content": {"audio/ogg": {}}},
                    "404": NO_RECORDING,
                    "416": error("The range is malformed or outside the file."),
                    **COMMON_ERRORS,
                },
            }
        },
        "/api/recordings/{id}/waveform": {
            "get": {
                "summary": "Peak magnitudes of the denoised track at a fixed resolution, for drawing.",
                "parameters": [RECORDING_ID],
                "responses": {
                    "200": ok(
                        "The peaks, each in [0, 1].",
                        {
                            "type": "object",
                            "required": ["points"],
                            "additionalProperties": False,
                            "properties": {
                                "points": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}
                            },
                        },
                    ),
                    "404": NO_RECORDING,
                    **COMMON_ERRORS,
                },
            }
        },
    }
)

SCHEMAS["AdminAccount"] = {
    "type": "object",
    "required": ["username", "created_at", "is_admin", "disabled"],
    "additionalProperties": False,
    "properties": {
        "username": {"type": "string"},
        "created_at": DATE_TIME,
        "is_admin": {"type": "boolean"},
        "disabled": {"type": "boolean"},
        "recordings": {"type": "integer", "minimum": 0, "description": "In the user list: how many."},
        "bytes": {"type": "integer", "minimum": 0, "description": "In the user list: storage used, both tracks."},
    },
}
ADMIN_ERRORS = {
    **COMMON_ERRORS,
    "403": error("Not an administrator (not_admin), or the CSRF token or Origin check failed."),
}
NO_USER = error("No such user (no_such_user).")
ACCOUNT_ENVELOPE = closed_object(user=ref("AdminAccount"))


def flag_body(name: str) -> dict[str, Any]:
    return body(closed_object(**{name: {"type": "boolean"}}))


PATHS.update(
    {
        "/api/admin/users": {
            "get": {
                "summary": "Admins only: every account with its role, state and storage use.",
                "responses": {
                    "200": ok("The accounts, by name.", closed_object(users={"type": "array", "items": ref("AdminAccount")})),
                    **ADMIN_ERRORS,
                },
            },
            "post": {
                "summary": "Admins only: create an account (the password rules apply).",
                "requestBody": body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string", "pattern": USERNAME_SCHEMA_PATTERN},
                            "password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
                            "admin": {"type": "boolean", "default": False},
                        },
                    }
                ),
                "responses": {
                    "201": ok("Created.", ACCOUNT_ENVELOPE),
                    "409": error("The username is taken."),
                    **ADMIN_ERRORS,
                },
            },
        },
        "/api/admin/users/{username}/password": {
            "post": {
                "summary": "Admins only: set a new password; every session of the account ends, its sockets close.",
                "parameters": [USERNAME_PARAM],
                "requestBody": body(closed_object(password={"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX})),
                "responses": {"204": ok("Reset."), "404": NO_USER, **ADMIN_ERRORS},
            }
        },
        "/api/admin/users/{username}/admin": {
            "post": {
                "summary": "Admins only: give or take the admin role.",
                "parameters": [USERNAME_PARAM],
                "requestBody": flag_body("admin"),
                "responses": {"200": ok("The account.", ACCOUNT_ENVELOPE), "404": NO_USER, **ADMIN_ERRORS},
            }
        },
        "/api/admin/users/{username}/disabled": {
            "post": {
                "summary": (
                    "Admins only: disable an account (its sessions end, its sockets close and its "
                    "broadcast ends at once; it cannot log in: 403 account_disabled) or enable it."
                ),
                "parameters": [USERNAME_PARAM],
                "requestBody": flag_body("disabled"),
                "responses": {"200": ok("The account.", ACCOUNT_ENVELOPE), "404": NO_USER, **ADMIN_ERRORS},
            }
        },
        "/api/admin/users/{username}/recordings": {
            "get": {
                "summary": "Admins only: all of a user's recordings, newest first.",
                "parameters": [USERNAME_PARAM],
                "responses": {
                    "200": ok("The recordings.", closed_object(recordings={"type": "array", "items": ref("Recording")})),
                    "404": NO_USER,
                    **ADMIN_ERRORS,
                },
            }
        },
        "/api/admin/recordings/{id}": {
            "delete": {
                "summary": "Admins only: delete any recording, its row and both files.",
                "parameters": [RECORDING_ID],
                "responses": {"204": ok("Deleted."), "404": error("No such recording."), **ADMIN_ERRORS},
            }
        },
        "/api/admin/broadcasts": {
            "get": {
                "summary": "Admins only: the broadcasts live on this server.",
                "responses": {
                    "200": ok("The broadcasts.", closed_object(broadcasts={"type": "array", "items": ref("StreamStatus")})),
                    **ADMIN_ERRORS,
                },
            }
        },
        "/api/admin/broadcasts/{username}": {
            "delete": {
                "summary": "Admins only: end a user's live broadcast (its recording is finalised).",
                "parameters": [USERNAME_PARAM],
                "responses": {
                    "204": ok("Ended."),
                    "404": error("No such user, or not live (not_live)."),
                    **ADMIN_ERRORS,
                },
            }
        },
        "/api/admin/demo": {
            "post": {
                "summary": (
                    "Admins only: create the demo accounts alice, bob, carol and dave (password "
                    "try-denoisecast) with friendships among them; existing names are left alone."
                ),
                "responses": {
                    "201": ok("The names created.", closed_object(created={"type": "array", "items": {"type": "string"}})),
                    **ADMIN_ERRORS,
                },
            }
        },
    }
)

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "DenoiseCast API",
        "version": __version__,
        "description": (
            "JSON API of a DenoiseCast server. Errors always have the shape "
            '{"error": {"code": ..., "message": ...}}. State-changing requests '
            "need the X-CSRF-Token header equal to the dc_csrf cookie (GET "
            "/api/csrf sets it). Bodies are limited in size (413)."
        ),
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "dc_session"}
        },
    },
    "security": [{"session": []}],
    "paths": PATHS,
}


async def serve_document(call: ApiCall) -> Response:
    return 200, DOCUMENT


def routes() -> list[Route]:
    return [Route("GET", "/api/openapi.json", serve_document, auth=False)]
